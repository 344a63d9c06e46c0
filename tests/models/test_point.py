"""The point structure: conversion from PyG batches, grids, voxels, serialisation, sparse view;
the shared heads; old checkpoints of the re-laid-out heads."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Batch, Data

from lightning_pc.models import ClassificationHead, Point, SegmentationHead, as_point
from lightning_pc.nn.serialization import encode
from tests.models.shapes import make_batch


def hostile_batch() -> Batch:
    """Duplicated points, a one-point cloud, a far outlier, negative coordinates."""
    g = torch.Generator().manual_seed(3)
    a = torch.rand(40, 3, generator=g) - 0.5
    a = torch.cat([a, a[:10]])  # duplicates
    b = torch.tensor([[-7.3, 2.0, 0.1]])  # one point
    c = torch.cat([torch.rand(25, 3, generator=g), torch.tensor([[900.0, -400.0, 3.0]])])
    clouds = [Data(pos=p, x=torch.randn(p.size(0), 2, generator=g)) for p in (a, b, c)]
    return Batch.from_data_list(clouds)


def test_as_point_reads_a_pyg_batch_and_defaults_to_one_cloud() -> None:
    batch = make_batch([30, 20], in_channels=2)
    p = as_point(batch)
    assert p.pos is batch.pos and p.x is batch.x and p.category is batch.category
    assert torch.equal(p.ptr, batch.ptr) and p.num_clouds == 2 and p.num_rows == 50
    assert as_point(p) is p
    one = as_point(Data(pos=torch.rand(7, 3)))  # a bare Data: one cloud
    assert one.batch.tolist() == [0] * 7 and one.ptr.tolist() == [0, 7]
    from_ptr = Point(batch.pos, ptr=batch.ptr)  # batch rebuilt from the offsets
    assert torch.equal(from_ptr.batch, batch.batch)
    with pytest.raises(ValueError, match=r"batch.pos of shape \[N, 3\]"):
        as_point(Data(pos=torch.rand(5, 2)))


def test_features_are_checked_against_the_network() -> None:
    p = as_point(make_batch([10, 10], in_channels=3))
    assert p.features(3) is p.x
    assert p.for_channels(0).x is None and p.for_channels(0).num_clouds == 2
    with pytest.raises(ValueError, match="in_channels=4"):
        p.features(4)
    with pytest.raises(ValueError, match="in_channels=2"):
        as_point(make_batch([10])).features(2)


def test_grid_from_the_origin_or_from_each_cloud_minimum() -> None:
    p = as_point(hostile_batch())
    assert torch.equal(p.grid(0.1), torch.floor(p.pos / 0.1).long())
    assert p.grid(0.1) is p.grid(0.1)  # cached
    local = p.grid(0.1, "cloud_min")
    assert local.min() == 0
    for b in range(p.num_clouds):
        rows = local[p.ptr[b] : p.ptr[b + 1]]
        assert rows.min(0).values.tolist() == [0, 0, 0]
    bad = Point(torch.tensor([[0.0, float("nan"), 0.0], [1.0, 1.0, 1.0]]))
    with pytest.raises(ValueError, match="NaN"):
        bad.grid(0.1, "cloud_min")
    with pytest.raises(ValueError, match="positive"):
        p.voxelize(0.0)


@pytest.mark.parametrize("origin", ["zero", "cloud_min"])
def test_voxelize_gives_the_voxels_and_the_inverse_map(origin: str) -> None:
    p = as_point(hostile_batch())
    v = p.voxelize(0.2, origin=origin)  # type: ignore[arg-type]
    assert v is p.voxelize(0.2, origin=origin)  # type: ignore[arg-type]
    assert v.inverse is not None and v.grid_coord is not None and v.x is not None
    assert v.grid_size == 0.2 and v.num_clouds == p.num_clouds
    # every point's voxel is in its cloud and its grid cell
    assert torch.equal(v.batch[v.inverse], p.batch)
    assert torch.equal(v.grid_coord[v.inverse], p.grid(0.2, origin))  # type: ignore[arg-type]
    # voxels are distinct, sorted by cloud, and hold the mean of their points
    sites = torch.cat([v.batch.view(-1, 1), v.grid_coord], 1)
    assert torch.unique(sites, dim=0).size(0) == v.num_rows
    assert torch.equal(v.ptr, torch.searchsorted(v.batch, torch.arange(4)))
    counts = torch.bincount(v.inverse, minlength=v.num_rows).view(-1, 1).float()
    mean = torch.zeros(v.num_rows, 3).index_add_(0, v.inverse, p.pos) / counts
    assert torch.allclose(v.pos, mean, atol=1e-6)
    assert torch.equal(v.pos_x, torch.cat([v.pos, v.x], 1))
    assert v.ptr[2] - v.ptr[1] == 1  # the one-point cloud is one voxel


def test_serialization_orders_the_voxels_along_the_curves() -> None:
    v = as_point(hostile_batch()).voxelize(0.3, origin="cloud_min")
    orders = ("z", "hilbert-trans")
    s = v.serialization(orders)
    assert s is v.serialization(orders)  # cached
    assert v.grid_coord is not None
    for k, name in enumerate(orders):
        assert torch.equal(s.code[k], encode(v.grid_coord, v.batch, int(s.depth), name))
        assert bool((s.code[k][s.order[k]].diff() >= 0).all())
        assert torch.equal(s.order[k][s.inverse[k]], torch.arange(v.num_rows))
    torch.manual_seed(0)
    shuffled = [v.serialization(orders, shuffle=True).code[0] for _ in range(8)]
    assert any(torch.equal(c, s.code[1]) for c in shuffled)  # the rows were permuted
    with pytest.raises(ValueError, match="voxelize"):
        as_point(hostile_batch()).serialization(orders)
    # the smallest depth holding the grid (PTv3's custom op) = the same codes at that depth
    depth = int(v.grid_coord.max() + 1).bit_length()
    assert int(s.depth) == depth
    explicit = v.serialization(orders, depth=depth + 1)
    assert int(explicit.depth) == depth + 1
    assert torch.equal(explicit.order[0], s.order[0])  # Morton order ignores extra top bits


def test_a_level_carries_its_serialization_and_cached_values_across_views() -> None:
    v = as_point(hostile_batch()).voxelize(0.3, origin="cloud_min")
    s = v.serialization(("z",))
    level = v.with_serialization(s)
    assert v.serialized is None and level.serialized is s  # the cached voxels stay as they were
    assert level.pos_x is v.pos_x and level.inverse is v.inverse
    calls = []
    value = level.cached(("plan", 4), lambda: calls.append(1) or 7)
    assert value == 7 and level.cached(("plan", 4), lambda: 8) == 7 and calls == [1]
    view = level.with_features(torch.zeros(level.num_rows, 2))
    assert view.serialized is s and view.cached(("plan", 4), lambda: 9) == 7


def test_sparse_tensor_view_shares_one_map_cache() -> None:
    v = as_point(hostile_batch()).voxelize(0.25)
    assert v.grid_coord is not None
    a, b = v.sparse_tensor(), v.sparse_tensor(torch.ones(v.num_rows, 4))
    assert torch.equal(a.coords, torch.cat([v.batch.view(-1, 1), v.grid_coord], 1))
    assert torch.equal(a.feats, v.pos_x) and b.feats.shape == (v.num_rows, 4)
    assert a.cache is b.cache
    with pytest.raises(ValueError, match="voxelize"):
        as_point(hostile_batch()).sparse_tensor()


def test_heads_pool_per_cloud_and_read_voxels_back_at_the_points() -> None:
    torch.manual_seed(0)
    p = as_point(hostile_batch())
    feats = p.with_features(torch.randn(p.num_rows, 4))
    head = ClassificationHead(4, 3, "max+mean").eval()
    pooled = head.pooled(feats)
    b1 = feats.x[p.ptr[1] : p.ptr[2]]  # type: ignore[index]
    assert torch.allclose(pooled[1], torch.cat([b1.max(0).values, b1.mean(0)]))
    assert head(feats).shape == (3, 3)
    # a cloud without rows pools to zeros, not NaN
    empty = Point(torch.zeros(3, 3), torch.ones(3, 4), ptr=torch.tensor([0, 2, 2, 3]))
    assert torch.equal(head.pooled(empty)[1], torch.zeros(8))
    v = p.voxelize(0.5)
    seg = SegmentationHead(4, 3).eval()
    vf = v.with_features(torch.randn(v.num_rows, 4))
    assert v.inverse is not None and vf.x is not None
    assert torch.equal(seg(vf), seg[0](vf.x)[v.inverse])
