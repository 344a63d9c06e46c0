"""Write tiny ModelNet fixtures in the three real layouts, quirks included.

Usage: ``python tests/data/modelnet/make_fixture.py OUT_DIR`` writes ``OUT_DIR/raw40``,
``OUT_DIR/raw10``, ``OUT_DIR/resampled``, ``OUT_DIR/hdf5`` and ``OUT_DIR/modelnet10_1024``. Tests call the functions.

Raw OFF quirks reproduced: header glued to the counts (``OFF8 6 0``), quads and pentagons,
no trailing newline, ``#`` comments and blank lines, vertices in large arbitrary units.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

MODELNET40 = (
    "airplane bathtub bed bench bookshelf bottle bowl car chair cone cup curtain desk door "
    "dresser flower_pot glass_box guitar keyboard lamp laptop mantel monitor night_stand "
    "person piano plant radio range_hood sink sofa stairs stool table tent toilet tv_stand "
    "vase wardrobe xbox"
).split()
MODELNET10 = "bathtub bed chair desk dresser monitor night_stand sofa table toilet".split()


def box_off(size: tuple[float, float, float], quirk: int) -> str:
    """An OFF box with quad faces; ``quirk`` picks which real-file oddities to include."""
    sx, sy, sz = size
    verts = [(x * sx, y * sy, z * sz) for x in (0, 1) for y in (0, 1) for z in (0, 1)]
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    lines = []
    if quirk % 2 == 0:
        lines.append(f"OFF{len(verts)} {len(quads)} 0")  # glued header
    else:
        lines += ["OFF", "# written by a CAD exporter", "", f"{len(verts)} {len(quads)} 0"]
    lines += [f"{x:.3f} {y:.3f} {z:.3f}" for x, y, z in verts]
    if quirk % 3 == 0:
        lines.append("")
    lines += ["4 " + " ".join(map(str, q)) for q in quads]
    text = "\n".join(lines)
    return text if quirk % 2 == 0 else text + "\n"  # even files: no trailing newline


def prism_off(radius: float, height: float) -> str:
    """A pentagonal prism: two pentagon faces (fan-triangulated by the reader) + 5 quads."""
    ang = np.arange(5) * 2 * np.pi / 5
    ring = [(radius * np.cos(a), radius * np.sin(a)) for a in ang]
    verts = [(x, y, 0.0) for x, y in ring] + [(x, y, height) for x, y in ring]
    faces = ["5 4 3 2 1 0", "5 5 6 7 8 9"]
    faces += [f"4 {i} {(i + 1) % 5} {(i + 1) % 5 + 5} {i + 5}" for i in range(5)]
    body = [f"{x:.4f} {y:.4f} {z:.4f}" for x, y, z in verts]
    return "\n".join(["OFF", f"{len(verts)} {len(faces)} 0", *body, *faces])  # no final newline


def make_raw(root: Path, classes: list[str], per_split: tuple[int, int] = (2, 1)) -> Path:
    """``<root>/<class>/{train,test}/<class>_<NNNN>.off``, sizes in the hundreds of units.

    Files are numbered per class; ``<class>_0002.off`` is a pentagonal prism (polygons), the
    others boxes of quads with alternating header/newline quirks.
    """
    for ci, c in enumerate(classes):
        j = 0
        for split, count in zip(("train", "test"), per_split):
            folder = root / c / split
            folder.mkdir(parents=True, exist_ok=True)
            for _ in range(count):
                j += 1
                if j == 2:
                    text = prism_off(50.0 + ci, 120.0)
                else:
                    text = box_off((100.0 + ci, 20.0 + j, 300.0), ci + j)
                (folder / f"{c}_{j:04d}.off").write_text(text)
    return root


def make_resampled(
    root: Path, classes: list[str] = MODELNET10, points: int = 64, prefix: str = "modelnet10"
) -> Path:
    """``modelnet*_shape_names.txt``, ``modelnet*_{train,test}.txt`` and ``<class>/<id>.txt``."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{prefix}_shape_names.txt").write_text("\n".join(classes) + "\n")
    k = 0
    for split, count in (("train", 2), ("test", 1)):
        ids = []
        for c in classes:
            for _ in range(count):
                k += 1
                shape_id = f"{c}_{k:04d}"
                ids.append(shape_id)
                (root / c).mkdir(exist_ok=True)
                pts = rng.uniform(-1, 1, (points, 3))
                nrm = pts / np.linalg.norm(pts, axis=1, keepdims=True)
                rows = [",".join(f"{v:.6f}" for v in row) for row in np.hstack([pts, nrm])]
                (root / c / f"{shape_id}.txt").write_text("\n".join(rows) + "\n")
        (root / f"{prefix}_{split}.txt").write_text("\n".join(ids) + "\n")
    return root


def make_hdf5(root: Path, points: int = 64, per_file: int = 6) -> Path:
    """``ply_data_{train0,train1,test0}.h5`` + ``{train,test}_files.txt`` + ``shape_names.txt``."""
    import h5py

    rng = np.random.default_rng(1)
    root.mkdir(parents=True, exist_ok=True)
    (root / "shape_names.txt").write_text("\n".join(MODELNET40) + "\n")
    listing: dict[str, list[str]] = {"train": [], "test": []}
    for name in ("train0", "train1", "test0"):
        with h5py.File(root / f"ply_data_{name}.h5", "w") as f:
            f["data"] = rng.uniform(-1, 1, (per_file, points, 3)).astype(np.float32)
            labels = [
                MODELNET40.index(c) for c in ("bed", "chair", "airplane", "sofa", "xbox", "desk")
            ]
            f["label"] = np.asarray(labels[:per_file], dtype=np.uint8).reshape(-1, 1)
        listing[name[:-1] if name.startswith("train") else "test"].append(
            f"data/modelnet40_ply_hdf5_2048/ply_data_{name}.h5"
        )
    for split, files in listing.items():
        (root / f"{split}_files.txt").write_text("\n".join(files) + "\n")
    return root


def make_hdf5_modelnet10(root: Path, points: int = 32, per_class: tuple[int, int] = (2, 1)) -> Path:
    """ModelNet10 in the layout of the shared ``modelnet10_1024`` (PointNet's hdf5 layout):
    ``shape_names.txt`` with the 10 classes (label = line), ``ply_data_{train,test}0.h5`` with
    ``data`` float32 ``[N, points, 3]`` in the unit sphere and ``label`` uint8 ``[N, 1]``,
    sorted by class, and ``{train,test}_files.txt`` naming them under another folder (as the
    release does: the reader takes the file names)."""
    import h5py

    rng = np.random.default_rng(2)
    root.mkdir(parents=True, exist_ok=True)
    (root / "shape_names.txt").write_text("\n".join(MODELNET10) + "\n")
    for split, count in zip(("train", "test"), per_class):
        labels = np.repeat(np.arange(10), count).astype(np.uint8)
        pts = rng.normal(size=(len(labels), points, 3)).astype(np.float32)
        pts *= np.array([1.0, 0.8, 0.5], np.float32)  # z up: flatter along z
        pts /= np.linalg.norm(pts, axis=2).max(axis=1)[:, None, None]
        with h5py.File(root / f"ply_data_{split}0.h5", "w") as f:
            f["data"] = pts
            f["label"] = labels.reshape(-1, 1)
        (root / f"{split}_files.txt").write_text(f"data/modelnet_1024/ply_data_{split}0.h5\n")
    return root


def main(out: Path) -> None:
    make_raw(out / "raw40", MODELNET40, (1, 1))
    make_raw(out / "raw10", MODELNET10)
    make_resampled(out / "resampled")
    make_hdf5(out / "hdf5")
    make_hdf5_modelnet10(out / "modelnet10_1024")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
