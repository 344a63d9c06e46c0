"""Reading a scan in chunks of rows, whatever its format (:class:`ScanChunks`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from lightning_pc.data.errors import DataFormatError
from lightning_pc.data.formats.base import SCAN_CHUNK, ChunkSource, WholeChunks


class ScanChunks:
    """A scan read in consecutive chunks of rows, so a large file is never held whole.

    NPY arrays, KITTI ``.bin`` scans, binary PLY files (vertex element first, scalar
    properties only) and binary PCD files are memory-mapped; LAS/LAZ files are read with
    laspy's chunk iterator; text scans (``.txt``, ``.xyz``, ``.pts``), ASCII PLY files
    (scalar vertex properties) and ASCII PCD files are parsed :data:`~lightning_pc.data.formats._common.TEXT_BLOCK` bytes at a
    time after one pass that counts their rows; a text file holding a line break or blank
    :func:`read_point_file` would split otherwise than ``\n`` / ``\r\n`` and ASCII
    blanks (a lone ``\r``, a form feed, ...), an ASCII PLY body holding a ``#``, and a PCD
    file Open3D reads in ways this does not follow (compressed data, an unusual header, see
    :func:`~lightning_pc.data.formats.pcd.pcd_layout`) are read whole by :func:`read_scan` and
    handed out in slices. PCD points with NaN or infinite coordinates (an organised cloud's
    pixels without depth) are dropped with one warning, as :func:`read_point_file` drops them. Every chunk is checked for non-finite values
    (naming the file and the row, or for text formats the line). The rows, their order and
    values, and the errors are those of :func:`read_scan`.

    Each chunk is a dict with ``pos [n, 3]`` float64 and, where the file has them,
    ``rgb [n, 3]`` float32 (divide by :meth:`rgb_divisor` of the whole scan's maximum to get
    0-1), ``intensity [n]`` float32 (raw sensor units), ``normal [n, 3]`` float32 (PLY/PCD
    files read as text or whole) and ``features [n, F]`` float32 (NPY and text columns after
    ``x y z``).

    Args:
        path: the scan file.
        chunk: rows per chunk.

    Attributes:
        num_points: rows of the scan.
        keys: the per-point arrays a chunk holds, with their widths (``pos`` included).
        coord_dtype: how the file stores coordinates (float32 or float64).

    Raises:
        DataFormatError: unreadable, empty or truncated file, or a NaN / infinite value.
    """

    def __init__(self, path: str | Path, chunk: int = SCAN_CHUNK) -> None:
        from lightning_pc.data.formats import lookup, read_scan

        self.path, self.chunk = Path(path), max(int(chunk), 1)
        if not self.path.is_file():
            raise DataFormatError(self.path, "file not found")
        fmt = lookup(self.path)
        source = None
        if fmt is not None and fmt.open_chunks is not None:
            source = fmt.open_chunks(self.path)
        if source is None:  # a format or a file that is not streamed: read whole
            source = WholeChunks(self.path, read_scan(self.path))
        self._source: ChunkSource = source
        self.num_points: int = source.num_points
        self.keys: dict[str, int] = source.keys
        self.coord_dtype: np.dtype = source.coord_dtype

    @property
    def _kind(self) -> str:
        """How the file is read (``"whole"``, or the streaming source's kind)."""
        return self._source.kind

    def rgb_divisor(self, top: float) -> float:
        """What the raw ``rgb`` values are divided by, given their maximum over the scan.

        LAS holds 16-bit colours (some writers put 8-bit values in them), PLY ``uchar``
        colours are 0-255, others are 0-1 already.
        """
        return self._source.rgb_divisor(top)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        yield from self._source.chunks(self.chunk)
