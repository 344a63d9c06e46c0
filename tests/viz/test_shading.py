"""What a rendered picture must show: shading, framing, one colour per class, scenes."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from lightning_pc.viz import class_palette, render
from lightning_pc.viz.predictions import is_scene, scene_figure
from lightning_pc.viz.shading import estimate_normals


def _sphere(n: int = 2000) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=1)


def _foreground(img: np.ndarray) -> np.ndarray:
    return (img != 255).any(-1)


@pytest.mark.parametrize("backend", ["open3d", "torch"])
def test_sphere_brightness_varies_and_fills_frame(backend: str) -> None:
    pts = _sphere()
    img = render(pts, (0.2, 0.5, 0.9), width=96, height=96, backend=backend)  # type: ignore[arg-type]
    fg = _foreground(img)
    rows, cols = np.nonzero(fg)
    # framing: the sphere spans most of the frame in both directions, and is not cut off
    assert rows.max() - rows.min() > 0.85 * 96 and cols.max() - cols.min() > 0.85 * 96
    assert not fg[0].any() and not fg[-1].any() and not fg[:, 0].any() and not fg[:, -1].any()
    # shading: the lit side is clearly brighter than the dark side, hue kept
    brightness = img[fg].astype(float).sum(-1)
    assert np.percentile(brightness, 90) > 1.6 * np.percentile(brightness, 10)
    assert (img[fg][:, 2] >= img[fg][:, 0]).mean() > 0.95  # still blue, never reddened
    flat = render(pts, (0.2, 0.5, 0.9), width=96, height=96, backend=backend, shading="none")  # type: ignore[arg-type]
    flat_b = flat[_foreground(flat)].astype(float).sum(-1)
    if backend == "torch":  # Open3D blends point edges with the background
        assert np.percentile(flat_b, 90) < 1.15 * np.percentile(flat_b, 10)  # flat: no shading


def test_shading_same_for_both_backends() -> None:
    pts = _sphere()
    a = render(pts, (0.9, 0.6, 0.2), width=80, height=80, backend="open3d", point_size=5)
    b = render(pts, (0.9, 0.6, 0.2), width=80, height=80, backend="torch", point_size=5)
    both = _foreground(a) & _foreground(b)
    assert both.mean() > 0.4
    # the same lit side: mean brightness of the upper-left and lower-right quadrants agree
    for img in (a, b):
        lum = img.astype(float).sum(-1)
        ul, lr = lum[:40, :40][both[:40, :40]].mean(), lum[40:, 40:][both[40:, 40:]].mean()
        assert ul > lr + 40


def test_estimated_normals_of_sphere_are_radial() -> None:
    pts = _sphere(1500).numpy()
    n = estimate_normals(pts)
    assert np.abs((n * pts).sum(1)).mean() > 0.95
    # hostile: empty, one point, NaN rows
    assert estimate_normals(np.zeros((0, 3))).shape == (0, 3)
    assert estimate_normals(np.zeros((1, 3))).tolist() == [[0.0, 0.0, 1.0]]
    bad = pts.copy()
    bad[3] = np.nan
    n = estimate_normals(bad)
    assert (n[3] == 0).all() and np.isfinite(n).all()


def test_each_class_keeps_its_colour() -> None:
    # two boxes side by side, class 0 left and class 1 right, shaded
    g = torch.Generator().manual_seed(1)
    left = torch.rand(1500, 3, generator=g) * torch.tensor([1.0, 1.0, 1.0])
    right = left + torch.tensor([1.5, 0.0, 0.0])
    pts = torch.cat([left, right])
    pal = np.asarray(class_palette(2), dtype=float)
    colors = np.concatenate([np.tile(pal[0], (1500, 1)), np.tile(pal[1], (1500, 1))]) / 255
    img = render(pts, colors, views=((-90.0, 20.0),), width=96, height=64, backend="torch")
    fg = _foreground(img)
    for half, k in ((img[:, :40], 0), (img[:, 56:], 1)):
        px = half[fg[:, :40] if k == 0 else fg[:, 56:]].astype(float)
        chroma = px / np.maximum(px.sum(1, keepdims=True), 1)
        ref = pal / pal.sum(1, keepdims=True)
        nearest = np.argmin(((chroma[:, None] - ref[None]) ** 2).sum(-1), 1)
        assert (nearest == k).mean() > 0.95


def _room(n: int = 3000) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    pos = torch.rand(n, 3, generator=g) * torch.tensor([5.0, 4.0, 3.0])
    label = torch.zeros(n, dtype=torch.long)  # floor-ish below 1 m, ceiling above 2.7 m
    label[pos[:, 2] > 1.0] = 1
    label[pos[:, 2] > 2.7] = 2
    return pos, label


def test_scene_figure_errors_in_red_and_ceiling_cut() -> None:
    pos, label = _room()
    pred = label.clone()
    wrong = (pos[:, 0] < 1.0) & (label == 0)
    pred[wrong] = 1
    fig = scene_figure(pos, label, pred, ["floor", "wall", "ceiling"], class_palette(3), size=60,
                       backend="torch")
    img = np.asarray(fig)
    assert is_scene(pos) and not is_scene(pos / 5)
    red = (img[..., 0] > 150) & (img[..., 1] < 90) & (img[..., 2] < 90)
    assert red.sum() > 20
    # without errors the error view has no red
    fig_ok = np.asarray(scene_figure(pos, label, label, ["floor", "wall", "ceiling"],
                                     class_palette(3), size=60, backend="torch"))
    assert ((fig_ok[..., 0] > 150) & (fig_ok[..., 1] < 90) & (fig_ok[..., 2] < 90)).sum() < red.sum() / 4
    with pytest.raises(ValueError, match="must match"):
        scene_figure(pos, label[:5], label, ["a"], class_palette(1))


def test_rendering_prints_nothing_to_stdout(tmp_path: os.PathLike) -> None:
    code = (
        "import torch; from lightning_pc.viz import render; "
        "render(torch.rand(50, 3), width=32, height=32, backend='open3d'); print('done')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "LIGHTNING_PC_RENDER_VERBOSE": ""})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "done"
    assert "FEngine" not in out.stderr and "Vulkan" not in out.stderr
