"""Procedural shapes with part labels: no files, deterministic by seed.

Twelve classes built from surface samples of primitives, each point labelled with a part
(global part ids, ShapeNetPart-style: every class owns a contiguous range). Each sample
gets a random size, anisotropic stretch, rotation about the up axis (z), offset and noise,
all drawn from a generator seeded by ``(seed, split, index)``, so a sample is the same in
every process; augmentation randomness comes later, from the transforms.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch
from torch_geometric.data import Data

from lightning_pc.data.datasets.base import PointDataset, TransformFn

Rng = np.random.Generator
Parts = list[tuple[np.ndarray, int]]  # (points [n, 3], local part id)


def _split_counts(n: int, weights: Sequence[float]) -> list[int]:
    w = np.asarray(weights, dtype=np.float64)
    counts = np.floor(n * w / w.sum()).astype(int)
    counts[0] += n - counts.sum()
    return counts.tolist()


def _box(rng: Rng, n: int, size: Sequence[float], centre: Sequence[float] = (0, 0, 0)):
    sx, sy, sz = size
    areas = np.array([sy * sz, sy * sz, sx * sz, sx * sz, sx * sy, sx * sy])
    face = rng.choice(6, size=n, p=areas / areas.sum())
    p = (rng.random((n, 3)) - 0.5) * np.asarray(size)
    axis = face // 2
    sign = np.where(face % 2 == 0, -0.5, 0.5)
    p[np.arange(n), axis] = sign * np.asarray(size)[axis]
    return p + np.asarray(centre), face


def _sphere(rng: Rng, n: int, r: float, centre: Sequence[float] = (0, 0, 0)) -> np.ndarray:
    v = rng.normal(size=(n, 3))
    return r * v / np.linalg.norm(v, axis=1, keepdims=True) + np.asarray(centre)


def _tube(rng: Rng, n: int, r: float, z0: float, z1: float, xy: Sequence[float] = (0, 0)):
    t = rng.random(n) * 2 * np.pi
    return np.stack([xy[0] + r * np.cos(t), xy[1] + r * np.sin(t), rng.uniform(z0, z1, n)], 1)


def _disk(rng: Rng, n: int, r: float, z: float, xy: Sequence[float] = (0, 0)) -> np.ndarray:
    t = rng.random(n) * 2 * np.pi
    rad = r * np.sqrt(rng.random(n))
    return np.stack([xy[0] + rad * np.cos(t), xy[1] + rad * np.sin(t), np.full(n, z)], 1)


def _cone(rng: Rng, n: int, r: float, z0: float, z1: float, r_top: float = 0.0) -> np.ndarray:
    u = np.sqrt(rng.random(n))  # area-uniform along the slant
    rad = r_top + (r - r_top) * u
    t = rng.random(n) * 2 * np.pi
    return np.stack([rad * np.cos(t), rad * np.sin(t), z1 - (z1 - z0) * u], 1)


def sphere(rng: Rng, n: int) -> Parts:
    p = _sphere(rng, n, 0.8)
    return [(p[p[:, 2] >= 0], 0), (p[p[:, 2] < 0], 1)]


def cube(rng: Rng, n: int) -> Parts:
    p, face = _box(rng, n, (1.2, 1.2, 1.2))
    return [(p[face >= 4], 0), (p[face < 4], 1)]


def cylinder(rng: Rng, n: int) -> Parts:
    a, b = _split_counts(n, [3, 1])
    caps = np.concatenate([_disk(rng, b // 2, 0.5, -0.7), _disk(rng, b - b // 2, 0.5, 0.7)])
    return [(_tube(rng, a, 0.5, -0.7, 0.7), 0), (caps, 1)]


def cone(rng: Rng, n: int) -> Parts:
    a, b = _split_counts(n, [3, 1])
    return [(_cone(rng, a, 0.6, -0.6, 0.8), 0), (_disk(rng, b, 0.6, -0.6), 1)]


def torus(rng: Rng, n: int) -> Parts:
    u, v = rng.random(n) * 2 * np.pi, rng.random(n) * 2 * np.pi
    big, small = 0.6, 0.22
    rad = big + small * np.cos(v)
    p = np.stack([rad * np.cos(u), rad * np.sin(u), small * np.sin(v)], 1)
    return [(p[rad >= big], 0), (p[rad < big], 1)]


def pyramid(rng: Rng, n: int) -> Parts:
    a, b = _split_counts(n, [3, 1])
    base = np.concatenate([(rng.random((b, 2)) - 0.5) * 1.4, np.full((b, 1), -0.5)], 1)
    s, t = rng.random(a), rng.random(a)
    fold = s + t > 1
    s[fold], t[fold] = 1 - s[fold], 1 - t[fold]
    corners = np.array([[-0.7, -0.7], [0.7, -0.7], [0.7, 0.7], [-0.7, 0.7]])
    k = rng.integers(0, 4, a)
    c0, c1 = corners[k], corners[(k + 1) % 4]
    xy = c0 * (1 - s - t)[:, None] + c1 * s[:, None]  # apex at (0, 0) gets weight t
    z = -0.5 + 1.3 * t
    return [(np.concatenate([xy, z[:, None]], 1), 0), (base, 1)]


def capsule(rng: Rng, n: int) -> Parts:
    a, b = _split_counts(n, [2, 1])
    caps = _sphere(rng, b, 0.35)
    caps[:, 2] += np.where(caps[:, 2] >= 0, 0.45, -0.45)
    return [(_tube(rng, a, 0.35, -0.45, 0.45), 0), (caps, 1)]


def table(rng: Rng, n: int) -> Parts:
    a, b = _split_counts(n, [2, 1])
    top, _ = _box(rng, a, (1.6, 1.0, 0.08), (0, 0, 0.4))
    legs = [
        _tube(rng, c, 0.05, -0.5, 0.36, (x, y))
        for c, (x, y) in zip(
            _split_counts(b, [1, 1, 1, 1]), [(-0.7, -0.4), (0.7, -0.4), (0.7, 0.4), (-0.7, 0.4)]
        )
    ]
    return [(top, 0), (np.concatenate(legs), 1)]


def chair(rng: Rng, n: int) -> Parts:
    a, b, c = _split_counts(n, [2, 2, 1])
    seat, _ = _box(rng, a, (0.8, 0.8, 0.08), (0, 0, 0.0))
    back, _ = _box(rng, b, (0.8, 0.08, 0.8), (0, 0.36, 0.44))
    legs = [
        _tube(rng, m, 0.04, -0.6, -0.04, (x, y))
        for m, (x, y) in zip(
            _split_counts(c, [1, 1, 1, 1]),
            [(-0.35, -0.35), (0.35, -0.35), (0.35, 0.35), (-0.35, 0.35)],
        )
    ]
    return [(seat, 0), (back, 1), (np.concatenate(legs), 2)]


def lamp(rng: Rng, n: int) -> Parts:
    a, b, c = _split_counts(n, [1, 1, 2])
    return [
        (_disk(rng, a, 0.35, -0.8), 0),
        (_tube(rng, b, 0.03, -0.8, 0.3), 1),
        (_cone(rng, c, 0.45, 0.3, 0.8, r_top=0.2), 2),
    ]


def mug(rng: Rng, n: int) -> Parts:
    a, b = _split_counts(n, [4, 1])
    t = rng.random(b) * np.pi - np.pi / 2
    v = rng.random(b) * 2 * np.pi
    rad = 0.25 + 0.05 * np.cos(v)
    handle = np.stack([0.45 + rad * np.cos(t), 0.05 * np.sin(v), rad * np.sin(t)], 1)
    body = np.concatenate([_tube(rng, a - a // 5, 0.45, -0.5, 0.5), _disk(rng, a // 5, 0.45, -0.5)])
    return [(body, 0), (handle, 1)]


def dumbbell(rng: Rng, n: int) -> Parts:
    a, b = _split_counts(n, [1, 2])
    bar = _tube(rng, a, 0.06, -0.6, 0.6)[:, [2, 0, 1]]
    weights = _sphere(rng, b, 0.3)
    weights[:, 0] += np.where(weights[:, 0] >= 0, 0.6, -0.6)
    return [(bar, 0), (weights, 1)]


SHAPES: dict[str, tuple[Callable[[Rng, int], Parts], int]] = {
    "sphere": (sphere, 2),
    "cube": (cube, 2),
    "cylinder": (cylinder, 2),
    "cone": (cone, 2),
    "torus": (torus, 2),
    "pyramid": (pyramid, 2),
    "capsule": (capsule, 2),
    "table": (table, 2),
    "chair": (chair, 3),
    "lamp": (lamp, 3),
    "mug": (mug, 2),
    "dumbbell": (dumbbell, 2),
}
CLASS_NAMES: list[str] = list(SHAPES)
PART_OFFSETS: list[int] = np.cumsum([0] + [k for _, k in SHAPES.values()]).tolist()
NUM_PARTS: int = PART_OFFSETS[-1]
SPLIT_IDS = {"train": 0, "val": 1, "test": 2}


def make_shape(
    label: int, num_points: int, rng: Rng, noise: float = 0.01
) -> tuple[np.ndarray, np.ndarray]:
    """Sample one shape of class ``label`` with a random size, pose and noise.

    Returns:
        ``(pos [num_points, 3] float32, part [num_points] int64)`` with global part ids.
    """
    fn, _ = SHAPES[CLASS_NAMES[label]]
    parts = fn(rng, num_points)
    pos = np.concatenate([p for p, _ in parts])
    part = np.concatenate([np.full(len(p), k, dtype=np.int64) for p, k in parts])
    part += PART_OFFSETS[label]
    stretch = rng.uniform(0.8, 1.2, 3) * rng.uniform(0.5, 1.0)
    angle = rng.uniform(0, 2 * np.pi)
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    pos = (pos * stretch) @ rot.T + rng.uniform(-0.1, 0.1, 3)
    pos += rng.normal(scale=noise, size=pos.shape)
    order = rng.permutation(len(pos))
    return pos[order].astype(np.float32), part[order]


class SyntheticShapes(PointDataset):
    """Procedural shapes for classification or part segmentation.

    Args:
        num_samples: dataset length (classes cycle, so it is balanced).
        num_points: points per shape.
        split: ``"train"``, ``"val"`` or ``"test"`` (different shapes for each).
        seed: base seed of the shapes.
        task: ``"classification"`` (``y [1]`` class) or ``"part_segmentation"``
            (``y [N]`` global part ids, ``category [1]`` class).
        noise: standard deviation of the Gaussian noise on the points.
        transform: per-sample transform.
    """

    def __init__(
        self,
        num_samples: int = 240,
        num_points: int = 1024,
        split: Literal["train", "val", "test"] = "train",
        seed: int = 0,
        task: Literal["classification", "part_segmentation"] = "classification",
        noise: float = 0.01,
        transform: TransformFn | None = None,
    ) -> None:
        super().__init__(transform)
        if split not in SPLIT_IDS:
            raise ValueError(f"split must be one of {list(SPLIT_IDS)}, got {split!r}")
        if task not in ("classification", "part_segmentation"):
            raise ValueError(f"unknown task {task!r}")
        self.num_samples, self.num_points = num_samples, num_points
        self.split, self.seed, self.task, self.noise = split, seed, task, noise

    def __len__(self) -> int:
        return self.num_samples

    def label(self, index: int) -> int:
        """Class of sample ``index``."""
        return index % len(CLASS_NAMES)

    def raw_sample(self, index: int, generator: torch.Generator) -> Data:
        rng = np.random.default_rng([self.seed, SPLIT_IDS[self.split], index])
        label = self.label(index)
        pos, part = make_shape(label, self.num_points, rng, self.noise)
        data = Data(pos=torch.from_numpy(pos))
        if self.task == "classification":
            data.y = torch.tensor([label])
        else:
            data.y = torch.from_numpy(part)
            data.category = torch.tensor([label])
        return data
