"""A user's own point clouds, ImageFolder style: ``root/{train,val,test}/<class>/<file>``.

Point files (PLY, PCD, XYZ, PTS, TXT, NPY) keep all their points; meshes (OFF, OBJ, STL and
PLY files with faces) are normalised and sampled on their faces by area, once, into the cache.
Class index = position in the sorted list of the ``train`` split's class folders.
"""

from __future__ import annotations

import functools
import warnings
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from lightning_pc.data.cache import CacheRecipe, parallel_map
from lightning_pc.data.errors import DataFormatError, MissingDataError
from lightning_pc.data.io import (
    normalize_vertices,
    ply_has_faces,
    read_mesh,
    read_point_file,
    sample_mesh,
)
from lightning_pc.data.packed import PackedWriter

SUFFIXES = (
    ".ply", ".pcd", ".xyz", ".pts", ".txt", ".npy", ".las", ".laz", ".off", ".obj", ".stl"
)
SPLITS = ("train", "val", "test")
LAYOUT_HELP = (
    "  <root>/train/<class>/<file>   (required; also val/ and test/ with the same classes)\n"
    f"  files: {' '.join(SUFFIXES)}"
)


def list_classes(root: str | Path) -> list[str]:
    """Sorted class folder names of ``root/train`` (static metadata for the data module).

    Raises:
        MissingDataError: no ``train`` folder with class subfolders.
    """
    train = Path(root).expanduser() / "train"
    classes = sorted(d.name for d in train.iterdir() if d.is_dir()) if train.is_dir() else []
    if not classes:
        raise MissingDataError("PointCloudFolder", train, LAYOUT_HELP)
    return classes


FEATURES = ("rgb", "normal")


def check_features(features: list[str] | None) -> list[str]:
    """Validate the per-point features to keep; returned in the order ``rgb``, ``normal``."""
    features = list(features or [])
    unknown = set(features) - set(FEATURES)
    if unknown:
        raise ValueError(f"unknown features {sorted(unknown)}; choose from {list(FEATURES)}")
    return [f for f in FEATURES if f in features]


def _read_any(
    item: tuple[str, str, int], points_per_mesh: int, seed: int, features: tuple[str, ...] = ()
) -> dict[str, np.ndarray]:
    path, rel, _ = item
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in (".off", ".obj", ".stl") or (suffix == ".ply" and ply_has_faces(p)):
        mesh = read_mesh(p)
        mesh.vertices = normalize_vertices(mesh.vertices)
        rng = np.random.default_rng([seed, zlib.crc32(rel.encode())])
        pos, normal = sample_mesh(mesh, points_per_mesh, rng, p)
        arrays = {"pos": pos, "normal": normal}
    else:
        arrays = read_point_file(p)
    out = {"pos": arrays["pos"]}
    for feature in features:
        if feature not in arrays:
            raise DataFormatError(
                p,
                f"has no {feature!r} (features={list(features)} needs it in every file; "
                "colours come from PLY/PCD files, normals from PLY/PCD files and meshes)",
            )
        value = arrays[feature]
        out[feature] = (
            np.round(np.clip(value, 0, 1) * 255).astype(np.uint8) if feature == "rgb" else value
        )
    return out


class PointCloudFolderRecipe(CacheRecipe):
    """Cache recipe for a point-cloud folder.

    Args:
        root: folder with ``train/`` (and optionally ``val/``, ``test/``).
        points_per_mesh: points sampled on each mesh.
        seed: seed of the mesh sampling.
        features: per-point features to cache: ``"rgb"`` and/or ``"normal"``.
    """

    name = "folder"
    version = 1

    def __init__(
        self,
        root: str | Path,
        points_per_mesh: int = 10000,
        seed: int = 0,
        features: list[str] | None = None,
    ) -> None:
        self._root = Path(root).expanduser()
        self.features = check_features(features)
        self.class_names = list_classes(self._root)
        self.points_per_mesh, self.seed = points_per_mesh, seed
        self._items: dict[str, list[tuple[str, str, int]]] | None = None

    @property
    def root(self) -> Path:
        return self._root

    def params(self) -> dict[str, Any]:
        return {
            "points_per_mesh": self.points_per_mesh,
            "seed": self.seed,
            "classes": self.class_names,
            "features": self.features,
        }

    def items(self) -> dict[str, list[tuple[str, str, int]]]:
        """Per present split: ``(path, relative name, label)``, sorted.

        Raises:
            MissingDataError: a ``train`` class folder without a single readable file (its
                class would have no training samples), or a split without files.

        Warns:
            A ``val``/``test`` class folder without files, and files whose suffix is not
            read (hidden files such as ``.DS_Store`` are skipped silently).
        """
        if self._items is None:
            out: dict[str, list[tuple[str, str, int]]] = {}
            ignored: Counter[str] = Counter()
            for split in SPLITS:
                folder = self._root / split
                if not folder.is_dir():
                    continue
                rows: list[tuple[str, str, int]] = []
                for d in sorted(p for p in folder.iterdir() if p.is_dir()):
                    if d.name not in self.class_names:
                        raise MissingDataError(
                            "PointCloudFolder", d, f"a class of train/: {self.class_names}"
                        )
                    label = self.class_names.index(d.name)
                    found = len(rows)
                    for f in sorted(d.rglob("*")):
                        if not f.is_file() or f.name.startswith("."):
                            continue
                        if f.suffix.lower() in SUFFIXES:
                            rows.append((str(f), f.relative_to(self._root).as_posix(), label))
                        else:
                            ignored[f.suffix.lower() or f.name] += 1
                    if len(rows) == found:
                        if split == "train":
                            raise MissingDataError(
                                "PointCloudFolder",
                                d,
                                "at least one point or mesh file in every class folder of "
                                f"train/ (class {d.name!r} would have no training samples)\n"
                                + LAYOUT_HELP,
                            )
                        warnings.warn(
                            f"PointCloudFolder: {d} holds no point or mesh file: class "
                            f"{d.name!r} has no {split} samples",
                            stacklevel=2,
                        )
                if not rows:
                    raise MissingDataError("PointCloudFolder", folder, LAYOUT_HELP)
                out[split] = rows
            if ignored:
                kinds = ", ".join(f"{n} {s}" for s, n in sorted(ignored.items()))
                warnings.warn(
                    f"PointCloudFolder: {self._root}: skipped files of unsupported types "
                    f"({kinds}); readable: {' '.join(SUFFIXES)}",
                    stacklevel=2,
                )
            self._items = out
        return self._items

    def raw_files(self) -> list[Path]:
        return sorted(Path(p) for rows in self.items().values() for p, _, _ in rows)

    def build(self, out: Path) -> None:
        fn = functools.partial(
            _read_any,
            points_per_mesh=self.points_per_mesh,
            seed=self.seed,
            features=tuple(self.features),
        )
        for split, items in self.items().items():
            writer = PackedWriter(out / split)
            for (path, rel, label), arrays in zip(
                items, parallel_map(fn, items, f"folder {split}")
            ):
                if len(arrays["pos"]) == 0:
                    raise DataFormatError(path, "no points")
                writer.append(rel, arrays, {"label": label})
            writer.close()
