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

import torch
from torch_geometric.data import Data

__all__ = [
    "Transform",
    "Compose",
    "NormalizeScale",
    "RandomRotate",
    "RandomScale",
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
    "RandomColorDrop",
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
    c, s = math.cos(angle), math.sin(angle)
    i, j = [a for a in range(3) if a != axis]
    m = torch.eye(3)
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    return m


class RandomRotate(Transform):
    """Random rotation about one axis (the up axis), or uniformly over SO(3).

    Args:
        axis: ``"x"``, ``"y"``, ``"z"`` for a rotation about that axis, ``"so3"`` for a
            uniformly random rotation.
        max_degrees: angle drawn from ``U(-max_degrees, max_degrees)`` (axis mode only).
    """

    def __init__(self, axis: Literal["x", "y", "z", "so3"] = "z", max_degrees: float = 180.0):
        if axis not in ("x", "y", "z", "so3"):
            raise ValueError(f"axis must be x, y, z or so3, got {axis!r}")
        self.axis = axis
        self.max_degrees = max_degrees

    def forward(self, data: Data, generator: torch.Generator | None) -> Data:
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
            u = torch.rand(1, generator=generator).item() * 2 - 1
            m = _axis_rotation("xyz".index(self.axis), math.radians(self.max_degrees) * u)
        return _apply_linear(data, m.to(data.pos.dtype))


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
    """Drop a random fraction ``r ~ U(0, max_ratio)`` of the points (at least one stays).

    Args:
        max_ratio: largest fraction dropped (PointNet++ uses 0.875).
    """

    def __init__(self, max_ratio: float = 0.875) -> None:
        if not 0 <= max_ratio < 1:
            raise ValueError(f"max_ratio must be in [0, 1), got {max_ratio}")
        self.max_ratio = max_ratio

    def forward(self, data: Data, generator: torch.Generator | None) -> Data:
        n = data.pos.size(0)
        ratio = torch.rand(1, generator=generator).item() * self.max_ratio
        keep = torch.rand(n, generator=generator) >= ratio
        if not keep.any():
            keep[0] = True
        return index_points(data, keep.nonzero().view(-1))


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

    Args:
        p: probability of applying.
        blend: fixed blend factor; ``None`` draws it from ``U(0, 1)``.
        channels_start: first RGB column of ``x``.
    """

    def __init__(self, p: float = 0.2, blend: float | None = None, channels_start: int = 0):
        super().__init__(p, channels_start)
        self.blend = blend

    def _colour(self, rgb: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        lo, hi = rgb.min(0, keepdim=True).values, rgb.max(0, keepdim=True).values
        stretched = (rgb - lo) / (hi - lo).clamp_min(1e-6)
        b = self.blend if self.blend is not None else torch.rand(1, generator=generator).item()
        return (1 - b) * rgb + b * stretched


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
        p for p in inspect.signature(cls).parameters.values()
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if not params:
        return f"{cls.__name__} takes no arguments"
    shown = [
        p.name if p.default is p.empty
        else f"{p.name}={p.default:.4g}" if isinstance(p.default, float)
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
