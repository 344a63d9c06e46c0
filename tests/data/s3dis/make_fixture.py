"""Write tiny S3DIS fixtures: the raw aligned release (with its known defects) and hdf5 blocks.

Usage: ``python tests/data/s3dis/make_fixture.py OUT_DIR``. The raw fixture reproduces:
a NUL byte in place of a space in ``Area_5/hallway_6/Annotations/ceiling_1.txt``, the
duplicate ``Area_5/office_36/Annotations/wall_3 (1).txt``, ``stairs_1.txt`` (clutter), and
stray ``Icon\\r`` and ``.DS_Store`` files.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

CLASSES = (
    "ceiling floor wall beam column window door table chair sofa bookcase board clutter".split()
)
ROOMS = [
    ("Area_1", "office_1"),
    ("Area_2", "hallway_1"),
    ("Area_5", "hallway_6"),
    ("Area_5", "office_36"),
]
NUL_LINE = 3  # 1-based line of ceiling_1.txt in hallway_6 holding the NUL byte


def _rows(rng: np.random.Generator, n: int, box: tuple[float, float, float]) -> np.ndarray:
    xyz = rng.uniform(0, 1, (n, 3)) * np.asarray(box)
    rgb = rng.integers(0, 256, (n, 3))
    return np.hstack([xyz, rgb])


def _write(path: Path, rows: np.ndarray) -> None:
    lines = [f"{x:.3f} {y:.3f} {z:.3f} {int(r)} {int(g)} {int(b)}" for x, y, z, r, g, b in rows]
    path.write_text("\n".join(lines) + "\n")


def make_raw(root: Path, points: int = 60) -> Path:
    rng = np.random.default_rng(0)
    for area, room in ROOMS:
        ann = root / area / room / "Annotations"
        ann.mkdir(parents=True, exist_ok=True)
        for cls in ("ceiling", "floor", "wall", "chair"):
            _write(ann / f"{cls}_1.txt", _rows(rng, points, (6.0, 4.0, 3.0)))
        _write(ann / "stairs_1.txt", _rows(rng, points // 2, (6.0, 4.0, 3.0)))
        (ann / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
        (ann / "Icon\r").write_bytes(b"")
        # the room-level file of the release (not read: the annotations hold the labels)
        (root / area / room / f"{room}.txt").write_text("0 0 0 0 0 0\n")
    ceiling = root / "Area_5" / "hallway_6" / "Annotations" / "ceiling_1.txt"
    lines = ceiling.read_text().splitlines()
    head, _, tail = lines[NUL_LINE - 1].rpartition(" ")
    lines[NUL_LINE - 1] = f"{head}\x00{tail}"  # 'r g\x00b': 5 whitespace fields
    ceiling.write_bytes(("\n".join(lines) + "\n").encode())
    office = root / "Area_5" / "office_36" / "Annotations"
    _write(office / "wall_3.txt", _rows(rng, 20, (6.0, 4.0, 3.0)))
    (office / "wall_3 (1).txt").write_bytes((office / "wall_3.txt").read_bytes())
    (root / ".DS_Store").write_bytes(b"junk")
    return root


def make_hdf5(root: Path, points: int = 32) -> Path:
    import h5py

    rng = np.random.default_rng(1)
    root.mkdir(parents=True, exist_ok=True)
    rooms = ["Area_1_office_1"] * 3 + ["Area_5_office_2"] * 2 + ["Area_6_lobby_1"] * 2
    counts = [4, 3]
    files, k = [], 0
    for i, n in enumerate(counts):
        data = rng.uniform(0, 1, (n, points, 9)).astype(np.float32)
        label = rng.integers(0, len(CLASSES), (n, points)).astype(np.uint8)
        with h5py.File(root / f"ply_data_all_{i}.h5", "w") as f:
            f["data"], f["label"] = data, label
        files.append(f"indoor3d_sem_seg_hdf5_data/ply_data_all_{i}.h5")
        k += n
    (root / "all_files.txt").write_text("\n".join(files) + "\n")
    (root / "room_filelist.txt").write_text("\n".join(rooms[:k]) + "\n")
    return root


if __name__ == "__main__":
    make_raw(Path(sys.argv[1]) / "Stanford3dDataset_v1.2_Aligned_Version")
    make_hdf5(Path(sys.argv[1]) / "indoor3d_sem_seg_hdf5_data")
