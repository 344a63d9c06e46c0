"""PCD point clouds (PCL): ``DATA ascii``, ``binary`` and ``binary_compressed``.

Binary and ASCII files whose header this module follows exactly are read with numpy
(:class:`PcdChunks`, memory-mapped or parsed a block at a time), with Open3D's rules for
which fields it reads and how; other files (compressed data, unusual headers) go to
Open3D after our checks. Binary files with 8-byte coordinates or normals (which Open3D
reads as 0) are always read with numpy; :func:`read_scan` keeps 8-byte coordinates as
float64. NaN points (an organised cloud's pixels without depth) are dropped with a warning.
"""

from __future__ import annotations

import io
import struct
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lightning_pc.data.errors import DataFormatError
from lightning_pc.data.formats import _common
from lightning_pc.data.formats._common import (
    _ODD_ASCII,
    _header_lines,
    _line_blocks,
    _ReadWhole,
)
from lightning_pc.data.formats._open3d import read_open3d_points
from lightning_pc.data.formats.base import SCAN_CHUNK, Arrays, ChunkSource, Format

PCD_BLOCK = 1 << 16  # records of a binary PCD file decoded at a time (a few MiB)

_PCD_KEYS = ("VERSION", "FIELDS", "SIZE", "TYPE", "COUNT", "WIDTH", "HEIGHT", "VIEWPOINT",
             "POINTS", "DATA")  # fmt: skip
# how Open3D's PCD reader decodes a field of x, y, z or a normal, by TYPE and SIZE: other
# combinations (among them double, F 8) it reads as 0
_PCD_NUMBERS = {("F", 4): "f4", ("I", 1): "i1", ("I", 2): "i2", ("I", 4): "i4",
                ("U", 1): "u1", ("U", 2): "u2", ("U", 4): "u4"}  # fmt: skip
# 8-byte numbers, which Open3D's reader (0.20) returns as 0: read with numpy instead
_PCD_WIDE = {("F", 8): "f8", ("I", 8): "i8", ("U", 8): "u8"}
_PCD_NAMES = ("x", "y", "z", "normal_x", "normal_y", "normal_z", "rgb", "rgba")
_PCD_WHITESPACE = np.zeros(256, dtype=bool)  # what bytes.strip() strips
_PCD_WHITESPACE[list(b" \t\n\r\x0b\x0c")] = True


@dataclass
class Pcd:
    """Where a PCD file's points are, and the fields Open3D reads from them."""

    body_start: int
    count: int
    dtype: np.dtype  # records of the fields read (x y z, normal_*, colour bytes)
    normals: bool
    colour: str | None  # the field holding packed colour bytes (rgb or rgba), if any
    wide: bool = False  # a field Open3D reads as 0 (8-byte numbers): not read by Open3D
    double: bool = False  # 8-byte x, y or z: coordinates kept float64 (Open3D not used)
    columns: dict[str, int] | None = None  # DATA ascii: each field's column
    width: int = 0  # DATA ascii: the columns of a row
    header_lines: int = 0
    colour_type: str = "F"  # DATA ascii: the colour's TYPE (F: a float's bytes, I/U: an int's)


def pcd_layout(path: Path) -> tuple[Pcd, int] | None:
    """The layout of a binary or ASCII PCD file's points as Open3D's reader works it out,
    and the points its header declares; ``None`` for a file whose header this does not
    follow exactly (odd, repeated or missing lines, compressed data, a type Open3D reads as
    0 or, in ASCII, parses otherwise than as a decimal float): :func:`read_scan` reads
    those whole."""
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    seen: dict[str, list[str]] = {}
    order: list[str] = []
    pos = 0
    while "DATA" not in seen:
        nl = head.find(b"\n", pos)
        if nl < 0 or nl - pos > 1000:  # no end of header in 64 KiB, or a line Open3D splits
            return None
        line, pos = head[pos : nl + 1], nl + 1
        if not line.isascii() or any(c in line for c in _ODD_ASCII):
            return None  # characters Open3D and str.split split otherwise
        parts = line.decode("ascii").split()
        if not parts or parts[0].startswith("#"):
            continue
        if parts[0] not in _PCD_KEYS or parts[0] in seen:
            return None
        seen[parts[0]] = parts[1:]
        order.append(parts[0])
    if seen["DATA"] not in (["binary"], ["ascii"]):
        return None  # binary_compressed: read whole
    ascii = seen["DATA"] == ["ascii"]
    header_lines = head[:pos].count(b"\n")
    if ascii and header_lines >= 200:
        return None  # read_point_file names no line
    names = seen.get("FIELDS", [])
    try:
        sizes = [int(v) for v in seen["SIZE"]]
        types = seen["TYPE"]
        counts = [int(v) for v in seen.get("COUNT", ["1"] * len(names))]
        declared = int(seen["POINTS"][0])
        width, height = int(seen["WIDTH"][0]), int(seen["HEIGHT"][0])
    except (KeyError, IndexError, ValueError):
        return None
    # Open3D's field offsets depend on the order of the lines: the usual one only
    expected = ["FIELDS", "SIZE", "TYPE", "COUNT"]
    if [k for k in order if k in expected] != expected[: 3 + ("COUNT" in seen)]:
        return None
    if not names or not (len(sizes) == len(types) == len(counts) == len(names)):
        return None
    # Open3D takes the count from POINTS, or WIDTH x HEIGHT when HEIGHT comes after it
    points = width * height if order.index("HEIGHT") > order.index("POINTS") else declared
    if points != declared or declared <= 0 or min(sizes) <= 0 or min(counts) <= 0:
        return None
    layout: dict[str, tuple[str, int]] = {}  # the last field of a name wins, as in Open3D
    offset = 0
    wide = False
    column = 0
    columns: dict[str, int] = {}
    colour_type = "F"
    for name, size, kind, count in zip(names, sizes, types, counts):
        columns[name] = column
        column += count
        if ascii and name in _PCD_NAMES and name[:3] == "rgb":
            if size != 4 or kind[:1] not in ("F", "I", "U"):
                return None  # Open3D reads such a colour as black
            colour_type = kind[:1]
        elif ascii and name in _PCD_NAMES and kind[:1] != "F":
            return None  # Open3D parses integers with strtol (1.5 as 1): read whole
        if ascii and name in _PCD_NAMES:
            layout.pop("rgb" if name == "rgba" else "rgba" if name == "rgb" else "", None)
            layout[name] = ("4u1" if name[:3] == "rgb" else "<f8", 0)
        elif name in ("x", "y", "z", "normal_x", "normal_y", "normal_z"):
            fmt = _PCD_NUMBERS.get((kind[:1], size))
            if fmt is None and (kind[:1], size) in _PCD_WIDE:
                fmt, wide = _PCD_WIDE[(kind[:1], size)], True
            if fmt is None:
                return None
            layout[name] = ("<" + fmt, offset)
        elif name in ("rgb", "rgba"):
            if size != 4:
                return None
            layout.pop("rgb", None)
            layout.pop("rgba", None)
            layout[name] = ("4u1", offset)
        offset += size * count
    if not all(a in layout for a in "xyz"):
        return None
    normals = all(f"normal_{a}" in layout for a in "xyz")
    colour = next((k for k in ("rgb", "rgba") if k in layout), None)
    if ascii:
        dtype = np.dtype([(name, fmt) for name, (fmt, _) in layout.items()])
        pcd = Pcd(pos, declared, dtype, normals, colour, columns=columns, width=column)
        pcd.header_lines = header_lines
        pcd.colour_type = colour_type
        return pcd, declared
    if offset >= 1 << 31:
        return None  # a record larger than numpy's (and any file's): check_pcd_size refuses it
    dtype = np.dtype(
        {
            "names": list(layout),
            "formats": [f for f, _ in layout.values()],
            "offsets": [o for _, o in layout.values()],
            "itemsize": offset,
        }
    )
    double = any(dtype[a].itemsize == 8 for a in "xyz")
    return Pcd(pos, declared, dtype, normals, colour, wide, double=double), declared


def _holds_more_than_whitespace(path: Path, offset: int) -> bool:
    """Whether a file holds anything but ASCII whitespace from ``offset`` on."""
    with open(path, "rb") as fh:
        fh.seek(offset)
        while block := fh.read(_common.TEXT_BLOCK):
            if not _PCD_WHITESPACE[np.frombuffer(block, dtype=np.uint8)].all():
                return True
    return False


def _check_decimal_integers(text: str, column: int, values: np.ndarray) -> None:
    """Raise :class:`_ReadWhole` unless a column of rows holds decimal integers that
    ``strtol`` reads as ``float`` does (no fraction or exponent, no leading zero: octal)."""
    tokens = np.loadtxt(io.StringIO(text), dtype=str, usecols=[column], comments=None, ndmin=1)
    digits = np.char.lstrip(tokens, "+-")
    plain = (
        np.char.isdigit(digits).all()
        and (np.char.str_len(tokens) - np.char.str_len(digits) <= 1).all()
        and not (np.char.startswith(digits, "0") & (np.char.str_len(digits) > 1)).any()
    )
    if not plain or np.abs(values).max(initial=0) >= 2**53:
        raise _ReadWhole


def check_pcd_normals(path: str | Path) -> None:
    """Refuse a PCD file whose fields name one or two of ``normal_x/y/z`` but not all three:
    Open3D's reader (0.20) then writes normals into an array it never sized (a crash, or
    worse).

    Raises:
        DataFormatError: naming the fields present and missing.
    """
    path = Path(path)
    names: list[bytes] = []
    for parts in _header_lines(path):
        # Open3D takes any line starting FIELDS or COLUMNS as the fields, the last one wins
        if parts and (parts[0].startswith(b"FIELDS") or parts[0].startswith(b"COLUMNS")):
            names = parts[1:]
    wanted = [b"normal_x", b"normal_y", b"normal_z"]
    present = [n.decode() for n in wanted if n in names]
    if present and len(present) < 3:
        missing = [n.decode() for n in wanted if n not in names]
        raise DataFormatError(
            path,
            f"FIELDS has {' '.join(present)} without {' '.join(missing)}: Open3D cannot read "
            "such a file (it writes normals it never allocated)",
        )


def _pcd_header(raw: bytes) -> tuple[dict[str, list[str]], int, int]:
    """A PCD header read leniently (the last line of a key wins): its fields by upper-case
    key, the body's byte offset and the header's line count."""
    fields: dict[str, list[str]] = {}
    pos = 0
    number = 0
    while pos < len(raw) and "DATA" not in fields:
        nl = raw.find(b"\n", pos)
        end = len(raw) if nl < 0 else nl + 1
        number += 1
        parts = raw[pos:end].decode("ascii", errors="replace").split()
        pos = end
        if parts and not parts[0].startswith("#"):
            fields[parts[0].upper()] = parts[1:]
    return fields, pos, number


def _warn_trailing(path: Path, declared: int, need: int, extra: int) -> None:
    warnings.warn(
        f"{path}: read the {declared} points the header declares ({need} bytes); "
        f"{extra} bytes after them are ignored (as PCL reads the file)",
        stacklevel=5,
    )


def check_pcd_size(path: str | Path) -> None:
    """Check a PCD header's point count (``POINTS``, ``WIDTH`` x ``HEIGHT``) against the
    file's size before a reader allocates for it: a binary body holds ``SIZE`` x ``COUNT``
    bytes a point, an ASCII one a line a point, a ``binary_compressed`` one the sizes its
    first 8 bytes give.

    Raises:
        DataFormatError: a count the file cannot hold, naming it and the bytes or lines.
    """
    path = Path(path)
    raw = path.read_bytes()
    fields, pos, _ = _pcd_header(raw)
    if "DATA" not in fields:
        raise DataFormatError(path, "PCD header without a DATA line (cut inside the header?)")
    counts: list[int | None] = []
    for key in ("POINTS", "WIDTH", "HEIGHT"):
        try:
            counts.append(int(fields[key][0]))
        except (KeyError, IndexError, ValueError):
            counts.append(None)
    if counts[0] is None and None in counts[1:]:
        raise DataFormatError(path, "PCD header without POINTS (or WIDTH and HEIGHT)")
    # Open3D takes POINTS, or WIDTH x HEIGHT when HEIGHT comes after it: check both
    declared = max(
        counts[0] or 0,
        0 if None in counts[1:] else counts[1] * counts[2],  # type: ignore[operator]
    )
    if min(c for c in counts if c is not None) < 0:
        raise DataFormatError(path, "negative point count in the header")
    kind = (fields["DATA"] or [""])[0].lower()
    if kind not in ("ascii", "binary", "binary_compressed"):
        raise DataFormatError(path, f"unknown PCD DATA kind {kind[:40]!r} (cut in the header?)")
    body = len(raw) - pos
    if kind == "ascii":
        lines = raw.count(b"\n", pos) + (not raw.endswith(b"\n"))
        if declared > lines:
            raise DataFormatError(
                path, f"truncated: header declares {declared} points, the file holds {lines} lines"
            )
        return
    try:
        row = sum(
            int(a) * int(b)
            for a, b in zip(fields["SIZE"], fields.get("COUNT", ["1"] * len(fields["SIZE"])))
        )
    except (KeyError, ValueError):
        return
    if kind == "binary" and declared * row > body:
        raise DataFormatError(
            path,
            f"truncated: header declares {declared} points ({declared * row} bytes), the file "
            f"holds {body} bytes of data",
        )
    if kind == "binary_compressed":
        if body < 8:
            raise DataFormatError(path, "truncated: binary_compressed data without its sizes")
        packed, unpacked = struct.unpack_from("<II", raw, pos)
        if packed > body - 8:
            raise DataFormatError(
                path, f"truncated: {packed} compressed bytes declared, the file holds {body - 8}"
            )
        if unpacked != declared * row or unpacked > 256 * packed + 1024:
            raise DataFormatError(
                path,
                f"header declares {declared} points ({declared * row} bytes), the compressed "
                f"data says {unpacked} bytes from {packed}: a damaged header",
            )


def check_pcd_counts(path: str | Path) -> None:
    """Refuse an ASCII PCD file holding more data lines than its ``POINTS`` line declares
    (Open3D reads the declared count and drops the rest without a word); warn about bytes
    after a binary file's declared points (read, as PCL and pypcd read them).
    ``binary_compressed`` files carry their own sizes (:func:`check_pcd_size`).

    Raises:
        DataFormatError: naming the first extra line (ASCII).
    """
    path = Path(path)
    raw = path.read_bytes()
    fields, pos, number = _pcd_header(raw)
    try:
        declared = int(fields["POINTS"][0])
        kind = fields["DATA"][0].lower()
    except (KeyError, IndexError, ValueError):
        return  # not a header we can check: Open3D's count check applies
    if kind == "ascii":
        lines = raw[pos:].decode("ascii", errors="replace").splitlines()
        rows = [i for i, line in enumerate(lines) if line.strip()]
        if len(rows) > declared:
            raise DataFormatError(
                path,
                f"header declares {declared} points (POINTS), but {len(rows) - declared} more "
                "data line(s) follow (wrong count in the header?)",
                number + 1 + rows[declared],
            )
    elif kind == "binary":
        try:
            sizes = [int(v) for v in fields["SIZE"]]
            counts = [int(v) for v in fields.get("COUNT", ["1"] * len(sizes))]
        except (KeyError, ValueError):
            return
        need = declared * sum(a * b for a, b in zip(sizes, counts))
        tail = raw[pos + need :]
        if tail.strip():
            _warn_trailing(path, declared, need, len(tail))


def _before_open3d(path: Path) -> None:
    check_pcd_normals(path)
    check_pcd_size(path)


class PcdChunks(ChunkSource):
    """A binary PCD file's memory-mapped records, or an ASCII one's rows parsed a block at
    a time; points with NaN or infinite coordinates are skipped (counted when opened)."""

    kind = "pcd"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.pcd: Pcd
        self.records: np.ndarray | None = None

    def chunks(self, chunk: int) -> Iterator[Arrays]:
        return self.rebatch(self._arrays(chunk), self._rows, chunk)

    def _open(self) -> bool:
        """Memory-map a binary PCD file's records, or check an ASCII one's rows parse, and
        count the points with finite coordinates, raising the errors and the warning
        :func:`read_point_file` raises for the file; ``False`` for a file read whole (see
        :func:`pcd_layout`; an ASCII file whose rows do not all parse as floats, with as many
        columns as its fields, or hold a line break or blank other than ``\n`` / ``\r\n``,
        space and tab, or more or fewer rows than its header declares)."""
        check_pcd_normals(self.path)
        found = pcd_layout(self.path)
        if found is None:
            return False
        pcd, declared = found
        self.pcd = pcd
        if pcd.columns is None:
            need = pcd.count * pcd.dtype.itemsize
            held = self.path.stat().st_size - pcd.body_start
            if held < need:  # check_pcd_size's refusal
                raise DataFormatError(
                    self.path,
                    f"truncated: header declares {declared} points ({need} bytes), the file "
                    f"holds {held} bytes of data",
                )
            if held > need and _holds_more_than_whitespace(self.path, pcd.body_start + need):
                _warn_trailing(self.path, declared, need, held - need)  # as check_pcd_counts
            self.records = np.memmap(
                self.path, dtype=pcd.dtype, mode="r", offset=pcd.body_start, shape=pcd.count
            )
        rows = valid = 0
        first_nan, first_bad, bad_normals = -1, -1, 0  # normals not finite, of finite points
        try:
            for start, rec in self._blocks(PCD_BLOCK):
                keep = self._finite(rec)
                rows += len(rec)
                valid += int(np.count_nonzero(keep))
                if first_nan < 0 and not keep.all():
                    first_nan = start + int(np.flatnonzero(~keep)[0])
                if pcd.normals:
                    wrong = ~np.isfinite(self._normals(rec)).all(1) & keep
                    if wrong.any():
                        if first_bad < 0:
                            first_bad = start + int(np.flatnonzero(wrong)[0])
                        bad_normals += int(np.count_nonzero(wrong))
        except _ReadWhole:
            return False
        if rows != pcd.count:
            return False  # an ASCII file with more or fewer rows: read whole, as refused
        ascii = pcd.columns is not None
        if valid == 0:
            raise DataFormatError(
                self.path,
                "point coordinates contain NaN or infinity",
                pcd.header_lines + 1 + first_nan if ascii else None,
            )
        if valid < pcd.count:
            # an organised cloud (Kinect, PCL): pixels without depth are NaN points
            warnings.warn(
                f"{self.path}: dropped {pcd.count - valid} of {pcd.count} points with NaN or "
                "infinite coordinates (an organised cloud's pixels without depth)",
                stacklevel=5,
            )
        if bad_normals:
            raise DataFormatError(
                self.path,
                f"normal of point {first_bad} is NaN or infinite ({bad_normals} points in all)",
                pcd.header_lines + 1 + first_bad if ascii else None,
            )
        self.num_points = valid
        self.coord_dtype = np.dtype(np.float64 if pcd.double else np.float32)  # as read_scan's
        self.keys = {"pos": 3}
        if pcd.normals:
            self.keys["normal"] = 3
        if pcd.colour is not None:
            self.keys["rgb"] = 3
        return True

    def _blocks(self, step: int) -> Iterator[tuple[int, np.ndarray]]:
        """A PCD file's points as records of :attr:`Pcd.dtype`, a block at a time, each
        with the row of its first point; binary records ``step`` at a time.

        Raises:
            _ReadWhole: an ASCII block that does not parse as plain rows of floats.
        """
        pcd = self.pcd
        if pcd.columns is None:
            assert self.records is not None  # a binary file's records are mapped when opened
            for start in range(0, pcd.count, step):
                yield start, np.asarray(self.records[start : start + step])
            return
        start = 0
        for block, _ in _line_blocks(self.path, pcd.body_start):
            if (
                not block.isascii()
                or any(c in block for c in (b"\x00", *_ODD_ASCII))
                or block.count(b"\r") != block.count(b"\r\n")
                or max(map(len, block.split(b"\n"))) > 1000  # Open3D reads 1023 bytes a line
            ):
                raise _ReadWhole
            text = block.decode("ascii")
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # blank lines only: no rows
                    arr = np.loadtxt(io.StringIO(text), comments=None, ndmin=2, dtype=np.float64)
            except ValueError:
                raise _ReadWhole from None
            if len(arr) == 0:
                continue
            if arr.shape[1] != pcd.width:
                raise _ReadWhole
            rec = np.empty(len(arr), dtype=pcd.dtype)
            for name in pcd.dtype.names or ():
                values = arr[:, pcd.columns[name]]
                if name == pcd.colour and pcd.colour_type == "F":
                    # strtof's float, its bytes as Open3D unpacks them
                    rec[name] = values.astype(np.float32).view(np.uint8).reshape(-1, 4)
                elif name == pcd.colour:
                    _check_decimal_integers(text, pcd.columns[name], values)
                    packed = (values.astype(np.int64) & 0xFFFFFFFF).astype(np.uint32)
                    rec[name] = packed.view(np.uint8).reshape(-1, 4)  # strtol's, to 32 bits
                else:
                    rec[name] = values
            yield start, rec
            start += len(rec)

    def _pos(self, rec: np.ndarray) -> np.ndarray:
        """x y z as read_point_file holds them: float32 (Open3D's doubles, rounded), or
        float64 for 8-byte coordinates (read by numpy)."""
        coord = np.float64 if self.pcd.double else np.float32
        return np.stack([rec[a].astype(coord) for a in "xyz"], 1)

    @staticmethod
    def _normals(rec: np.ndarray) -> np.ndarray:
        return np.stack([rec[f"normal_{a}"].astype(np.float32) for a in "xyz"], 1)

    def _finite(self, rec: np.ndarray) -> np.ndarray:
        return np.isfinite(self._pos(rec)).all(1)

    def _arrays(self, chunk: int) -> Iterator[np.ndarray]:
        """The records of points with finite coordinates, a block at a time."""
        try:
            for _, rec in self._blocks(max(chunk, PCD_BLOCK)):
                keep = self._finite(rec)
                yield rec if keep.all() else rec[keep]
        except _ReadWhole:
            raise DataFormatError(
                self.path, "no longer parses as it did when it was opened (changed while read?)"
            ) from None

    def _rows(self, rec: np.ndarray) -> dict[str, np.ndarray]:
        pcd = self.pcd
        out = {"pos": self._pos(rec).astype(np.float64)}
        if pcd.normals:
            out["normal"] = self._normals(rec)
        if pcd.colour is not None:
            # packed colour: bytes b g r (a) of a little-endian 0x(aa)rrggbb, as Open3D reads it
            packed = rec[pcd.colour]
            out["rgb"] = (packed[:, [2, 1, 0]].astype(np.float64) / 255.0).astype(np.float32)
        return out


def open_chunks(path: Path) -> PcdChunks | None:
    """A :class:`PcdChunks` for ``path``, or ``None`` for a file read whole (see
    :meth:`PcdChunks._open`)."""
    source = PcdChunks(path)
    return source if source._open() else None


def _read_wide_pcd(path: Path, coord: type = np.float32) -> Arrays:
    """A binary PCD file with 8-byte coordinates or normals (which Open3D reads as 0), read
    with numpy through :class:`PcdChunks`: the rows, checks and warning of
    :func:`read_open3d_points`, coordinates as ``coord``."""
    reader = open_chunks(path)
    assert reader is not None  # a wide layout is binary: always streamed
    n = reader.num_points
    out: Arrays = {
        key: np.empty((n, width), coord if key == "pos" else np.float32)
        for key, width in reader.keys.items()
    }
    start = 0
    for part in reader.chunks(SCAN_CHUNK):
        stop = start + len(part["pos"])
        for key, value in part.items():
            out[key][start:stop] = value
        start = stop
    return out


def read_point_file(path: Path) -> Arrays:
    """``pos`` float32 and, where present, ``normal`` and ``rgb`` (0-1)."""
    if path.is_file():
        found = pcd_layout(path)
        if found is not None and found[0].wide:
            return _read_wide_pcd(path)
    return read_open3d_points(path, _before_open3d, check_pcd_counts, organised=True)


def read_scan(path: Path) -> Arrays:
    """As :func:`read_point_file`, 8-byte coordinates kept as float64."""
    if path.is_file():
        found = pcd_layout(path)
        if found is not None and found[0].wide:
            # georeferenced doubles: kept, as LAS's
            return _read_wide_pcd(path, np.float64 if found[0].double else np.float32)
    return read_point_file(path)


FORMAT = Format(
    "pcd", (".pcd",), read_points=read_point_file, read_scan=read_scan, open_chunks=open_chunks
)

FORMATS = (FORMAT,)
