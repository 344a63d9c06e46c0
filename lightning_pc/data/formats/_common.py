"""Helpers the text-based readers share: decoding, comment stripping, float32 range checks,
naming the first malformed line, and reading a file in blocks of whole lines."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from lightning_pc.data.errors import DataFormatError

TEXT_BLOCK = 1 << 21  # bytes of a text scan parsed at a time (about 50k rows)


def _read_text(path: Path, latin1: bool = False) -> str:
    """Read a text file; NUL bytes (a known S3DIS defect) are read as spaces, in memory.

    ``latin1``: a file that is not UTF-8 is read as Latin-1 (every byte a character) instead
    of refused, for formats whose non-ASCII bytes can only sit in names nobody reads."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataFormatError(path, f"cannot read file ({err})") from err
    if b"\x00" in raw:
        raw = raw.replace(b"\x00", b" ")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        if latin1:
            return raw.decode("latin-1")
        line = raw[: err.start].count(b"\n") + 1
        raise DataFormatError(path, "not a UTF-8/ASCII text file", line) from err


def _strip_comment(line: str, comments: str | None) -> str:
    if comments:
        cut = line.find(comments)
        if cut >= 0:
            line = line[:cut]
    return line.strip()


_F32_MAX = float(np.finfo(np.float32).max)


def _fits_float32(arr: np.ndarray) -> bool:
    """Every value finite and within float32's range (point data becomes float32: a larger
    value would turn into infinity there)."""
    return bool(np.isfinite(arr).all()) and (arr.size == 0 or float(np.abs(arr).max()) <= _F32_MAX)


def _first_bad_line(
    path: Path,
    text: str,
    ncols: int,
    delimiter: str | None,
    comments: str | None,
    first_line: int = 1,
) -> tuple[DataFormatError | None, int]:
    """The first malformed row of ``text`` (whose first line is line ``first_line`` of the
    file), or ``None``, and the number of data rows seen."""
    rows = 0
    for number, line in enumerate(text.splitlines(), start=first_line):
        content = _strip_comment(line, comments)
        if not content:
            continue
        rows += 1
        fields = [f for f in content.split(delimiter)] if delimiter else content.split()
        if len(fields) != ncols:
            return DataFormatError(
                path, f"expected {ncols} columns, found {len(fields)}: {content[:80]!r}", number
            ), rows
        for field in fields:
            try:
                value = float(field)
            except ValueError:
                return DataFormatError(
                    path, f"non-numeric field {field.strip()[:40]!r}", number
                ), rows
            if not np.isfinite(value):
                return DataFormatError(path, f"non-finite value {field.strip()!r}", number), rows
            if abs(value) > _F32_MAX:
                return DataFormatError(
                    path, f"value {field.strip()!r} is beyond float32's range (3.4e38)", number
                ), rows
    return None, rows


def _locate_table_error(
    path: Path, text: str, ncols: int, delimiter: str | None, comments: str | None
) -> DataFormatError:
    """Scan line by line for the first malformed row (only called once parsing failed)."""
    error, rows = _first_bad_line(path, text, ncols, delimiter, comments)
    if error is not None:
        return error
    if rows == 0:
        return DataFormatError(path, "file is empty (no data rows)")
    return DataFormatError(path, "could not parse table")


def _uncommented(line: str) -> str:
    """A text row without its ``#`` comment, stripped (empty for a comment or blank line)."""
    return line.split("#", 1)[0].strip()


_BLANK = b" \t\r\x00"  # the blanks of a text scan's lines (NUL: a known S3DIS defect)
_NOT_BLANK = re.compile(rb"[^ \t\r\n\x00]")
_SIGNIFICANT = np.ones(256, dtype=bool)  # bytes that are neither blanks nor whitespace
_SIGNIFICANT[list(_BLANK)] = False
# ASCII characters str.splitlines or str.split treat as line breaks or blanks beyond those
_ODD_ASCII = (b"\x0b", b"\x0c", b"\x1c", b"\x1d", b"\x1e", b"\x1f")
_ODD_UNICODE = re.compile("[\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]")


def _line_offset(block: bytes, line: int) -> int:
    """Byte offset of 0-based ``line`` in a block of lines (its length past the last)."""
    if line == 0:
        return 0
    ends = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10)
    return int(ends[line - 1]) + 1 if line <= len(ends) else len(block)


def _line_blocks(path: Path, offset: int = 0) -> Iterator[tuple[bytes, int]]:
    """A file's bytes from ``offset`` on in blocks of whole lines (``\n``-terminated but
    the last), each with the number of lines before it."""
    size = TEXT_BLOCK
    lines = 0
    carry = b""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            while True:
                data = fh.read(size)
                if not data:
                    break
                data = carry + data if carry else data
                cut = data.rfind(b"\n") + 1
                if cut == 0:
                    carry = data  # a line longer than a block: read on
                    continue
                block, carry = data[:cut], data[cut:]
                yield block, lines
                lines += block.count(b"\n")
    except OSError as err:
        raise DataFormatError(path, f"cannot read file ({err})") from err
    if carry:
        yield carry, lines


class _ReadWhole(Exception):
    """A file this module streams holds something only the whole read reads as it should."""


def _data_line(path: Path, row: int) -> int | None:
    """The 1-based line of data row ``row`` in an ASCII PLY or PCD file (``None`` if binary)."""
    header = _header_lines(path)
    last = header[-1][:2] if header else []
    if last == [b"DATA", b"ascii"]:
        return len(header) + 1 + row
    if last == [b"end_header"] and any(p[:2] == [b"format", b"ascii"] for p in header):
        return len(header) + 1 + row  # assumes the vertex element comes first
    return None


def _header_lines(path: Path, limit: int = 200) -> list[list[bytes]]:
    out = []
    with open(path, "rb") as fh:
        for _ in range(limit):
            line = fh.readline()
            if not line:
                break
            parts = line.split()
            out.append(parts)
            if parts[:1] in ([b"end_header"], [b"DATA"]):
                break
    return out


def _declared_points(path: Path) -> int | None:
    """Point count declared in a PLY (``element vertex N``) or PCD (``POINTS N``) header."""
    for parts in _header_lines(path):
        try:
            if len(parts) == 3 and parts[:2] == [b"element", b"vertex"]:
                return int(parts[2])
            if len(parts) == 2 and parts[0] == b"POINTS":
                return int(parts[1])
        except ValueError:
            return None
    return None
