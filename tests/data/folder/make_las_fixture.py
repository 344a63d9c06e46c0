"""Write a tiny LiDAR folder with per-point classification codes (LAS and LAZ).

Usage: ``python tests/data/folder/make_las_fixture.py OUT_DIR``. Layout (no class folders):
``OUT_DIR/train/tile_a.las`` (point format 3, colours; codes 2 ground, 5 high vegetation,
6 building), ``OUT_DIR/train/north/tile_b.laz`` (format 1, no colours; codes 2, 6, 7 noise),
``OUT_DIR/test/tile_c.las`` (codes 2, 6 and 9 water, a code the train files lack),
``OUT_DIR/train/README.txt`` (not a LAS file). Georeferenced (UTM-like) coordinates, 1 mm
scale. Returns the codes per file for the tests.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def _tile(
    path: Path, codes: list[int], n: int, seed: int, point_format: int, origin: float
) -> np.ndarray:
    import laspy

    rng = np.random.default_rng(seed)
    cls = rng.choice(codes, n).astype(np.uint8)
    xy = rng.uniform(0, 20, (n, 2))
    z = np.where(cls == 2, 0.0, np.where(cls == 6, 6.0, 3.0)) + rng.normal(0, 0.05, n)
    las = laspy.create(point_format=point_format, file_version="1.2")
    las.header.offsets = [origin, origin * 10, 0.0]
    las.header.scales = [0.001] * 3
    las.x, las.y, las.z = xy[:, 0] + origin, xy[:, 1] + origin * 10, z
    las.classification = cls
    las.intensity = rng.integers(0, 4000, n).astype(np.uint16)
    if point_format == 3:
        las.red, las.green, las.blue = (rng.integers(0, 65535, (3, n))).astype(np.uint16)
    path.parent.mkdir(parents=True, exist_ok=True)
    las.write(path, do_compress=path.suffix == ".laz")
    return cls


def make_las_folder(root: Path) -> dict[str, np.ndarray]:
    """Write the folder; returns each file's codes by its path under ``root``."""
    out = {
        "train/tile_a.las": _tile(root / "train/tile_a.las", [2, 5, 6], 300, 0, 3, 500_000.0),
        "train/north/tile_b.laz": _tile(
            root / "train/north/tile_b.laz", [2, 6, 7], 200, 1, 1, 500_020.0
        ),
        "test/tile_c.las": _tile(root / "test/tile_c.las", [2, 6, 9], 250, 2, 3, 500_040.0),
    }
    (root / "train" / "README.txt").write_text("survey notes, not a point file\n")
    return out


if __name__ == "__main__":
    make_las_folder(Path(sys.argv[1]))
