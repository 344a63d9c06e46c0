"""A pinhole or orthographic camera, framed from a bounding box, shared by both renderers.

The camera is defined once here (look-at, vertical field of view or orthographic height) and
converted to Open3D's ``setup_camera(fov, center, eye, up)`` / ``look_at`` by
:mod:`lightning_pc.viz.open3d_backend`, so both renderers see the same picture.

Pixel convention: column ``u`` grows to the right, row ``v`` grows downwards, pixel ``(v, u)``
covers ``[u, u + 1) x [v, v + 1)``; its centre is ``(u + 0.5, v + 0.5)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

Projection = Literal["perspective", "orthographic"]
UpAxis = Literal["x", "y", "z"]

#: Named views as ``(azimuth, elevation)`` in degrees, azimuth measured around the up axis.
VIEWS: dict[str, tuple[float, float]] = {
    "iso": (-50.0, 25.0),
    "front": (-90.0, 0.0),
    "side": (0.0, 0.0),
    "back": (90.0, 0.0),
    "top": (-90.0, 90.0),
}

_AXES = {"x": (1.0, 0.0, 0.0), "y": (0.0, 1.0, 0.0), "z": (0.0, 0.0, 1.0)}


@dataclass(frozen=True)
class Camera:
    """A look-at camera.

    Args:
        eye: camera position ``(3,)``.
        center: the point looked at ``(3,)``.
        up: the up direction ``(3,)`` (need not be orthogonal to the viewing direction).
        width: image width in pixels.
        height: image height in pixels.
        fov: vertical field of view in degrees (perspective).
        projection: ``"perspective"`` or ``"orthographic"``.
        ortho_height: height of the visible window in world units (orthographic).
        near: near clipping distance.
        far: far clipping distance.
    """

    eye: tuple[float, float, float]
    center: tuple[float, float, float]
    up: tuple[float, float, float]
    width: int = 256
    height: int = 256
    fov: float = 40.0
    projection: Projection = "perspective"
    ortho_height: float = 2.0
    near: float = 0.01
    far: float = 100.0

    @property
    def focal(self) -> float:
        """Pixels per unit of ``x / z`` (perspective) or per world unit (orthographic)."""
        if self.projection == "orthographic":
            return self.height / self.ortho_height
        return 0.5 * self.height / math.tan(math.radians(self.fov) / 2)

    def basis(self, device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
        """World-to-camera rotation ``[3, 3]``: rows are right, true up and forward."""
        eye = torch.tensor(self.eye, device=device, dtype=dtype)
        center = torch.tensor(self.center, device=device, dtype=dtype)
        up = torch.tensor(self.up, device=device, dtype=dtype)
        forward = torch.nn.functional.normalize(center - eye, dim=0)
        right = torch.linalg.cross(forward, up)
        if float(right.norm()) < 1e-8:
            raise ValueError("camera up is parallel to the viewing direction")
        right = torch.nn.functional.normalize(right, dim=0)
        true_up = torch.linalg.cross(right, forward)
        return torch.stack([right, true_up, forward])

    def project(self, points: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Project world points to pixels.

        Args:
            points: ``[N, 3]`` world coordinates.

        Returns:
            ``(u, v, depth)``, each ``[N]``: column and row in pixels (continuous), and the
            distance along the viewing direction. Differentiable in ``points``.
        """
        rot = self.basis(points.device, points.dtype)  # [3, 3]
        eye = torch.tensor(self.eye, device=points.device, dtype=points.dtype)
        cam = (points - eye) @ rot.T  # [N, 3]: x right, y up, z forward
        x, y, z = cam.unbind(1)
        f = self.focal
        if self.projection == "orthographic":
            px, py = x * f, y * f
        else:
            zs = z.clamp_min(self.near)
            px, py = f * x / zs, f * y / zs
        return 0.5 * self.width + px, 0.5 * self.height - py, z

    def pixels_per_unit(self, depth: Tensor) -> Tensor:
        """How many pixels one world unit spans at ``depth`` (for splat radii)."""
        if self.projection == "orthographic":
            return torch.full_like(depth, self.focal)
        return self.focal / depth.clamp_min(self.near)


def view_direction(azimuth: float, elevation: float, up_axis: UpAxis = "z") -> tuple[float, ...]:
    """Unit vector from the centre towards the eye for a view given in degrees."""
    az, el = math.radians(azimuth), math.radians(elevation)
    a, b, c = math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)
    if up_axis == "z":
        return (a, b, c)
    if up_axis == "y":
        return (b, c, a)
    return (c, a, b)


def frame_camera(
    points: Tensor,
    view: str | tuple[float, float] = "iso",
    *,
    width: int = 256,
    height: int = 256,
    fov: float = 40.0,
    projection: Projection = "perspective",
    up_axis: UpAxis = "z",
    margin: float = 1.06,
) -> Camera:
    """A camera that sees every point from a named or given view, the cloud filling the frame.

    The look-at point is centred on the cloud's extent across the image, and the camera is
    moved back (perspective) or the window shrunk (orthographic) just until the outermost
    point is ``margin`` times inside the image border, so the object fills the shorter
    image side whatever its shape.

    Args:
        points: ``[N, 3]`` coordinates.
        view: a key of :data:`VIEWS` or ``(azimuth, elevation)`` in degrees.
        width: image width in pixels.
        height: image height in pixels.
        fov: vertical field of view in degrees (perspective).
        projection: ``"perspective"`` or ``"orthographic"``.
        up_axis: the world axis drawn upwards.
        margin: how much larger than the cloud's extent the visible window is.
    """
    pts = points.detach().double().cpu()
    pts = pts[torch.isfinite(pts).all(1)] if pts.numel() else pts
    if pts.shape[0] == 0:
        pts = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]], dtype=torch.float64)
    lo, hi = pts.min(0).values, pts.max(0).values
    box_center = (lo + hi) / 2
    scale = max(float((hi - lo).norm()) / 2, 1e-6)
    az, el = VIEWS[view] if isinstance(view, str) else view
    direction = torch.tensor(view_direction(az, el, up_axis), dtype=torch.float64)
    up = _AXES[up_axis]
    if abs(el) > 80:  # looking along the up axis: draw the far horizontal direction upwards
        up = view_direction(az + 180.0, 0.0, up_axis)  # type: ignore[assignment]
    probe = Camera(eye=tuple(float(t) for t in box_center + direction),  # type: ignore[arg-type]
                   center=tuple(float(t) for t in box_center), up=up)  # type: ignore[arg-type]
    right, true_up, forward = probe.basis(dtype=torch.float64).unbind(0)
    rel = pts - box_center
    a, b = rel @ right, rel @ true_up
    # re-centre across the image on the extent seen from this view
    shift = (a.max() + a.min()) / 2 * right + (b.max() + b.min()) / 2 * true_up
    center = box_center + shift
    a, b, c = (pts - center) @ right, (pts - center) @ true_up, (pts - center) @ -forward
    tan_y = math.tan(math.radians(fov) / 2) / margin
    tan_x = tan_y * width / height
    if projection == "orthographic":
        half_h = max(float(b.abs().max()), float(a.abs().max()) * height / width, 1e-6) * margin
        distance = float(c.max()) + 2.0 * scale
        ortho_height = 2 * half_h
    else:
        # every point within the frustum: |a| <= tan_x (D - c) and |b| <= tan_y (D - c)
        need = torch.maximum(c + a.abs() / tan_x, c + b.abs() / tan_y)
        distance = max(float(need.max()), float(c.max()) + 1e-3 * scale)
        ortho_height = 2 * scale
    eye = center - distance * forward
    c_near = distance - float(c.max())
    c_far = distance - float(c.min())
    return Camera(
        eye=tuple(float(t) for t in eye),  # type: ignore[arg-type]
        center=tuple(float(t) for t in center),  # type: ignore[arg-type]
        up=up,  # type: ignore[arg-type]
        width=width,
        height=height,
        fov=fov,
        projection=projection,
        ortho_height=ortho_height,
        near=max(c_near - 0.05 * scale, 1e-3 * scale, 1e-6),
        far=c_far + 0.05 * scale,
    )
