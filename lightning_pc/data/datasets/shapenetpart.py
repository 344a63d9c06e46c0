"""ShapeNetPart (``shapenetcore_partanno_segmentation_benchmark_v0_normal``) into the cache.

Each shape file holds ``x y z nx ny nz part`` per line; splits come from
``train_test_split/shuffled_{train,val,test}_file_list.json``. Category indices and part
ids are global (the 16 categories / 50 parts of the benchmark) even when a subset of
categories is selected.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from lightning_pc.data.cache import CacheRecipe, parallel_map
from lightning_pc.data.errors import DataFormatError, MissingDataError
from lightning_pc.data.io import read_table
from lightning_pc.data.packed import PackedWriter

# (category, synset, number of parts), in the benchmark's global order.
CATEGORIES: list[tuple[str, str, int]] = [
    ("Airplane", "02691156", 4),
    ("Bag", "02773838", 2),
    ("Cap", "02954340", 2),
    ("Car", "02958343", 4),
    ("Chair", "03001627", 4),
    ("Earphone", "03261776", 3),
    ("Guitar", "03467517", 3),
    ("Knife", "03624134", 2),
    ("Lamp", "03636649", 4),
    ("Laptop", "03642806", 2),
    ("Motorbike", "03790512", 6),
    ("Mug", "03797390", 2),
    ("Pistol", "03948459", 3),
    ("Rocket", "04099429", 3),
    ("Skateboard", "04225987", 3),
    ("Table", "04379243", 3),
]
CATEGORY_NAMES: list[str] = [c for c, _, _ in CATEGORIES]
PART_OFFSETS: list[int] = np.cumsum([0] + [k for _, _, k in CATEGORIES]).tolist()
NUM_PARTS: int = PART_OFFSETS[-1]  # 50
PART_NAMES: list[str] = [f"{c}_{k}" for c, _, n in CATEGORIES for k in range(n)]
SPLITS = ("train", "val", "test")
LAYOUT_HELP = """\
  <root>/<synset>/<shape_id>.txt                      x y z nx ny nz part
  <root>/train_test_split/shuffled_{train,val,test}_file_list.json
  <root>/synsetoffset2category.txt   (shapenetcore_partanno_segmentation_benchmark_v0_normal)"""


def check_categories(categories: list[str] | None) -> list[str]:
    """Validate a category subset (``None``: all 16), returned in global order."""
    if categories is None:
        return list(CATEGORY_NAMES)
    unknown = [c for c in categories if c not in CATEGORY_NAMES]
    if unknown:
        raise ValueError(f"unknown ShapeNetPart categories {unknown}; choose from {CATEGORY_NAMES}")
    return [c for c in CATEGORY_NAMES if c in categories]


def _line_of_row(path: Path, row: int) -> int:
    seen = -1
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, 1):
            if line.replace(b"\x00", b" ").strip():
                seen += 1
                if seen == row:
                    return number
    return row + 1


def _process_shape(item: tuple[str, str, int]) -> dict[str, np.ndarray]:
    path, _, cat = item
    arr = read_table(path, 7)
    part = arr[:, 6]
    lo, hi = PART_OFFSETS[cat], PART_OFFSETS[cat + 1]
    bad = np.flatnonzero((part != np.round(part)) | (part < lo) | (part >= hi))
    if len(bad):
        line = _line_of_row(Path(path), int(bad[0]))
        raise DataFormatError(
            path,
            f"part label {part[bad[0]]:g} out of range [{lo}, {hi}) for {CATEGORY_NAMES[cat]}",
            line,
        )
    return {
        "pos": np.ascontiguousarray(arr[:, :3]),
        "normal": np.ascontiguousarray(arr[:, 3:6]),
        "part": part.astype(np.int16),
    }


class ShapeNetPartRecipe(CacheRecipe):
    """Cache recipe for ShapeNetPart.

    Args:
        root: the benchmark folder.
        categories: category names to keep (``None``: all).
    """

    name = "shapenetpart"
    version = 1

    def __init__(self, root: str | Path, categories: list[str] | None = None) -> None:
        self._root = Path(root).expanduser()
        self.categories = check_categories(categories)
        split_dir = self._root / "train_test_split"
        if not (split_dir / "shuffled_train_file_list.json").is_file():
            raise MissingDataError("ShapeNetPart", self._root, LAYOUT_HELP)
        self._items: dict[str, list[tuple[str, str, int]]] | None = None

    @property
    def root(self) -> Path:
        return self._root

    def params(self) -> dict[str, Any]:
        return {"categories": self.categories}

    def items(self) -> dict[str, list[tuple[str, str, int]]]:
        """Per split: ``(path, "<synset>/<shape_id>", global category)``, sorted."""
        if self._items is None:
            synset_to_cat = {s: i for i, (c, s, _) in enumerate(CATEGORIES) if c in self.categories}
            out: dict[str, list[tuple[str, str, int]]] = {}
            for split in SPLITS:
                listing = self._root / "train_test_split" / f"shuffled_{split}_file_list.json"
                if not listing.is_file():
                    raise MissingDataError("ShapeNetPart", listing, LAYOUT_HELP)
                try:
                    entries = json.loads(listing.read_text())
                except json.JSONDecodeError as err:
                    raise DataFormatError(
                        listing, f"not valid JSON ({err.msg})", err.lineno
                    ) from err
                rows = []
                for entry in entries:
                    parts = str(entry).split("/")
                    if len(parts) != 3:
                        raise DataFormatError(
                            listing, f"bad entry {entry!r} (want shape_data/<synset>/<id>)"
                        )
                    synset, shape_id = parts[1], parts[2]
                    if synset not in synset_to_cat:
                        if synset not in {s for _, s, _ in CATEGORIES}:
                            raise DataFormatError(
                                listing, f"unknown synset {synset!r} in {entry!r}"
                            )
                        continue
                    path = self._root / synset / f"{shape_id}.txt"
                    if not path.is_file():
                        raise DataFormatError(listing, f"listed shape {entry!r} missing: {path}")
                    rows.append((str(path), f"{synset}/{shape_id}", synset_to_cat[synset]))
                out[split] = sorted(rows, key=lambda r: r[1])
            self._items = out
        return self._items

    def raw_files(self) -> list[Path]:
        listings = [
            self._root / "train_test_split" / f"shuffled_{s}_file_list.json" for s in SPLITS
        ]
        return sorted([Path(p) for rows in self.items().values() for p, _, _ in rows] + listings)

    def build(self, out: Path) -> None:
        for split, items in self.items().items():
            writer = PackedWriter(out / split)
            for (_, rel, cat), arrays in zip(
                items, parallel_map(_process_shape, items, f"ShapeNetPart {split}")
            ):
                writer.append(rel, arrays, {"category": cat})
            writer.close()
