"""Write hostile raw files and damage cache files, the way the fault-injection tests need.

Usage: ``python tests/data/faults/make_faults.py OUT_DIR`` writes one file per hostile case
into ``OUT_DIR`` (for a look with other tools); the tests call the functions.

Raw files (each valid except for its one fault):

- ``extra_rows.ply``: ASCII PLY whose header declares 60 vertices, 100 rows follow;
- ``extra_rows_binary.ply``: the same in binary little endian;
- ``extra_rows.pcd`` / ``extra_rows_binary.pcd``: PCD declaring 60 points (``POINTS``),
  holding 100;
- ``extra_faces.off``: OFF declaring 2 faces, with 3 face lines;
- ``bad_index_mesh.ply``: ASCII PLY mesh with a face index past its 4 vertices;
- ``sparse.npy``: a ``.npy`` whose header declares 2 GiB of float32 ``[N, 3]`` rows, written
  as a sparse file (4 KiB allocated: a preallocated or interrupted download);
- ``truncated.npy`` / ``overlong.npy``: data shorter / longer than the header declares;
- ``fractional_labels/``: the ModelNet40 hdf5 layout with a label ``3.7``.

Cache damage (in place, on a cache folder's files): flipped bytes, a NaN, a label, a
truncation, a same-size edit of a raw file with its mtime restored.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np


def _cloud(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, 3)).astype(np.float32)


def ply_extra_rows(path: Path, declared: int = 60, rows: int = 100) -> Path:
    """ASCII PLY: the header declares ``declared`` vertices, ``rows`` follow."""
    head = (
        f"ply\nformat ascii 1.0\nelement vertex {declared}\n"
        "property float x\nproperty float y\nproperty float z\nend_header\n"
    )
    body = "\n".join(f"{x:.5f} {y:.5f} {z:.5f}" for x, y, z in _cloud(rows)) + "\n"
    path.write_text(head + body)
    return path


def ply_binary_extra_rows(path: Path, declared: int = 60, rows: int = 100) -> Path:
    """Binary little-endian PLY: the header declares ``declared`` vertices, ``rows`` follow."""
    head = (
        f"ply\nformat binary_little_endian 1.0\nelement vertex {declared}\n"
        "property float x\nproperty float y\nproperty float z\nend_header\n"
    )
    path.write_bytes(head.encode() + _cloud(rows).astype("<f4").tobytes())
    return path


def pcd_extra_rows(path: Path, binary: bool = False, declared: int = 60, rows: int = 100) -> Path:
    """PCD (ASCII or binary): ``POINTS``/``WIDTH`` declare ``declared`` points, ``rows`` follow."""
    head = (
        "# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\n"
        f"TYPE F F F\nCOUNT 1 1 1\nWIDTH {declared}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\n"
        f"POINTS {declared}\nDATA {'binary' if binary else 'ascii'}\n"
    )
    if binary:
        path.write_bytes(head.encode() + _cloud(rows).astype("<f4").tobytes())
    else:
        body = "\n".join(f"{x:.5f} {y:.5f} {z:.5f}" for x, y, z in _cloud(rows)) + "\n"
        path.write_text(head + body)
    return path


def off_extra_faces(path: Path) -> Path:
    """A tetrahedron's OFF declaring 2 faces, followed by 3 face lines."""
    path.write_text("OFF\n4 2 0\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n3 0 1 2\n3 0 1 3\n3 0 2 3\n")
    return path


def ply_mesh_bad_index(path: Path) -> Path:
    """ASCII PLY mesh of 4 vertices whose second face uses vertex 7."""
    path.write_text(
        "ply\nformat ascii 1.0\nelement vertex 4\nproperty float x\nproperty float y\n"
        "property float z\nelement face 2\nproperty list uchar int vertex_indices\nend_header\n"
        "0 0 0\n1 0 0\n0 1 0\n0 0 1\n3 0 1 2\n3 0 1 7\n"
    )
    return path


def npy_header(shape: tuple[int, ...], dtype: str = "<f4") -> bytes:
    """A version 1.0 ``.npy`` header for ``shape``."""
    text = f"{{'descr': '{dtype}', 'fortran_order': False, 'shape': {shape!r}, }}"
    pad = 64 - (10 + len(text) + 1) % 64
    body = (text + " " * pad + "\n").encode("latin1")
    return b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body


def sparse_npy(path: Path, declared_bytes: int = 2 << 30) -> Path:
    """A ``.npy`` of float32 ``[N, 3]`` whose data is a hole of ``declared_bytes`` bytes
    (``truncate`` extends a file without allocating it), with 4 KiB of real rows first."""
    rows = declared_bytes // 12
    header = npy_header((rows, 3))
    with open(path, "wb") as fh:
        fh.write(header)
        fh.write(_cloud(4096 // 12).tobytes())
        fh.truncate(len(header) + rows * 12)
    return path


def truncated_npy(path: Path) -> Path:
    """A ``.npy`` declaring 100 rows that holds 60."""
    path.write_bytes(npy_header((100, 3)) + _cloud(60).tobytes())
    return path


def overlong_npy(path: Path) -> Path:
    """A ``.npy`` declaring 60 rows that holds 100."""
    path.write_bytes(npy_header((60, 3)) + _cloud(100).tobytes())
    return path


MODELNET40 = (
    "airplane bathtub bed bench bookshelf bottle bowl car chair cone cup curtain desk door "
    "dresser flower_pot glass_box guitar keyboard lamp laptop mantel monitor night_stand "
    "person piano plant radio range_hood sink sofa stairs stool table tent toilet tv_stand "
    "vase wardrobe xbox"
).split()


def hdf5_labels(root: Path, labels: list[float]) -> Path:
    """The ModelNet40 hdf5 layout (one train and one test file) with float ``labels``."""
    import h5py

    root.mkdir(parents=True, exist_ok=True)
    (root / "shape_names.txt").write_text("\n".join(MODELNET40) + "\n")
    for split in ("train", "test"):
        with h5py.File(root / f"ply_data_{split}0.h5", "w") as f:
            f["data"] = np.stack([_cloud(32, i) for i in range(len(labels))])
            f["label"] = np.asarray(labels, dtype=np.float32).reshape(-1, 1)
        (root / f"{split}_files.txt").write_text(f"data/ply_data_{split}0.h5\n")
    return root


# --- cache damage ------------------------------------------------------------------------


def data_offset(npy: Path) -> int:
    """Where a ``.npy`` file's array data starts."""
    with open(npy, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            np.lib.format.read_array_header_1_0(fh)
        else:
            np.lib.format.read_array_header_2_0(fh)
        return fh.tell()


def flip_bytes(npy: Path, row: int = 1) -> None:
    """Invert the sign bit of the first float of ``row`` (a finite value stays finite)."""
    with open(npy, "r+b") as fh:
        arr = np.load(npy, mmap_mode="r")
        at = data_offset(npy) + row * arr[0].nbytes + arr.dtype.itemsize - 1
        fh.seek(at)
        byte = fh.read(1)[0]
        fh.seek(at)
        fh.write(bytes([byte ^ 0x80]))


def put_value(npy: Path, index: int, value: float) -> None:
    """Overwrite one element (flat ``index``) of a ``.npy`` array in place."""
    arr = np.load(npy, mmap_mode="r+")
    arr.reshape(-1)[index] = value
    arr.flush()
    del arr


def truncate(path: Path, keep: int) -> None:
    """Cut a file to ``keep`` bytes."""
    os.truncate(path, keep)


def same_size_edit(path: Path, old: bytes, new: bytes) -> None:
    """Replace ``old`` by ``new`` (same length) in a file, then restore its mtime."""
    assert len(old) == len(new)
    st = path.stat()
    data = path.read_bytes()
    assert old in data
    path.write_bytes(data.replace(old, new, 1))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    ply_extra_rows(out / "extra_rows.ply")
    ply_binary_extra_rows(out / "extra_rows_binary.ply")
    pcd_extra_rows(out / "extra_rows.pcd")
    pcd_extra_rows(out / "extra_rows_binary.pcd", binary=True)
    off_extra_faces(out / "extra_faces.off")
    ply_mesh_bad_index(out / "bad_index_mesh.ply")
    sparse_npy(out / "sparse.npy")
    truncated_npy(out / "truncated.npy")
    overlong_npy(out / "overlong.npy")
    hdf5_labels(out / "fractional_labels", [3.7, 2.0])


if __name__ == "__main__":
    main(Path(sys.argv[1]))
