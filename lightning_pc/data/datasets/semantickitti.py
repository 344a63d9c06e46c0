"""SemanticKITTI: outdoor LiDAR scans, ``sequences/NN/velodyne/*.bin`` + ``labels/*.label``.

A ``.bin`` file holds float32 ``x y z intensity`` per point; a ``.label`` file one uint32
per point, the semantic id in the lower 16 bits (the upper 16 bits: the instance id).
Semantic ids are mapped to the 19 benchmark classes with the official learning map
(``semantic-kitti.yaml`` of the semantic-kitti-api); unlabelled and mapped-out ids
(0 unlabeled, 1 outlier, 52 other-structure, 99 other-object) become ``IGNORE_INDEX``.
Official split: train 00-07 and 09-10, val 08, test 11-21 (no labels: predict only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lightning_pc.data.cache import CacheRecipe, parallel_map
from lightning_pc.data.errors import DataFormatError, MissingDataError
from lightning_pc.data.formats.kitti import read_velodyne
from lightning_pc.data.packed import PackedWriter

CLASS_NAMES = (
    "car", "bicycle", "motorcycle", "truck", "other-vehicle", "person", "bicyclist",
    "motorcyclist", "road", "parking", "sidewalk", "other-ground", "building", "fence",
    "vegetation", "trunk", "terrain", "pole", "traffic-sign",
)  # fmt: skip
IGNORE_INDEX = -1
# raw semantic id -> xentropy id of the official learning map (0 = unlabelled);
# class index = xentropy id - 1
LEARNING_MAP = {
    0: 0, 1: 0, 10: 1, 11: 2, 13: 5, 15: 3, 16: 5, 18: 4, 20: 5, 30: 6, 31: 7, 32: 8,
    40: 9, 44: 10, 48: 11, 49: 12, 50: 13, 51: 14, 52: 0, 60: 9, 70: 15, 71: 16, 72: 17,
    80: 18, 81: 19, 99: 0, 252: 1, 253: 7, 254: 6, 255: 8, 256: 5, 257: 5, 258: 4, 259: 5,
}  # fmt: skip
SPLITS = {
    "train": ("00", "01", "02", "03", "04", "05", "06", "07", "09", "10"),
    "val": ("08",),
    "test": tuple(f"{k:02d}" for k in range(11, 22)),
}
LAYOUT_HELP = (
    "  <root>/sequences/<NN>/velodyne/<frame>.bin     (float32 x y z intensity)\n"
    "  <root>/sequences/<NN>/labels/<frame>.label     (uint32; sequences 00-10)\n"
    "  train 00-07, 09-10; val 08; test 11-21 (velodyne only)"
)


def _lookup() -> np.ndarray:
    table = np.full(1 << 16, -2, dtype=np.int16)  # -2: an id the learning map does not know
    for raw, xentropy in LEARNING_MAP.items():
        table[raw] = xentropy - 1 if xentropy else IGNORE_INDEX
    return table


LOOKUP = _lookup()


def read_labels(path: str | Path, num_points: int) -> np.ndarray:
    """Class indices (``[N]`` int16, ``IGNORE_INDEX`` for unlabelled) of a ``.label`` file.

    Raises:
        DataFormatError: a count that differs from the scan's, or a semantic id the
            learning map does not know (naming the point).
    """
    path = Path(path)
    size = path.stat().st_size
    if size != 4 * num_points:
        raise DataFormatError(
            path, f"holds {size / 4:g} labels, the scan has {num_points} points (4 bytes each)"
        )
    semantic = np.fromfile(path, dtype="<u4") & 0xFFFF
    labels = LOOKUP[semantic]
    unknown = np.flatnonzero(labels == -2)
    if len(unknown):
        raise DataFormatError(
            path,
            f"semantic id {int(semantic[unknown[0]])} of point {int(unknown[0])} is not in "
            f"the SemanticKITTI learning map ({len(unknown)} points in all)",
        )
    return labels


def parse_scan(item: tuple[str, str | None]) -> dict[str, np.ndarray]:
    """One scan (and its labels, when there is a label file) as cache arrays."""
    velodyne, label = item
    scan = read_velodyne(velodyne)
    out = {"pos": np.ascontiguousarray(scan[:, :3]), "intensity": scan[:, 3:].copy()}
    if label is not None:
        out["label"] = read_labels(label, len(scan))
    return out


class SemanticKITTIRecipe(CacheRecipe):
    """Cache recipe: every present scan of every split (``train``, ``val``, ``test``).

    Args:
        root: the dataset folder (holding ``sequences/``), or its parent
            (``.../dataset/sequences``, as the release unpacks, is found too).
    """

    name = "semantickitti"
    version = 1

    def __init__(self, root: str | Path) -> None:
        root = Path(root).expanduser()
        for candidate in (root, root / "dataset"):
            if (candidate / "sequences").is_dir():
                root = candidate
                break
        else:
            raise MissingDataError("SemanticKITTI", root, LAYOUT_HELP)
        self._root = root
        self._items: dict[str, list[tuple[str, str | None]]] | None = None

    @property
    def root(self) -> Path:
        return self._root

    def params(self) -> dict[str, Any]:
        return {}

    def items(self) -> dict[str, list[tuple[str, str | None]]]:
        """Per split with scans: ``(velodyne file, label file or None)``, sorted.

        Raises:
            MissingDataError: no training or no validation scans; a labelled split
                (train/val) scan without its label file.
        """
        if self._items is None:
            out: dict[str, list[tuple[str, str | None]]] = {}
            for split, sequences in SPLITS.items():
                rows: list[tuple[str, str | None]] = []
                for seq in sequences:
                    folder = self._root / "sequences" / seq
                    for bin_file in sorted((folder / "velodyne").glob("*.bin")):
                        label = folder / "labels" / (bin_file.stem + ".label")
                        if split != "test" and not label.is_file():
                            raise MissingDataError("SemanticKITTI", label, LAYOUT_HELP)
                        rows.append((str(bin_file), str(label) if split != "test" else None))
                if rows:
                    out[split] = rows
            for split in ("train", "val"):
                if split not in out:
                    seqs = ", ".join(SPLITS[split])
                    raise MissingDataError(
                        "SemanticKITTI",
                        self._root / "sequences",
                        f"{split} scans (sequences {seqs})\n{LAYOUT_HELP}",
                    )
            self._items = out
        return self._items

    def raw_files(self) -> list[Path]:
        return sorted(Path(p) for rows in self.items().values() for row in rows for p in row if p)

    def build(self, out: Path) -> None:
        for split, rows in self.items().items():
            writer = PackedWriter(out / split)
            for (velodyne, _), arrays in zip(rows, parallel_map(parse_scan, rows, split)):
                name = Path(velodyne).relative_to(self._root).as_posix()
                writer.append(name, arrays)
            writer.close()
