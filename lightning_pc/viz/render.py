"""``render``: coloured points to an ``(H, W, 3) uint8`` image, Open3D first, torch as fallback."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from lightning_pc.ops._backend import Call, choose, requested
from lightning_pc.viz.camera import Projection, UpAxis, frame_camera
from lightning_pc.viz.shading import Shading, estimate_normals, shade
from lightning_pc.viz.splat import splat

Backend = Literal["auto", "open3d", "torch"]  # the ``render`` kind of the implementation registry

_OPEN3D_FAILED: str | None = None  # why Open3D could not render in this process
_CALL = Call(torch.device("cpu"))  # both renderers take CPU tensors


def _as_tensor(a: Any) -> Tensor:
    if isinstance(a, Tensor):
        return a.detach().float().cpu()
    return torch.as_tensor(np.asarray(a), dtype=torch.float32)


def open3d_available() -> bool:
    """Whether Open3D has rendered (or not yet failed) in this process."""
    return _OPEN3D_FAILED is None


def auto_point_size(num_points: int, width: int, height: int) -> float:
    """A point diameter in pixels that closes the gaps of a surface of ``num_points`` points
    filling a ``width x height`` view: 1.4 times the mean spacing, between 2 and 12."""
    spacing = (width * height / max(num_points, 1)) ** 0.5
    return float(min(max(1.4 * spacing, 2.0), 12.0))


def render(
    points: Tensor | np.ndarray,
    colors: Tensor | np.ndarray | Sequence[float] | None = None,
    *,
    views: Sequence[str | tuple[float, float]] = ("iso",),
    width: int = 256,
    height: int = 256,
    point_size: float | None = None,
    background: tuple[float, float, float] = (1.0, 1.0, 1.0),
    fov: float = 40.0,
    projection: Projection = "perspective",
    up_axis: UpAxis = "z",
    backend: Backend | None = None,
    shading: Shading = "normals",
    normals: Tensor | np.ndarray | None = None,
) -> np.ndarray:
    """Render a point cloud from one or several views, side by side.

    The camera of each view is framed so that the cloud fills the image
    (:func:`~lightning_pc.viz.camera.frame_camera`), and the colours are shaded for that
    view (:func:`~lightning_pc.viz.shading.shade`: lighting from the normals, given or
    estimated once, plus a depth cue), identically for both backends. The backend is the
    ``render`` kind of the implementation registry (:mod:`lightning_pc.ops._backend`):
    ``"auto"`` uses Open3D's offscreen renderer (created once per process) and, if Open3D
    cannot open one, warns once and uses the torch splatting rasteriser
    (:func:`~lightning_pc.viz.splat.splat`) from then on.

    Args:
        points: ``[N, 3]`` coordinates.
        colors: ``[N, 3]`` colours, floats in ``[0, 1]`` or integers in 0-255; one ``[3]``
            colour for all points; ``None``: light grey.
        views: names of :data:`~lightning_pc.viz.camera.VIEWS` or ``(azimuth, elevation)``.
        width: width of one view in pixels.
        height: height in pixels.
        point_size: point diameter in pixels (at the centre of the cloud for the torch
            backend, whose splats have a world radius); ``None``: from the number of points,
            so that a surface of points reads as closed (:func:`auto_point_size`).
        background: background colour, floats in ``[0, 1]``.
        fov: vertical field of view in degrees.
        projection: ``"perspective"`` or ``"orthographic"``.
        up_axis: the world axis drawn upwards.
        backend: ``"auto"``, ``"open3d"`` (errors propagate) or ``"torch"``; ``None``:
            ``LIGHTNING_PC_IMPL_RENDER`` where set, else ``"auto"``.
        shading: ``"normals"`` (lighting and a mild depth cue), ``"depth"`` (depth cue
            only) or ``"none"`` (flat colours).
        normals: ``[N, 3]`` normals for ``shading="normals"`` (``None``: estimated).

    Returns:
        ``[height, width * len(views), 3]`` uint8 image.
    """
    global _OPEN3D_FAILED
    pts = _as_tensor(points)[:, :3]
    if colors is None:
        cols = torch.full((pts.shape[0], 3), 0.75)
    else:
        raw = colors if isinstance(colors, Tensor) else torch.as_tensor(np.asarray(colors))
        cols = raw.detach().float().cpu()
        if not raw.is_floating_point() or (cols.numel() > 0 and float(cols.max()) > 1.0):
            cols = cols / 255.0
        cols = cols.expand(pts.shape[0], 3) if cols.dim() == 1 else cols
    if point_size is None:
        point_size = auto_point_size(pts.shape[0], width, height)
    normal_t: Tensor | None = None
    if shading == "normals":
        normal_t = (
            _as_tensor(normals)[:, :3]
            if normals is not None
            else torch.from_numpy(estimate_normals(pts.numpy())).float()
        )
    panels = []
    for view in views:
        camera = frame_camera(
            pts, view, width=width, height=height, fov=fov, projection=projection, up_axis=up_axis
        )
        view_cols = shade(cols, pts, camera, shading, normal_t)
        image: np.ndarray | None = None
        chosen = choose("render", _CALL, backend)
        if chosen == "open3d":
            try:
                from lightning_pc.viz.open3d_backend import render_open3d

                image = render_open3d(
                    pts.numpy(), view_cols.numpy(), camera, point_size=point_size, background=background
                )
            except Exception as err:  # noqa: BLE001 - any failure means "no Open3D here"
                if requested("render", backend) == "open3d":  # named: errors propagate
                    raise
                _OPEN3D_FAILED = f"{type(err).__name__}: {err}"
                warnings.warn(
                    f"Open3D cannot render here ({_OPEN3D_FAILED}); using the torch splatting "
                    "renderer instead",
                    RuntimeWarning,
                    stacklevel=2,
                )
        if image is None:
            distance = torch.tensor(camera.eye).sub(torch.tensor(camera.center)).norm()
            radius = 0.5 * point_size / float(camera.pixels_per_unit(distance.view(1)))
            out = splat(pts, view_cols, camera, radius, background=background)
            image = (out.image.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
        panels.append(image)
    return np.concatenate(panels, axis=1)
