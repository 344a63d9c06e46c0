"""The torch splatting rasteriser: agreement with Open3D, z-buffer, gradients, fitting."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightning_pc.viz import Camera, frame_camera, splat
from lightning_pc.viz.open3d_backend import render_open3d


def _cloud(n: int = 3000) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    pts = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=1)
    return pts * torch.tensor([1.0, 0.6, 0.4]) + torch.tensor([0.3, -0.2, 0.1])


@pytest.mark.parametrize("projection", ["perspective", "orthographic"])
@pytest.mark.parametrize("view", ["iso", "top", (30.0, -20.0)])
def test_silhouette_matches_open3d(projection: str, view: object) -> None:
    pts = _cloud()
    cam = frame_camera(pts, view, width=160, height=120, projection=projection)  # type: ignore[arg-type]
    point_size = 4.0
    # Open3D's failure to render must fail this test, not skip it.
    ref = render_open3d(pts.numpy(), np.full((len(pts), 3), 0.2), cam, point_size=point_size)
    ref_mask = (ref != 255).any(-1)
    depth = torch.tensor(cam.eye).sub(torch.tensor(cam.center)).norm().view(1)
    radius = 0.5 * point_size / float(cam.pixels_per_unit(depth))
    out = splat(pts, torch.full((len(pts), 3), 0.2), cam, radius)
    mask = out.alpha.numpy() > 0
    iou = (ref_mask & mask).sum() / (ref_mask | mask).sum()
    assert ref_mask.mean() > 0.05
    assert iou > 0.8, iou


def test_hard_zbuffer_keeps_nearest() -> None:
    cam = Camera(eye=(0.0, 0.0, 5.0), center=(0.0, 0.0, 0.0), up=(0.0, 1.0, 0.0), width=32, height=32)
    pts = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # the second is nearer the eye
    cols = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    out = splat(pts, cols, cam, radii=torch.tensor([1.0, 0.2]))
    assert torch.equal(out.image[16, 16], torch.tensor([0.0, 0.0, 1.0]))
    assert torch.equal(out.image[16, 16 + 5], torch.tensor([1.0, 0.0, 0.0]))  # only the far, wide one
    assert torch.equal(out.image[0, 0], torch.tensor([1.0, 1.0, 1.0]))
    assert out.depth[16, 16] == pytest.approx(4.0)


def test_soft_approaches_hard() -> None:
    pts = _cloud(800)
    cam = frame_camera(pts, "iso", width=64, height=64)
    cols = (pts - pts.min(0).values) / (pts.max(0).values - pts.min(0).values)
    hard = splat(pts, cols, cam, 0.06)
    soft = splat(pts, cols, cam, 0.06, soft=True, sigma=0.05, gamma=1e-4)
    assert (hard.image - soft.image).abs().mean() < 0.02


def test_soft_gradients_reach_positions_colors_radii() -> None:
    pts = _cloud(300).requires_grad_()
    cols = torch.rand(300, 3).requires_grad_()
    radii = torch.full((300,), 0.05, requires_grad=True)
    cam = frame_camera(pts, "iso", width=48, height=48)
    out = splat(pts, cols, cam, radii, soft=True)
    (out.image.mean() + out.alpha.mean()).backward()
    for t in (pts, cols, radii):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


def test_fitting_moves_points_toward_target() -> None:
    torch.manual_seed(0)
    cam = Camera(eye=(0.0, 0.0, 4.0), center=(0.0, 0.0, 0.0), up=(0.0, 1.0, 0.0), width=48, height=48, fov=40.0)
    target_pts = torch.randn(150, 3) * 0.15 + torch.tensor([0.35, 0.25, 0.0])
    cols = torch.tensor([[0.9, 0.2, 0.1]]).expand(150, 3)
    with torch.no_grad():
        target = splat(target_pts, cols, cam, 0.05, soft=True).image
    pts = (torch.randn(150, 3) * 0.15 + torch.tensor([-0.3, -0.2, 0.0])).requires_grad_()
    start = (pts.detach().mean(0) - target_pts.mean(0))[:2].norm()
    opt = torch.optim.Adam([pts], lr=0.03)
    losses = []
    for _ in range(80):
        opt.zero_grad()
        loss = (splat(pts, cols, cam, 0.05, soft=True, sigma=3.0).image - target).pow(2).mean()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    end = (pts.detach().mean(0) - target_pts.mean(0))[:2].norm()
    assert losses[-1] < 0.5 * losses[0]
    assert end < 0.5 * start
