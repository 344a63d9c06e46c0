"""Write a tiny ShapeNetPart benchmark folder (``..._v0_normal`` layout).

Usage: ``python tests/data/shapenetpart/make_fixture.py OUT_DIR``. Three categories
(Airplane, Chair, Table), variable point counts, part labels written as floats (``2.000000``)
as in the release, split JSONs listing ``shape_data/<synset>/<id>``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

# (category, synset, first global part id, number of parts)
USED = [("Airplane", "02691156", 0, 4), ("Chair", "03001627", 12, 4), ("Table", "04379243", 47, 3)]
ALL = [
    ("Airplane", "02691156"),
    ("Bag", "02773838"),
    ("Cap", "02954340"),
    ("Car", "02958343"),
    ("Chair", "03001627"),
    ("Earphone", "03261776"),
    ("Guitar", "03467517"),
    ("Knife", "03624134"),
    ("Lamp", "03636649"),
    ("Laptop", "03642806"),
    ("Motorbike", "03790512"),
    ("Mug", "03797390"),
    ("Pistol", "03948459"),
    ("Rocket", "04099429"),
    ("Skateboard", "04225987"),
    ("Table", "04379243"),
]


def make_shapenetpart(root: Path) -> Path:
    rng = np.random.default_rng(0)
    (root / "train_test_split").mkdir(parents=True, exist_ok=True)
    (root / "synsetoffset2category.txt").write_text("".join(f"{c}\t{s}\n" for c, s in ALL))
    splits: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    k = 0
    for _cat, synset, first, parts in USED:
        (root / synset).mkdir(exist_ok=True)
        for split, count in (("train", 3), ("val", 1), ("test", 2)):
            for _ in range(count):
                k += 1
                shape_id = f"{k:04x}deadbeef"
                n = int(rng.integers(60, 120))
                pts = rng.uniform(-1, 1, (n, 3))
                nrm = pts / np.linalg.norm(pts, axis=1, keepdims=True)
                part = first + rng.integers(0, parts, n)
                rows = [
                    " ".join(f"{v:.6f}" for v in (*p, *q, float(lab)))
                    for p, q, lab in zip(pts, nrm, part)
                ]
                (root / synset / f"{shape_id}.txt").write_text("\n".join(rows) + "\n")
                splits[split].append(f"shape_data/{synset}/{shape_id}")
    for split, entries in splits.items():
        rng.shuffle(entries)
        (root / "train_test_split" / f"shuffled_{split}_file_list.json").write_text(
            json.dumps(entries)
        )
    return root


if __name__ == "__main__":
    make_shapenetpart(Path(sys.argv[1]))
