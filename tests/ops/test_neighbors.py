"""knn / knn_graph / radius / radius_graph / nearest: semantics pinned against torch-cluster
and the pure-torch oracle."""

from __future__ import annotations

import pytest
import torch
import torch_cluster

from lightning_pc import ops
from lightning_pc.ops import _backend
from tests.ops.shapes import batch_of_clouds, edge_set

KNN_BACKENDS = [*_backend.names("knn"), None]  # None: automatic choice
RADIUS_BACKENDS = [*_backend.names("radius"), None]


def sq(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).square().sum(-1)


@pytest.fixture(scope="module")
def clouds() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    x, bx = batch_of_clouds([300, 257, 128], seed=1)
    y, by = batch_of_clouds([100, 64, 90], seed=2)
    return x, bx, y, by


@pytest.mark.parametrize("backend", KNN_BACKENDS)
def test_knn_equals_torch_cluster(clouds, backend):
    x, bx, y, by = clouds
    ours = ops.knn(x, y, 16, bx, by, backend=backend)
    theirs = torch_cluster.knn(x, y, 16, bx, by)
    assert ours.dtype == torch.long and ours.shape[0] == 2
    assert edge_set(ours) == edge_set(theirs)


@pytest.mark.parametrize("backend", KNN_BACKENDS)
def test_knn_rows_ascending_and_neighbours_by_distance(clouds, backend):
    x, bx, y, by = clouds
    row, col = ops.knn(x, y, 8, bx, by, backend=backend)
    assert bool((row[1:] >= row[:-1]).all())
    d = sq(x[col], y[row]).view(-1, 8)
    assert bool((d[:, 1:] >= d[:, :-1]).all())
    assert bool((bx[col] == by[row]).all())


@pytest.mark.parametrize("backend", KNN_BACKENDS)
def test_knn_small_and_empty_clouds(backend):
    # cloud 0 has 3 points (fewer than k), cloud 1 has no x points, cloud 2 is normal
    x, _ = batch_of_clouds([3, 0, 40], seed=3)
    bx = torch.tensor([0] * 3 + [2] * 40)
    y, _ = batch_of_clouds([5, 4, 6], seed=4)
    by = torch.tensor([0] * 5 + [1] * 4 + [2] * 6)
    row, col = ops.knn(x, y, 10, bx, by, backend=backend)
    counts = torch.bincount(row, minlength=15)
    assert counts[:5].tolist() == [3] * 5  # all the cloud has
    assert counts[5:9].tolist() == [0] * 4  # nothing to find
    assert counts[9:].tolist() == [10] * 6
    assert ops.knn(x[:0], y, 4, bx[:0], by, backend=backend).shape == (2, 0)


@pytest.mark.parametrize("backend", KNN_BACKENDS)
def test_knn_unsorted_batch_matches_sorted(clouds, backend):
    x, bx, y, by = clouds
    g = torch.Generator().manual_seed(0)
    px, py = torch.randperm(x.size(0), generator=g), torch.randperm(y.size(0), generator=g)
    shuffled = ops.knn(x[px], y[py], 6, bx[px], by[py], backend=backend)
    assert bool((shuffled[0][1:] >= shuffled[0][:-1]).all())
    mapped = torch.stack([py[shuffled[0]], px[shuffled[1]]])
    assert edge_set(mapped) == edge_set(ops.knn(x, y, 6, bx, by, backend=backend))


@pytest.mark.parametrize("op", ["knn", "radius", "fps", "grid", "knn_graph", "nearest"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_coordinates_raise(op, bad):
    x, bx = batch_of_clouds([20, 20], seed=5)
    x = x.clone()
    x[7, 1] = bad
    calls = {
        "knn": lambda: ops.knn(x, x, 3, bx, bx),
        "radius": lambda: ops.radius(x, x, 0.3, bx, bx),
        "fps": lambda: ops.fps(x, bx, 0.5),
        "grid": lambda: ops.grid_cluster(x, 0.1),
        "knn_graph": lambda: ops.knn_graph(x, 3, bx),
        "nearest": lambda: ops.nearest(x, x, bx, bx),
    }
    with pytest.raises(ValueError, match="NaN or infinite.*point 7"):
        calls[op]()


def test_bad_arguments_raise_clear_errors():
    x, bx = batch_of_clouds([10], seed=6)
    with pytest.raises(ValueError, match="k must be at least 1"):
        ops.knn(x, x, 0)
    with pytest.raises(ValueError, match="shape \\[10\\]"):
        ops.knn(x, x, 2, bx[:5], bx)
    with pytest.raises(ValueError, match="negative"):
        ops.knn(x, x, 2, bx - 1, bx)
    with pytest.raises(ValueError, match="coordinates per point"):
        ops.knn(x, x[:, :2], 2)
    with pytest.raises(ValueError, match="r must be positive"):
        ops.radius(x, x, 0.0)


@pytest.mark.parametrize("backend", KNN_BACKENDS)
@pytest.mark.parametrize("loop", [False, True])
@pytest.mark.parametrize("flow", ["source_to_target", "target_to_source"])
def test_knn_graph_equals_torch_cluster(backend, loop, flow):
    x, bx = batch_of_clouds([200, 150], seed=7)
    ours = ops.knn_graph(x, 12, bx, loop=loop, flow=flow, backend=backend)
    theirs = torch_cluster.knn_graph(x, 12, bx, loop=loop, flow=flow)
    assert edge_set(ours) == edge_set(theirs)


@pytest.mark.parametrize("backend", RADIUS_BACKENDS)
def test_radius_equals_torch_cluster_without_truncation(clouds, backend):
    x, bx, y, by = clouds
    ours = ops.radius(x, y, 0.3, bx, by, max_num_neighbors=400, backend=backend)
    theirs = torch_cluster.radius(x, y, 0.3, bx, by, max_num_neighbors=400)
    assert edge_set(ours) == edge_set(theirs)
    assert ours.size(1) > 5 * y.size(0)  # the case is not trivial


@pytest.mark.parametrize("backend", RADIUS_BACKENDS)
def test_radius_truncation_keeps_nearest(clouds, backend):
    x, bx, y, by = clouds
    full = ops.radius(x, y, 0.5, bx, by, max_num_neighbors=10_000, backend="torch")
    got = ops.radius(x, y, 0.5, bx, by, max_num_neighbors=8, backend=backend)
    assert edge_set(got) <= edge_set(full)
    d_full = sq(x[full[1]], y[full[0]])
    for q in range(0, y.size(0), 7):
        theirs = torch.sort(d_full[full[0] == q]).values[:8]
        mine = sq(x[got[1][got[0] == q]], y[q])
        assert mine.numel() == min(8, theirs.numel())
        assert torch.allclose(mine, theirs)  # the nearest, in ascending order


def test_radius_truncation_same_on_every_backend(clouds):
    x, bx, y, by = clouds
    results = [edge_set(ops.radius(x, y, 0.5, bx, by, 16, backend=b)) for b in RADIUS_BACKENDS]
    assert all(r == results[0] for r in results)


def first_in_ball(x, bx, y, by, r, cap, skip_self=False):
    """(query, point) pairs of the first ``cap`` points of ``x`` (in storage order, same
    cloud) strictly within ``r`` of each query, computed directly in float64."""
    d = torch.cdist(y.double(), x.double()).square()
    inside = (d < float(r) * float(r)) & (by.view(-1, 1) == bx.view(1, -1))
    if skip_self:
        inside.fill_diagonal_(False)
    pairs = set()
    for q in range(y.size(0)):
        pairs.update((q, int(j)) for j in inside[q].nonzero().flatten()[:cap])
    return pairs


@pytest.mark.parametrize("backend", RADIUS_BACKENDS)
def test_radius_keep_first_takes_first_by_index(clouds, backend):
    """keep="first" is PointNet++'s reference ball query: the first points in storage order
    within r, rows ascending and each row's neighbours ascending by index. A named
    torch-cluster (nearest only) hands the call to an implementation that keeps the rule."""
    x, bx, y, by = clouds
    got = ops.radius(x, y, 0.5, bx, by, max_num_neighbors=8, keep="first", backend=backend)
    assert edge_set(got) == first_in_ball(x, bx, y, by, 0.5, 8)
    row, col = got
    assert bool((row[1:] >= row[:-1]).all())
    same_row = row[1:] == row[:-1]
    assert bool((col[1:][same_row] > col[:-1][same_row]).all())
    nearest = ops.radius(x, y, 0.5, bx, by, max_num_neighbors=8, backend=backend)
    assert edge_set(nearest) != edge_set(got)  # the balls overflow: the rules differ here


def test_radius_keep_first_follows_storage_order_with_unsorted_batch():
    """With the clouds interleaved in ``x``, "first" is the order of each cloud's own points."""
    x, bx = batch_of_clouds([200, 180], seed=11)
    perm = torch.randperm(x.size(0), generator=torch.Generator().manual_seed(0))
    x, bx = x[perm], bx[perm]
    y, by = x[::9], bx[::9]
    for backend in RADIUS_BACKENDS:
        got = ops.radius(x, y, 0.4, bx, by, 6, keep="first", backend=backend)
        assert edge_set(got) == first_in_ball(x, bx, y, by, 0.4, 6), backend


@pytest.mark.parametrize("backend", RADIUS_BACKENDS)
def test_radius_graph_keep_first_without_self(backend):
    x, bx = batch_of_clouds([150, 120], seed=12)
    got = ops.radius_graph(x, 0.5, bx, max_num_neighbors=5, keep="first", backend=backend)
    # [neighbour, centre] (source_to_target): the centre's first 5 other points within r
    assert edge_set(got.flip(0)) == first_in_ball(x, bx, x, bx, 0.5, 5, skip_self=True)


def test_radius_rejects_an_unknown_keep_rule(clouds):
    x, bx, y, by = clouds
    with pytest.raises(ValueError, match="keep must be 'nearest' or 'first', got 'random'"):
        ops.radius(x, y, 0.5, bx, by, keep="random")
    with pytest.raises(ValueError, match="keep must be"):
        ops.radius_graph(x, 0.5, bx, keep="furthest")


@pytest.mark.parametrize("backend", RADIUS_BACKENDS)
def test_radius_is_strict(backend):
    x = torch.tensor([[0.0, 0.0, 0.0], [0.5, 0.0, 0.0], [0.0, 0.25, 0.0], [0.0, 0.0, 0.75]])
    y = torch.zeros(1, 3)
    row, col = ops.radius(x, y, 0.5, backend=backend)
    assert sorted(col.tolist()) == [0, 2]  # the point at exactly r = 0.5 is out


@pytest.mark.parametrize("backend", RADIUS_BACKENDS)
@pytest.mark.parametrize("loop", [False, True])
def test_radius_graph_equals_torch_cluster(backend, loop):
    x, bx = batch_of_clouds([200, 150], seed=8)
    ours = ops.radius_graph(x, 0.25, bx, loop=loop, max_num_neighbors=500, backend=backend)
    theirs = torch_cluster.radius_graph(x, 0.25, bx, loop=loop, max_num_neighbors=500)
    assert edge_set(ours) == edge_set(theirs)


def test_radius_graph_bounds_neighbours_without_counting_self():
    x, bx = batch_of_clouds([300], seed=9)
    row, col = ops.radius_graph(x, 0.5, bx, max_num_neighbors=5)
    assert bool((row != col).all())
    assert torch.bincount(col, minlength=300).tolist() == [5] * 300


@pytest.mark.parametrize("backend", KNN_BACKENDS)
def test_nearest_equals_torch_cluster(clouds, backend):
    x, bx, y, by = clouds
    assert torch.equal(
        ops.nearest(y, x, by, bx, backend=backend), torch_cluster.nearest(y, x, by, bx)
    )


def test_nearest_rejects_cloud_without_candidates():
    x, _ = batch_of_clouds([4, 4], seed=10)
    with pytest.raises(ValueError, match="cloud 1 has points in x but none in y"):
        ops.nearest(x, x[:4], torch.tensor([0] * 4 + [1] * 4), torch.zeros(4, dtype=torch.long))


def test_knn_cosine_matches_brute_force():
    x, bx = batch_of_clouds([64], seed=11)
    x = x + 0.1
    row, col = ops.knn(x, x[:10], 5, cosine=True)
    xn = x / x.norm(dim=1, keepdim=True)
    d = 1 - xn[:10] @ xn.t()
    expect = torch.topk(d, 5, largest=False).indices
    assert edge_set(torch.stack([row, col])) == edge_set(
        torch.stack([torch.arange(10).repeat_interleave(5), expect.reshape(-1)])
    )


def test_float64_inputs_work_on_every_backend():
    x, bx = batch_of_clouds([100, 80], seed=12, dtype=torch.float64)
    sets = [edge_set(ops.knn(x, x, 4, bx, bx, backend=b)) for b in KNN_BACKENDS]
    assert all(s == sets[0] for s in sets)


def test_knn_numba_tree_on_uneven_density_and_far_queries():
    # a dense blob, a sparse shell and queries far outside the cloud's bounding box
    g = torch.Generator().manual_seed(60)
    dense = torch.randn(3000, 3, generator=g) * 0.01
    shell = torch.randn(300, 3, generator=g)
    shell = 5 * shell / shell.norm(dim=1, keepdim=True)
    x = torch.cat([dense, shell])
    y = torch.cat([x[::37], torch.tensor([[40.0, -3.0, 2.0], [0.0, 0.0, -90.0]])])
    for k in (1, 7, 40):
        assert edge_set(ops.knn(x, y, k, backend="numba")) == edge_set(torch_cluster.knn(x, y, k))


def test_knn_numba_two_dimensional_points_fall_back():
    g = torch.Generator().manual_seed(61)
    x = torch.rand(500, 2, generator=g)
    assert edge_set(ops.knn(x, x, 5, backend="numba")) == edge_set(
        ops.knn(x, x, 5, backend="torch")
    )
    r = ops.radius(x, x, 0.1, max_num_neighbors=8, backend="numba")
    assert edge_set(r) == edge_set(ops.radius(x, x, 0.1, max_num_neighbors=8, backend="torch"))


@pytest.mark.parametrize("backend", KNN_BACKENDS)
def test_knn_graph_with_duplicate_points_keeps_k_and_no_self_loops(backend):
    x, bx = batch_of_clouds([60, 40], seed=62)
    x = torch.cat([x, x[:10]])  # ten exact duplicates in cloud 0
    bx = torch.cat([bx, bx[:10]])
    row, col = ops.knn_graph(x, 6, bx, backend=backend)
    assert bool((row != col).all())
    assert torch.bincount(col, minlength=x.size(0)).tolist() == [6] * x.size(0)
    assert bool((bx[row] == bx[col]).all())
