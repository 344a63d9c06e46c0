"""ModelNet10/40 in its three common layouts, parsed once into a packed cache.

Layouts (detected automatically by :func:`detect_layout`):

- ``raw``: Princeton meshes ``<root>/<class>/{train,test}/<class>_<NNNN>.off``; meshes are
  normalised into the unit sphere and ``points_per_shape`` points are sampled on their faces
  (by area) once, with the face normals.
- ``resampled``: ``modelnet40_normal_resampled`` (``x,y,z,nx,ny,nz`` text per shape).
- ``hdf5``: ``modelnet40_ply_hdf5_2048`` (``data``/``label`` arrays, no normals).
"""

from __future__ import annotations

import functools
import zlib
from pathlib import Path
from typing import Any, Literal

import numpy as np

from lightning_pc.data.cache import CacheRecipe, parallel_map
from lightning_pc.data.errors import DataFormatError, MissingDataError
from lightning_pc.data.io import (
    integer_labels,
    normalize_vertices,
    read_off,
    read_table,
    sample_mesh,
)
from lightning_pc.data.packed import PackedWriter

MODELNET40_CLASSES: list[str] = (
    "airplane bathtub bed bench bookshelf bottle bowl car chair cone cup curtain desk door "
    "dresser flower_pot glass_box guitar keyboard lamp laptop mantel monitor night_stand "
    "person piano plant radio range_hood sink sofa stairs stool table tent toilet tv_stand "
    "vase wardrobe xbox"
).split()
MODELNET10_CLASSES: list[str] = (
    "bathtub bed chair desk dresser monitor night_stand sofa table toilet".split()
)
Layout = Literal["raw", "resampled", "hdf5"]
LAYOUT_HELP = """\
  1. raw meshes:      <root>/<class>/{train,test}/<class>_<NNNN>.off   (ModelNet40.zip)
  2. resampled text:  <root>/modelnet40_shape_names.txt, modelnet40_{train,test}.txt,
                      <root>/<class>/<shape_id>.txt  (modelnet40_normal_resampled)
  3. hdf5:            <root>/train_files.txt, test_files.txt, shape_names.txt,
                      ply_data_{train,test}<i>.h5  (modelnet40_ply_hdf5_2048)"""
SPLITS = ("train", "test")


def class_names_for(num_classes: int) -> list[str]:
    """The static class list for ModelNet10 or ModelNet40."""
    if num_classes == 40:
        return list(MODELNET40_CLASSES)
    if num_classes == 10:
        return list(MODELNET10_CLASSES)
    raise ValueError(f"num_classes must be 10 or 40, got {num_classes}")


def _shape_names_file(folder: Path, num_classes: int) -> Path | None:
    # ModelNet10's listing is looked at for num_classes 40 too, so that a ModelNet10 folder
    # given with the wrong class count gets that error rather than "no dataset found"
    for n in dict.fromkeys((num_classes, 40, 10)):
        path = folder / f"modelnet{n}_shape_names.txt"
        if path.is_file():
            return path
    return None


def _is_raw(folder: Path) -> bool:
    return folder.is_dir() and any(
        (d / "train").is_dir() and any((d / "train").glob("*.off"))
        for d in folder.iterdir()
        if d.is_dir()
    )


def detect_layout(root: Path, num_classes: int) -> tuple[Layout, Path]:
    """Find which layout ``root`` (or a conventionally named subfolder) holds.

    Raises:
        MissingDataError: none of the three layouts is there.
    """
    candidates = [root] + [
        root / name
        for name in (
            f"ModelNet{num_classes}",
            "ModelNet40",
            "modelnet40_normal_resampled",
            "modelnet40_ply_hdf5_2048",
        )
    ]
    for folder in candidates:
        if not folder.is_dir():
            continue
        if _shape_names_file(folder, num_classes) is not None:
            return "resampled", folder
        if (folder / "train_files.txt").is_file() or any(folder.glob("ply_data_train*.h5")):
            return "hdf5", folder
        if _is_raw(folder):
            return "raw", folder
    raise MissingDataError(f"ModelNet{num_classes}", root, LAYOUT_HELP)


def _lines(path: Path) -> list[tuple[int, str]]:
    """Non-blank lines with their 1-based numbers."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise DataFormatError(path, f"cannot read ({err})") from err
    return [(i, s.strip()) for i, s in enumerate(text.splitlines(), 1) if s.strip()]


def check_class_names(names_file: Path, names: list[str], num_classes: int) -> None:
    """Refuse a class list (``shape_names.txt`` or ``modelnet*_shape_names.txt``) that does not
    fit ``num_classes``: ModelNet40 needs its 40 classes; ModelNet10 reads a list of its own 10
    classes, or the 40 (its classes are then selected).

    Raises:
        DataFormatError: one line naming the file, the count it lists and ``num_classes``.
    """
    counts = (40,) if num_classes == 40 else (10, 40)
    if len(names) not in counts:
        hint = " (set data num_classes to 10)" if len(names) == 10 else ""
        raise DataFormatError(
            names_file,
            f"lists {len(names)} classes, but num_classes is {num_classes}: the class count "
            f"given disagrees with the data{hint}",
        )
    expected = MODELNET40_CLASSES if len(names) == 40 else MODELNET10_CLASSES
    if sorted(names) != sorted(expected):
        unknown = sorted(set(names) - set(expected)) or sorted(set(expected) - set(names))
        raise DataFormatError(
            names_file,
            f"lists {len(names)} classes that are not ModelNet{len(names)}'s "
            f"(differing: {', '.join(unknown[:5])})",
        )


def _process_off(item: tuple[str, str, int], points: int, seed: int) -> dict[str, np.ndarray]:
    path, rel, _ = item
    mesh = read_off(path)
    if len(mesh.faces) == 0:
        raise DataFormatError(path, "mesh has no faces")
    mesh.vertices = normalize_vertices(mesh.vertices)
    rng = np.random.default_rng([seed, zlib.crc32(rel.encode())])
    pos, normal = sample_mesh(mesh, points, rng, path)
    return {"pos": pos, "normal": normal}


def _process_resampled(item: tuple[str, str, int]) -> dict[str, np.ndarray]:
    arr = read_table(item[0], 6, delimiter=",")
    return {"pos": np.ascontiguousarray(arr[:, :3]), "normal": np.ascontiguousarray(arr[:, 3:])}


class ModelNetRecipe(CacheRecipe):
    """Cache recipe for ModelNet (any layout).

    Args:
        root: dataset root (or a parent of a conventionally named folder).
        num_classes: 10 or 40; ModelNet10 is selected out of a ModelNet40 layout if needed.
        points_per_shape: points sampled per mesh (raw layout).
        seed: seed of the mesh sampling (raw layout).
    """

    name = "modelnet"
    version = 1

    def __init__(
        self, root: str | Path, num_classes: int = 40, points_per_shape: int = 10000, seed: int = 0
    ) -> None:
        self.class_names = class_names_for(num_classes)
        self.num_classes = num_classes
        self.layout, self.folder = detect_layout(Path(root).expanduser(), num_classes)
        self.points_per_shape, self.seed = points_per_shape, seed
        self._items: dict[str, list[tuple[str, str, int]]] | None = None
        self._extra: list[Path] = []

    @property
    def root(self) -> Path:
        return self.folder

    def params(self) -> dict[str, Any]:
        out: dict[str, Any] = {"layout": self.layout, "num_classes": self.num_classes}
        if self.layout == "raw":
            out.update(points_per_shape=self.points_per_shape, seed=self.seed, normalize=True)
        return out

    # --- listing ----------------------------------------------------------------------------
    def items(self) -> dict[str, list[tuple[str, str, int]]]:
        """Per split: ``(path, relative name, label)`` in sorted order."""
        if self._items is None:
            lister = {
                "raw": self._list_raw,
                "resampled": self._list_resampled,
                "hdf5": self._list_hdf5,
            }
            self._items = lister[self.layout]()
        return self._items

    def raw_files(self) -> list[Path]:
        items = self.items()
        files = {Path(p) for split in items.values() for p, _, _ in split} | set(self._extra)
        return sorted(files)

    def _label_of(self, name: str) -> int | None:
        return self.class_names.index(name) if name in self.class_names else None

    def _list_raw(self) -> dict[str, list[tuple[str, str, int]]]:
        on_disk = sorted(d.name for d in self.folder.iterdir() if (d / "train").is_dir())
        expected = set(self.class_names)
        if len(on_disk) < self.num_classes and expected & set(on_disk):
            raise DataFormatError(
                self.folder,
                f"holds {len(on_disk)} class folders, but num_classes is {self.num_classes}: "
                "the class count given disagrees with the data",
            )
        if self.num_classes == 40 and set(on_disk) != expected or not expected <= set(on_disk):
            raise MissingDataError(
                f"ModelNet{self.num_classes}",
                self.folder,
                f"class folders {sorted(expected)}; found {on_disk}",
            )
        out: dict[str, list[tuple[str, str, int]]] = {}
        for split in SPLITS:
            out[split] = [
                (str(p), p.relative_to(self.folder).as_posix(), self.class_names.index(c))
                for c in sorted(expected)
                for p in sorted((self.folder / c / split).glob("*.off"))
            ]
        return out

    def _list_resampled(self) -> dict[str, list[tuple[str, str, int]]]:
        names_file = _shape_names_file(self.folder, self.num_classes)
        assert names_file is not None
        names = [s for _, s in _lines(names_file)]
        check_class_names(names_file, names, self.num_classes)
        prefix = names_file.name.split("_")[0]
        self._extra = [names_file]
        out: dict[str, list[tuple[str, str, int]]] = {}
        for split in SPLITS:
            listing = self.folder / f"{prefix}_{split}.txt"
            if not listing.is_file():
                raise MissingDataError(f"ModelNet{self.num_classes}", listing, LAYOUT_HELP)
            self._extra.append(listing)
            rows = []
            for number, shape_id in _lines(listing):
                cls = shape_id.rsplit("_", 1)[0]
                if cls not in names:
                    raise DataFormatError(listing, f"unknown class {cls!r} of {shape_id!r}", number)
                label = self._label_of(cls)
                if label is None:  # ModelNet10 out of a ModelNet40 listing
                    continue
                path = self.folder / cls / f"{shape_id}.txt"
                if not path.is_file():
                    raise DataFormatError(listing, f"listed shape file {path} is missing", number)
                rows.append((str(path), path.relative_to(self.folder).as_posix(), label))
            out[split] = sorted(rows, key=lambda r: r[1])
        return out

    def _list_hdf5(self) -> dict[str, list[tuple[str, str, int]]]:
        names_file = self.folder / "shape_names.txt"
        if not names_file.is_file():
            raise MissingDataError(f"ModelNet{self.num_classes}", names_file, LAYOUT_HELP)
        self.h5_names = [s for _, s in _lines(names_file)]
        check_class_names(names_file, self.h5_names, self.num_classes)
        self._extra = [names_file]
        out: dict[str, list[tuple[str, str, int]]] = {}
        for split in SPLITS:
            listing = self.folder / f"{split}_files.txt"
            if listing.is_file():
                self._extra.append(listing)
                files = [self.folder / Path(s).name for _, s in _lines(listing)]
            else:
                files = sorted(self.folder.glob(f"ply_data_{split}*.h5"))
            for f in files:
                if not f.is_file():
                    raise MissingDataError(f"ModelNet{self.num_classes}", f, LAYOUT_HELP)
            out[split] = [(str(f), f.name, -1) for f in files]
        return out

    # --- building ---------------------------------------------------------------------------
    def build(self, out: Path) -> None:
        for split, items in self.items().items():
            writer = PackedWriter(out / split)
            if self.layout == "hdf5":
                self._build_hdf5(items, writer)
            else:
                fn = (
                    functools.partial(_process_off, points=self.points_per_shape, seed=self.seed)
                    if self.layout == "raw"
                    else _process_resampled
                )
                desc = f"ModelNet{self.num_classes} {split}"
                for (_, rel, label), arrays in zip(items, parallel_map(fn, items, desc)):
                    writer.append(rel, arrays, {"label": label})
            writer.close()

    def _build_hdf5(self, files: list[tuple[str, str, int]], writer: PackedWriter) -> None:
        import h5py

        remap = {i: self._label_of(n) for i, n in enumerate(self.h5_names)}
        for path, name, _ in files:
            try:
                with h5py.File(path, "r") as f:
                    data = np.asarray(f["data"], dtype=np.float32)
                    raw_label = np.asarray(f["label"]).reshape(-1)
            except (OSError, KeyError) as err:
                raise DataFormatError(path, f"not a readable ModelNet hdf5 file ({err})") from err
            if data.ndim != 3 or data.shape[2] != 3 or len(raw_label) != len(data):
                raise DataFormatError(
                    path, f"bad shapes data {data.shape}, label {raw_label.shape}"
                )
            label = integer_labels(raw_label, path)
            for i, (cloud, lab) in enumerate(zip(data, label)):
                if not 0 <= lab < len(self.h5_names):
                    raise DataFormatError(
                        path,
                        f"label {lab} of row {i} out of range: shape_names.txt lists "
                        f"{len(self.h5_names)} classes (num_classes is {self.num_classes})",
                    )
                if not np.isfinite(cloud).all():
                    raise DataFormatError(path, f"non-finite coordinates in row {i}")
                mapped = remap[int(lab)]
                if mapped is not None:
                    writer.append(f"{name}:{i}", {"pos": cloud}, {"label": mapped})
