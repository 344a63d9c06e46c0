"""Per-sample point-cloud transforms, composable from YAML (``class_path`` / ``init_args``).

Every transform maps a PyG ``Data`` to a ``Data`` and draws randomness only from the
``generator`` it is given (see :mod:`lightning_pc.data.seeding`), so augmentation is
reproducible under ``seed_everything`` and differs per worker and rank. Transforms that
drop points index every per-point attribute (``pos``, ``x``, ``y``, ``normal``, ...).
Linear transforms also transform ``normal`` (by the inverse transpose, renormalised).
"""

from __future__ import annotations

import collections.abc
import difflib
import importlib
import inspect
import math
import types
from collections.abc import Sequence
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import numpy as np
import torch
from torch_geometric.data import Data

__all__ = [
    "Transform",
    "Compose",
    "NormalizeScale",
    "RandomRotate",
    "RandomScale",
    "RandomFlip",
    "RandomShear",
    "RandomTranslate",
    "RandomJitter",
    "RandomDropout",
    "RandomSubsample",
    "FarthestPointSubsample",
    "GridSubsample",
    "ShufflePoints",
    "ChromaticJitter",
    "ChromaticAutoContrast",
    "ChromaticTranslation",
    "RandomColorDrop",
    "NormalizeColor",
    "CenterShift",
    "PointClip",
    "ElasticDistortion",
    "SphereCrop",
    "build_transforms",
    "TransformSpecError",
]

TransformSpec = str | dict[str, Any]


class Transform:
    """Base class: subclasses implement :meth:`forward`."""

    def __call__(self, data: Data, generator: torch.Generator | None = None) -> Data:
        return self.forward(data, generator)

    def forward(self, data: Data, generator: torch.Generator | None) -> Data:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


def index_points(data: Data, index: torch.Tensor) -> Data:
    """Keep the points ``index`` in every per-point tensor attribute of ``data``."""
    n = data.pos.size(0)
    for key, value in list(data.items()):
        if torch.is_tensor(value) and value.dim() >= 1 and value.size(0) == n and n > 1:
            data[key] = value[index]
        elif key == "pos":
            data[key] = value[index]
    return data


def _apply_scale(data: Data, scale: torch.Tensor) -> Data:
    """``pos <- pos * s`` per axis; normals by ``1 / s``, renormalised."""
    data.pos = data.pos * scale
    normal = getattr(data, "normal", None)
    if normal is not None:
        n = normal / scale
        data.normal = n / n.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return data


def _apply_linear(data: Data, matrix: torch.Tensor) -> Data:
    """``pos <- pos @ M^T``; normals by ``M^{-T}``, renormalised."""
    data.pos = data.pos @ matrix.T
    normal = getattr(data, "normal", None)
    if normal is not None:
        n = normal @ torch.linalg.inv(matrix)
        data.normal = n / n.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return data


class Compose(Transform):
    """Apply transforms in order.

    Args:
        transforms: the transforms.
    """

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def forward(self, data: Data, generator: torch.Generator | None) -> Data:
        for transform in self.transforms:
            data = transform(data, generator)
        return data


class NormalizeScale(Transform):
    """Centre on the centroid and scale into the unit sphere."""

    def forward(self, data: Data, generator: torch.Generator | None) -> Data:
        pos = data.pos - data.pos.mean(dim=0, keepdim=True)
        scale = pos.norm(dim=1).max().clamp_min(1e-12)
        data.pos = pos / scale
        return data


def _axis_rotation(axis: int, angle: float) -> torch.Tensor:
    """The right-handed rotation by ``angle`` radians about ``axis`` (0, 1, 2: x, y, z): a
    positive angle turns y to z about x, z to x about y, x to y about z."""
    c, s = math.cos(angle), math.sin(angle)
    i, j = ((1, 2), (2, 0), (0, 1))[axis]
    m = torch.eye(3)
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    return m


def _check_probability(name: str, p: float) -> None:
    if not 0 <= p <= 1:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p}")


def _happens(p: float, generator: torch.Generator | None) -> bool:
    """One Bernoulli(``p``) draw; none at all when ``p`` is 1 (the stream is left as it was)."""
    return p >= 1 or torch.rand(1, generator=generator).item() < p


class RandomRotate(Transform):
    """Random rotation about one axis (the up axis), or uniformly over SO(3).

    Pointcept's ``RandomRotate(angle=[a, b], axis, center, p)`` (angles in multiples of pi)
    is ``RandomRotate(axis, degrees=[180 a, 180 b], center, p)``: its ``center=[0, 0, 0]`` is
    ``"origin"``, its default ``center=None`` is ``"bbox"``.

    Args:
        axis: ``"x"``, ``"y"``, ``"z"`` for a rotation about that axis (right-handed), ``"so3"``
            for a uniformly random rotation.
        max_degrees: angle drawn from ``U(-max_degrees, max_degrees)`` (axis mode only).
        degrees: ``[low, high]``: the angle drawn from ``U(low, high)`` degrees instead.
        p: probability of rotating at all (one draw before the angle when below 1).
        center: the fixed point: ``"origin"``, ``"bbox"`` (the centre of the cloud's bounding
            box) or ``[x, y, z]``.
    """

    def __init__(
        self,
        axis: Literal["x", "y", "z", "so3"] = "z",
        max_degrees: float = 180.0,
        degrees: Sequence[float] | None = None,
        p: float = 1.0,
        center: Literal["origin", "bbox"] | Sequence[float] = "origin",
    ):
        if axis not in ("x", "y", "z", "so3"):
            raise ValueError(f"axis must be x, y, z or so3, got {axis!r}")
        if degrees is not None:
            if axis == "so3":
                raise ValueError("degrees applies to a rotation about x, y or z, not so3")
            if max_degrees != 180.0:
                raise ValueError("give max_degrees or degrees, not both")
            if len(degrees) != 2 or not degrees[0] <= degrees[1]:
                raise ValueError(f"degrees must be [low, high] with low <= high, got {degrees}")
            degrees = [float(d) for d in degrees]
        _check_probability("p", p)
        if isinstance(center, str):
            if center not in ("origin", "bbox"):
                raise ValueError(f"center must be 'origin', 'bbox' or [x, y, z], got {center!r}")
        elif len(center) != 3:
            raise ValueError(f"center must be 'origin', 'bbox' or [x, y, z], got {center!r}")
        else:
            center = [float(c) for c in center]
        self.axis = axis
        self.max_degrees = max_degrees
        self.degrees = degrees
        self.p = p
        self.center = center

    def forward(self, data: Data, generator: torch.Generator | None) -> Data:
        if not _happens(self.p, generator):
            return data
        if self.axis == "so3":
            q = torch.randn(4, generator=generator, dtype=torch.float64)
            w, x, y, z = (q / q.norm()).tolist()
            m = torch.tensor(
                [
                    [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                    [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                    [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
                ]
            )
        else:
            u = torch.rand(1, generator=generator).item()
            if self.degrees is None:
                angle = math.radians(self.max_degrees) * (u * 2 - 1)
            else:
                low, high = self.degrees
                angle = math.radians(low + (high - low) * u)
            m = _axis_rotation("xyz".index(self.axis), angle)
        m = m.to(data.pos.dtype)
        if self.center == "origin":
            return _apply_linear(data, m)
        if self.center == "bbox":
            c = (data.pos.min(0).values + data.pos.max(0).values) / 2
        else:
            c = torch.tensor(self.center, dtype=data.pos.dtype)
        data.pos = data.pos - c
        data = _apply_linear(data, m)
        data.pos = data.pos + c
        return data


class RandomScale(Transform):
    """Scale by a factor drawn from ``U(low, high)`` per axis (or one for all axes).

    Args:
        low: lower bound (DGCNN uses 2/3).
        high: upper bound (DGCNN uses 3/2).
        anisotropic: one factor per axis.
    """

    def __init__(self, low: float = 2 / 3, high: float = 1.5, anisotropic: bool = True) -> None:
        if not 0 < low <= high:
            raise ValueError(f"need 0 < low <= high, got {low}, {high}")
        self.low, self.high, self.anisotropic = low, high, anisotropic

    def forward(self, data: Data, generator: torch.Generator | None) -> Data:
        u = torch.rand(3 if self.anisotropic else 1, generator=generator)
        s = (self.low + (self.high - self.low) * u).expand(3)
        return _apply_scale(data, s.to(data.pos.dtype))


class RandomFlip(Transform):
    """Mirror each listed axis (``x <- -x``) independently with probability ``p``; normals
    follow. Pointcept's ``RandomFlip(p)`` is ``RandomFlip(p, axes="xy")`` (x drawn first).

    Args:
        p: probability of mirroring each axis.
        axes: the axes that may be mirrored, e.g. ``"xy"`` (the horizontal ones).
    """

    def __init__(self, p: float = 0.5, axes: str = "xy") -> None:
        _check_probability("p", p)
        if not axes or any(a not in "xyz" for a in axes) or len(set(axes)) != len(axes):
            raise ValueError(f"axes must be distinct letters of 'xyz', got {axes!r}")
        self.p, self.axes = p, axes

    def forward(self, data: Data, generator: torch.Generator | None) -> Data:
        sign = torch.ones(3, dtype=data.pos.dtype)
        for a in self.axes:
            if torch.rand(1, generator=generator).item() < self.p:
                sign["xyz".index(a)] = -1
        if (sign > 0).all():
            return data
        return _apply_scale(data, sign)


class RandomShear(Transform):
    """Shear: ``I + N(0, sigma)`` off-diagonal terms.

    Args:
        sigma: standard deviation of the off-diagonal terms.
    """

    def __init__(self, sigma: float = 0.1) -> None:
        self.sigma = sigma

    def forward(self, data: Data, generator: torch.Generator | None) -> Data:
        m = torch.randn(3, 3, generator=generator) * self.sigma
        m.fill_diagonal_(0)
        return _apply_linear(data, (torch.eye(3) + m).to(data.pos.dtype))


class RandomTranslate(Transform):
    """Shift the whole cloud by ``U(-max_shift, max_shift)`` per axis.

    Args:
        max_shift: bound of the shift.
    """

    def __init__(self, max_shift: float = 0.2) -> None:
        self.max_shift = max_shift

    def forward(self, data: Data, generator: torch.Generator | None) -> Data:
        shift = (torch.rand(3, generator=generator) * 2 - 1) * self.max_shift
        data.pos = data.pos + shift.to(data.pos.dtype)
        return data


class RandomJitter(Transform):
    """Add clipped Gaussian noise to every point: ``clip(N(0, sigma), -clip, clip)``.

    Args:
        sigma: noise standard deviation.
        clip: absolute bound of the noise.
    """

    def __init__(self, sigma: float = 0.01, clip: float = 0.05) -> None:
        self.sigma, self.clip = sigma, clip

    def forward(self, data: Data, generator: torch.Generator | None) -> Data:
        noise = torch.randn(data.pos.shape, generator=generator) * self.sigma
        data.pos = data.pos + noise.clamp_(-self.clip, self.clip).to(data.pos.dtype)
        return data


class RandomDropout(Transform):
    """Drop a random fraction ``r ~ U(0, max_ratio)`` of the points (at least one stays), or
    exactly ``ratio`` of them; with probability ``p``.

    Pointcept's ``RandomDropout(dropout_ratio, dropout_application_ratio)`` is
    ``RandomDropout(ratio=dropout_ratio, p=dropout_application_ratio)``: it keeps
    ``int(N * (1 - ratio))`` points drawn without replacement (here in their input order).

    Args:
        max_ratio: largest fraction dropped (PointNet++ uses 0.875), each point dropped
            independently.
        ratio: the exact fraction dropped instead (``max_ratio`` left at its default).
        p: probability of dropping at all (one draw first when below 1).
    """

    def __init__(
        self, max_ratio: float = 0.875, ratio: float | None = None, p: float = 1.0
    ) -> None:
        if not 0 <= max_ratio < 1:
            raise ValueError(f"max_ratio must be in [0, 1), got {max_ratio}")
        if ratio is not None:
            if max_ratio != 0.875:
                raise ValueError("give max_ratio or ratio, not both")
            if not 0 <= ratio < 1:
                raise ValueError(f"ratio must be in [0, 1), got {ratio}")
        _check_probability("p", p)
        self.max_ratio, self.ratio, self.p = max_ratio, ratio, p

    def forward(self, data: Data, generator: torch.Generator | None) -> Data:
        if not _happens(self.p, generator):
            return data
        n = data.pos.size(0)
        if self.ratio is not None:
            count = max(1, int(n * (1 - self.ratio)))
            keep = torch.randperm(n, generator=generator)[:count].sort().values
            return index_points(data, keep)
        ratio = torch.rand(1, generator=generator).item() * self.max_ratio
        mask = torch.rand(n, generator=generator) >= ratio
        if not mask.any():
            mask[0] = True
        return index_points(data, mask.nonzero().view(-1))


class RandomSubsample(Transform):
    """Keep ``num_points`` points drawn without replacement (all of them if fewer).

    Args:
        num_points: points to keep.
        pad: draw with replacement when the cloud has fewer points, to a fixed size.
    """

    def __init__(self, num_points: int, pad: bool = False) -> None:
        self.num_points, self.pad = num_points, pad

    def forward(self, data: Data, generator: torch.Generator | None) -> Data:
        n = data.pos.size(0)
        if n > self.num_points:
            idx = torch.randperm(n, generator=generator)[: self.num_points]
        elif self.pad and n < self.num_points:
            extra = torch.randint(n, (self.num_points - n,), generator=generator)
            idx = torch.cat([torch.randperm(n, generator=generator), extra])
        else:
            return data
        return index_points(data, idx)


class FarthestPointSubsample(Transform):
    """Keep ``num_points`` points by farthest-point sampling (``lightning_pc.ops.fps``).

    Args:
        num_points: points to keep (all if the cloud has fewer).
        random_start: start from a random point (drawn from the sample generator); else
            from point 0, deterministically.
    """

    def __init__(self, num_points: int, random_start: bool = True) -> None:
        self.num_points, self.random_start = num_points, random_start

    def forward(self, data: Data, generator: torch.Generator | None) -> Data:
        from lightning_pc.ops import fps

        n = data.pos.size(0)
        if n <= self.num_points:
            return data
        start = int(torch.randint(n, (1,), generator=generator)) if self.random_start else 0
        order = (torch.arange(n) + start) % n  # fps starts at the first point of the cloud
        idx = fps(data.pos[order], None, ratio=self.num_points / n, random_start=False)
        return index_points(data, order[idx[: self.num_points]])


class GridSubsample(Transform):
    """Keep one point per voxel of a regular grid (``lightning_pc.ops.grid_cluster``).

    Args:
        voxel_size: edge length of a voxel.
        training: ``True`` keeps a random point per voxel; ``False`` the first point (in
            input order) per voxel, deterministically.
        keep_inverse: store ``inverse_index`` ``[N_in]``, the kept point each input point maps
            to, so predictions can be projected back to every input point
            (``pred[inverse_index]``), and per-point labels of every input point as ``y_full``.
    """

    def __init__(self, voxel_size: float, training: bool = True, keep_inverse: bool = False):
        if voxel_size <= 0:
            raise ValueError(f"voxel_size must be positive, got {voxel_size}")
        self.voxel_size, self.training, self.keep_inverse = voxel_size, training, keep_inverse

    def forward(self, data: Data, generator: torch.Generator | None) -> Data:
        from lightning_pc.ops import grid_cluster

        pos = data.pos
        n = pos.size(0)
        cluster = grid_cluster(pos, torch.full((3,), self.voxel_size, dtype=pos.dtype))
        _, inverse = torch.unique(cluster, return_inverse=True)  # [N], voxel ids 0..V-1
        num_voxels = int(inverse.max()) + 1
        # Each voxel keeps its point of smallest score: a random rank in training, the input
        # position in evaluation. Scores are distinct, so exactly one point per voxel wins.
        score = torch.randperm(n, generator=generator) if self.training else torch.arange(n)
        best = torch.full((num_voxels,), n, dtype=torch.long)
        best.scatter_reduce_(0, inverse, score, "amin")
        keep = (score == best[inverse]).nonzero().view(-1)  # [V], in input order
        if self.keep_inverse:
            if getattr(data, "inverse_index", None) is not None:
                raise ValueError("GridSubsample(keep_inverse=True) applied twice")
            y = data.y if torch.is_tensor(data.y) and data.y.size(0) == n and n > 1 else None
            slot = torch.empty(num_voxels, dtype=torch.long)
            slot[inverse[keep]] = torch.arange(keep.numel())
            index_points(data, keep)
            data.inverse_index = slot[inverse]  # input point -> its voxel's kept point
            if y is not None:
                data.y_full = y
            return data
        return index_points(data, keep)


class ShufflePoints(Transform):
    """Randomly permute the points."""

    def forward(self, data: Data, generator: torch.Generator | None) -> Data:
        return index_points(data, torch.randperm(data.pos.size(0), generator=generator))


class _ColorTransform(Transform):
    """With probability ``p``, replace the RGB columns of ``x`` by :meth:`_colour` of them
    (clamped to 0-1)."""

    def __init__(self, p: float, channels_start: int) -> None:
        _check_probability("p", p)
        if channels_start < 0:
            raise ValueError(f"channels_start must be >= 0, got {channels_start}")
        self.p, self.channels_start = p, channels_start

    def forward(self, data: Data, generator: torch.Generator | None) -> Data:
        if self._skip(generator):
            return data
        return self._set(data, self._colour(self._rgb(data), generator))

    def _colour(self, rgb: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """The new colours of ``rgb [N, 3]`` (0-1)."""
        raise NotImplementedError

    def _rgb(self, data: Data) -> torch.Tensor:
        x = getattr(data, "x", None)
        if x is None or x.size(-1) < self.channels_start + 3:
            raise ValueError(f"{type(self).__name__}: data.x has no RGB columns")
        return x[:, self.channels_start : self.channels_start + 3]

    def _set(self, data: Data, rgb: torch.Tensor) -> Data:
        x = data.x.clone()
        x[:, self.channels_start : self.channels_start + 3] = rgb.clamp(0, 1)
        data.x = x
        return data

    def _skip(self, generator: torch.Generator | None) -> bool:
        return torch.rand(1, generator=generator).item() >= self.p


class ChromaticJitter(_ColorTransform):
    """Add Gaussian noise to RGB (0-1) in ``x[:, start:start+3]`` with probability ``p``.

    Pointcept's ``ChromaticJitter(p, std)`` on 0-255 colours (noise ``std * 255``, clipped
    to 0-255) is this with the same ``p`` and ``std`` on 0-1 colours.

    Args:
        std: noise standard deviation (in 0-1 units).
        p: probability of applying.
        channels_start: first RGB column of ``x``.
    """

    def __init__(self, std: float = 0.01, p: float = 0.95, channels_start: int = 0) -> None:
        super().__init__(p, channels_start)
        self.std = std

    def _colour(self, rgb: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return rgb + torch.randn(rgb.shape, generator=generator) * self.std


class ChromaticAutoContrast(_ColorTransform):
    """Stretch RGB to the full 0-1 range, blended by a random factor, with probability ``p``.

    As Pointcept's ``ChromaticAutoContrast(p, blend_factor)``: each channel is stretched by
    its own range (a channel without range becomes 0); a cloud with no colour range at all
    is left as it is (and draws no blend factor).

    Args:
        p: probability of applying.
        blend: fixed blend factor; ``None`` draws it from ``U(0, 1)``.
        channels_start: first RGB column of ``x``.
        blend_factor: Pointcept's name for ``blend`` (give one of the two).
    """

    def __init__(
        self,
        p: float = 0.2,
        blend: float | None = None,
        channels_start: int = 0,
        blend_factor: float | None = None,
    ):
        super().__init__(p, channels_start)
        if blend is not None and blend_factor is not None:
            raise ValueError("give blend or blend_factor, not both")
        self.blend = blend if blend is not None else blend_factor

    def forward(self, data: Data, generator: torch.Generator | None) -> Data:
        if self._skip(generator):
            return data
        rgb = self._rgb(data)
        lo, hi = rgb.min(0, keepdim=True).values, rgb.max(0, keepdim=True).values
        diff = hi - lo
        if not (diff > 0).any():
            return data
        stretched = (rgb - lo) / torch.where(diff > 0, diff, torch.ones_like(diff))
        b = self.blend if self.blend is not None else torch.rand(1, generator=generator).item()
        return self._set(data, (1 - b) * rgb + b * stretched)


class ChromaticTranslation(_ColorTransform):
    """Shift the three RGB channels (0-1) by ``U(-ratio, ratio)`` each, with probability
    ``p`` (clipped to 0-1). Pointcept's ``ChromaticTranslation(p, ratio)`` on 0-255 colours
    (a shift of ``U(-ratio, ratio) * 255``) is this with the same arguments.

    Args:
        p: probability of applying.
        ratio: largest shift, as a fraction of the colour range.
        channels_start: first RGB column of ``x``.
    """

    def __init__(self, p: float = 0.95, ratio: float = 0.05, channels_start: int = 0) -> None:
        super().__init__(p, channels_start)
        if ratio < 0:
            raise ValueError(f"ratio must be >= 0, got {ratio}")
        self.ratio = ratio

    def _colour(self, rgb: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        shift = (torch.rand(1, 3, generator=generator) - 0.5) * 2 * self.ratio
        return rgb + shift.to(rgb.dtype)


class RandomColorDrop(_ColorTransform):
    """Set RGB to zero with probability ``p`` (forces the model to use geometry).

    Args:
        p: probability of applying.
        channels_start: first RGB column of ``x``.
    """

    def __init__(self, p: float = 0.2, channels_start: int = 0) -> None:
        super().__init__(p, channels_start)

    def _colour(self, rgb: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return torch.zeros_like(rgb)


class NormalizeColor(Transform):
    """Divide the RGB columns of ``x`` by ``scale`` (255: 0-255 colours to 0-1), as
    Pointcept's ``NormalizeColor``. The data modules of this package already give RGB in
    0-1; this is for data of your own that does not.

    Args:
        scale: the divisor.
        channels_start: first RGB column of ``x``.
    """

    def __init__(self, scale: float = 255.0, channels_start: int = 0) -> None:
        if scale <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        if channels_start < 0:
            raise ValueError(f"channels_start must be >= 0, got {channels_start}")
        self.scale, self.channels_start = scale, channels_start

    def forward(self, data: Data, generator: torch.Generator | None) -> Data:
        x = getattr(data, "x", None)
        start = self.channels_start
        if x is None or x.size(-1) < start + 3:
            raise ValueError("NormalizeColor: data.x has no RGB columns")
        x = x.clone()
        x[:, start : start + 3] = x[:, start : start + 3] / self.scale
        data.x = x
        return data


class CenterShift(Transform):
    """Move the centre of the bounding box's x-y extent to 0, and with ``apply_z`` its floor
    (lowest z) to 0, as Pointcept's ``CenterShift(apply_z)``.

    Args:
        apply_z: also move the floor to ``z = 0`` (else z is left as it is).
    """

    def __init__(self, apply_z: bool = True) -> None:
        self.apply_z = apply_z

    def forward(self, data: Data, generator: torch.Generator | None) -> Data:
        lo, hi = data.pos.min(0).values, data.pos.max(0).values
        shift = (lo + hi) / 2
        shift[2] = lo[2] if self.apply_z else 0
        data.pos = data.pos - shift
        return data


class PointClip(Transform):
    """Clamp the coordinates into a box, as Pointcept's ``PointClip`` (points are moved onto
    the box, not dropped).

    Args:
        point_cloud_range: ``[x_min, y_min, z_min, x_max, y_max, z_max]``.
    """

    def __init__(
        self, point_cloud_range: Sequence[float] = (-80.0, -80.0, -3.0, 80.0, 80.0, 1.0)
    ) -> None:
        r = [float(v) for v in point_cloud_range]
        if len(r) != 6 or any(r[i] > r[i + 3] for i in range(3)):
            raise ValueError(
                f"point_cloud_range must be [x_min, y_min, z_min, x_max, y_max, z_max] with "
                f"each min <= max, got {list(point_cloud_range)}"
            )
        self.point_cloud_range = r

    def forward(self, data: Data, generator: torch.Generator | None) -> Data:
        r = torch.tensor(self.point_cloud_range, dtype=data.pos.dtype)
        data.pos = torch.maximum(torch.minimum(data.pos, r[3:]), r[:3])
        return data


def _box_blur(noise: np.ndarray, axis: int) -> np.ndarray:
    """Mean of each cell and its two neighbours along ``axis``, zeros beyond the edges."""
    pad = [(0, 0)] * noise.ndim
    pad[axis] = (1, 1)
    p = np.pad(noise, pad)
    n = noise.shape[axis]
    take = [np.take(p, range(k, k + n), axis=axis) for k in range(3)]
    return ((take[0] + take[1] + take[2]) / 3).astype(noise.dtype)


def elastic_distortion(
    pos: np.ndarray, noise: np.ndarray, granularity: float, magnitude: float
) -> np.ndarray:
    """One elastic distortion step of Mix3D/MinkowskiEngine (and Pointcept): ``noise``
    ``[D0, D1, D2, 3]`` on a grid of spacing ``granularity`` starting one cell below the
    points' minimum (``D = floor(extent / granularity) + 3`` per axis), smoothed twice by a
    3-cell box filter along each axis, trilinearly interpolated at every point, times
    ``magnitude``, added to ``pos [N, 3]``."""
    pos = np.asarray(pos, dtype=np.float64)
    for _ in range(2):
        for axis in range(3):
            noise = _box_blur(noise, axis)
    origin = pos.min(0) - granularity
    t = (pos - origin) / granularity
    dims = np.array(noise.shape[:3])
    i0 = np.clip(np.floor(t).astype(np.int64), 0, dims - 2)
    f = t - i0
    out = np.zeros_like(pos)
    for dx in (0, 1):
        wx = f[:, 0] if dx else 1 - f[:, 0]
        for dy in (0, 1):
            wy = f[:, 1] if dy else 1 - f[:, 1]
            for dz in (0, 1):
                wz = f[:, 2] if dz else 1 - f[:, 2]
                corner = noise[i0[:, 0] + dx, i0[:, 1] + dy, i0[:, 2] + dz]
                out += (wx * wy * wz)[:, None] * corner
    return pos + out * magnitude


def elastic_noise_shape(pos: np.ndarray, granularity: float) -> tuple[int, int, int, int]:
    """The shape of the noise grid :func:`elastic_distortion` takes for ``pos``."""
    extent = np.asarray(pos, dtype=np.float64)
    extent = extent.max(0) - extent.min(0)
    d = (extent // granularity).astype(np.int64) + 3
    return int(d[0]), int(d[1]), int(d[2]), 3


_MAX_NOISE_CELLS = 1 << 26


class ElasticDistortion(Transform):
    """Smooth random displacement field (Mix3D, MinkowskiEngine; Pointcept's
    ``ElasticDistortion``): with probability ``p``, for each ``(granularity, magnitude)``
    pair in turn, Gaussian noise on a grid of ``granularity`` metres, smoothed and
    interpolated at every point (:func:`elastic_distortion`), scaled by ``magnitude`` and
    added to ``pos``. Pointcept's default pairs ``[[0.2, 0.4], [0.8, 1.6]]`` and its fixed
    ``p`` of 0.95 are the defaults. The grid covers the cloud's bounding box: use it on
    rooms, not on 100 m LiDAR sweeps with a fine granularity.

    Args:
        distortion_params: ``[[granularity, magnitude], ...]`` in metres.
        p: probability of applying.
    """

    def __init__(
        self,
        distortion_params: Sequence[Sequence[float]] = ((0.2, 0.4), (0.8, 1.6)),
        p: float = 0.95,
    ) -> None:
        pairs = []
        for pair in distortion_params:
            if not isinstance(pair, list | tuple) or len(pair) != 2 or not float(pair[0]) > 0:
                raise ValueError(
                    f"distortion_params must be [[granularity, magnitude], ...] with positive "
                    f"granularities, got {distortion_params!r}"
                )
            pairs.append([float(pair[0]), float(pair[1])])
        _check_probability("p", p)
        self.distortion_params, self.p = pairs, p

    def forward(self, data: Data, generator: torch.Generator | None) -> Data:
        if not self.distortion_params or data.pos.size(0) == 0:
            return data
        if not torch.rand(1, generator=generator).item() < self.p:
            return data
        pos = data.pos.detach().cpu().numpy().astype(np.float64)
        for granularity, magnitude in self.distortion_params:
            shape = elastic_noise_shape(pos, granularity)
            if math.prod(shape) > _MAX_NOISE_CELLS:
                extent = (pos.max(0) - pos.min(0)).round(1).tolist()
                raise ValueError(
                    f"ElasticDistortion: a noise grid of {shape[:3]} cells for a cloud of "
                    f"extent {extent} m at granularity {granularity} m is too large; use it "
                    "on rooms or crops, or a coarser granularity"
                )
            noise = torch.randn(shape, generator=generator).numpy()
            pos = elastic_distortion(pos, noise, granularity, magnitude)
        data.pos = torch.from_numpy(pos).to(data.pos.dtype)
        return data


class SphereCrop(Transform):
    """Keep the ``point_max`` points nearest to a centre (all if the cloud has no more), in
    order of distance, as Pointcept's ``SphereCrop``: the training crop of its indoor
    recipes, on whole rooms after the voxel grid.

    Args:
        point_max: points kept.
        sample_rate: keep ``int(sample_rate * N)`` points instead (Pointcept's S3DIS recipe
            crops 60% of a room, then to at most 204,800 points).
        mode: ``"random"``: the centre is a random point; ``"center"``: the point
            ``N // 2`` (in input order), deterministically.
    """

    def __init__(
        self,
        point_max: int = 80000,
        sample_rate: float | None = None,
        mode: Literal["random", "center"] = "random",
    ) -> None:
        if point_max < 1:
            raise ValueError(f"point_max must be >= 1, got {point_max}")
        if sample_rate is not None and not 0 < sample_rate <= 1:
            raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate}")
        if mode not in ("random", "center"):
            raise ValueError(f"mode must be 'random' or 'center', got {mode!r}")
        self.point_max, self.sample_rate, self.mode = point_max, sample_rate, mode

    def forward(self, data: Data, generator: torch.Generator | None) -> Data:
        n = data.pos.size(0)
        keep = self.point_max if self.sample_rate is None else max(1, int(self.sample_rate * n))
        if n <= keep:
            return data
        if self.mode == "random":
            centre = data.pos[int(torch.randint(n, (1,), generator=generator))]
        else:
            centre = data.pos[n // 2]
        dist = (data.pos - centre).square().sum(1)
        order = torch.argsort(dist, stable=True)[:keep]
        return index_points(data, order)


class TransformSpecError(ValueError):
    """A transform spec that cannot be built; the message starts with where it is, e.g.
    ``train_transforms[2]: unknown transform 'RandomRotat'; did you mean 'RandomRotate'?``."""


def transform_names() -> list[str]:
    """The transforms that specs can name without a module path."""
    return [
        name
        for name in __all__
        if isinstance(globals().get(name), type)
        and issubclass(globals()[name], Transform)
        and name not in ("Transform", "Compose")
    ]


def _did_you_mean(word: str, choices: Sequence[str]) -> str:
    lowered = {c.lower(): c for c in choices}
    close = [lowered[word.lower()]] if word.lower() in lowered else []
    close = close or difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _resolve(class_path: str) -> type:
    if "." not in class_path:
        obj = globals().get(class_path)
        if isinstance(obj, type) and issubclass(obj, Transform) and class_path in __all__:
            return obj
        names = transform_names()
        hint = _did_you_mean(class_path, names)
        raise ValueError(
            f"unknown transform {class_path!r}{hint}"
            + ("" if hint else f" (known: {', '.join(names)}; or a full class path)")
        )
    module, _, name = class_path.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"cannot import transform {class_path!r} ({error})") from None
    if not isinstance(obj, type) or not callable(obj):
        raise ValueError(f"{class_path!r} is not a class")
    return obj


def _matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits a simple annotation (unknown annotations fit anything)."""
    origin = get_origin(hint)
    if hint is Any:
        return True
    if origin is Literal:
        return value in get_args(hint)
    if origin in (Union, types.UnionType):
        return any(_matches(value, h) for h in get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple, Sequence, collections.abc.Sequence):
        return isinstance(value, list | tuple)
    return True


def _type_name(hint: Any) -> str:
    if get_origin(hint) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(hint))
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _accepts(cls: type) -> str:
    params = [
        p
        for p in inspect.signature(cls).parameters.values()
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if not params:
        return f"{cls.__name__} takes no arguments"
    shown = [
        p.name
        if p.default is p.empty
        else f"{p.name}={p.default:.4g}"
        if isinstance(p.default, float)
        else f"{p.name}={p.default!r}"
        for p in params
    ]
    return f"{cls.__name__} accepts: {', '.join(shown)}"


def _build_one(spec: Any) -> Transform:
    """One transform from its spec; ``ValueError`` with a plain message when it cannot be."""
    if isinstance(spec, Transform):
        return spec
    if isinstance(spec, str):
        spec = {"class_path": spec}
    if hasattr(spec, "as_dict"):  # a jsonargparse Namespace
        spec = spec.as_dict()
    if not isinstance(spec, dict) or "class_path" not in spec:
        raise ValueError(
            f"a transform spec is a class name or a dict with 'class_path' (and optional "
            f"'init_args'), got {spec!r}"
        )
    extra = set(spec) - {"class_path", "init_args"}
    if extra:
        raise ValueError(
            f"unexpected keys {sorted(extra)} in transform spec {spec!r} (only 'class_path' "
            "and 'init_args')"
        )
    cls = _resolve(str(spec["class_path"]))
    args = spec.get("init_args") or {}
    if hasattr(args, "as_dict"):
        args = args.as_dict()
    if not isinstance(args, dict):
        raise ValueError(f"{cls.__name__}: init_args must be a mapping, got {args!r}")
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):
        signature = None
    if signature is not None:
        params = signature.parameters
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
        for key in args:
            if key not in params and not takes_any:
                hint = _did_you_mean(key, [p for p in params if p not in ("self",)])
                raise ValueError(f"{cls.__name__} has no argument {key!r}{hint} ({_accepts(cls)})")
        try:
            signature.bind(**args)
        except TypeError as error:
            raise ValueError(f"{cls.__name__}: {error} ({_accepts(cls)})") from None
        try:
            hints = get_type_hints(cls.__init__)  # type: ignore[misc]
        except Exception:  # noqa: BLE001 - annotations that do not resolve are not checked
            hints = {}
        for key, value in args.items():
            if key in hints and not _matches(value, hints[key]):
                raise ValueError(
                    f"{cls.__name__}: argument {key!r} must be {_type_name(hints[key])}, got "
                    f"{value!r} ({_accepts(cls)})"
                )
    try:
        return cls(**args)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{cls.__name__}: {error}") from None


def build_transforms(
    specs: Sequence[TransformSpec] | None, where: str = "transforms"
) -> Compose | None:
    """Build a :class:`Compose` from plain YAML-able specs.

    Each spec is checked before anything runs: the transform exists (a close name is
    suggested for a typo), its arguments exist, have the annotated types and satisfy its
    constructor.

    Args:
        specs: a list of ``{"class_path": name, "init_args": {...}}`` dicts (``name`` a
            class in this module or a full dotted path) or bare class names; ``None`` for no
            transforms.
        where: the specs' location, named in errors (``"data.init_args.train_transforms"``
            gives ``data.init_args.train_transforms[2]: ...``).

    Returns:
        The composed transform, or ``None``.

    Raises:
        TransformSpecError: a spec that cannot be built, located as ``where[index]``.

    Example:
        >>> build_transforms([{"class_path": "RandomScale", "init_args": {"low": 0.8}}])
    """
    if specs is None:
        return None
    if isinstance(specs, str | dict) or not isinstance(specs, Sequence):
        raise TransformSpecError(f"{where}: a list of transform specs, got {specs!r}")
    out = []
    for index, spec in enumerate(specs):
        try:
            out.append(_build_one(spec))
        except ValueError as error:
            raise TransformSpecError(f"{where}[{index}]: {error}") from None
    return Compose(out)
