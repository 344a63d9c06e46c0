"""Packed sample storage: concatenated per-point arrays + offsets in ``.npy``, memory-mapped.

A split folder holds ``offsets.npy`` (``[S + 1]`` int64), one ``<field>.npy`` per point-level
field (rows of every sample back to back), ``sample_<field>.npy`` for per-sample values
(labels, categories) and ``names.json`` (one name per sample). Nothing is pickled.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np

from lightning_pc.data.errors import CacheCorruptedError

_HEADER_BYTES = 128


def _load(path: Path, mmap: bool = False) -> np.ndarray:
    """``np.load`` that names the cache file when it cannot be read (truncated, garbled)."""
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise CacheCorruptedError(
            path,
            f"cannot read this array ({type(err).__name__}: {err}); run prepare_data() "
            "or `lightning-pc cache verify` to rebuild or set it aside",
        ) from err


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise CacheCorruptedError(path, f"cannot read this index ({err})") from err


def _npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    descr = np.lib.format.dtype_to_descr(np.dtype(dtype))
    text = f"{{'descr': {descr!r}, 'fortran_order': False, 'shape': {tuple(shape)!r}, }}"
    body_len = _HEADER_BYTES - 10
    if len(text) >= body_len:
        raise ValueError(f"npy header too long for shape {shape}")
    body = text.ljust(body_len - 1) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", body_len) + body.encode("latin1")


def read_npy_header(path: str | Path) -> tuple[tuple[int, ...], np.dtype, bool, int]:
    """Read only the header of a ``.npy`` file.

    Returns:
        ``(shape, dtype, fortran_order, offset of the data)``.

    Raises:
        OSError, ValueError, EOFError: not a ``.npy`` file, or a damaged header.
    """
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        return tuple(shape), np.dtype(dtype), bool(fortran), fh.tell()


class NpyStream:
    """Append rows to a ``.npy`` file without holding the whole array in memory.

    Args:
        path: destination file.
        dtype: element dtype.
        tail: shape of one row (``()`` for a 1-D array).
    """

    def __init__(self, path: Path, dtype: np.dtype, tail: tuple[int, ...]) -> None:
        self.path = path
        self.dtype = np.dtype(dtype)
        self.tail = tuple(tail)
        self.rows = 0
        self._fh = open(path, "wb")
        self._fh.write(b"\0" * _HEADER_BYTES)

    def write(self, arr: np.ndarray) -> None:
        """Append ``arr`` (shape ``[n, *tail]``), cast to the stream's dtype."""
        if tuple(arr.shape[1:]) != self.tail:
            raise ValueError(f"{self.path.name}: row shape {arr.shape[1:]} != {self.tail}")
        self._fh.write(np.ascontiguousarray(arr, dtype=self.dtype).tobytes())
        self.rows += arr.shape[0]

    def close(self) -> None:
        """Write the final header and close the file."""
        self._fh.seek(0)
        self._fh.write(_npy_header(self.dtype, (self.rows, *self.tail)))
        self._fh.close()


class PackedWriter:
    """Write the samples of one split into a folder.

    Args:
        folder: destination (created).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._streams: dict[str, NpyStream] = {}
        self._offsets = [0]
        self._sample: dict[str, list[Any]] = {}
        self._names: list[str] = []

    def append(
        self, name: str, points: dict[str, np.ndarray], sample: dict[str, Any] | None = None
    ) -> None:
        """Add one sample.

        Args:
            name: sample name (e.g. the raw file's relative path).
            points: point-level arrays, all with the same first dimension.
            sample: per-sample scalars (e.g. ``{"label": 3}``).
        """
        sample = sample or {}
        if not self._streams and len(self._offsets) == 1:
            for key, arr in points.items():
                self._streams[key] = NpyStream(self.folder / f"{key}.npy", arr.dtype, arr.shape[1:])
            self._sample = {key: [] for key in sample}
        if set(points) != set(self._streams) or set(sample) != set(self._sample):
            raise ValueError(f"sample {name!r} has fields {sorted(points)}, {sorted(sample)}")
        n = {arr.shape[0] for arr in points.values()}
        if len(n) != 1:
            raise ValueError(f"sample {name!r}: point fields have different lengths {n}")
        for key, arr in points.items():
            if tuple(arr.shape[1:]) != self._streams[key].tail:
                raise ValueError(
                    f"sample {name!r}: {key} row shape {arr.shape[1:]} != {self._streams[key].tail}"
                )
        for key, arr in points.items():
            self._streams[key].write(arr)
        for key, value in sample.items():
            self._sample[key].append(value)
        self._offsets.append(self._offsets[-1] + n.pop())
        self._names.append(name)

    def close(self) -> None:
        """Write offsets, per-sample arrays and names."""
        for stream in self._streams.values():
            stream.close()
        np.save(self.folder / "offsets.npy", np.asarray(self._offsets, dtype=np.int64))
        for key, values in self._sample.items():
            np.save(self.folder / f"sample_{key}.npy", np.asarray(values))
        fields = {k: [str(s.dtype), list(s.tail)] for k, s in self._streams.items()}
        (self.folder / "names.json").write_text(json.dumps(self._names))
        (self.folder / "fields.json").write_text(json.dumps(fields))


class PackedArrays:
    """Read-only, memory-mapped view of a split written by :class:`PackedWriter`.

    Arrays are opened lazily in the process that uses them, so the object pickles cheaply
    into DataLoader workers.

    Args:
        folder: split folder.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.offsets = _load(self.folder / "offsets.npy")
        self.fields: list[str] = list(_load_json(self.folder / "fields.json"))
        self.names: list[str] = _load_json(self.folder / "names.json")
        self._maps: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_maps"] = {}
        return state

    def _array(self, key: str) -> np.ndarray:
        arr = self._maps.get(key)
        if arr is None:
            # a plain ndarray view of the memory map: cheaper to index than np.memmap
            arr = np.asarray(_load(self.folder / f"{key}.npy", mmap=True))
            self._maps[key] = arr
        return arr

    def num_points(self, index: int) -> int:
        """Number of points in sample ``index``."""
        return int(self.offsets[index + 1] - self.offsets[index])

    def points(self, index: int, key: str, rows: np.ndarray | None = None) -> np.ndarray:
        """Point-level array ``key`` of sample ``index`` (optionally only ``rows``), a copy."""
        start, end = int(self.offsets[index]), int(self.offsets[index + 1])
        arr = self._array(key)
        if rows is None:
            return np.array(arr[start:end])
        return arr[start + rows]

    def view(self, index: int, key: str) -> np.ndarray:
        """Point-level array ``key`` of sample ``index`` as a read-only memory-mapped view."""
        start, end = int(self.offsets[index]), int(self.offsets[index + 1])
        return self._array(key)[start:end]

    def sample(self, key: str) -> np.ndarray:
        """Per-sample array ``key`` (e.g. ``label``), loaded in memory."""
        return _load(self.folder / f"sample_{key}.npy")
