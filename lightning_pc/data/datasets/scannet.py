"""ScanNet v2: the raw release, or Pointcept's preprocessed layout.

Raw release (``<root>``)::

    scans/<scene>/<scene>_vh_clean_2.ply                   mesh vertices: x y z, RGB(A)
    scans/<scene>/<scene>_vh_clean_2.0.010000.segs.json    {"segIndices": [per vertex]}
    scans/<scene>/<scene>.aggregation.json                 {"segGroups": [{"segments", "label"}]}
    scans_test/<scene>/<scene>_vh_clean_2.ply              (test scenes: no labels)
    scannetv2-labels.combined.tsv                           raw_category -> id, nyu40id
    scannetv2_train.txt, scannetv2_val.txt [, scannetv2_test.txt]   scene ids

A vertex's label is the ``label`` (raw category) of the aggregation group holding its
segment, mapped through the tsv: to the 20 benchmark classes by ``nyu40id``, to the
ScanNet200 classes by ``id``. Vertices in no group, or whose category is in neither
benchmark, get ``IGNORE_INDEX``.

Pointcept layout: ``<root>/{train,val,test}/<scene>/coord.npy`` (float32 ``[N, 3]``),
``color.npy`` (0-255), ``segment20.npy`` and ``segment200.npy`` (``-1``: unlabelled;
absent for test scenes).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Literal

import numpy as np

from lightning_pc.data.cache import CacheRecipe, parallel_map
from lightning_pc.data.errors import DataFormatError, MissingDataError
from lightning_pc.data.io import integer_labels, read_ply_vertices
from lightning_pc.data.packed import PackedWriter

IGNORE_INDEX = -1
CLASS_NAMES_20 = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window",
    "bookshelf", "picture", "counter", "desk", "curtain", "refrigerator", "shower curtain",
    "toilet", "sink", "bathtub", "otherfurniture",
)  # fmt: skip
NYU40_IDS_20 = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24, 28, 33, 34, 36, 39)
# ScanNet200: raw category ids (the tsv's ``id`` column) of the 200 benchmark classes
IDS_200 = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 21, 22, 23, 24, 26, 27,
    28, 29, 31, 32, 33, 34, 35, 36, 38, 39, 40, 41, 42, 44, 45, 46, 47, 48, 49, 50, 51, 52,
    54, 55, 56, 57, 58, 59, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 77,
    78, 79, 80, 82, 84, 86, 87, 88, 89, 90, 93, 95, 96, 97, 98, 99, 100, 101, 102, 103, 104,
    105, 106, 107, 110, 112, 115, 116, 118, 120, 121, 122, 125, 128, 130, 131, 132, 134,
    136, 138, 139, 140, 141, 145, 148, 154, 155, 156, 157, 159, 161, 163, 165, 166, 168,
    169, 170, 177, 180, 185, 188, 191, 193, 195, 202, 208, 213, 214, 221, 229, 230, 232,
    233, 242, 250, 261, 264, 276, 283, 286, 300, 304, 312, 323, 325, 331, 342, 356, 370,
    392, 395, 399, 408, 417, 488, 540, 562, 570, 572, 581, 609, 748, 776, 1156, 1163, 1164,
    1165, 1166, 1167, 1168, 1169, 1170, 1171, 1172, 1173, 1174, 1175, 1176, 1178, 1179,
    1180, 1181, 1182, 1183, 1184, 1185, 1186, 1187, 1188, 1189, 1190, 1191,
)  # fmt: skip
TSV = "scannetv2-labels.combined.tsv"
LAYOUT_HELP = (
    "  raw release: <root>/scans/<scene>/<scene>_vh_clean_2.ply, "
    "<scene>_vh_clean_2.0.010000.segs.json, <scene>.aggregation.json;\n"
    f"    <root>/{TSV}; <root>/scannetv2_train.txt, scannetv2_val.txt\n"
    "  or Pointcept's: <root>/{train,val}/<scene>/coord.npy, color.npy, segment20.npy, "
    "segment200.npy"
)
Layout = Literal["raw", "pointcept"]


def detect_layout(root: Path) -> Layout:
    """``"pointcept"`` when ``root/train/<scene>/coord.npy`` exists, ``"raw"`` when
    ``root/scans`` does.

    Raises:
        MissingDataError: neither.
    """
    if any((root / "train").glob("*/coord.npy")):
        return "pointcept"
    if (root / "scans").is_dir():
        return "raw"
    raise MissingDataError("ScanNet", root, LAYOUT_HELP)


def read_label_table(path: Path) -> tuple[dict[str, int], dict[str, int], dict[int, str]]:
    """From the tsv: raw category -> nyu40id, raw category -> id, and id -> raw category.

    Raises:
        DataFormatError: missing columns or a non-integer id (naming the line).
    """
    if not path.is_file():
        raise MissingDataError("ScanNet", path, LAYOUT_HELP)
    nyu40: dict[str, int] = {}
    ids: dict[str, int] = {}
    names: dict[int, str] = {}
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter="\t")
        need = {"id", "raw_category", "nyu40id"}
        if not need <= set(reader.fieldnames or []):
            raise DataFormatError(path, f"header lacks columns {sorted(need)}", 1)
        for line, row in enumerate(reader, start=2):
            try:
                ids[row["raw_category"]] = int(row["id"])
                nyu40[row["raw_category"]] = int(row["nyu40id"] or 0)
            except (TypeError, ValueError):
                raise DataFormatError(
                    path, f"non-integer id or nyu40id {row!r:.80}", line
                ) from None
            names[int(row["id"])] = row["raw_category"]
    return nyu40, ids, names


def class_names_200(root: Path) -> list[str]:
    """ScanNet200 class names from the tsv (raw category names); ``id_<k>`` without it."""
    table = root / TSV
    if table.is_file():
        _, _, names = read_label_table(table)
        return [names.get(k, f"id_{k}") for k in IDS_200]
    return [f"id_{k}" for k in IDS_200]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise MissingDataError("ScanNet", path, LAYOUT_HELP) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        line = getattr(err, "lineno", None)
        raise DataFormatError(path, f"not valid JSON ({err})", line) from err


def parse_raw_scene(item: tuple[str, str, bool]) -> dict[str, np.ndarray]:
    """One raw scene: ``pos``, ``rgb`` (uint8) and, when labelled, ``segment20/200``."""
    folder_s, tsv_s, labelled = item
    folder, scene = Path(folder_s), Path(folder_s).name
    ply = folder / f"{scene}_vh_clean_2.ply"
    if not ply.is_file():
        raise MissingDataError("ScanNet", ply, LAYOUT_HELP)
    vertices = read_ply_vertices(ply)
    if vertices is None or "rgb" not in vertices:
        raise DataFormatError(ply, "expected a vertex element with x y z red green blue")
    n = len(vertices["pos"])
    out = {
        "pos": vertices["pos"],
        "rgb": np.round(np.clip(vertices["rgb"], 0, 1) * 255).astype(np.uint8),
    }
    if not labelled:
        return out
    segs_path = folder / f"{scene}_vh_clean_2.0.010000.segs.json"
    segs = np.asarray(_read_json(segs_path).get("segIndices", []), dtype=np.int64)
    if len(segs) != n:
        raise DataFormatError(
            segs_path, f"segIndices has {len(segs)} entries, {ply.name} has {n} vertices"
        )
    agg_path = folder / f"{scene}.aggregation.json"
    if not agg_path.is_file():  # some copies keep the older name
        agg_path = folder / f"{scene}_vh_clean.aggregation.json"
    groups = _read_json(agg_path).get("segGroups")
    if not isinstance(groups, list):
        raise DataFormatError(agg_path, "no 'segGroups' list")
    nyu40, ids, _ = read_label_table(Path(tsv_s))
    to20 = {nyu: k for k, nyu in enumerate(NYU40_IDS_20)}
    to200 = {raw: k for k, raw in enumerate(IDS_200)}
    seg20: dict[int, int] = {}
    seg200: dict[int, int] = {}
    for g, group in enumerate(groups):
        try:
            label, segments = group["label"], group["segments"]
        except (KeyError, TypeError):
            raise DataFormatError(agg_path, f"segGroups[{g}] lacks 'label' or 'segments'") from None
        for s in segments:
            seg20[int(s)] = to20.get(nyu40.get(label, 0), IGNORE_INDEX)
            seg200[int(s)] = to200.get(ids.get(label, 0), IGNORE_INDEX)
    uniq, inverse = np.unique(segs, return_inverse=True)
    out["segment20"] = np.asarray([seg20.get(int(s), IGNORE_INDEX) for s in uniq], dtype=np.int16)[
        inverse
    ]
    out["segment200"] = np.asarray(
        [seg200.get(int(s), IGNORE_INDEX) for s in uniq], dtype=np.int16
    )[inverse]
    return out


def parse_pointcept_scene(item: tuple[str, str, bool]) -> dict[str, np.ndarray]:
    """One scene of Pointcept's layout (the same fields as :func:`parse_raw_scene`)."""
    folder = Path(item[0])
    arrays: dict[str, np.ndarray] = {}
    names = ("coord", "color", "segment20", "segment200") if item[2] else ("coord", "color")
    for name in names:
        path = folder / f"{name}.npy"
        if not path.is_file():
            raise MissingDataError("ScanNet", path, LAYOUT_HELP)
        try:
            arrays[name] = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise DataFormatError(path, f"not a readable .npy array ({err})") from err
    coord = arrays["coord"]
    n = len(coord)
    if coord.ndim != 2 or coord.shape[1] != 3 or not np.isfinite(coord).all():
        raise DataFormatError(folder / "coord.npy", f"expected finite [N, 3], got {coord.shape}")
    out = {"pos": coord.astype(np.float32)}
    color = arrays["color"]
    if color.shape != (n, 3):
        raise DataFormatError(folder / "color.npy", f"shape {color.shape}, expected ({n}, 3)")
    out["rgb"] = np.clip(np.round(color), 0, 255).astype(np.uint8)
    for name, count in (("segment20", 20), ("segment200", 200)):
        if name in arrays:
            path = folder / f"{name}.npy"
            labels = integer_labels(arrays[name].reshape(-1), path)
            if len(labels) != n:
                raise DataFormatError(path, f"{len(labels)} labels for {n} points")
            bad = np.flatnonzero((labels < IGNORE_INDEX) | (labels >= count))
            if len(bad):
                raise DataFormatError(
                    path,
                    f"label {int(labels[bad[0]])} at index {int(bad[0])} is outside [-1, {count})",
                )
            out[name] = labels.astype(np.int16)
    return out


class ScanNetRecipe(CacheRecipe):
    """Cache recipe: every scene of the train/val (and, when present, test) split, with
    both label sets, so switching between ScanNet20 and ScanNet200 does not rebuild.

    Args:
        root: the release folder (raw or Pointcept layout).
    """

    name = "scannet"
    version = 1

    def __init__(self, root: str | Path) -> None:
        self._root = Path(root).expanduser()
        self.layout = detect_layout(self._root)
        self._items: dict[str, list[tuple[str, str, bool]]] | None = None

    @property
    def root(self) -> Path:
        return self._root

    def params(self) -> dict[str, Any]:
        return {"layout": self.layout}

    def items(self) -> dict[str, list[tuple[str, str, bool]]]:
        """Per split: ``(scene folder, tsv path, labelled)``, in split-list order."""
        if self._items is not None:
            return self._items
        out: dict[str, list[tuple[str, str, bool]]] = {}
        tsv = str(self._root / TSV)
        for split in ("train", "val", "test"):
            labelled = split != "test"
            if self.layout == "pointcept":
                scenes = sorted(d for d in (self._root / split).glob("*") if d.is_dir())
                if scenes:
                    labelled = labelled and (scenes[0] / "segment20.npy").is_file()
                    out[split] = [(str(d), tsv, labelled) for d in scenes]
                continue
            listing = self._root / f"scannetv2_{split}.txt"
            if not listing.is_file():
                if split == "test":
                    continue
                raise MissingDataError("ScanNet", listing, LAYOUT_HELP)
            folder = self._root / ("scans_test" if split == "test" else "scans")
            rows = []
            for line, scene in enumerate(listing.read_text().splitlines(), start=1):
                scene = scene.strip()
                if not scene:
                    continue
                if not (folder / scene).is_dir():
                    raise DataFormatError(listing, f"scene {scene!r} not found in {folder}", line)
                rows.append((str(folder / scene), tsv, labelled))
            if rows:
                out[split] = rows
        for split in ("train", "val"):
            if split not in out:
                raise MissingDataError("ScanNet", self._root / split, LAYOUT_HELP)
        self._items = out
        return out

    def raw_files(self) -> list[Path]:
        files: set[Path] = set()
        for rows in self.items().values():
            for folder, tsv, labelled in rows:
                d = Path(folder)
                if self.layout == "pointcept":
                    files.update(p for p in d.glob("*.npy"))
                    continue
                files.add(d / f"{d.name}_vh_clean_2.ply")
                if labelled:
                    files.add(Path(tsv))
                    files.add(d / f"{d.name}_vh_clean_2.0.010000.segs.json")
                    for name in (
                        f"{d.name}.aggregation.json",
                        f"{d.name}_vh_clean.aggregation.json",
                    ):
                        if (d / name).is_file():
                            files.add(d / name)
        return sorted(files)

    def build(self, out: Path) -> None:
        parse = parse_pointcept_scene if self.layout == "pointcept" else parse_raw_scene
        for split, rows in self.items().items():
            writer = PackedWriter(out / split)
            for (folder, _, _), arrays in zip(rows, parallel_map(parse, rows, f"ScanNet {split}")):
                writer.append(Path(folder).relative_to(self._root).as_posix(), arrays)
            writer.close()
