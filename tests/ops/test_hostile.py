"""Every op on every backend against the pure-torch oracle, on hostile clouds.

Property tests (hypothesis) draw the distribution (gaussian, heavy-tailed, tight clusters,
collinear, planar, all-identical, integer grids with ties, one far outlier, an exponential
chain, duplicates), the scale (1e-6, 1, 1e6), cloud sizes from 0 to thousands and the batch
layout (empty and one-point clouds, unsorted ``batch``). Neighbour results are compared as
per-query sorted float64 distances, so that backends may break exact ties differently but
never return a farther neighbour; FPS and grid ids must be identical.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lightning_pc import ops
from lightning_pc.ops._backend import available, names
from tests.ops.hostile import KINDS, SCALES, cloud, layout

ORACLE = "torch"  # what every backend is compared against
PROPERTY = settings(
    max_examples=20,
    deadline=None,
    derandomize=True,  # the same cases in every CI run; a failure prints its inputs
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def backends_for(op: str) -> list[str | None]:
    """The installed backends of ``op`` but the oracle, and ``None``: the automatic choice."""
    return [b for b in names(op) if b != ORACLE and available(b, op)] + [None]


@st.composite
def batches(draw: st.DrawFn, max_n: int = 1200) -> tuple[torch.Tensor, torch.Tensor, float]:
    kind = draw(st.sampled_from(KINDS))
    scale = draw(st.sampled_from(SCALES))
    seed = draw(st.integers(0, 2**16))
    sizes = draw(
        st.lists(
            st.one_of(st.sampled_from([0, 1, 2, 3]), st.integers(4, max_n)), min_size=1, max_size=4
        )
    )
    pos, batch = layout(kind, sizes, seed, scale, shuffle=draw(st.booleans()))
    return pos, batch, scale


def _sorted_edges(edge: torch.Tensor, x: torch.Tensor, y: torch.Tensor):
    """(row, float64 squared distance) of each edge, sorted by row then distance."""
    row, col = edge[0].numpy(), edge[1].numpy()
    d2 = ((x.numpy()[col].astype(np.float64) - y.numpy()[row].astype(np.float64)) ** 2).sum(1)
    order = np.lexsort((d2, row))
    return row[order], col[order], d2[order]


def _rank_in_row(row: np.ndarray) -> np.ndarray:
    start = np.ones(row.size, dtype=bool)
    start[1:] = row[1:] != row[:-1]
    first = np.maximum.accumulate(np.where(start, np.arange(row.size), 0))
    return np.arange(row.size) - first


def assert_same_neighbours(
    got: torch.Tensor,
    want: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    bx: torch.Tensor,
    by: torch.Tensor,
    r2: float | None = None,
    cap: int | None = None,
) -> None:
    """``got`` finds, per query, neighbours as near as the oracle's ``want``.

    Valid edges only (same cloud, no repeated neighbour in a row). For radius search
    (``r2``), neighbours within 1e-5 (relative) of the radius may differ (float32 vs
    float64 comparisons), and rows cut at ``cap`` are compared over their common length.
    """
    assert got.dtype == torch.long and got.shape[0] == 2
    m = y.size(0)
    ga, gc, gd = _sorted_edges(got, x, y)
    wa, _, wd = _sorted_edges(want, x, y)
    if ga.size:
        assert ga.min() >= 0 and ga.max() < m and gc.min() >= 0 and gc.max() < x.size(0)
        assert bool((bx.numpy()[gc] == by.numpy()[ga]).all()), "edge between clouds"
        pairs = ga * x.size(0) + gc
        assert np.unique(pairs).size == pairs.size, "a neighbour repeated in a row"
    if r2 is not None:
        assert bool((gd < r2 * (1 + 1e-5)).all()), "neighbour outside the radius"
        band_g = np.abs(gd - r2) <= 1e-5 * r2
        band_w = np.abs(wd - r2) <= 1e-5 * r2
        cut = np.zeros(m, dtype=bool)
        cut[ga[_rank_in_row(ga) == cap - 1]] = True
        cut[wa[_rank_in_row(wa) == cap - 1]] = True
        ga, gd = ga[~band_g], gd[~band_g]
        wa, wd = wa[~band_w], wd[~band_w]
        n_g, n_w = np.bincount(ga, minlength=m), np.bincount(wa, minlength=m)
        assert bool((n_g[~cut] == n_w[~cut]).all()), "different neighbour counts"
        common = np.minimum(n_g, n_w)
        keep_g, keep_w = _rank_in_row(ga) < common[ga], _rank_in_row(wa) < common[wa]
        ga, gd, wa, wd = ga[keep_g], gd[keep_g], wa[keep_w], wd[keep_w]
    assert np.array_equal(ga, wa), "different neighbour counts"
    np.testing.assert_allclose(gd, wd, rtol=1e-5, atol=0)


@pytest.mark.parametrize("backend", backends_for("knn"))
@PROPERTY
@given(data=batches(), k=st.sampled_from([1, 3, 16]))
def test_knn_hostile(backend, data, k):
    pos, batch, _ = data
    q = pos.flip(0)[: max(1, pos.size(0) // 3)]
    bq = batch.flip(0)[: q.size(0)]
    size = int(batch.max()) + 1 if batch.numel() else 1
    got = ops.knn(pos, q, k, batch, bq, batch_size=size, backend=backend)
    want = ops.knn(pos, q, k, batch, bq, batch_size=size, backend="torch")
    assert_same_neighbours(got, want, pos, q, batch, bq)


@pytest.mark.parametrize("backend", backends_for("knn"))
@PROPERTY
@given(data=batches(max_n=600), k=st.sampled_from([1, 8, 20]), loop=st.booleans())
def test_knn_graph_hostile(backend, data, k, loop):
    pos, batch, _ = data
    got = ops.knn_graph(pos, k, batch, loop=loop, backend=backend)
    want = ops.knn_graph(pos, k, batch, loop=loop, backend="torch")
    if not loop:
        assert bool((got[0] != got[1]).all()), "self-loop with loop=False"
    # [neighbour, centre] -> compare as (centre, neighbour) queries
    assert_same_neighbours(got.flip(0), want.flip(0), pos, pos, batch, batch)


@pytest.mark.parametrize("backend", backends_for("radius"))
@PROPERTY
@given(data=batches(), r=st.sampled_from([0.05, 0.3, 2.0]), cap=st.sampled_from([1, 16, 64]))
def test_radius_hostile(backend, data, r, cap):
    pos, batch, scale = data
    r = r * scale
    q = pos[::2]
    bq = batch[::2]
    size = int(batch.max()) + 1 if batch.numel() else 1
    got = ops.radius(pos, q, r, batch, bq, cap, batch_size=size, backend=backend)
    want = ops.radius(pos, q, r, batch, bq, cap, batch_size=size, backend="torch")
    r2 = float(np.float32(r) ** 2)
    assert_same_neighbours(got, want, pos, q, batch, bq, r2=r2, cap=cap)


@pytest.mark.parametrize("backend", backends_for("radius"))
@PROPERTY
@given(data=batches(max_n=600), r=st.sampled_from([0.1, 1.0]), loop=st.booleans())
def test_radius_graph_hostile(backend, data, r, loop):
    pos, batch, scale = data
    r = r * scale
    got = ops.radius_graph(pos, r, batch, loop=loop, max_num_neighbors=32, backend=backend)
    want = ops.radius_graph(pos, r, batch, loop=loop, max_num_neighbors=32, backend="torch")
    if not loop:
        assert bool((got[0] != got[1]).all()), "self-loop with loop=False"
    r2 = float(np.float32(r) ** 2)
    assert_same_neighbours(got.flip(0), want.flip(0), pos, pos, batch, batch, r2=r2, cap=32)


@pytest.mark.parametrize("backend", backends_for("fps"))
@PROPERTY
@given(data=batches(), ratio=st.sampled_from([0.01, 0.25, 1.0]), random_start=st.booleans())
def test_fps_hostile(backend, data, ratio, random_start):
    pos, batch, _ = data
    size = int(batch.max()) + 1 if batch.numel() else 1
    torch.manual_seed(3)
    got = ops.fps(pos, batch, ratio, random_start, batch_size=size, backend=backend)
    torch.manual_seed(3)
    want = ops.fps(pos, batch, ratio, random_start, batch_size=size, backend="torch")
    counts = torch.bincount(batch, minlength=size)
    assert got.numel() == int((counts.float() * ratio).ceil().sum())
    if backend == "torch_cluster" and random_start:
        # torch-cluster starts at index 0 of a rotated cloud, so exact ties may go to another
        # point than the oracle's lower index: every pick must still be a farthest point
        assert torch.equal(got, want) or _is_exact_fps(got, pos, batch)
    else:
        assert torch.equal(got, want)


def _is_exact_fps(idx: torch.Tensor, pos: torch.Tensor, batch: torch.Tensor) -> bool:
    """Every pick (after each cloud's first) is a point farthest from the earlier picks of its
    cloud: the definition of FPS, whichever of several exactly tied points was taken."""
    p = pos.double().numpy()
    b = batch.numpy()
    picks = idx.numpy()
    for cl in np.unique(b[picks]):
        own = picks[b[picks] == cl]
        members = np.flatnonzero(b == cl)
        mind = np.full(members.size, np.inf)
        for t, i in enumerate(own):
            if t and not mind[members == i][0] == mind.max():
                return False
            mind = np.minimum(mind, ((p[members] - p[i]) ** 2).sum(1))
    return True


@pytest.mark.parametrize("backend", backends_for("grid"))
@PROPERTY
@given(data=batches(), size=st.sampled_from([0.01, 0.1, 1.0]))
def test_grid_hostile(backend, data, size):
    pos, _, scale = data
    size = size * scale
    try:
        want = ops.grid_cluster(pos, size, backend="torch")
    except ValueError as err:  # a grid of more than 2**63 voxels is refused on every backend
        with pytest.raises(ValueError, match="2\\*\\*63"):
            ops.grid_cluster(pos, size, backend=backend)
        assert "2**63" in str(err)
        return
    got = ops.grid_cluster(pos, size, backend=backend)
    assert torch.equal(got, want)


@pytest.mark.parametrize("backend", backends_for("knn"))
@PROPERTY
@given(data=batches(max_n=600))
def test_nearest_hostile(backend, data):
    pos, batch, _ = data
    if pos.size(0) == 0:
        return
    y = pos[::3]
    by = batch[::3]
    x_keep = torch.isin(batch, by)  # every query cloud must have a point in y
    x, bx = pos[x_keep], batch[x_keep]
    got = ops.nearest(x, y, bx, by, backend=backend)
    want = ops.nearest(x, y, bx, by, backend="torch")
    d_got = (x - y[got]).double().square().sum(1)
    d_want = (x - y[want]).double().square().sum(1)
    assert bool((by[got] == bx).all())
    np.testing.assert_allclose(d_got.numpy(), d_want.numpy(), rtol=1e-5, atol=0)


# --------------------------------------------------------------------------------------
# the reported crashes, and large clouds (tens of thousands of points)
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", backends_for("fps"))
@pytest.mark.parametrize("n", [600, 777, 1024, 1100])
def test_fps_gaussian_cloud_reported_crash(backend, n):
    """``ops.fps(torch.randn(1024, 3), None, 0.25)`` aborted the interpreter (numba)."""
    pos = torch.randn(n, 3, generator=torch.Generator().manual_seed(n))
    got = ops.fps(pos, None, 0.25, random_start=False, backend=backend)
    want = ops.fps(pos, None, 0.25, random_start=False, backend="torch")
    assert torch.equal(got, want)


@pytest.mark.parametrize("backend", backends_for("fps"))
def test_fps_tight_clusters_reported_crash(backend):
    pos = cloud("clusters", 20000, seed=4)
    got = ops.fps(pos, None, 0.02, random_start=False, backend=backend)
    want = ops.fps(pos, None, 0.02, random_start=False, backend="torch")
    assert torch.equal(got, want)


@pytest.mark.parametrize("backend", backends_for("knn"))
@pytest.mark.parametrize("seed", range(5))
def test_knn_heavy_tailed_reported_crash(backend, seed):
    pos = cloud("heavy_tailed", 100, seed)
    got = ops.knn_graph(pos, 16, backend=backend)
    want = ops.knn_graph(pos, 16, backend="torch")
    assert_same_neighbours(got.flip(0), want.flip(0), pos, pos, torch.zeros(100, dtype=torch.long),
                           torch.zeros(100, dtype=torch.long))


@pytest.mark.parametrize("kind", ["heavy_tailed", "chain", "clusters", "integer_grid"])
def test_large_clouds_numba_against_peers(kind):
    """Tens of thousands of points: numba against scipy (knn), torch-cluster (fps) and the
    oracle (radius), which are independent implementations."""
    if not available("numba"):
        pytest.skip("numba backend unavailable")
    pos = cloud(kind, 30000, seed=11)
    batch = torch.zeros(pos.size(0), dtype=torch.long)
    q = pos[::10]
    bq = batch[::10]
    got = ops.knn(pos, q, 8, batch, bq, backend="numba")
    want = ops.knn(pos, q, 8, batch, bq, backend="scipy")
    assert_same_neighbours(got, want, pos, q, batch, bq)
    scale = float(pos.std()) * 0.05
    got = ops.radius(pos, q[:500], scale, batch, bq[:500], 32, backend="numba")
    want = ops.radius(pos, q[:500], scale, batch, bq[:500], 32, backend="torch")
    assert_same_neighbours(got, want, pos, q[:500], batch, bq[:500],
                           r2=float(np.float32(scale) ** 2), cap=32)
    peer = "torch_cluster" if available("torch_cluster") else "torch"
    got = ops.fps(pos, None, 0.01, random_start=False, backend="numba")
    want = ops.fps(pos, None, 0.01, random_start=False, backend=peer)
    assert torch.equal(got, want)


@pytest.mark.parametrize("kind", KINDS)
def test_kdtree_stays_within_its_proven_bound(kind):
    """The kd-tree never has more than 2n - 1 nodes, on every distribution."""
    if not available("numba"):
        pytest.skip("numba backend unavailable")
    from lightning_pc.ops import _numba

    for n in (1, 2, 65, 1000, 5000):
        for leaf in (1, 16, 64):
            p = cloud(kind, n, seed=n).numpy()
            perm = np.arange(n)
            start, end, left, right, lo, hi = _numba._build_kdtree(p, perm, leaf)
            assert start.size <= max(1, 2 * n - 1)
            assert np.array_equal(np.sort(perm), np.arange(n)), "perm is not a permutation"
            leaves = left < 0
            sizes = end[leaves] - start[leaves]
            assert sizes.sum() == n and (sizes >= 1).all() or n == 0
            inner = ~leaves
            assert np.array_equal(start[left[inner]], start[inner])
            assert np.array_equal(end[right[inner]], end[inner])
            assert np.array_equal(end[left[inner]], start[right[inner]])
            # every point lies in its leaf's box
            for node in np.flatnonzero(leaves):
                pts = p[perm[start[node] : end[node]]]
                assert (pts >= lo[node]).all() and (pts <= hi[node]).all()


def test_overflowing_distances_do_not_crash():
    """Coordinates whose squared distances overflow float32: no crash, the same answer as
    the oracle (which overflows the same way)."""
    pos = cloud("heavy_tailed", 500, seed=1, scale=1e6) * 1e15
    pos = pos.clamp(-3e38, 3e38)
    for backend in backends_for("fps"):
        got = ops.fps(pos, None, 0.1, random_start=False, backend=backend)
        assert got.numel() == 50 and got.unique().numel() <= 50
    for backend in backends_for("knn"):
        e = ops.knn_graph(pos, 4, backend=backend)
        assert e.shape[0] == 2 and e.shape[1] <= 4 * 500


@pytest.mark.parametrize("scale", SCALES)
def test_scales_give_scaled_answers(scale):
    """A cloud scaled by a power of two keeps its neighbours and picks (exact in float)."""
    base = cloud("gaussian", 800, seed=5)
    s = float(2.0 ** round(np.log2(scale)))
    for backend in backends_for("fps"):
        assert torch.equal(
            ops.fps(base * s, None, 0.1, False, backend=backend),
            ops.fps(base, None, 0.1, False, backend=backend),
        )
    for backend in backends_for("knn"):
        assert torch.equal(
            ops.knn_graph(base * s, 8, backend=backend), ops.knn_graph(base, 8, backend=backend)
        )
