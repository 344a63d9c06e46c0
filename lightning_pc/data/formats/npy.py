"""NumPy ``.npy`` point arrays: ``[N, >=3]``, ``x y z`` first, further columns returned as
``features``. The header is checked against the file before anything is loaded; a chunked
read memory-maps the array."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from lightning_pc.data.errors import DataFormatError
from lightning_pc.data.formats.base import Arrays, ChunkSource, Format
from lightning_pc.data.formats.text import _split_columns
from lightning_pc.data.packed import read_npy_header

SPARSE_MIN_BYTES = 1 << 20


def check_npy_size(path: Path) -> None:
    """Check a ``.npy`` file's header against the file before anything is loaded.

    Raises:
        DataFormatError: the data is shorter or longer than the header's shape says, or the
            file is sparse (less than an eighth of a declared size of 1 MiB or more is
            allocated on disk: a preallocated or interrupted download reads as zeros).
    """
    try:
        shape, dtype, _, start = read_npy_header(path)
        st = path.stat()
    except Exception as err:  # noqa: BLE001 (numpy's header parser raises several types)
        raise DataFormatError(path, f"not a readable .npy array ({err})") from err
    if dtype.hasobject:
        raise DataFormatError(path, "holds Python objects (pickled data), not numbers")
    declared = int(np.prod(shape)) * dtype.itemsize
    held = st.st_size - start
    if held != declared:
        what = "truncated" if held < declared else "extra bytes after the array"
        raise DataFormatError(
            path,
            f"{what}: header declares shape {tuple(shape)} {dtype} = {declared} bytes, "
            f"the file holds {held}",
        )
    allocated = getattr(st, "st_blocks", None)
    if allocated is not None and declared >= SPARSE_MIN_BYTES and allocated * 512 < declared // 8:
        raise DataFormatError(
            path,
            f"sparse file: header declares {declared} bytes of data, only {allocated * 512} "
            "are allocated on disk (a preallocated or interrupted download?)",
        )


def read_point_file(path: Path) -> Arrays:
    """``pos`` (columns 0-2) and ``features`` (the others) as float32."""
    check_npy_size(path)
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise DataFormatError(path, f"not a readable .npy array ({err})") from err
    if arr.ndim != 2 or arr.shape[1] < 3 or arr.shape[0] == 0:
        raise DataFormatError(path, f"expected an [N, >=3] array, found shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or not np.isfinite(arr).all():
        raise DataFormatError(path, "array has non-numeric or non-finite values")
    return _split_columns(arr.astype(np.float32))


class NpyChunks(ChunkSource):
    """A memory-mapped ``.npy`` array, checked for non-finite values chunk by chunk."""

    kind = "npy"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        check_npy_size(path)
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise DataFormatError(path, f"not a readable .npy array ({err})") from err
        if arr.ndim != 2 or arr.shape[1] < 3 or arr.shape[0] == 0:
            raise DataFormatError(path, f"expected an [N, >=3] array, found shape {arr.shape}")
        if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
            raise DataFormatError(path, f"array of {arr.dtype}, not real numbers")
        self.array = arr
        self.num_points = arr.shape[0]
        self.coord_dtype = np.dtype(np.float32 if arr.dtype.itemsize <= 4 else np.float64)
        self.keys = {"pos": 3, **({"features": arr.shape[1] - 3} if arr.shape[1] > 3 else {})}

    def chunks(self, chunk: int) -> Iterator[Arrays]:
        return self.sliced(chunk, self._rows)

    def _rows(self, start: int, stop: int) -> Arrays:
        block = np.asarray(self.array[start:stop])
        self.check(block, start, "row")
        out = {"pos": block[:, :3].astype(np.float64)}
        if block.shape[1] > 3:
            out["features"] = block[:, 3:].astype(np.float32)
        return out


FORMAT = Format("npy", (".npy",), read_points=read_point_file, open_chunks=NpyChunks)

FORMATS = (FORMAT,)
