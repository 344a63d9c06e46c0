"""Point Transformer V3: serialisation, blocks against their equations, the whole network.

Whole-network fidelity to Pointcept's model file (same weights, same input) is checked by
``benchmarks/ptv3_oracle.py`` in its side environment; here the parameter counts it
reported are pinned, and each block is checked against its definition.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.data import Batch, Data

from lightning_pc.models import create_model
from lightning_pc.models.ptv3 import PTv3, PTv3Cls
from lightning_pc.nn.point import Point
from lightning_pc.nn.ptv3 import DropPath, GridPooling, PatchPlan, SerializedAttention
from lightning_pc.nn.serialization import ORDERS, encode, hilbert, z_order
from tests.conftest import tiny_kwargs

# the one tiny-model table's PTv3 (tests/conftest.py), without drop path; the tests set
# their own grid
TINY: dict[str, Any] = tiny_kwargs("ptv3", drop_path=0.0)
del TINY["grid_size"]
TINY_CLS = {k: v for k, v in TINY.items() if not k.startswith("dec")}


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def cloud(n: int, seed: int, extent: float = 1.0) -> Data:
    g = torch.Generator().manual_seed(seed)
    return Data(
        pos=torch.rand(n, 3, generator=g) * extent,
        x=torch.rand(n, 3, generator=g),
        y=torch.randint(0, 4, (n,), generator=g),
    )


# --- serialisation ------------------------------------------------------------------------


def cube(depth: int) -> torch.Tensor:
    r = range(1 << depth)
    return torch.tensor(list(itertools.product(r, r, r)))


def test_z_order_interleaves_bits_x_highest() -> None:
    g = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [3, 0, 0], [1, 1, 1], [2, 3, 1]])
    # (2, 3, 1): bit 0 -> x0 y1 z1 = 0b011, bit 1 -> x1 y1 z0 = 0b110 -> 0b110011
    assert z_order(g, 2).tolist() == [4, 2, 1, 4 + 32, 7, 0b110011]


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_hilbert_is_a_bijection_whose_steps_are_unit_moves(depth: int) -> None:
    g = cube(depth)
    code = hilbert(g, depth)
    assert sorted(code.tolist()) == list(range(8**depth))
    walk = g[torch.argsort(code)]
    steps = (walk[1:] - walk[:-1]).abs().sum(1)
    assert bool((steps == 1).all())  # the Hilbert curve moves to a face neighbour each step
    assert walk[0].tolist() == [0, 0, 0]


@pytest.mark.parametrize("order", ORDERS)
def test_code_shifted_by_three_bits_is_the_parent_cell_code(order: str) -> None:
    g = torch.randint(0, 64, (500, 3), generator=torch.Generator().manual_seed(0))
    batch = torch.randint(0, 3, (500,), generator=torch.Generator().manual_seed(1))
    assert torch.equal(encode(g, batch, 6, order) >> 3, encode(g >> 1, batch, 5, order))


def test_transposed_orders_swap_x_and_y_and_batch_is_the_top_field() -> None:
    g = torch.randint(0, 16, (200, 3), generator=torch.Generator().manual_seed(0))
    swapped = g[:, [1, 0, 2]]
    assert torch.equal(encode(g, None, 4, "z-trans"), encode(swapped, None, 4, "z"))
    assert torch.equal(encode(g, None, 4, "hilbert-trans"), encode(swapped, None, 4, "hilbert"))
    batch = torch.tensor([0] * 100 + [1] * 100)
    code = encode(g, batch, 4, "hilbert")
    assert bool((code[100:].min() > code[:100].max()).item())  # clouds never interleave


def test_encode_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="unknown serialisation order"):
        encode(torch.zeros(2, 3, dtype=torch.long), None, 2, "peano")
    with pytest.raises(ValueError, match=r"lie in \[0, 2\*\*depth\)"):
        encode(torch.tensor([[-1, 0, 0]]), None, 2, "z")
    with pytest.raises(ValueError, match=r"lie in \[0, 2\*\*depth\)"):
        encode(torch.tensor([[4, 0, 0]]), None, 2, "z")
    with pytest.raises(ValueError, match="integer"):
        encode(torch.zeros(2, 3), None, 2, "z")
    with pytest.raises(ValueError, match="63-bit"):
        encode(torch.zeros(1, 3, dtype=torch.long), torch.tensor([1 << 20]), 16, "z")


@pytest.mark.parametrize("backbone", ["PTv3Backbone", "PTv3EncoderBackbone"])
def test_backbones_name_a_bad_order_or_stage_list(backbone: str) -> None:
    """PT-v3m1 and the Sonata-family encoder share one check of their encoder arguments:
    the bad argument is named, with the expected and the given length."""
    from lightning_pc.models.ptv3 import PTv3Backbone
    from lightning_pc.models.sonata import PTv3EncoderBackbone

    cls = {"PTv3Backbone": PTv3Backbone, "PTv3EncoderBackbone": PTv3EncoderBackbone}[backbone]
    with pytest.raises(ValueError, match="unknown serialisation order 'peano'; known: z, "):
        cls(order=("z", "peano"))
    with pytest.raises(ValueError, match="^stride needs 4 entries, got 3$"):
        cls(stride=(2, 2, 2))
    with pytest.raises(ValueError, match="^enc_channels needs 5 entries, got 4$"):
        cls(enc_channels=(16, 32, 64, 128))
    with pytest.raises(ValueError, match="^enc_num_head needs 3 entries, got 5$"):
        cls(enc_depths=(1, 1, 1), stride=(2, 2), enc_channels=(8, 16, 32))
    with pytest.raises(ValueError, match="^enc_patch_size needs 5 entries, got 1$"):
        cls(enc_patch_size=(48,))


# --- patches and attention ----------------------------------------------------------------


@pytest.mark.parametrize("counts", [[10], [4], [3], [0, 9, 1, 4, 17, 8], [12, 12]])
def test_patch_plan_windows(counts: list[int]) -> None:
    s = 4
    c = torch.tensor(counts)
    plan = PatchPlan.build(c, s)
    starts = torch.cumsum(c, 0) - c
    n = int(c.sum())
    flat = torch.cat([plan.full.flatten(), plan.short.flatten()])
    assert torch.equal(flat[plan.take], torch.arange(n))  # each voxel's own slot
    owner = torch.repeat_interleave(torch.arange(len(counts)), c)
    for row in plan.full:  # full patches: s consecutive voxels of one cloud
        assert torch.equal(row, torch.arange(int(row[0]), int(row[0]) + s))
        assert len(set(owner[row].tolist())) == 1
    expected = sum((k + s - 1) // s for k in counts if k >= s)
    assert plan.full.size(0) == expected
    for b, k in enumerate(counts):
        if 0 < k < s:  # a short cloud is one masked row of its own voxels
            row = (plan.short_mask.sum(1) == k).nonzero()
            assert row.numel() >= 1
        if k >= s:  # the last window ends at the cloud's end
            last = plan.full[owner[plan.full[:, 0]] == b][-1]
            assert int(last[-1]) == int(starts[b]) + k - 1


def _level(grid: torch.Tensor, batch: torch.Tensor, orders: tuple[str, ...] = ("z",)) -> Point:
    """A PTv3 level: a voxel point carrying its serialisation (as the backbone makes it)."""
    voxels = Point(grid.float(), None, batch, grid_coord=grid)
    return voxels.with_serialization(voxels.serialization(orders))


def test_serialized_attention_equals_softmax_per_window() -> None:
    torch.manual_seed(0)
    grid = torch.unique(torch.randint(0, 8, (40, 3)), dim=0)
    n1 = 7  # cloud 0 shorter than the patch, cloud 1 longer and not a multiple of it
    batch = torch.cat([torch.zeros(n1, dtype=torch.long), torch.ones(len(grid) - n1).long()])
    level = _level(grid, batch, ("hilbert",))
    attn = SerializedAttention(8, 2, patch_size=10).eval()
    feat = torch.randn(len(grid), 8)
    out = attn(feat, level)

    q, k, v = attn.qkv(feat).chunk(3, dim=1)
    ref = torch.empty(len(grid), 8)
    order = level.serialized.order[0]
    for lo, hi in [(0, n1), (n1, len(grid))]:
        pos = order[lo:hi]  # this cloud's voxels along the curve
        m = hi - lo
        windows = [list(range(m))] if m < 10 else []
        if m >= 10:
            windows = [list(range(min(j * 10, m - 10), min(j * 10, m - 10) + 10))
                       for j in range((m + 9) // 10)]  # fmt: skip
        for t in range(m):
            w = windows[min(t // 10, len(windows) - 1)] if m >= 10 else windows[0]
            idx = pos[w]
            for h in range(2):
                sl = slice(4 * h, 4 * h + 4)
                logits = q[pos[t], sl] @ k[idx, sl].T * 4**-0.5
                ref[pos[t], sl] = torch.softmax(logits, 0) @ v[idx, sl]
    torch.testing.assert_close(out, attn.proj(ref), atol=1e-5, rtol=1e-5)


def test_grid_pooling_is_max_over_parent_cells() -> None:
    torch.manual_seed(0)
    grid = torch.unique(torch.randint(0, 16, (300, 3)), dim=0)
    batch = (torch.arange(len(grid)) >= len(grid) // 2).long()
    level = _level(grid, batch, ("z", "hilbert"))
    pool = GridPooling(4, 6).eval()
    feat = torch.randn(len(grid), 4)
    out, coarse, cluster = pool(feat, level, shuffle=False)
    h = pool.proj(feat)
    cells = {}
    for i, key in enumerate(zip(batch.tolist(), *(grid >> 1).T.tolist())):
        cells.setdefault(key, []).append(i)
    assert out.size(0) == len(cells) == coarse.grid_coord.size(0)
    for j in range(out.size(0)):
        members = (cluster == j).nonzero().flatten()
        key = (int(coarse.batch[j]), *coarse.grid_coord[j].tolist())
        assert sorted(members.tolist()) == cells[key]
        torch.testing.assert_close(out[j], pool.norm(h[members].amax(0, keepdim=True))[0])
        torch.testing.assert_close(coarse.pos[j], level.pos[members].mean(0))  # centroid
    fine, s = level.serialized, coarse.serialized
    assert s.depth == fine.depth - 1
    assert torch.equal(coarse.ptr, torch.tensor([0, int((coarse.batch == 0).sum()), out.size(0)]))
    for k, order in enumerate(("z", "hilbert")):  # the coarse codes are the parents' codes
        assert torch.equal(s.code[k], encode(coarse.grid_coord, coarse.batch, int(s.depth), order))
        assert bool((s.code[k][s.order[k]].diff() > 0).all())


def test_drop_path_drops_whole_rows_and_rescales() -> None:
    torch.manual_seed(0)
    dp = DropPath(0.25)
    x = torch.ones(4000, 3)
    y = dp(x)
    kept = y[:, 0] != 0
    assert bool((y[kept] == 1 / 0.75).all()) and bool((y[~kept] == 0).all())
    assert 0.70 < kept.float().mean().item() < 0.80
    assert torch.equal(dp.eval()(x), x)


# --- the network --------------------------------------------------------------------------


def test_parameter_counts_equal_pointcept() -> None:
    # Pointcept PT-v3m1 base, in_channels=6 (our stem: xyz + 3 features), printed by
    # benchmarks/ptv3_oracle.py for its DefaultSegmentorV2 (13 classes) and
    # DefaultClassifier (40 classes, backbone_embed_dim=512)
    assert count(create_model("ptv3", num_classes=13, in_channels=3)) == 46_167_117
    assert count(create_model("ptv3_cls", num_classes=40, in_channels=3)) == 38_842_792


def test_defaults_are_pt_v3m1_base() -> None:
    m = PTv3(num_classes=13)
    bb = m.backbone
    assert bb.order == ("z", "z-trans", "hilbert", "hilbert-trans") and bb.shuffle_orders
    assert [len(s) for s in bb.enc] == [2, 2, 2, 6, 2]
    assert [len(s) for s in bb.dec] == [2, 2, 2, 2]
    blocks = [b for s in bb.enc for b in s]
    assert [b.attn.num_heads for b in blocks[::2]][:3] == [2, 4, 8]
    assert {b.attn.patch_size for b in blocks} == {1024}
    assert blocks[-1].drop_path.p == pytest.approx(0.3) and blocks[0].drop_path.p == 0.0
    assert all(b.gamma1 is None for b in blocks)  # no layer scale
    assert bb.grid_size == 0.02 and m.head[0].in_features == 64


def test_permuting_the_points_leaves_the_logits_unchanged() -> None:
    torch.manual_seed(0)
    model = PTv3(num_classes=4, grid_size=0.1, **TINY).eval()
    data = [cloud(300, 0), cloud(50, 1)]
    perm = torch.randperm(300)
    shuffled = Data(pos=data[0].pos[perm], x=data[0].x[perm])
    with torch.no_grad():
        a = model(Batch.from_data_list(data))
        b = model(Batch.from_data_list([shuffled, data[1]]))
    torch.testing.assert_close(a[:300][perm], b[:300], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a[300:], b[300:], atol=1e-5, rtol=1e-5)


def test_clouds_of_a_batch_do_not_leak_into_each_other() -> None:
    torch.manual_seed(0)
    model = PTv3(num_classes=4, grid_size=0.1, **TINY).eval()
    cls = PTv3Cls(num_classes=5, grid_size=0.1, **TINY_CLS).eval()
    data = [cloud(400, 0), cloud(9, 1), cloud(120, 2, extent=3.0)]  # > and < the patch size
    with torch.no_grad():
        together = model(Batch.from_data_list(data))
        alone = torch.cat([model(Batch.from_data_list([d])) for d in data])
        torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)
        together = cls(Batch.from_data_list(data))
        alone = torch.cat([cls(Batch.from_data_list([d])) for d in data])
        torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_a_tiny_batch_overfits() -> None:
    torch.manual_seed(0)
    deeper = dict(  # three stages: the two of the tiny table stall at 0.89 in 60 steps
        stride=(2, 2), enc_depths=(1, 1, 1), enc_channels=(8, 16, 16), enc_num_head=(1, 2, 2),
        enc_patch_size=(16, 16, 16), dec_depths=(1, 1), dec_channels=(8, 16),
        dec_num_head=(1, 2), dec_patch_size=(16, 16),
    )  # fmt: skip
    model = PTv3(num_classes=4, grid_size=0.1, **{**TINY, **deeper})
    data = [cloud(120, 0), cloud(80, 1)]
    for d in data:  # labels each voxel can carry: the quadrant of its cell in x and y
        cell = torch.floor((d.pos - d.pos.min(0).values) / 0.1).long()
        d.y = (cell[:, 0] >= 5).long() + 2 * (cell[:, 1] >= 5).long()
    batch = Batch.from_data_list(data)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(60):
        opt.zero_grad()
        F.cross_entropy(model(batch), batch.y).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(batch).argmax(1) == batch.y).float().mean().item()
    assert acc > 0.95


@pytest.mark.parametrize("which", ["seg", "cls"])
def test_gradients_reach_every_parameter(which: str) -> None:
    torch.manual_seed(0)
    model: nn.Module
    if which == "seg":
        model = PTv3(num_classes=4, grid_size=0.1, layer_scale=0.1, **TINY)
    else:
        model = PTv3Cls(num_classes=4, grid_size=0.1, layer_scale=0.1, **TINY_CLS)
    out = model(Batch.from_data_list([cloud(300, 0), cloud(200, 1)]))
    (out * torch.randn_like(out)).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing


def test_bf16_autocast_step() -> None:
    torch.manual_seed(0)
    model = PTv3(num_classes=4, grid_size=0.1, **TINY)
    batch = Batch.from_data_list([cloud(300, 0), cloud(200, 1)])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(batch)
        loss = F.cross_entropy(out.float(), batch.y)
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and bool(torch.isfinite(g).all()) for g in grads)


def test_hostile_batches() -> None:
    torch.manual_seed(0)
    model = PTv3(num_classes=4, grid_size=0.1, **TINY).eval()
    cls = PTv3Cls(num_classes=4, grid_size=0.1, **TINY_CLS).eval()
    dup = Data(pos=torch.zeros(50, 3), x=torch.rand(50, 3))  # 50 copies of one point
    one = cloud(1, 3)
    far = cloud(100, 4)
    far.pos = far.pos * 1000.0 + 1e5  # far from the origin: per-cloud grid origin
    empty = Data(pos=torch.zeros(0, 3), x=torch.zeros(0, 3))
    batch = Batch.from_data_list([dup, one, far, empty, cloud(64, 5)])
    with torch.no_grad():
        out = model(batch)
        assert out.shape == (215, 4) and bool(torch.isfinite(out).all())
        logits = cls(batch)
        assert logits.shape == (5, 4) and bool(torch.isfinite(logits).all())
    bad = cloud(10, 6)
    bad.pos[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        model(Batch.from_data_list([bad]))
    with pytest.raises(ValueError, match="in_channels=3"):
        model(Batch.from_data_list([Data(pos=torch.rand(10, 3))]))


def test_orders_are_shuffled_in_training_only() -> None:
    torch.manual_seed(0)
    model = PTv3(num_classes=4, grid_size=0.1, **TINY)
    batch = Batch.from_data_list([cloud(300, 0)])
    with torch.no_grad():
        model.eval()
        ref = model(batch)
        assert torch.equal(model(batch), ref)  # evaluation is deterministic
        model.train()
        for m in model.modules():  # keep batch statistics out of the comparison
            if isinstance(m, nn.BatchNorm1d):
                m.eval()
        outs = [model(batch) for _ in range(6)]
    assert any(not torch.allclose(o, ref, atol=1e-6) for o in outs)
