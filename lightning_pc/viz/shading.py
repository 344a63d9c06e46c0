"""Per-point shading, applied to the colours before either renderer draws them.

Both renderers draw unlit points, so the same shaded colours give the same picture with
Open3D and with the torch splatting fallback. Two cues:

- ``"normals"``: two-sided Lambert lighting from a light above, left of and behind the
  camera, ``ambient + (1 - ambient) |n . l|``, with normals given or estimated (Open3D's
  ``estimate_normals`` when it imports, else a principal-component fit of the 16 nearest
  neighbours with SciPy);
- ``"depth"``: points darken with their distance from the camera across the cloud's depth
  range (a depth cue in the spirit of eye-dome lighting, per point instead of per pixel).

``"normals"`` also applies a milder depth cue, so the near side of an object reads in front.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor

from lightning_pc.viz.camera import Camera

Shading = Literal["normals", "depth", "none"]

#: Share of the light that does not depend on the normal.
AMBIENT = 0.35
#: How much darker the farthest point is than the nearest (``"depth"``; half of it with
#: ``"normals"``).
DEPTH_DARKENING = 0.45


def estimate_normals(points: np.ndarray, k: int = 16) -> np.ndarray:
    """Unit normals ``[N, 3]`` of a cloud (unoriented: the sign is arbitrary).

    Open3D's ``estimate_normals`` (hybrid search: the ``k`` nearest within a radius of a
    twentieth of the bounding box diagonal) when Open3D imports, else the smallest principal
    direction of the ``k`` nearest neighbours (SciPy ``cKDTree``). Points without enough
    neighbours (fewer than 3 points in all) get ``(0, 0, 1)``; non-finite points get zeros.

    Args:
        points: ``[N, 3]`` coordinates.
        k: neighbours per point.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    out = np.zeros_like(pts)
    finite = np.isfinite(pts).all(1)
    p = pts[finite]
    if p.shape[0] < 3:
        out[finite] = (0.0, 0.0, 1.0)
        return out
    try:
        import open3d as o3d

        cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(p))
        diag = float(np.linalg.norm(p.max(0) - p.min(0))) or 1.0
        cloud.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=diag / 20, max_nn=k))
        normals = np.asarray(cloud.normals)
    except ImportError:
        from scipy.spatial import cKDTree

        kk = min(k, p.shape[0])
        _, idx = cKDTree(p).query(p, k=kk)
        nb = p[idx] - p[idx].mean(1, keepdims=True)  # [N, k, 3]
        _, vecs = np.linalg.eigh(np.einsum("nki,nkj->nij", nb, nb))
        normals = vecs[:, :, 0]  # eigenvector of the smallest eigenvalue
    norm = np.linalg.norm(normals, axis=1, keepdims=True)
    normals = np.where(norm > 1e-12, normals / np.maximum(norm, 1e-12), (0.0, 0.0, 1.0))
    out[finite] = normals
    return out


def light_direction(camera: Camera) -> Tensor:
    """Unit vector towards the light: up, left and behind the camera (world frame)."""
    right, up, forward = camera.basis(dtype=torch.float64).unbind(0)
    light = -0.45 * right + 0.6 * up - 1.0 * forward
    return light / light.norm()


def shade(
    colors: Tensor,
    points: Tensor,
    camera: Camera,
    mode: Shading = "normals",
    normals: Tensor | None = None,
) -> Tensor:
    """Colours ``[N, 3]`` (floats in ``[0, 1]``) multiplied by the shading seen by ``camera``.

    Args:
        colors: ``[N, 3]`` floats in ``[0, 1]``.
        points: ``[N, 3]`` coordinates.
        camera: the view (its light and depth direction).
        mode: ``"normals"``, ``"depth"`` or ``"none"``.
        normals: ``[N, 3]`` normals for ``"normals"`` (``None``: estimated).

    Returns:
        The shaded colours, same shape and dtype as ``colors``.
    """
    if mode == "none" or points.shape[0] == 0:
        return colors
    if mode not in ("normals", "depth"):
        raise ValueError(f"shading must be 'normals', 'depth' or 'none', got {mode!r}")
    pts = points.detach().double()
    forward = camera.basis(dtype=torch.float64)[2]
    depth = (pts - torch.tensor(camera.eye, dtype=torch.float64)) @ forward
    finite = torch.isfinite(depth)
    lo = depth[finite].min() if bool(finite.any()) else depth.new_zeros(())
    hi = depth[finite].max() if bool(finite.any()) else depth.new_ones(())
    rel = ((depth - lo) / (hi - lo).clamp_min(1e-12)).nan_to_num(0.0).clamp(0, 1)
    if mode == "depth":
        factor = 1.0 - DEPTH_DARKENING * rel
    else:
        if normals is None:
            n = torch.from_numpy(estimate_normals(pts.numpy()))
        else:
            n = torch.nn.functional.normalize(normals.detach().double(), dim=1)
        lambert = (n @ light_direction(camera)).abs()
        factor = (AMBIENT + (1 - AMBIENT) * lambert) * (1.0 - 0.5 * DEPTH_DARKENING * rel)
    return (colors * factor.to(colors.dtype)[:, None]).clamp(0, 1)
