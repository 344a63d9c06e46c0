"""Write a tiny SemanticKITTI release: sequences 00 (train), 08 (val), 11 (test, no labels).

Usage: ``python tests/data/semantickitti/make_fixture.py OUT_DIR``. Each scan has a road
(id 40), a parking patch (44), a building wall (50), a parked car (10) and a moving car
(252, which the learning map folds into car), a few outliers (1: ignored) and some
unlabelled points (0); instance ids sit in the upper 16 bits of the car labels.
Files: ``OUT_DIR/dataset/sequences/NN/velodyne/NNNNNN.bin`` (float32 x y z intensity)
and ``labels/NNNNNN.label`` (uint32).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def scan(rng: np.random.Generator, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    parts = []
    road = np.c_[rng.uniform(-10, 10, n), rng.uniform(-3, 3, n), rng.normal(-1.7, 0.02, n)]
    parts.append((road, 40))
    park = np.c_[rng.uniform(-10, 10, n // 4), rng.uniform(3, 5, n // 4), np.full(n // 4, -1.6)]
    parts.append((park, 44))
    wall = np.c_[rng.uniform(-10, 10, n // 2), np.full(n // 2, 8.0), rng.uniform(-1.7, 3, n // 2)]
    parts.append((wall, 50))
    car = np.c_[rng.uniform(2, 6, n // 4), rng.uniform(-2, 0, n // 4), rng.uniform(-1.7, -0.2, n // 4)]
    parts.append((car, 10 | (7 << 16)))
    moving = car + [-8, 0, 0]
    parts.append((moving, 252 | (9 << 16)))
    parts.append((rng.uniform(-20, 20, (8, 3)), 1))
    parts.append((rng.uniform(-20, 20, (12, 3)), 0))
    pos = np.concatenate([p for p, _ in parts])
    raw = np.concatenate([np.full(len(p), lab, dtype=np.uint32) for p, lab in parts])
    intensity = rng.uniform(0, 1, (len(pos), 1))
    order = rng.permutation(len(pos))
    return np.c_[pos, intensity][order].astype("<f4"), raw[order].astype("<u4")


def make_release(out: Path) -> Path:
    root = out / "dataset"
    rng = np.random.default_rng(0)
    for seq, frames, labelled in (("00", 2, True), ("08", 2, True), ("11", 1, False)):
        folder = root / "sequences" / seq
        (folder / "velodyne").mkdir(parents=True, exist_ok=True)
        if labelled:
            (folder / "labels").mkdir(exist_ok=True)
        for frame in range(frames):
            points, labels = scan(rng)
            points.tofile(folder / "velodyne" / f"{frame:06d}.bin")
            if labelled:
                labels.tofile(folder / "labels" / f"{frame:06d}.label")
    return out


if __name__ == "__main__":
    make_release(Path(sys.argv[1] if len(sys.argv) > 1 else "semantickitti"))
