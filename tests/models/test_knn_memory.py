"""DGCNN's padded kNN keeps its distance blocks bounded, whatever the size of one cloud."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from lightning_pc.nn import knn_graph
from lightning_pc.nn.knn_graph import knn_table, query_rows
from lightning_pc.ops import knn


def _exact(x: torch.Tensor, ptr: torch.Tensor, k: int) -> torch.Tensor:
    """Brute force in float64, cloud by cloud: ``[N, k]`` global indices, nearest first, a
    cloud smaller than ``k`` repeating its nearest neighbour (the tables' contract)."""
    rows = []
    for lo, hi in zip(ptr[:-1].tolist(), ptr[1:].tolist(), strict=True):
        c = x[lo:hi].double()
        t = torch.cdist(c, c).topk(min(k, hi - lo), largest=False).indices + lo
        rows.append(torch.cat([t, t[:, :1].expand(-1, k - t.size(1))], 1))
    return torch.cat(rows)


def test_query_rows_respects_the_budget() -> None:
    for n in (1, 7, 8192, 8193, 20_000, 300_000, 5_000_000):
        rows = query_rows(n)
        assert rows >= 1
        assert rows * n <= max(knn_graph._MAX_BLOCK, n)  # one row is the least a block holds
    assert query_rows(20_000) == knn_graph._MAX_BLOCK // 20_000


def test_blocks_within_clouds_match_exact_knn(monkeypatch: pytest.MonkeyPatch) -> None:
    """A budget far below one cloud's n**2: every cloud is split into many row blocks (the
    last one short), with clouds smaller than k and a one-point cloud in the batch."""
    monkeypatch.setattr(knn_graph, "_MAX_BLOCK", 1000)
    g = torch.Generator().manual_seed(0)
    sizes = [333, 1, 7, 250, 120]
    x = torch.randn(sum(sizes), 5, generator=g)
    x[10:20] = x[10]  # duplicates: ties among them, any order is exact
    ptr = torch.tensor([0, *torch.tensor(sizes).cumsum(0).tolist()])
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    calls: list[tuple[int, ...]] = []
    real_addmm = torch.addmm

    def spy(*args, **kwargs):
        out = real_addmm(*args, **kwargs)
        calls.append(tuple(out.shape))
        return out

    monkeypatch.setattr(torch, "addmm", spy)
    k = 10
    table = knn_table(x, batch, ptr, k, "padded")
    monkeypatch.setattr(torch, "addmm", real_addmm)
    assert calls and all(r * n <= 1000 or r == 1 for r, n in calls)
    assert (3, 333) in calls and (2, 250) in calls  # full blocks, and a short last one
    assert table.shape == (sum(sizes), k)
    assert (batch[table] == batch[:, None]).all()
    # the k nearest by exact distance (as distances, so that tied duplicates may swap)
    exact = _exact(x, ptr, k)
    d_ours = (x[table] - x[:, None]).double().norm(dim=-1)
    d_exact = (x[exact] - x[:, None]).double().norm(dim=-1)
    torch.testing.assert_close(d_ours, d_exact, rtol=1e-5, atol=1e-5)
    # the blocked path and the packed path (lightning_pc.ops.knn) agree
    packed = knn_table(x, batch, ptr, k, "packed")
    d_packed = (x[packed] - x[:, None]).double().norm(dim=-1)
    torch.testing.assert_close(d_ours, d_packed, rtol=1e-5, atol=1e-5)
    # short clouds repeat their nearest neighbour, as the unblocked path does
    assert (table[333] == 333).all()
    assert set(table[334].tolist()) == set(range(334, 341))


def test_large_cloud_matches_packed_knn() -> None:
    """One 20k-point cloud (over the 8192 points of one block) in 3D, as DGCNN's first
    graph: the row-blocked padded table equals lightning_pc.ops.knn."""
    g = torch.Generator().manual_seed(1)
    n, k = 20_000, 20
    x = torch.rand(n, 3, generator=g)
    batch = torch.zeros(n, dtype=torch.long)
    ptr = torch.tensor([0, n])
    table = knn_table(x, batch, ptr, k, "padded")
    _, col = knn(x, x, k)
    ref = col.view(n, k)
    assert torch.equal(table[:, 0], torch.arange(n))
    # float32 |a|^2 - 2 a.b + |b|^2 can swap near-ties at the k-th neighbour: compare the
    # distances, and require the same neighbour sets almost everywhere
    same = (table.sort(1).values == ref.sort(1).values).all(1)
    assert same.float().mean() > 0.99
    d_ours = (x[table] - x[:, None]).double().norm(dim=-1).sort(1).values
    d_ref = (x[ref] - x[:, None]).double().norm(dim=-1).sort(1).values
    torch.testing.assert_close(d_ours, d_ref, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_large_cloud_peak_memory_is_bounded() -> None:
    """20k points in one cloud: one unblocked distance block is 20k**2 floats = 1.6 GB; the
    blocked search stays within the 256 MiB block plus a few small tables."""
    code = textwrap.dedent(
        """
        import json, resource, torch
        from lightning_pc.nn.knn_graph import knn_table
        torch.set_num_threads(1)
        n = 20_000
        x = torch.rand(n, 16)
        batch, ptr = torch.zeros(n, dtype=torch.long), torch.tensor([0, n])
        knn_table(x[:100], batch[:100], torch.tensor([0, 100]), 20)  # warm-up, code pages
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        table = knn_table(x, batch, ptr, 20)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({"rise_mib": (after - before) / 1024, "shape": list(table.shape)}))
        """
    )
    res = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=300,
        check=True,
    )
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["shape"] == [20_000, 20]
    # one 256 MiB block + the [N, k] table (measured 262 MiB); unblocked it was 1536 MiB,
    # and 517 MiB when a block was allocated before the previous one was freed
    assert out["rise_mib"] < 400, out


def test_the_path_is_the_registrys_knn_table_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    """``mode=None`` takes ``LIGHTNING_PC_IMPL_KNN_TABLE`` (else padded); a named mode wins;
    an unknown one raises before any work."""
    taken: list[str] = []
    real_padded, real_packed = knn_graph.knn_table_padded, knn_graph.knn_table_packed

    def padded(*args: object) -> torch.Tensor:
        taken.append("padded")
        return real_padded(*args)  # type: ignore[arg-type]

    def packed(*args: object) -> torch.Tensor:
        taken.append("packed")
        return real_packed(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(knn_graph, "knn_table_padded", padded)
    monkeypatch.setattr(knn_graph, "knn_table_packed", packed)
    x = torch.randn(40, 4)
    batch = torch.repeat_interleave(torch.arange(2), torch.tensor([25, 15]))
    ptr = torch.tensor([0, 25, 40])
    auto = knn_table(x, batch, ptr, 5)
    monkeypatch.setenv("LIGHTNING_PC_IMPL_KNN_TABLE", "packed")
    env = knn_table(x, batch, ptr, 5)
    named = knn_table(x, batch, ptr, 5, "padded")
    assert taken == ["padded", "packed", "padded"]
    assert torch.equal(auto, env) and torch.equal(auto, named)
    with pytest.raises(ValueError, match="unknown kNN mode 'dense'"):
        knn_table(x, batch, ptr, 5, "dense")  # type: ignore[arg-type]
    monkeypatch.setenv("LIGHTNING_PC_IMPL_KNN_TABLE", "dense")
    with pytest.raises(ValueError, match="LIGHTNING_PC_IMPL_KNN_TABLE"):
        knn_table(x, batch, ptr, 5)
