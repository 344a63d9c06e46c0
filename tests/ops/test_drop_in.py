"""torch-cluster's calling conventions, one behaviour per test, on every backend.

Each test pins something code written against torch-cluster 1.6.3 relies on: the dtypes it
accepts (half, bfloat16, integer positions for ``grid_cluster``), the argument forms (``ptr``
as a list or a tensor, ``ratio`` as a float, a 0-d, 1-element or per-cloud tensor, ``None``
defaults, positional calls), clouds skipped in a batch vector, both edge directions, and
``nearest``'s ``ValueError``s. Where torch-cluster runs the same call it is the oracle.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch_cluster
from scipy.spatial import cKDTree

from lightning_pc import ops
from lightning_pc.ops import _backend
from tests.ops.shapes import batch_of_clouds, edge_set

ALL = [*_backend.names("knn"), None]  # None: automatic choice (knn and radius: the same)
FPS_GRID = [*_backend.names("fps"), None]
HALF = [torch.float16, torch.bfloat16]
FLOATS = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


def lattice(n_side: int, dims: int = 3, step: float = 0.25) -> torch.Tensor:
    """A regular grid of ``n_side ** dims`` points: exactly representable in half precision,
    with many equal distances (ties), as real voxelised scans have."""
    axes = [torch.arange(n_side, dtype=torch.float32) * step] * dims
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, dims)


def half_safe(n: int, seed: int) -> torch.Tensor:
    """Random points on a 1/64 grid in [-2, 2]^3: exact in bfloat16 and float16 alike, so
    that every dtype sees the same cloud."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-128, 128, (n, 3), generator=g).float() / 64


# ---------------------------------------------------------------- half precision


@pytest.mark.parametrize("backend", ALL)
@pytest.mark.parametrize("dtype", FLOATS)
def test_knn_accepts_every_float_dtype(backend, dtype):
    x, y = half_safe(120, 0), half_safe(30, 1)
    bx = torch.arange(120) // 60
    by = torch.arange(30) // 15
    ours = ops.knn(x.to(dtype), y.to(dtype), 4, bx, by, backend=backend)
    assert ours.dtype == torch.long
    # the neighbours found are the nearest: same distance profile as the float32 search
    ref = ops.knn(x, y, 4, bx, by, backend="torch")
    d = (x[ours[1]] - y[ours[0]]).square().sum(1)
    d_ref = (x[ref[1]] - y[ref[0]]).square().sum(1)
    assert torch.equal(ours[0], ref[0]) and torch.equal(d, d_ref)


@pytest.mark.parametrize("backend", ALL)
@pytest.mark.parametrize("dtype", HALF)
def test_graphs_in_half_precision_match_float32(backend, dtype):
    x = half_safe(200, 2)
    b = torch.arange(200) // 100
    for loop in (False, True):
        for flow in ("source_to_target", "target_to_source"):
            got = ops.radius_graph(x.to(dtype), 0.6, b, loop, 500, flow, backend=backend)
            want = ops.radius_graph(x, 0.6, b, loop, 500, flow, backend="torch")
            assert got.dtype == torch.long and edge_set(got) == edge_set(want)


@pytest.mark.parametrize("backend", ALL)
@pytest.mark.parametrize("dtype", HALF)
def test_radius_in_half_precision_matches_torch_cluster(backend, dtype):
    x, y = half_safe(150, 3), half_safe(40, 4)
    got = ops.radius(x.to(dtype), y.to(dtype), 0.5, max_num_neighbors=1000, backend=backend)
    assert edge_set(got) == edge_set(torch_cluster.radius(x, y, 0.5, max_num_neighbors=1000))


@pytest.mark.parametrize("backend", ALL)
@pytest.mark.parametrize("dtype", FLOATS)
def test_nearest_accepts_every_float_dtype(backend, dtype):
    x, y = half_safe(90, 5), half_safe(12, 6)
    bx, by = torch.arange(90) // 30, torch.arange(12) // 4
    got = ops.nearest(x.to(dtype), y.to(dtype), bx, by, backend=backend)
    assert got.dtype == torch.long and got.shape == (90,)
    d = (x - y[got]).square().sum(1)
    best = torch.stack([(x[i] - y[by == bx[i]]).square().sum(1).min() for i in range(90)])
    assert torch.equal(d, best) and torch.equal(by[got], bx)


@pytest.mark.parametrize("backend", FPS_GRID)
@pytest.mark.parametrize("dtype", FLOATS)
def test_fps_accepts_every_float_dtype(backend, dtype):
    # a square inside a larger square: from the first point, the far corners of the outer
    # square come first, then the inner ones; the same picks in every dtype
    inner = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
    pts = torch.cat([inner, 3 * inner, inner + 10, 3 * inner + 10])
    b = torch.tensor([0] * 8 + [1] * 8)
    got = ops.fps(pts.to(dtype), b, 0.5, random_start=False, backend=backend)
    want = torch_cluster.fps(pts, b, 0.5, random_start=False)
    assert got.dtype == torch.long and got.tolist() == want.tolist()


# ---------------------------------------------------------------- grid_cluster dtypes


GRID_CASES = [
    # (positions, size, start, end)
    ([[3], [9], [14]], [4], None, None),
    ([[3], [9], [14]], [4], [1], None),
    ([[1, 7], [12, 3], [6, 6], [0, 0], [13, 13]], [3, 4], None, None),
    ([[1, 7], [12, 3], [6, 6], [0, 0], [13, 13]], [3, 4], None, [20, 20]),
    ([[1, 7], [12, 3], [6, 6], [0, 0], [13, 13]], [3, 4], [-2, -1], [20, 20]),
]


@pytest.mark.parametrize("backend", FPS_GRID)
@pytest.mark.parametrize("case", range(len(GRID_CASES)))
@pytest.mark.parametrize(
    "dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int32, torch.long]
)
def test_grid_cluster_integer_and_half_positions(backend, case, dtype):
    pos, size, start, end = GRID_CASES[case]

    def t(v, dt):
        return None if v is None else torch.tensor(v, dtype=dt)

    got = ops.grid_cluster(
        t(pos, dtype), t(size, dtype), t(start, dtype), t(end, dtype), backend=backend
    )
    # torch-cluster has no bfloat16 CPU kernel for every op; float64 is the exact oracle
    want = torch_cluster.grid_cluster(
        t(pos, torch.float64),
        t(size, torch.float64),
        t(start, torch.float64),
        t(end, torch.float64),
    )
    assert got.dtype == torch.long and got.tolist() == want.tolist()


def test_grid_cluster_explicit_start_and_end_change_ids():
    pos = torch.tensor([[2, 2], [7, 2], [2, 7]])
    size = torch.tensor([5, 5])
    # origin at the minimum: x cells 0..1, 2 cells per row
    assert ops.grid_cluster(pos, size).tolist() == [0, 1, 2]
    # origin moved to 0: the same cells; end 19 makes rows 4 cells long
    assert ops.grid_cluster(pos, size, torch.tensor([0, 0])).tolist() == [0, 1, 2]
    assert ops.grid_cluster(pos, size, None, torch.tensor([19, 19])).tolist() == [0, 1, 4]


def test_grid_cluster_rejects_non_numeric_positions():
    with pytest.raises(ValueError, match="floating-point or integer"):
        ops.grid_cluster(torch.tensor([[True], [False]]), 1.0)
    with pytest.raises(ValueError, match="floating-point tensor"):
        ops.knn(torch.ones(4, 2, dtype=torch.long), torch.ones(1, 2, dtype=torch.long), 1)


# ---------------------------------------------------------------- fps argument forms


@pytest.fixture(scope="module")
def two_clouds() -> tuple[torch.Tensor, torch.Tensor]:
    pos, batch = batch_of_clouds([9, 7], seed=20)
    return pos, batch


@pytest.mark.parametrize("backend", FPS_GRID)
def test_fps_ptr_as_list_or_tensor_equals_batch(two_clouds, backend):
    pos, batch = two_clouds
    by_batch = ops.fps(pos, batch, 0.5, random_start=False, backend=backend)
    by_list = ops.fps(pos, ptr=[0, 9, 16], ratio=0.5, random_start=False, backend=backend)
    by_tensor = ops.fps(
        pos, ptr=torch.tensor([0, 9, 16]), ratio=0.5, random_start=False, backend=backend
    )
    assert by_batch.tolist() == by_list.tolist() == by_tensor.tolist()
    assert by_batch.tolist() == torch_cluster.fps(pos, batch, 0.5, False).tolist()


@pytest.mark.parametrize("backend", FPS_GRID)
def test_fps_ratio_forms_agree(two_clouds, backend):
    pos, batch = two_clouds
    want = torch_cluster.fps(pos, batch, 0.25, random_start=False).tolist()
    for ratio in (0.25, torch.tensor(0.25), torch.tensor([0.25]), torch.tensor([0.25, 0.25])):
        got = ops.fps(pos, batch, ratio=ratio, random_start=False, backend=backend)
        assert got.tolist() == want, ratio
    # per-cloud ratios: ceil(9 * 0.5) = 5 from the first cloud, ceil(7 * 0.2) = 2 from the second
    per_cloud = ops.fps(pos, batch, torch.tensor([0.5, 0.2]), False, backend=backend)
    assert (batch[per_cloud] == 0).sum() == 5 and (batch[per_cloud] == 1).sum() == 2
    assert (
        per_cloud.tolist()
        == torch_cluster.fps(pos, batch, torch.tensor([0.5, 0.2]), False).tolist()
    )


@pytest.mark.parametrize("backend", FPS_GRID)
def test_fps_defaults_and_positional_call(two_clouds, backend):
    pos, _ = two_clouds
    # no batch: one cloud; ratio None means torch-cluster's 0.5
    want = torch_cluster.fps(pos, None, 0.5, False).tolist()
    assert len(want) == 8
    assert ops.fps(pos, None, None, False, backend=backend).tolist() == want
    assert ops.fps(pos, None, torch.tensor([0.5]), False, backend=backend).tolist() == want
    assert ops.fps(pos, random_start=False, backend=backend).tolist() == want


@pytest.mark.parametrize("backend", FPS_GRID)
def test_fps_random_start_stays_in_each_cloud(backend):
    pos, batch = batch_of_clouds([300, 200], seed=21)
    for seed in range(3):
        torch.manual_seed(seed)
        idx = ops.fps(pos, batch, ratio=0.5, backend=backend)
        assert idx.numel() == 250 and idx.unique().numel() == 250
        assert (batch[idx] == 0).sum() == 150 and bool((batch[idx[:150]] == 0).all())


def test_fps_bad_ptr_raises(two_clouds):
    pos, _ = two_clouds
    with pytest.raises(ValueError, match="from 0 to 16"):
        ops.fps(pos, ptr=[0, 9, 15])
    with pytest.raises(ValueError, match="from 0 to 16"):
        ops.fps(pos, ptr=[0, 10, 9, 16])
    with pytest.raises(ValueError, match="integer offsets"):
        ops.fps(pos, ptr=[16])


# ---------------------------------------------------------------- knn / radius conventions


@pytest.mark.parametrize("backend", ALL)
def test_knn_and_radius_skip_cloud_indices(backend):
    # clouds 0 and 3 hold points; 1 and 2 are absent from both batch vectors
    x = lattice(3, 2)  # 9 points
    x = torch.cat([x, x + 5])
    bx = torch.tensor([0] * 9 + [3] * 9)
    y = torch.tensor([[0.1, 0.1], [5.4, 5.4]])
    by = torch.tensor([0, 3])
    assert edge_set(ops.knn(x, y, 3, bx, by, backend=backend)) == edge_set(
        torch_cluster.knn(x, y, 3, bx, by)
    )
    got = ops.radius(x, y, 0.3, bx, by, max_num_neighbors=16, backend=backend)
    assert edge_set(got) == {(0, 0), (0, 1), (0, 3), (0, 4), (1, 13), (1, 14), (1, 16), (1, 17)}


@pytest.mark.parametrize("backend", ALL)
def test_knn_without_batch_searches_everything(backend):
    x = lattice(4, 2)
    y = torch.tensor([[0.0, 0.0], [0.75, 0.75]])
    got = ops.knn(x, y, 1, backend=backend)
    assert edge_set(got) == {(0, 0), (1, 15)}


@pytest.mark.parametrize("backend", ALL)
@pytest.mark.parametrize("op", ["knn", "radius"])
def test_graph_flows_are_transposes(backend, op):
    x = lattice(3, 3)
    call = ops.knn_graph if op == "knn" else ops.radius_graph
    arg = 6 if op == "knn" else 0.3
    s2t = call(x, arg, flow="source_to_target", backend=backend)
    t2s = call(x, arg, flow="target_to_source", backend=backend)
    assert edge_set(s2t) == edge_set(t2s.flip(0))
    # source_to_target: row holds neighbours, col the centres
    centre = s2t[1]
    assert bool((torch.bincount(centre, minlength=27) >= 3).all())
    assert bool((s2t[0] != s2t[1]).all())


@pytest.mark.parametrize("backend", ALL)
def test_large_graphs_equal_kd_tree(backend):
    g = torch.Generator().manual_seed(30)
    x = torch.randn(800, 3, generator=g)
    tree = cKDTree(x.numpy())
    _, nbr = tree.query(x.numpy(), k=6)
    truth = {(i, int(j)) for i, row in enumerate(nbr) for j in row}
    got = ops.knn_graph(x, 6, loop=True, flow="target_to_source", backend=backend)
    assert edge_set(got) == truth
    balls = tree.query_ball_point(x.numpy(), r=0.4)
    truth = {(i, int(j)) for i, row in enumerate(balls) for j in row}
    got = ops.radius_graph(
        x, 0.4, loop=True, max_num_neighbors=800, flow="target_to_source", backend=backend
    )
    assert edge_set(got) == truth


# ---------------------------------------------------------------- nearest's errors


@pytest.mark.parametrize("backend", ALL)
def test_nearest_on_batches_and_without(backend):
    x = torch.cat([lattice(2, 2), lattice(2, 2) + 3])  # two 4-point squares
    y = torch.tensor([[0.0, 0.1], [0.3, 0.2], [3.0, 3.3]])
    bx = torch.tensor([0] * 4 + [1] * 4)
    got = ops.nearest(x, y, bx, torch.tensor([0, 0, 1]), backend=backend)
    assert got.tolist() == [0, 0, 1, 1, 2, 2, 2, 2]
    # y's second point moved to cloud 1: cloud 0 has only the first to be nearest to
    got = ops.nearest(x, y, bx, torch.tensor([0, 1, 1]), backend=backend)
    assert got.tolist() == [0, 0, 0, 0, 2, 2, 2, 2]
    # without batch vectors everything is one cloud
    assert ops.nearest(x, y, backend=backend).tolist() == [0, 0, 1, 1, 2, 2, 2, 2]


@pytest.mark.parametrize("backend", ALL)
def test_nearest_accepts_unsorted_batches(backend):
    """An intended difference: torch-cluster raises ValueError on unsorted batch vectors,
    every op here groups the points by cloud instead."""
    x = torch.cat([lattice(2, 2), lattice(2, 2) + 3])
    y = torch.tensor([[0.0, 0.1], [3.0, 3.3], [0.3, 0.2], [2.9, 3.0]])
    bx = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1])  # interleaved clouds
    by = torch.tensor([0, 1, 0, 1])
    x_sorted = torch.cat([x[bx == 0], x[bx == 1]])
    order = torch.cat([torch.nonzero(bx == 0)[:, 0], torch.nonzero(bx == 1)[:, 0]])
    got = ops.nearest(x, y, bx, by, backend=backend)
    assert torch.equal(by[got], bx)
    d = (x - y[got]).square().sum(1)
    want = (x_sorted[:, None] - y[None]).square().sum(-1)
    want = want.masked_fill(bx[order][:, None] != by[None], float("inf")).min(1).values
    assert torch.equal(d[order], want)


def test_nearest_value_errors():
    x = torch.cat([lattice(2, 2), lattice(2, 2) + 3])
    y = x[::2].clone()
    bx = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    with pytest.raises(ValueError, match="cloud 1 has points in x but none in y"):
        ops.nearest(x, y, bx, torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="cloud 1 has points in x but none in y"):
        ops.nearest(x, y, bx, None)  # no batch_y: every y point is in cloud 0
    with pytest.raises(ValueError, match="cloud 2 has points in x but none in y"):
        ops.nearest(x, y, torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]), torch.tensor([0, 1, 3, 3]))
    with pytest.raises(ValueError, match=r"shape \[8\]"):
        ops.nearest(x, y, bx[:7], torch.tensor([0, 0, 1, 1]))


# ---------------------------------------------------------------- process-wide backend


@pytest.mark.parametrize("choice", [b for b in _backend.BACKENDS if b != "auto"])
def test_environment_backend_applies_where_the_op_exists(ops_backend_env, choice):
    ops_backend_env(choice)
    cpu = torch.device("cpu")
    for op in ("knn", "radius", "fps", "grid"):
        want = choice if choice in _backend.SUPPORTED[op] else _backend.choose(op, cpu, "auto")
        assert _backend.choose(op, cpu, None) == want
    pos, batch = batch_of_clouds([20, 12], seed=31)
    assert (
        ops.fps(pos, batch, 0.5, random_start=False).tolist()
        == torch_cluster.fps(pos, batch, 0.5, random_start=False).tolist()
    )
    cells = ops.grid_cluster(pos, 0.5)
    assert np.array_equal(cells.numpy(), torch_cluster.grid_cluster(pos, torch.full((3,), 0.5)))
    # an explicit argument is a demand, not a preference
    with pytest.raises(ValueError, match="fps has no 'scipy' backend"):
        ops.fps(pos, backend="scipy")
