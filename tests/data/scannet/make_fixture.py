"""Write a tiny ScanNet v2 release (raw layout) and the same scenes in Pointcept's layout.

Usage: ``python tests/data/scannet/make_fixture.py OUT_DIR``. Raw: ``OUT_DIR/raw`` with
``scans/scene000{0,1}_00`` (train), ``scans/scene0002_00`` (val), ``scans_test/scene0700_00``
(test, mesh only), the split lists and a ``scannetv2-labels.combined.tsv`` with the real
file's columns. Each scene: a binary little-endian ``_vh_clean_2.ply`` (x y z float,
red green blue alpha uchar, then triangle faces, as ScanNet's meshes are), a
``segs.json`` over-segmentation and an ``aggregation.json`` with groups labelled
``wall``, ``floor``, ``chair``, ``books`` (nyu40 23: not a ScanNet20 class, but a
ScanNet200 one) and ``mystery thing`` (not in the tsv); one segment belongs to no group.
Pointcept: ``OUT_DIR/pointcept/{train,val}/<scene>/{coord,color,normal,segment20,segment200}.npy``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

TSV_HEADER = (
    "id\traw_category\tcategory\tcount\tnyu40id\teigen13id\tnyuClass\tnyu40class\t"
    "eigen13class\tModelNet40\tModelNet10\tShapeNetCore55\tsynsetoffset\twnsynsetid\t"
    "wnsynsetkey\tmpcat40\tmpcat40index"
)
# raw_category, id, nyu40id: the fixture's own small table in the real columns
TABLE = [("wall", 1, 1), ("chair", 2, 5), ("floor", 3, 2), ("books", 22, 23)]
# expected classes: ScanNet20 index (by nyu40id), ScanNet200 index (by id); -1 ignored
EXPECTED = {
    "wall": (0, 0), "floor": (1, 2), "chair": (4, 1), "books": (-1, 19),
    "mystery thing": (-1, -1), None: (-1, -1),
}  # fmt: skip
GROUP_LABELS = ["wall", "floor", "chair", "books", "mystery thing", None]


def _scene(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vertices, colours and each vertex's segment id (6 segments of 40 vertices)."""
    pos = rng.uniform(0, 4, (240, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (240, 3)).astype(np.uint8)
    segs = np.repeat(np.arange(6) * 7 + 3, 40)  # sparse segment ids, as in the release
    order = rng.permutation(240)
    return pos[order], rgb[order], segs[order]


def _write_ply(path: Path, pos: np.ndarray, rgb: np.ndarray) -> None:
    n = len(pos)
    vertex = np.empty(n, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"),
                                ("green", "u1"), ("blue", "u1"), ("alpha", "u1")])
    vertex["x"], vertex["y"], vertex["z"] = pos.T
    vertex["red"], vertex["green"], vertex["blue"] = rgb.T
    vertex["alpha"] = 255
    faces = np.empty(n // 3, dtype=[("n", "u1"), ("v", "<i4", (3,))])
    faces["n"] = 3
    faces["v"] = np.arange(n // 3 * 3).reshape(-1, 3)
    header = "\n".join([
        "ply", "format binary_little_endian 1.0", "comment VCGLIB generated",
        f"element vertex {n}", "property float x", "property float y", "property float z",
        "property uchar red", "property uchar green", "property uchar blue",
        "property uchar alpha", f"element face {len(faces)}",
        "property list uchar int vertex_indices", "end_header",
    ]) + "\n"
    path.write_bytes(header.encode() + vertex.tobytes() + faces.tobytes())


def make_release(out: Path) -> Path:
    raw, pc = out / "raw", out / "pointcept"
    rng = np.random.default_rng(0)
    rows = [TSV_HEADER] + [
        f"{i}\t{name}\t{name}\t10\t{nyu}\t0\t{name}\t{name}\t\t\t\t\t\t\t\t\t" for name, i, nyu in TABLE
    ]
    raw.mkdir(parents=True, exist_ok=True)
    (raw / "scannetv2-labels.combined.tsv").write_text("\n".join(rows) + "\n")
    splits = {"train": ["scene0000_00", "scene0001_00"], "val": ["scene0002_00"],
              "test": ["scene0700_00"]}
    for split, scenes in splits.items():
        (raw / f"scannetv2_{split}.txt").write_text("\n".join(scenes) + "\n")
        for scene in scenes:
            folder = raw / ("scans_test" if split == "test" else "scans") / scene
            folder.mkdir(parents=True, exist_ok=True)
            pos, rgb, segs = _scene(rng)
            _write_ply(folder / f"{scene}_vh_clean_2.ply", pos, rgb)
            if split == "test":
                continue
            (folder / f"{scene}_vh_clean_2.0.010000.segs.json").write_text(
                json.dumps({"params": {"kThresh": "0.0001"}, "sceneId": scene,
                            "segIndices": segs.tolist()})
            )
            groups = [
                {"id": g, "objectId": g, "segments": [int(g * 7 + 3)], "label": label}
                for g, label in enumerate(GROUP_LABELS) if label is not None
            ]
            (folder / f"{scene}.aggregation.json").write_text(
                json.dumps({"sceneId": f"scannet.{scene}", "appId": "Aggregator.v2",
                            "segGroups": groups, "segmentsFile": "x"})
            )
            if split in ("train", "val"):
                dest = pc / split / scene
                dest.mkdir(parents=True, exist_ok=True)
                label_of = np.asarray([EXPECTED[GROUP_LABELS[(s - 3) // 7]] for s in segs])
                np.save(dest / "coord.npy", pos)
                np.save(dest / "color.npy", rgb.astype(np.float32))
                np.save(dest / "normal.npy", np.tile([0, 0, 1], (len(pos), 1)).astype(np.float32))
                np.save(dest / "segment20.npy", label_of[:, 0].astype(np.int64))
                np.save(dest / "segment200.npy", label_of[:, 1].astype(np.int64))
    return out


def expected_labels(segs: np.ndarray) -> np.ndarray:
    """``[N, 2]`` (ScanNet20, ScanNet200) classes of vertices with segment ids ``segs``."""
    return np.asarray([EXPECTED[GROUP_LABELS[(s - 3) // 7]] for s in segs])


if __name__ == "__main__":
    make_release(Path(sys.argv[1] if len(sys.argv) > 1 else "scannet"))
