"""A user's own point clouds, ImageFolder style: ``root/{train,val,test}/<class>/<file>``.

Point files (PLY, PCD, XYZ, PTS, TXT, NPY) keep all their points; meshes (OFF, OBJ, STL and
PLY files with faces) are normalised and sampled on their faces by area, once, into the cache.
Class index = position in the sorted list of the ``train`` split's class folders.

With ``point_labels``, LAS/LAZ files give per-point labels instead: their classification
codes (ASPRS: 2 ground, 6 building ...), mapped to class indices by ``label_codes``; the
files may then lie anywhere under ``root/<split>/`` (class folders are not needed).
"""

from __future__ import annotations

import functools
import warnings
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from lightning_pc.data import formats
from lightning_pc.data.cache import CacheRecipe, parallel_map
from lightning_pc.data.errors import DataFormatError, MissingDataError
from lightning_pc.data.formats.las import classification_codes
from lightning_pc.data.formats.mesh import normalize_vertices, sample_mesh
from lightning_pc.data.packed import PackedWriter


def readable_suffixes() -> tuple[str, ...]:
    """The suffixes of the files read (point files and meshes), from the format table."""
    return formats.suffixes(points=True, meshes=True)


SUFFIXES = readable_suffixes()  # when this module was imported (formats registered later count)
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
IGNORE_INDEX = -1  # per-point label of classification codes not in label_codes

# ASPRS LAS 1.4 standard classification codes
ASPRS_CLASSES = {
    0: "never_classified", 1: "unclassified", 2: "ground", 3: "low_vegetation",
    4: "medium_vegetation", 5: "high_vegetation", 6: "building", 7: "low_point_noise",
    8: "model_key_point", 9: "water", 10: "rail", 11: "road_surface", 12: "overlap",
    13: "wire_guard", 14: "wire_conductor", 15: "transmission_tower",
    16: "wire_structure_connector", 17: "bridge_deck", 18: "high_noise",
}  # fmt: skip
LAS_SUFFIXES = (".las", ".laz")


def las_class_names(codes: list[int]) -> list[str]:
    """Names of LAS classification codes (ASPRS names, else ``code_<n>``)."""
    return [ASPRS_CLASSES.get(c, f"code_{c}") for c in codes]


def split_files(root: str | Path, split: str) -> list[Path]:
    """Every non-hidden file under ``root/split`` (recursively), sorted."""
    folder = Path(root).expanduser() / split
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def las_codes_present(files: list[Path]) -> list[int]:
    """The classification codes the LAS/LAZ ``files`` use, sorted (read chunk by chunk).

    Raises:
        MissingDataError: no LAS/LAZ file among ``files``.
        DataFormatError: an unreadable file.
    """
    las = [f for f in files if f.suffix.lower() in LAS_SUFFIXES]
    if not las:
        raise MissingDataError(
            "PointCloudFolder", files[0].parent if files else Path("."),
            "LAS/LAZ files with classification codes (point_labels=True)",
        )  # fmt: skip
    seen = np.zeros(256, dtype=bool)
    for path in las:
        seen |= classification_codes(path)
    return np.flatnonzero(seen).tolist()


def check_features(features: list[str] | None) -> list[str]:
    """Validate the per-point features to keep; returned in the order ``rgb``, ``normal``."""
    features = list(features or [])
    unknown = set(features) - set(FEATURES)
    if unknown:
        raise ValueError(f"unknown features {sorted(unknown)}; choose from {list(FEATURES)}")
    return [f for f in FEATURES if f in features]


def _read_any(
    item: tuple[str, str, int],
    points_per_mesh: int,
    seed: int,
    features: tuple[str, ...] = (),
    label_codes: tuple[int, ...] | None = None,
) -> dict[str, np.ndarray]:
    path, rel, _ = item
    p = Path(path)
    suffix = p.suffix.lower()
    if label_codes is not None:  # per-point labels from LAS classification codes
        if suffix not in LAS_SUFFIXES:
            raise DataFormatError(
                p, "point_labels=True reads labels from LAS/LAZ classification codes only"
            )
        arrays = formats.read_point_file(p)
        if "classification" not in arrays:
            raise DataFormatError(
                p, "has no classification codes (every point is 0, never classified)"
            )
        lut = np.full(256, IGNORE_INDEX, dtype=np.int16)
        lut[list(label_codes)] = np.arange(len(label_codes), dtype=np.int16)
        arrays["seg"] = lut[arrays.pop("classification")]
    elif (fmt := formats.lookup(p)) is not None and fmt.is_mesh(p):
        mesh = formats.read_mesh(p)
        mesh.vertices = normalize_vertices(mesh.vertices)
        rng = np.random.default_rng([seed, zlib.crc32(rel.encode())])
        pos, normal = sample_mesh(mesh, points_per_mesh, rng, p)
        arrays = {"pos": pos, "normal": normal}
    else:
        arrays = formats.read_point_file(p)
    out = {"pos": arrays["pos"]}
    if "seg" in arrays:
        out["seg"] = arrays["seg"]
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
        point_labels: cache per-point labels (``seg``) from the LAS/LAZ classification
            codes instead of one class per folder.
        label_codes: with ``point_labels``, the codes to learn, in class order; other
            codes get :data:`IGNORE_INDEX` (``None``: every code the train files use).
    """

    name = "folder"
    version = 1

    def __init__(
        self,
        root: str | Path,
        points_per_mesh: int = 10000,
        seed: int = 0,
        features: list[str] | None = None,
        point_labels: bool = False,
        label_codes: list[int] | None = None,
    ) -> None:
        self._root = Path(root).expanduser()
        self.features = check_features(features)
        self.label_codes: list[int] | None = None
        if point_labels:
            if label_codes is None:
                train = split_files(self._root, "train")
                if not train:
                    raise MissingDataError("PointCloudFolder", self._root / "train", LAYOUT_HELP)
                label_codes = las_codes_present(train)
            bad = [c for c in label_codes if not 0 <= c <= 255]
            if bad or len(set(label_codes)) != len(label_codes):
                raise ValueError(f"label_codes must be distinct codes 0-255, got {label_codes}")
            self.label_codes = [int(c) for c in label_codes]
            self.class_names = las_class_names(self.label_codes)
        elif label_codes is not None:
            raise ValueError("label_codes needs point_labels=True")
        else:
            self.class_names = list_classes(self._root)
        self.points_per_mesh, self.seed = points_per_mesh, seed
        self._items: dict[str, list[tuple[str, str, int]]] | None = None

    @property
    def root(self) -> Path:
        return self._root

    def params(self) -> dict[str, Any]:
        params = {
            "points_per_mesh": self.points_per_mesh,
            "seed": self.seed,
            "classes": self.class_names,
            "features": self.features,
        }
        if self.label_codes is not None:  # (absent otherwise: earlier caches stay valid)
            params["label_codes"] = self.label_codes
        return params

    def items(self) -> dict[str, list[tuple[str, str, int]]]:
        """Per present split: ``(path, relative name, label)``, sorted.

        Raises:
            MissingDataError: a ``train`` class folder without a single readable file (its
                class would have no training samples), or a split without files.

        Warns:
            A ``val``/``test`` class folder without files, and files whose suffix is not
            read (hidden files such as ``.DS_Store`` are skipped silently).
        """
        if self._items is None and self.label_codes is not None:
            self._items = self._point_label_items()
        if self._items is None:
            out: dict[str, list[tuple[str, str, int]]] = {}
            ignored: Counter[str] = Counter()
            readable = readable_suffixes()
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
                        if f.suffix.lower() in readable:
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
                    f"({kinds}); readable: {' '.join(readable)}",
                    stacklevel=2,
                )
            self._items = out
        return self._items

    def _point_label_items(self) -> dict[str, list[tuple[str, str, int]]]:
        """Every LAS/LAZ file under each split (label -1: the labels are per point)."""
        out: dict[str, list[tuple[str, str, int]]] = {}
        for split in SPLITS:
            files = split_files(self._root, split)
            rows = [
                (str(f), f.relative_to(self._root).as_posix(), IGNORE_INDEX)
                for f in files
                if f.suffix.lower() in LAS_SUFFIXES
            ]
            skipped = len(files) - len(rows)
            if skipped:
                warnings.warn(
                    f"PointCloudFolder: {self._root / split}: skipped {skipped} files that are "
                    "not LAS/LAZ (point_labels=True reads classification codes)",
                    stacklevel=3,
                )
            if rows:
                out[split] = rows
        if "train" not in out:
            raise MissingDataError(
                "PointCloudFolder", self._root / "train", "LAS/LAZ files (point_labels=True)"
            )
        return out

    def raw_files(self) -> list[Path]:
        return sorted(Path(p) for rows in self.items().values() for p, _, _ in rows)

    def build(self, out: Path) -> None:
        fn = functools.partial(
            _read_any,
            points_per_mesh=self.points_per_mesh,
            seed=self.seed,
            features=tuple(self.features),
            label_codes=None if self.label_codes is None else tuple(self.label_codes),
        )
        for split, items in self.items().items():
            writer = PackedWriter(out / split)
            for (path, rel, label), arrays in zip(
                items, parallel_map(fn, items, f"folder {split}")
            ):
                if len(arrays["pos"]) == 0:
                    raise DataFormatError(path, "no points")
                writer.append(rel, arrays, {} if "seg" in arrays else {"label": label})
            writer.close()
