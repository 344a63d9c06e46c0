"""render(), the palettes and legend, the composed figures."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch

from lightning_pc.viz import (
    class_palette,
    confusion_matrix_image,
    legend,
    min_color_distance,
    prediction_figure,
    render,
)

render_mod = importlib.import_module("lightning_pc.viz.render")  # the package exports a function of that name


def test_render_views_and_color_formats() -> None:
    pts = torch.randn(400, 3)
    img = render(pts, torch.rand(400, 3), views=("iso", "top", "front"), width=96, height=80)
    assert img.shape == (80, 288, 3) and img.dtype == np.uint8
    assert ((img != 255).any(-1)).mean() > 0.01
    red = render(
        pts.numpy(), [255, 0, 0], width=64, height=64, backend="torch", point_size=6, shading="none"
    )
    fg = (red != 255).any(-1)
    assert fg.any() and (red[fg] == [255, 0, 0]).all()


def test_render_falls_back_to_torch_with_one_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    import lightning_pc.viz.open3d_backend as o3d_backend

    def broken(*args: object, **kwargs: object) -> np.ndarray:
        raise RuntimeError("no display")

    monkeypatch.setattr(o3d_backend, "render_open3d", broken)
    monkeypatch.setattr(render_mod, "_OPEN3D_FAILED", None)
    pts = torch.randn(200, 3)
    with pytest.warns(RuntimeWarning, match="no display"):
        first = render(pts, width=48, height=48)
    assert not render_mod.open3d_available()
    second = render(pts, width=48, height=48)  # no second warning, same torch picture
    assert np.array_equal(first, second)
    assert np.array_equal(first, render(pts, width=48, height=48, backend="torch"))
    with pytest.raises(RuntimeError):
        render(pts, width=48, height=48, backend="open3d")


def test_render_variable_names_the_renderer(monkeypatch: pytest.MonkeyPatch) -> None:
    """``LIGHTNING_PC_IMPL_RENDER=torch`` draws with the splatting renderer without trying
    Open3D (whose failure would warn); a named backend wins over the variable."""
    import lightning_pc.viz.open3d_backend as o3d_backend

    tried: list[int] = []

    def counted(*args: object, **kwargs: object) -> np.ndarray:
        tried.append(1)
        raise RuntimeError("no display")

    monkeypatch.setattr(o3d_backend, "render_open3d", counted)
    monkeypatch.setattr(render_mod, "_OPEN3D_FAILED", None)
    monkeypatch.setenv("LIGHTNING_PC_IMPL_RENDER", "torch")
    pts = torch.randn(100, 3)
    img = render(pts, width=32, height=32)
    assert not tried and render_mod.open3d_available()
    assert np.array_equal(img, render(pts, width=32, height=32, backend="torch"))
    with pytest.raises(RuntimeError, match="no display"):
        render(pts, width=32, height=32, backend="open3d")
    monkeypatch.setenv("LIGHTNING_PC_IMPL_RENDER", "vulkan")
    with pytest.raises(ValueError, match="unknown render backend 'vulkan'"):
        render(pts, width=32, height=32)


@pytest.mark.parametrize("n", [13, 20, 40, 50])
def test_palette_distinguishable(n: int) -> None:
    pal = class_palette(n)
    assert len(pal) == n and pal == class_palette(n)
    assert all(0 <= c <= 255 for rgb in pal for c in rgb)
    assert min_color_distance(pal) > 20  # Delta E 1976: clearly different colours
    assert class_palette(n + 5)[:n] == pal  # class k's colour does not depend on the count


def test_legend_columns() -> None:
    names = [f"class_{i}" for i in range(50)]
    img = legend(names, class_palette(50), max_height=200)
    assert img.height <= 200 and img.width > 3 * 40  # several columns
    arr = np.asarray(img)
    for rgb in class_palette(50)[:5]:
        assert (arr == rgb).all(-1).any()  # each swatch is drawn


def test_prediction_figure_and_confusion_matrix() -> None:
    pts = torch.randn(300, 3)
    y = (pts[:, 0] > 0).long()
    seg = prediction_figure([(pts, y, 1 - y)], ["a", "b"], class_palette(2), size=64)
    cls = prediction_figure([(pts, torch.tensor(0), torch.tensor(1))] * 3, ["a", "b"], class_palette(2), size=64, per_row=2)
    assert seg.width > 2 * 64 and cls.height > 2 * 64
    cm = confusion_matrix_image(np.array([[5, 1], [0, 7]]), ["a", "b"])
    assert np.asarray(cm).std() > 0
