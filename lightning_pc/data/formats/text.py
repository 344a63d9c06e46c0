"""Text point files: ``.txt``, ``.xyz`` and ``.pts`` (Leica PTS: a point-count line first),
one point per line, ``x y z`` then further columns (returned as ``features``), separated
by blanks or commas, ``#`` comments; and :func:`read_table`, the strict numeric table the
dataset readers use (S3DIS, ShapeNetPart).

A text scan is streamed by :class:`TextChunks` after one pass that counts its rows; a file
holding a line break or blank :func:`read_point_file` would split otherwise than ``\\n`` /
``\\r\\n`` and ASCII blanks is read whole instead.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lightning_pc.data.errors import DataFormatError
from lightning_pc.data.formats._common import (
    _NOT_BLANK,
    _ODD_ASCII,
    _ODD_UNICODE,
    _SIGNIFICANT,
    _first_bad_line,
    _fits_float32,
    _line_blocks,
    _locate_table_error,
    _read_text,
    _uncommented,
)
from lightning_pc.data.formats.base import Arrays, ChunkSource, Format


def read_table(
    path: str | Path,
    ncols: int,
    delimiter: str | None = None,
    comments: str | None = "#",
    dtype: type = np.float32,
) -> np.ndarray:
    """Read a numeric text table with exactly ``ncols`` columns per row.

    Args:
        path: text file (whitespace- or ``delimiter``-separated).
        ncols: required number of columns in every non-blank row.
        delimiter: field separator; ``None`` for any whitespace.
        comments: comment marker, or ``None``.
        dtype: dtype of the returned array.

    Returns:
        Array ``[rows, ncols]``.

    Raises:
        DataFormatError: empty file, wrong column count, non-numeric or non-finite field
            (naming the file and the line).
    """
    path = Path(path)
    text = _read_text(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # empty input: reported below, with the file name
            arr = np.loadtxt(
                io.StringIO(text), delimiter=delimiter, comments=comments, ndmin=2, dtype=np.float64
            )
    except ValueError:
        raise _locate_table_error(path, text, ncols, delimiter, comments) from None
    if arr.shape[0] == 0 or arr.shape[1] != ncols or not _fits_float32(arr):
        raise _locate_table_error(path, text, ncols, delimiter, comments)
    return arr.astype(dtype, copy=False)


def _read_point_text(path: Path) -> np.ndarray:
    text = _read_text(path)
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        raise DataFormatError(path, "file is empty (no data rows)")
    start = 0
    head = lines[first].split()
    if path.suffix.lower() == ".pts" and len(head) == 1 and head[0].isdigit():
        start = first + 1  # Leica PTS: a point-count line first
    if start >= len(lines) or not any(line.strip() for line in lines[start:]):
        raise DataFormatError(path, "file is empty (no data rows)")
    # the columns come from the first data row: comment lines (``# x y z r g b``) and a
    # row's trailing ``# ...`` do not count
    data_line = next((i for i in range(start, len(lines)) if _uncommented(lines[i])), None)
    if data_line is None:
        raise DataFormatError(path, "file is empty (no data rows)")
    data_first = _uncommented(lines[data_line])
    delimiter = "," if "," in data_first else None
    ncols = len(data_first.split(delimiter))
    if ncols < 3:
        raise DataFormatError(path, f"expected at least 3 columns, found {ncols}", data_line + 1)
    body = "\n".join([""] * start + lines[start:])  # keep line numbers
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = np.loadtxt(io.StringIO(body), delimiter=delimiter, ndmin=2, comments="#")
        if arr.shape[1] == ncols and _fits_float32(arr) and len(arr):
            if start:
                _check_pts_count(path, int(head[0]), len(arr))
            return arr.astype(np.float32)
    except ValueError:
        pass
    raise _locate_table_error(path, body, ncols, delimiter, "#")


def _check_pts_count(path: Path, declared: int, rows: int) -> None:
    """A Leica PTS count line that disagrees with the rows: the rows are read (as the
    format's tools read them), with a warning."""
    if declared != rows:
        what = "fewer" if rows < declared else "more"
        warnings.warn(
            f"{path}: the count line declares {declared} points, the file holds {rows} rows "
            f"({what}): read the {rows}",
            stacklevel=5,
        )


def _split_columns(arr: np.ndarray) -> dict[str, np.ndarray]:
    out = {"pos": np.ascontiguousarray(arr[:, :3], dtype=np.float32)}
    if arr.shape[1] > 3:
        out["features"] = np.ascontiguousarray(arr[:, 3:], dtype=np.float32)
    return out


@dataclass
class _TextLayout:
    """What one pass over a text scan found: its rows, columns and .pts count line."""

    rows: int
    ncols: int
    delimiter: str | None
    header_line: int | None  # 0-based line of a Leica PTS point-count line
    declared: int | None = None  # the count that line declares


def _block_text(path: Path, raw: bytes, line0: int, header_line: int | None) -> str:
    """A block of a text scan as :func:`_read_point_text` parses it: NUL bytes as spaces,
    ``\r\n`` as ``\n``, a .pts count line blanked."""
    try:
        text = raw.replace(b"\x00", b" ").decode("utf-8")
    except UnicodeDecodeError as err:  # checked when opened: the file changed since
        line = line0 + raw[: err.start].count(b"\n") + 1
        raise DataFormatError(path, "not a UTF-8/ASCII text file", line) from err
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    lines_held = text.count("\n") + (not text.endswith("\n"))
    if header_line is not None and line0 <= header_line < line0 + lines_held:
        lines = text.split("\n")
        lines[header_line - line0] = ""
        text = "\n".join(lines)
    return text


def _text_layout(path: Path) -> _TextLayout | None:
    """Count a text scan's data rows in one pass over its bytes, and settle its delimiter
    and columns from its first lines, as :func:`_read_point_text` does.

    Returns:
        The layout, or ``None`` where the file holds a line break or blank other than
        ``\n``, ``\r\n``, space, tab and NUL (lines would be split otherwise).

    Raises:
        DataFormatError: the errors :func:`read_point_file` raises before parsing values
            (unreadable, not UTF-8, empty, fewer than 3 columns).
    """
    pts = path.suffix.lower() == ".pts"
    first: int | None = None  # 0-based line of the first non-blank line
    header: int | None = None
    declared: int | None = None  # a Leica PTS count line's count
    data_first: str | None = None
    data_line = 0  # 0-based line of the first data row
    count = 0  # lines whose first non-blank byte is not '#'
    before = 10  # the last non-blank byte so far: the file starts as after a newline
    for block, line0 in _line_blocks(path):
        if any(c in block for c in _ODD_ASCII) or block.count(b"\r") != block.count(b"\r\n"):
            return None
        if not block.isascii():
            try:
                decoded = block.replace(b"\x00", b" ").decode("utf-8")
            except UnicodeDecodeError as err:
                line = line0 + block[: err.start].count(b"\n") + 1
                raise DataFormatError(path, "not a UTF-8/ASCII text file", line) from err
            if _ODD_UNICODE.search(decoded):
                return None
        at = 0
        while data_first is None:
            found = _NOT_BLANK.search(block, at)
            if found is None:
                break
            begin = block.rfind(b"\n", 0, found.start()) + 1
            end = block.find(b"\n", found.start())
            end = len(block) if end < 0 else end
            content = block[begin:end].replace(b"\x00", b" ").decode("utf-8").removesuffix("\r")
            if first is None:
                first = line0 + block.count(b"\n", 0, begin)
                head = content.split()
                if pts and len(head) == 1 and head[0].isdigit():
                    header, at = first, end  # Leica PTS: a point-count line first
                    declared = int(head[0])
                    continue
            if not _uncommented(content):
                at = end  # a comment line: the columns come from the first data row
                continue
            data_first = _uncommented(content)
            data_line = line0 + block.count(b"\n", 0, begin)
        raw = np.frombuffer(block, dtype=np.uint8)
        seq = raw[_SIGNIFICANT[raw]]  # non-blank bytes and newlines, in order
        if len(seq):
            after_newline = np.empty(len(seq), dtype=bool)
            after_newline[0] = before == 10
            np.equal(seq[:-1], 10, out=after_newline[1:])
            count += int(np.count_nonzero(after_newline & (seq != 10) & (seq != 35)))
            before = int(seq[-1])
    if first is None or data_first is None:
        raise DataFormatError(path, "file is empty (no data rows)")
    delimiter = "," if "," in data_first else None
    ncols = len(data_first.split(delimiter))
    if ncols < 3:
        raise DataFormatError(path, f"expected at least 3 columns, found {ncols}", data_line + 1)
    rows = count - (header is not None)
    if rows == 0:
        raise DataFormatError(path, "file is empty (no data rows)")
    return _TextLayout(rows, ncols, delimiter, header, declared)


def read_point_file(path: Path) -> Arrays:
    """``pos`` (the first three columns, float32) and ``features`` (the others, if any)."""
    return _split_columns(_read_point_text(path))


class TextChunks(ChunkSource):
    """A text scan parsed :data:`~lightning_pc.data.formats._common.TEXT_BLOCK` bytes at a
    time, after one pass that counted its rows and settled its columns."""

    kind = "text"

    def __init__(self, path: Path, layout: _TextLayout) -> None:
        super().__init__(path)
        self.layout = layout
        self.num_points = layout.rows
        self.coord_dtype = np.dtype(np.float32)
        self.keys = {"pos": 3, **({"features": layout.ncols - 3} if layout.ncols > 3 else {})}

    def chunks(self, chunk: int) -> Iterator[Arrays]:
        return self.rebatch(self._arrays(), self._rows, chunk)

    def _arrays(self) -> Iterator[np.ndarray]:
        layout = self.layout
        blocks = _line_blocks(self.path)
        for raw, line0 in blocks:
            text = _block_text(self.path, raw, line0, layout.header_line)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # a block of comments only: no rows
                    arr = np.loadtxt(
                        io.StringIO(text), delimiter=layout.delimiter, ndmin=2, comments="#"
                    )
                good = len(arr) == 0 or (arr.shape[1] == layout.ncols and _fits_float32(arr))
            except ValueError:
                good = False
            if not good:
                raise self._error(text, line0, blocks)
            if len(arr):
                yield arr.astype(np.float32)  # read_point_file's values, to the bit

    @staticmethod
    def _rows(rows: np.ndarray) -> Arrays:
        out = {"pos": rows[:, :3].astype(np.float64)}
        if rows.shape[1] > 3:
            out["features"] = np.ascontiguousarray(rows[:, 3:])
        return out

    def _error(self, text: str, line0: int, blocks: Iterator[tuple[bytes, int]]) -> DataFormatError:
        """The error :func:`read_point_file` raises: the file's first malformed line, which
        may lie in a later block when this block failed in a way no line explains."""
        layout = self.layout
        error, _ = _first_bad_line(self.path, text, layout.ncols, layout.delimiter, "#", line0 + 1)
        for raw, start in blocks:
            if error is not None:
                break
            later = _block_text(self.path, raw, start, layout.header_line)
            error, _ = _first_bad_line(
                self.path, later, layout.ncols, layout.delimiter, "#", start + 1
            )
        return error if error is not None else DataFormatError(self.path, "could not parse table")


def open_chunks(path: Path) -> TextChunks | None:
    """Count a text scan's rows and settle its columns as :func:`read_point_file` does
    (``None``: characters that split lines or fields otherwise, read whole)."""
    layout = _text_layout(path)
    if layout is None:
        return None
    if layout.declared is not None:
        _check_pts_count(path, layout.declared, layout.rows)
    return TextChunks(path, layout)


FORMAT = Format(
    "text",
    (".xyz", ".pts", ".txt"),
    read_points=read_point_file,
    open_chunks=open_chunks,
)

FORMATS = (FORMAT,)
