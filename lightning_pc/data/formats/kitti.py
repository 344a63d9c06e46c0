"""KITTI / SemanticKITTI velodyne scans (``.bin``): float32 ``x y z intensity`` per point,
no header. Read by :func:`~lightning_pc.data.formats.read_scan` and chunk by chunk
(memory-mapped); not a :func:`~lightning_pc.data.formats.read_point_file` format."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from lightning_pc.data.errors import DataFormatError
from lightning_pc.data.formats.base import Arrays, ChunkSource, Format


def _check_size(path: Path) -> int:
    size = path.stat().st_size
    if size == 0 or size % 16:
        raise DataFormatError(
            path, f"{size} bytes is not a whole number of points (16 bytes: float32 x y z i)"
        )
    return size


def read_velodyne(path: str | Path) -> np.ndarray:
    """``[N, 4]`` float32 ``x y z intensity`` of a ``.bin`` scan.

    Raises:
        DataFormatError: a size that is not a whole number of 16-byte points, an empty
            file, or non-finite values.
    """
    path = Path(path)
    _check_size(path)
    scan = np.fromfile(path, dtype="<f4").reshape(-1, 4)
    if not np.isfinite(scan).all():
        row = int(np.flatnonzero(~np.isfinite(scan).all(1))[0])
        raise DataFormatError(path, f"point {row} has a NaN or infinite value")
    return scan


def read_scan(path: Path) -> Arrays:
    """``pos [N, 3]`` and ``intensity [N]``, float32."""
    scan = read_velodyne(path)
    return {"pos": np.ascontiguousarray(scan[:, :3]), "intensity": scan[:, 3].copy()}


class BinChunks(ChunkSource):
    """A memory-mapped ``.bin`` scan."""

    kind = "bin"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        size = _check_size(path)
        self.array = np.memmap(path, dtype="<f4", mode="r").reshape(-1, 4)
        self.num_points = size // 16
        self.coord_dtype = np.dtype(np.float32)
        self.keys = {"pos": 3, "intensity": 1}

    def chunks(self, chunk: int) -> Iterator[Arrays]:
        return self.sliced(chunk, self._rows)

    def _rows(self, start: int, stop: int) -> Arrays:
        block = np.asarray(self.array[start:stop])
        self.check(block, start)
        return {"pos": block[:, :3].astype(np.float64), "intensity": block[:, 3].copy()}


FORMAT = Format("kitti", (".bin",), read_scan=read_scan, open_chunks=BinChunks)

FORMATS = (FORMAT,)
