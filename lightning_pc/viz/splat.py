r"""A pure-torch point splatting rasteriser, hard (z-buffer) or soft (differentiable).

Every point is a disc of world radius :math:`r_i` facing the camera. Projected to the image
it covers the pixels whose centre lies within :math:`\rho_i = r_i \cdot s(z_i)` pixels of its
projected centre :math:`(u_i, v_i)`, where :math:`s(z)` is the camera's pixels per world unit
at depth :math:`z`.

Soft mode (differentiable in positions, colours, radii and opacities). At pixel :math:`p`, at
distance :math:`d_{ip}` from splat :math:`i`, the coverage is

.. math::
    \alpha_{ip} = o_i \, \sigma\!\left(\frac{\rho_i - d_{ip}}{\sigma_{px}}\right),

the splats along the ray are blended with depth-sharpened weights

.. math::
    w_{ip} = \frac{\alpha_{ip} \exp(-\hat z_i / \gamma)}{\sum_j \alpha_{jp} \exp(-\hat z_j / \gamma)},
    \qquad \hat z = \frac{z - z_{near}}{z_{far} - z_{near}},

so that as :math:`\gamma \to 0` the nearest covering splat wins (a z-buffer), and the pixel
is composited over the background with the union coverage
:math:`A_p = 1 - \prod_i (1 - \alpha_{ip})`:
:math:`I_p = A_p \sum_i w_{ip} c_i + (1 - A_p)\, b`.
The blending idea follows PyTorch3D's pulsar (depth-weighted soft blending of the nearest
spheres); the formulation and code here are our own.

Hard mode is the limit: a pixel takes the colour of the nearest splat whose disc contains
its centre. Work is proportional to the number of (point, covered pixel) pairs: each point
visits a square window as wide as the largest splat.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from lightning_pc.viz.camera import Camera

#: Largest splat window half-width in pixels (bigger splats are clipped to it).
MAX_HALF_WINDOW = 32


@dataclass
class SplatOutput:
    """Result of :func:`splat`.

    Attributes:
        image: ``[H, W, 3]`` float colours (in the units of the input colours).
        alpha: ``[H, W]`` coverage in ``[0, 1]`` (hard mode: 0 or 1).
        depth: ``[H, W]`` depth of the nearest covering splat (``inf`` where none).
    """

    image: Tensor
    alpha: Tensor
    depth: Tensor


def _pairs(
    u: Tensor, v: Tensor, rho: Tensor, reach: float, camera: Camera, keep: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """(point index, pixel index, pixel-centre distance) of every candidate pair."""
    idx = keep.nonzero().view(-1)
    if idx.numel() == 0:
        empty = torch.zeros(0, dtype=torch.long, device=u.device)
        return empty, empty, u.new_zeros(0)
    k = int(min(math.ceil(float((rho[idx].max().detach()) + reach)), MAX_HALF_WINDOW))
    offsets = torch.arange(-k, k + 1, device=u.device)
    du, dv = torch.meshgrid(offsets, offsets, indexing="xy")
    du, dv = du.reshape(-1), dv.reshape(-1)  # [K]
    cu = torch.floor(u[idx].detach()).long()[:, None] + du  # [M, K] pixel columns
    cv = torch.floor(v[idx].detach()).long()[:, None] + dv
    inside = (cu >= 0) & (cu < camera.width) & (cv >= 0) & (cv < camera.height)
    dist = torch.sqrt(
        (cu + 0.5 - u[idx, None]) ** 2 + (cv + 0.5 - v[idx, None]) ** 2 + 1e-12
    )  # [M, K], differentiable in u, v
    near = dist.detach() <= rho[idx, None].detach() + reach
    mask = inside & near
    point = idx[:, None].expand_as(cu)[mask]
    pixel = (cv * camera.width + cu)[mask]
    return point, pixel, dist[mask]


def splat(
    points: Tensor,
    colors: Tensor,
    camera: Camera,
    radii: Tensor | float = 0.01,
    *,
    opacity: Tensor | None = None,
    background: Tensor | tuple[float, float, float] = (1.0, 1.0, 1.0),
    soft: bool = False,
    sigma: float = 0.5,
    gamma: float = 1e-2,
) -> SplatOutput:
    """Rasterise points as camera-facing discs.

    Args:
        points: ``[N, 3]`` world positions.
        colors: ``[N, 3]`` colours (any range; floats for gradients).
        camera: the camera (:class:`~lightning_pc.viz.camera.Camera`).
        radii: ``[N]`` or a scalar world radius of each disc.
        opacity: ``[N]`` opacities in ``[0, 1]`` (soft mode; default 1).
        background: the colour of uncovered pixels, ``[3]``.
        soft: differentiable soft blending instead of a hard z-buffer.
        sigma: soft mode: width in pixels of a disc's edge.
        gamma: soft mode: depth temperature (smaller: closer to a z-buffer).

    Returns:
        A :class:`SplatOutput` with the ``[H, W, 3]`` image, coverage and depth.
    """
    n = points.shape[0]
    device, dtype = points.device, points.dtype
    colors = colors.to(dtype)
    radii_t = torch.as_tensor(radii, device=device, dtype=dtype).expand(n)
    bg = torch.as_tensor(background, device=device, dtype=dtype)
    h, w = camera.height, camera.width
    u, v, z = camera.project(points)
    rho = radii_t * camera.pixels_per_unit(z)  # [N] radii in pixels
    keep = (z > camera.near) & (z < camera.far) & torch.isfinite(u) & torch.isfinite(v)
    reach = 3.0 * sigma if soft else 0.0
    point, pixel, dist = _pairs(u, v, rho, reach, camera, keep)
    hw = h * w
    depth_img = torch.full((hw,), math.inf, device=device, dtype=dtype)

    if not soft:
        hit = dist.detach() <= rho[point].detach()
        point, pixel = point[hit], pixel[hit]
        pz = z[point].detach()
        depth_img = depth_img.scatter_reduce(0, pixel, pz, reduce="amin")
        front = pz <= depth_img[pixel]
        # Ties: the highest point index wins (deterministic on CPU: index_put is ordered).
        owner = torch.full((hw,), -1, dtype=torch.long, device=device)
        owner = owner.scatter_reduce(0, pixel[front], point[front], reduce="amax")
        covered = owner >= 0
        image = bg.expand(hw, 3).clone()
        image[covered] = colors[owner[covered]]
        alpha = covered.to(dtype)
        return SplatOutput(image.view(h, w, 3), alpha.view(h, w), depth_img.view(h, w))

    op = torch.ones(n, device=device, dtype=dtype) if opacity is None else opacity.to(dtype)
    a = op[point] * torch.sigmoid((rho[point] - dist) / sigma)  # [P] coverage
    zn = (z[point] - camera.near) / (camera.far - camera.near)
    logw = torch.log(a.clamp_min(1e-12)) - zn / gamma
    peak = torch.full((hw,), -math.inf, device=device, dtype=dtype)
    peak = peak.scatter_reduce(0, pixel, logw.detach(), reduce="amax")
    ew = torch.exp(logw - peak[pixel])
    norm = torch.zeros(hw, device=device, dtype=dtype).index_add(0, pixel, ew)
    wsum = torch.zeros(hw, 3, device=device, dtype=dtype).index_add(
        0, pixel, ew[:, None] * colors[point]
    )
    color = wsum / norm.clamp_min(1e-12)[:, None]
    log_clear = torch.zeros(hw, device=device, dtype=dtype).index_add(
        0, pixel, torch.log1p(-a.clamp(max=1 - 1e-6))
    )
    alpha = 1 - torch.exp(log_clear)  # [HW]
    image = alpha[:, None] * color + (1 - alpha[:, None]) * bg
    hard_hit = (dist.detach() <= rho[point].detach())
    depth_img = depth_img.scatter_reduce(
        0, pixel[hard_hit], z[point][hard_hit].detach(), reduce="amin"
    )
    return SplatOutput(image.view(h, w, 3), alpha.view(h, w), depth_img.view(h, w))
