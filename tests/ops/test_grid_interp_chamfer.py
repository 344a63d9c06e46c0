"""grid_cluster against torch-cluster; knn_interpolate and chamfer_distance against
dense brute force."""

from __future__ import annotations

import pytest
import torch
import torch_cluster

from lightning_pc import ops
from lightning_pc.ops import _backend
from tests.ops.shapes import batch_of_clouds


@pytest.mark.parametrize(
    "size,start,end",
    [
        (0.05, None, None),
        ([0.1, 0.2, 0.05], None, None),
        (0.1, -1.5, 1.5),
        (0.07, [-1.0, -1.0, -1.0], None),
    ],
)
@pytest.mark.parametrize("backend", [*_backend.names("grid"), None])
def test_grid_cluster_equals_torch_cluster(size, start, end, backend):
    x, _ = batch_of_clouds([3000], seed=40)
    def t(v):
        return (
            None if v is None else torch.as_tensor(v, dtype=torch.float).expand(3).contiguous()
        )  # noqa: E731
    ours = ops.grid_cluster(x, size, start, end, backend=backend)
    theirs = torch_cluster.grid_cluster(x, t(size), t(start), t(end))
    assert torch.equal(ours, theirs)


def test_grid_cluster_groups_points_of_one_voxel():
    pos = torch.tensor([[0.01, 0.01, 0.01], [0.09, 0.02, 0.05], [0.11, 0.0, 0.0], [0.0, 0.0, 0.19]])
    ids = ops.grid_cluster(pos, 0.1, start=0.0)
    assert ids[0] == ids[1] and len({int(ids[0]), int(ids[2]), int(ids[3])}) == 3
    with pytest.raises(ValueError, match="positive"):
        ops.grid_cluster(pos, 0.0)
    assert ops.grid_cluster(pos[:0], 0.1).numel() == 0


def dense_interpolate(x, pos_x, pos_y, bx, by, k):
    d = torch.cdist(pos_y.double(), pos_x.double()).square()
    d[by[:, None] != bx[None, :]] = float("inf")
    dk, ik = torch.topk(d, k, largest=False)
    w = 1 / dk.clamp_min(1e-16)
    return ((x.double()[ik] * w[..., None]).sum(1) / w.sum(1, keepdim=True)).float()


@pytest.mark.parametrize("backend", [*_backend.names("knn"), None])
def test_knn_interpolate_matches_dense(backend):
    pos_x, bx = batch_of_clouds([64, 40], seed=41)
    pos_y, by = batch_of_clouds([200, 150], seed=42)
    feats = torch.randn(pos_x.size(0), 5, generator=torch.Generator().manual_seed(0))
    out = ops.knn_interpolate(feats, pos_x, pos_y, bx, by, k=3, backend=backend)
    assert out.shape == (350, 5)
    assert torch.allclose(out, dense_interpolate(feats, pos_x, pos_y, bx, by, 3), atol=1e-5)


def test_knn_interpolate_gradients_and_exact_hit():
    pos_x, bx = batch_of_clouds([32], seed=43)
    feats = torch.randn(32, 4, requires_grad=True)
    out = ops.knn_interpolate(feats, pos_x, pos_x[:5], bx, bx[:5], k=3)
    assert torch.allclose(out, feats[:5], atol=1e-4)  # a known point keeps its own feature
    out.sum().backward()
    assert feats.grad is not None and feats.grad.abs().sum() > 0


def dense_chamfer(x, y, bx, by):
    out = []
    for b in range(int(bx.max()) + 1):
        d = torch.cdist(x[bx == b].double(), y[by == b].double()).square()
        out.append(d.min(1).values.mean() + d.min(0).values.mean())
    return torch.stack(out).float()


@pytest.mark.parametrize("backend", ["torch", "scipy", None])
def test_chamfer_matches_dense_and_reductions(backend):
    x, bx = batch_of_clouds([100, 50, 70], seed=44)
    y, by = batch_of_clouds([80, 90, 30], seed=45)
    y = y * 1.1 + 0.05
    per = ops.chamfer_distance(x, y, bx, by, reduction="none", backend=backend)
    expect = dense_chamfer(x, y, bx, by)
    assert torch.allclose(per, expect, rtol=1e-5)
    assert torch.allclose(
        ops.chamfer_distance(x, y, bx, by, backend=backend), expect.mean(), rtol=1e-5
    )
    assert torch.allclose(
        ops.chamfer_distance(x, y, bx, by, reduction="sum"), expect.sum(), rtol=1e-5
    )
    assert float(ops.chamfer_distance(x, x, bx, bx)) == 0.0


def test_chamfer_gradient_pulls_clouds_together():
    x, _ = batch_of_clouds([200], seed=46)
    y = (x + 0.3).clone().requires_grad_(True)
    opt = torch.optim.Adam([y], lr=0.02)
    first = float(ops.chamfer_distance(x, y.detach()))
    for _ in range(40):
        opt.zero_grad()
        loss = ops.chamfer_distance(x, y)
        loss.backward()
        opt.step()
    assert float(ops.chamfer_distance(x, y.detach())) < 0.1 * first


def test_chamfer_rejects_empty_cloud():
    x, _ = batch_of_clouds([10], seed=47)
    with pytest.raises(ValueError, match="every cloud"):
        ops.chamfer_distance(
            x, x, torch.zeros(10, dtype=torch.long), torch.ones(10, dtype=torch.long)
        )
