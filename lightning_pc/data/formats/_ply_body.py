"""Every element of a PLY file read with numpy, and PLY meshes built from them.

Nothing here hands a PLY file to a C++ reader: headers are parsed by us (lines may end in
``\\r\\n``), each element's count is checked against the bytes (binary) or lines (ASCII)
left before anything is allocated or looped over, and list properties are read at once
where every row has the same length (triangles), else row by row (bounded by the file's
size). Faces are fan-triangulated; ``tristrips`` (strips separated by ``-1``, alternating
winding) become triangles.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lightning_pc.data.errors import DataFormatError

PLY_TYPES = {
    "char": "i1",
    "int8": "i1",
    "uchar": "u1",
    "uint8": "u1",
    "short": "i2",
    "int16": "i2",
    "ushort": "u2",
    "uint16": "u2",
    "int": "i4",
    "int32": "i4",
    "uint": "u4",
    "uint32": "u4",
    "float": "f4",
    "float32": "f4",
    "double": "f8",
    "float64": "f8",
}
FORMATS = ("ascii", "binary_little_endian", "binary_big_endian")

# the property spellings other tools write (plyfile, Open3D, CloudCompare, PCL, MeshLab)
COLOUR_NAMES = (
    ("red", "green", "blue"),
    ("diffuse_red", "diffuse_green", "diffuse_blue"),
    ("r", "g", "b"),
)
NORMAL_NAMES = (("nx", "ny", "nz"), ("normal_x", "normal_y", "normal_z"))
INTENSITY_NAMES = ("intensity", "scalar_intensity")  # CloudCompare: scalar_Intensity
FACE_LISTS = ("vertex_indices", "vertex_index")


@dataclass
class PlyProperty:
    name: str
    dtype: str  # numpy code of the scalar, or of a list's items
    count_dtype: str | None = None  # a list property: the numpy code of its length


@dataclass
class PlyElement:
    name: str
    count: int
    line: int  # the header line declaring it
    props: list[PlyProperty] = field(default_factory=list)


@dataclass
class PlyHeader:
    format: str
    elements: list[PlyElement]
    body_start: int  # byte offset of the body
    lines: int  # header lines, end_header included

    def element(self, name: str) -> PlyElement | None:
        return next((e for e in self.elements if e.name == name), None)


def split_header(path: Path, raw: bytes) -> tuple[list[str], int]:
    """The header lines before ``end_header`` of the PLY file's bytes ``raw``, and the byte
    offset of its body (the line after ``end_header``).

    Raises:
        DataFormatError: no ``ply`` magic or ``end_header``.
    """
    end = raw.find(b"end_header")
    if not raw.startswith(b"ply") or end < 0:
        raise DataFormatError(path, "not a PLY file (no 'ply' magic or 'end_header')")
    nl = raw.find(b"\n", end)
    return raw[:end].decode("ascii", errors="replace").splitlines(), nl + 1 if nl >= 0 else len(raw)


def parse_header(path: Path, raw: bytes) -> PlyHeader:
    """Parse a PLY header (``\\n`` or ``\\r\\n`` line ends).

    Raises:
        DataFormatError: no ``ply`` magic or ``end_header``, an unknown format or property
            type, a malformed ``element`` or ``property`` line (naming it).
    """
    header, body_start = split_header(path, raw)
    fmt = ""
    elements: list[PlyElement] = []
    for number, line in enumerate(header, 1):
        parts = line.split()
        if not parts:
            continue
        bad = DataFormatError(path, f"bad PLY header line {line.strip()[:80]!r}", number)
        if parts[0] == "format":
            fmt = parts[1] if len(parts) > 1 else ""
        elif parts[0] == "element":
            if len(parts) != 3 or not parts[2].isdigit():
                raise bad
            elements.append(PlyElement(parts[1], int(parts[2]), number))
        elif parts[0] == "property":
            if not elements:
                raise DataFormatError(path, "property before any element", number)
            if parts[1:2] == ["list"]:
                if len(parts) != 5 or parts[2] not in PLY_TYPES or parts[3] not in PLY_TYPES:
                    raise bad
                if PLY_TYPES[parts[2]][0] == "f":
                    raise DataFormatError(path, "a list's length must be an integer type", number)
                prop = PlyProperty(parts[4], PLY_TYPES[parts[3]], PLY_TYPES[parts[2]])
            else:
                if len(parts) != 3 or parts[1] not in PLY_TYPES:
                    raise bad
                prop = PlyProperty(parts[2], PLY_TYPES[parts[1]])
            elements[-1].props.append(prop)
    if fmt not in FORMATS:
        raise DataFormatError(path, f"unknown PLY format {fmt!r}")
    return PlyHeader(fmt, elements, body_start, len(header) + 1)


Values = dict[str, Any]  # property -> array (scalars) or (lengths, flat items) (lists)


def _truncated(
    path: Path, element: PlyElement, have: int | str, line: int | None = None
) -> DataFormatError:
    return DataFormatError(
        path,
        f"truncated: header declares {element.count} {element.name} rows, the file holds "
        f"data for {have} of them",
        line,
    )


def read_elements(path: Path, raw: bytes, header: PlyHeader, wanted: set[str]) -> dict[str, Values]:
    """The properties of the ``wanted`` elements (every element is walked to find them).

    Raises:
        DataFormatError: a body shorter than the header's counts (naming the element), a
            malformed ASCII row (naming its line).
    """
    if header.format == "ascii":
        return _read_ascii(path, raw, header, wanted)
    order = "<" if header.format == "binary_little_endian" else ">"
    offset = header.body_start
    out: dict[str, Values] = {}
    for element in header.elements:
        left = len(raw) - offset
        lists = [p for p in element.props if p.count_dtype is not None]
        dtype = np.dtype([(f"p{i}", order + p.dtype) for i, p in enumerate(element.props)])
        if not lists:
            if element.count * dtype.itemsize > left:
                raise _truncated(path, element, left // max(dtype.itemsize, 1))
            if element.name in wanted:
                rec = np.frombuffer(raw, dtype, element.count, offset)
                out[element.name] = {p.name: rec[f"p{i}"] for i, p in enumerate(element.props)}
            offset += element.count * dtype.itemsize
            continue
        least = sum(
            np.dtype(p.count_dtype or p.dtype).itemsize for p in element.props
        )  # a row with empty lists
        if element.count * least > left:
            raise _truncated(path, element, left // least)
        values, offset = _read_list_rows(path, raw, offset, element, order)
        if element.name in wanted:
            out[element.name] = values
    return out


def _read_list_rows(
    path: Path, raw: bytes, offset: int, element: PlyElement, order: str
) -> tuple[Values, int]:
    """Rows with list properties: at once when the first row's list lengths hold for every
    row, else row by row."""
    fields: list[tuple[str, Any, Any]] = []
    pos = offset
    for i, p in enumerate(element.props):  # the first row's layout
        if p.count_dtype is None:
            fields.append((f"p{i}", order + p.dtype, ()))
            pos += np.dtype(p.dtype).itemsize
            continue
        size = np.dtype(p.count_dtype).itemsize
        if pos + size > len(raw):
            raise _truncated(path, element, 0)
        n = int(np.frombuffer(raw, order + p.count_dtype, 1, pos)[0])
        fields.append((f"n{i}", order + p.count_dtype, ()))
        fields.append((f"p{i}", order + p.dtype, (n,) if n > 0 else (0,)))
        pos += size + max(n, 0) * np.dtype(p.dtype).itemsize
    try:
        dtype = np.dtype(fields)
    except (ValueError, OverflowError, MemoryError):  # a first row longer than any file
        raise _truncated(path, element, 0) from None
    fits = min(element.count, (len(raw) - offset) // max(dtype.itemsize, 1))
    if element.count and dtype.itemsize:
        rec = np.frombuffer(raw, dtype, fits, offset)
        same = all(
            (rec[f"n{i}"] == rec[f"n{i}"][0]).all()
            for i, p in enumerate(element.props)
            if p.count_dtype is not None
        ) if fits else True  # fmt: skip
        if same and fits == element.count:
            values: Values = {}
            for i, p in enumerate(element.props):
                if p.count_dtype is None:
                    values[p.name] = rec[f"p{i}"]
                else:
                    lengths = rec[f"n{i}"].astype(np.int64)
                    values[p.name] = (lengths, rec[f"p{i}"].reshape(-1))
            return values, offset + element.count * dtype.itemsize
        if same:
            raise _truncated(path, element, fits)
    return _walk_list_rows(path, raw, offset, element, order)


def _walk_list_rows(
    path: Path, raw: bytes, offset: int, element: PlyElement, order: str
) -> tuple[Values, int]:
    scalars: dict[str, list[Any]] = {p.name: [] for p in element.props if p.count_dtype is None}
    lengths: dict[str, list[int]] = {p.name: [] for p in element.props if p.count_dtype}
    items: dict[str, list[np.ndarray]] = {p.name: [] for p in element.props if p.count_dtype}
    pos = offset
    for row in range(element.count):
        for p in element.props:
            if p.count_dtype is None:
                size = np.dtype(p.dtype).itemsize
                if pos + size > len(raw):
                    raise _truncated(path, element, row)
                scalars[p.name].append(np.frombuffer(raw, order + p.dtype, 1, pos)[0])
                pos += size
                continue
            size = np.dtype(p.count_dtype).itemsize
            if pos + size > len(raw):
                raise _truncated(path, element, row)
            n = int(np.frombuffer(raw, order + p.count_dtype, 1, pos)[0])
            pos += size
            need = max(n, 0) * np.dtype(p.dtype).itemsize
            if n < 0 or pos + need > len(raw):
                raise _truncated(path, element, row)
            lengths[p.name].append(n)
            items[p.name].append(np.frombuffer(raw, order + p.dtype, n, pos))
            pos += need
    values: Values = {name: np.asarray(v) for name, v in scalars.items()}
    for name in lengths:
        flat = np.concatenate(items[name]) if items[name] else np.zeros(0)
        values[name] = (np.asarray(lengths[name], dtype=np.int64), flat)
    return values, pos


def _read_ascii(path: Path, raw: bytes, header: PlyHeader, wanted: set[str]) -> dict[str, Values]:
    """ASCII rows, one a line (blank lines skipped); each element's rows counted first."""
    text = raw[header.body_start :].decode("ascii", errors="replace")
    lines = [
        (number, content)
        for number, line in enumerate(text.splitlines(), start=header.lines + 1)
        if (content := line.strip())
    ]
    at = 0
    out: dict[str, Values] = {}
    for element in header.elements:
        have = len(lines) - at
        if element.count > have:
            last = lines[-1][0] + 1 if lines else header.lines + 1
            raise DataFormatError(
                path,
                f"truncated: header declares {element.count} {element.name} rows, the file "
                f"ends after {max(have, 0)}",
                last,
            )
        block = lines[at : at + element.count]
        at += element.count
        if element.name in wanted:
            out[element.name] = _parse_ascii_rows(path, element, block)
    if at < len(lines):
        counts = ", ".join(f"{e.count} {e.name}" for e in header.elements)
        raise DataFormatError(
            path,
            f"header declares {counts} rows, but {len(lines) - at} more data line(s) follow "
            "(wrong count in the header?)",
            lines[at][0],
        )
    return out


def _parse_ascii_rows(path: Path, element: PlyElement, block: list[tuple[int, str]]) -> Values:
    scalars: dict[str, list[float]] = {p.name: [] for p in element.props if p.count_dtype is None}
    lengths: dict[str, list[int]] = {p.name: [] for p in element.props if p.count_dtype}
    items: dict[str, list[float]] = {p.name: [] for p in element.props if p.count_dtype}
    for number, content in block:
        tokens = content.split()
        k = 0
        try:
            for p in element.props:
                if p.count_dtype is None:
                    scalars[p.name].append(float(tokens[k]))
                    k += 1
                    continue
                n = int(tokens[k])
                if n < 0 or k + 1 + n > len(tokens):
                    raise IndexError
                lengths[p.name].append(n)
                items[p.name].extend(float(t) for t in tokens[k + 1 : k + 1 + n])
                k += 1 + n
        except (ValueError, IndexError):
            raise DataFormatError(
                path, f"malformed {element.name} row {content[:60]!r}", number
            ) from None
        if k != len(tokens):
            raise DataFormatError(
                path,
                f"{element.name} row has {len(tokens) - k} value(s) more than declared",
                number,
            )
    values: Values = {name: np.asarray(v, dtype=np.float64) for name, v in scalars.items()}
    for name in lengths:
        values[name] = (np.asarray(lengths[name], dtype=np.int64), np.asarray(items[name]))
    return values


def fan_triangles(lengths: np.ndarray, flat: np.ndarray) -> np.ndarray:
    """Polygons (``lengths`` vertices each, indices in ``flat``) fan-triangulated, each
    polygon's triangles in turn."""
    flat = np.asarray(flat).astype(np.int64)
    if len(lengths) and (lengths == 3).all():
        return flat.reshape(-1, 3)
    starts = np.cumsum(lengths) - lengths
    n_tri = np.maximum(lengths - 2, 0)
    poly = np.repeat(np.arange(len(lengths)), n_tri)
    k = np.arange(int(n_tri.sum())) - np.repeat(np.cumsum(n_tri) - n_tri, n_tri) + 1
    s = starts[poly]
    return np.stack([flat[s], flat[s + k], flat[s + k + 1]], 1)


def strip_triangles(flat: np.ndarray) -> np.ndarray:
    """Triangle strips (vertex indices, strips separated by ``-1``) as triangles: strip
    ``a b c d ...`` gives ``a b c``, ``c b d``, ... (every second one flipped to keep the
    winding); degenerate triangles (a repeated vertex, used to join strips) are dropped."""
    flat = np.asarray(flat).astype(np.int64)
    out = []
    for strip in np.split(flat, np.flatnonzero(flat < 0)):
        strip = strip[strip >= 0]
        if len(strip) < 3:
            continue
        a, b, c = strip[:-2], strip[1:-1], strip[2:]
        odd = np.arange(len(a)) % 2 == 1
        tri = np.stack([np.where(odd, b, a), np.where(odd, a, b), c], 1)
        keep = (tri[:, 0] != tri[:, 1]) & (tri[:, 1] != tri[:, 2]) & (tri[:, 0] != tri[:, 2])
        out.append(tri[keep])
    return np.concatenate(out) if out else np.zeros((0, 3), dtype=np.int64)


def colour_fields(types: dict[str, str]) -> tuple[tuple[str, str, str], float] | None:
    """The colour properties among ``types`` (name -> numpy code) and their divisor to 0-1
    (255 for 8-bit, 65535 for 16-bit unsigned integers, else 1)."""
    for names in COLOUR_NAMES:
        if all(n in types for n in names):
            code = types[names[0]]
            return names, 255.0 if code == "u1" else 65535.0 if code == "u2" else 1.0
    return None


def normal_fields(types: dict[str, Any]) -> tuple[str, str, str] | None:
    return next((n for n in NORMAL_NAMES if all(a in types for a in n)), None)


def intensity_field(types: dict[str, Any]) -> str | None:
    return next((n for n in types if n.lower() in INTENSITY_NAMES), None)
