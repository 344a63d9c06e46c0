"""Readers for raw point-cloud and mesh files, and area-weighted mesh sampling.

Every reader raises :class:`~lightning_pc.data.errors.DataFormatError` naming the file
(and the 1-based line, for text formats) when the input is malformed; none modifies the
file it reads. This module needs only numpy (Open3D is imported lazily for PLY/PCD/OBJ/STL).
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lightning_pc.data.errors import DataFormatError
from lightning_pc.data.packed import read_npy_header

POINT_SUFFIXES = (".ply", ".pcd", ".xyz", ".pts", ".txt", ".npy", ".las", ".laz")
MESH_SUFFIXES = (".off", ".obj", ".stl", ".ply")


def _read_text(path: Path) -> str:
    """Read a text file; NUL bytes (a known S3DIS defect) are read as spaces, in memory."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataFormatError(path, f"cannot read file ({err})") from err
    if b"\x00" in raw:
        raw = raw.replace(b"\x00", b" ")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
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


@dataclass
class Mesh:
    """A triangle mesh: ``vertices [V, 3]`` float64 and ``faces [F, 3]`` int64."""

    vertices: np.ndarray
    faces: np.ndarray


_OFF_HEADER = re.compile(r"^((?:ST)?C?N?4?n?)OFF")


def read_off(path: str | Path) -> Mesh:
    """Read an OFF mesh, handling the quirks of the ModelNet release and of other writers.

    Handles a header glued to the counts (``OFF490 518 0``), the ``COFF``/``NOFF``/
    ``CNOFF``/``STOFF`` headers (per-vertex colours, normals or texture coordinates after
    ``x y z``: ignored; Open3D writes ``NOFF``), polygons (fan-triangulated), a missing
    trailing newline, blank lines and ``#`` comments, and per-face colours after a face's
    indices (integers or floats: ignored).

    Raises:
        DataFormatError: bad header, truncated vertex/face lists, lines beyond the declared
            counts, non-numeric values, out-of-range indices.
    """
    path = Path(path)
    text = _read_text(path)
    lines = [
        (number, content)
        for number, line in enumerate(text.splitlines(), start=1)
        if (content := _strip_comment(line, "#"))
    ]
    if not lines:
        raise DataFormatError(path, "file is empty")
    number, first = lines[0]
    match = _OFF_HEADER.match(first)
    if match is None:
        raise DataFormatError(path, f"missing 'OFF' header, found {first[:40]!r}", number)
    if "4" in match.group(1) or match.group(1).endswith("n"):
        raise DataFormatError(
            path, f"{match.group(1)}OFF (4-D or n-D vertices) is not a 3-D mesh", number
        )
    rest = first[match.end() :].strip()
    body = lines[1:]
    if not rest:  # counts on their own line
        if not body:
            raise DataFormatError(path, "missing vertex/face counts", number)
        number, rest = body[0]
        body = body[1:]
    try:
        counts = [int(tok) for tok in rest.split()]
        n_verts, n_faces = counts[0], counts[1]
    except (ValueError, IndexError):
        raise DataFormatError(path, f"bad counts line {rest[:40]!r}", number) from None
    if n_verts < 0 or n_faces < 0:
        raise DataFormatError(path, "negative vertex/face count", number)
    if len(body) < n_verts + n_faces:
        have_v = min(len(body), n_verts)
        have_f = max(0, len(body) - n_verts)
        raise DataFormatError(
            path,
            f"truncated: header declares {n_verts} vertices and {n_faces} faces, "
            f"found {have_v} vertex and {have_f} face lines",
            body[-1][0] if body else number,
        )
    if len(body) > n_verts + n_faces:
        extra = len(body) - n_verts - n_faces
        raise DataFormatError(
            path,
            f"header declares {n_verts} vertices and {n_faces} faces, but {extra} more "
            "line(s) follow them (wrong counts, or two meshes in one file)",
            body[n_verts + n_faces][0],
        )
    vertices = _parse_vertices(path, body[:n_verts])
    faces = _parse_faces(path, body[n_verts : n_verts + n_faces], n_verts)
    return Mesh(vertices, faces)


def _parse_vertices(path: Path, block: list[tuple[int, str]]) -> np.ndarray:
    try:
        flat = np.array(" ".join(c for _, c in block).split(), dtype=np.float64)
        if flat.size == 3 * len(block):
            verts = flat.reshape(-1, 3)
            if np.isfinite(verts).all():
                return verts
    except ValueError:
        pass
    out = np.empty((len(block), 3))
    for i, (number, content) in enumerate(block):
        tokens = content.split()
        if len(tokens) < 3:
            raise DataFormatError(path, f"vertex needs 3 coordinates: {content[:60]!r}", number)
        try:
            out[i] = [float(t) for t in tokens[:3]]
        except ValueError:
            raise DataFormatError(path, f"non-numeric vertex {content[:60]!r}", number) from None
        if not np.isfinite(out[i]).all():
            raise DataFormatError(path, f"non-finite vertex {content[:60]!r}", number)
    return out


def _parse_faces(path: Path, block: list[tuple[int, str]], n_verts: int) -> np.ndarray:
    if not block:
        return np.zeros((0, 3), dtype=np.int64)
    # Fast path: all triangles, nothing extra.
    try:
        flat = np.array(" ".join(c for _, c in block).split(), dtype=np.int64)
        if flat.size == 4 * len(block):
            tri = flat.reshape(-1, 4)
            if (tri[:, 0] == 3).all() and tri[:, 1:].min() >= 0 and tri[:, 1:].max() < n_verts:
                return tri[:, 1:].copy()
    except ValueError:
        pass
    faces: list[list[int]] = []
    for number, content in block:
        fields = content.split()
        try:
            size = int(fields[0])
            idx = [int(t) for t in fields[1 : size + 1]]  # what follows: the face's colour
        except (ValueError, IndexError):
            raise DataFormatError(path, f"non-integer face {content[:60]!r}", number) from None
        if size < 3 or len(idx) < size:
            raise DataFormatError(path, f"malformed face {content[:60]!r}", number)
        if min(idx) < 0 or max(idx) >= n_verts:
            raise DataFormatError(path, f"face index out of range [0, {n_verts})", number)
        faces.extend([idx[0], idx[k], idx[k + 1]] for k in range(1, len(idx) - 1))
    return np.asarray(faces, dtype=np.int64).reshape(-1, 3)


def read_obj(path: str | Path) -> Mesh:
    """Read a Wavefront OBJ mesh: ``v`` and ``f`` lines, every face kept.

    Faces may be triangles, quads or longer polygons (fan-triangulated; Open3D's reader
    drops or rejects those), with ``v/vt/vn``, ``v//vn`` or negative (relative) indices;
    ``v`` lines may carry a ``w`` or vertex colours after ``x y z``. Every other statement
    (texture coordinates, normals, groups, materials, lines, points) is ignored.

    Raises:
        DataFormatError: naming the line of a malformed vertex or face, an index outside the
            vertices defined so far, or a file without faces.
    """
    path = Path(path)
    text = _read_text(path)
    verts: list[list[float]] = []
    faces: list[list[int]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        content = _strip_comment(line, "#")
        if not content:
            continue
        fields = content.split()
        kind = fields[0]
        if kind == "v":
            try:
                xyz = [float(t) for t in fields[1:4]]
            except ValueError:
                raise DataFormatError(
                    path, f"non-numeric vertex {content[:60]!r}", number
                ) from None
            if len(xyz) < 3 or not all(np.isfinite(xyz)):
                raise DataFormatError(path, f"bad vertex {content[:60]!r}", number)
            verts.append(xyz)
        elif kind == "f":
            idx = []
            for token in fields[1:]:
                try:
                    k = int(token.split("/")[0])
                except ValueError:
                    raise DataFormatError(
                        path, f"bad face index {token!r} in {content[:60]!r}", number
                    ) from None
                k = k - 1 if k > 0 else len(verts) + k  # 1-based, or relative when negative
                if not 0 <= k < len(verts) or token.split("/")[0] == "0":
                    raise DataFormatError(
                        path,
                        f"face index {token!r} outside the {len(verts)} vertices defined so far",
                        number,
                    )
                idx.append(k)
            if len(idx) < 3:
                raise DataFormatError(path, f"face with fewer than 3 vertices {content!r}", number)
            faces.extend([idx[0], idx[j], idx[j + 1]] for j in range(1, len(idx) - 1))
    if not faces:
        raise DataFormatError(path, "OBJ file holds no faces (a point cloud or lines only?)")
    return Mesh(np.asarray(verts, dtype=np.float64), np.asarray(faces, dtype=np.int64))


def read_mesh(path: str | Path) -> Mesh:
    """Read a triangle mesh: OFF and OBJ with our readers, STL/PLY through Open3D.

    Raises:
        DataFormatError: unreadable file, a mesh without triangles, a face index outside the
            vertex list, or (ASCII PLY) more or fewer data lines than the header declares.
    """
    path = Path(path)
    if path.suffix.lower() == ".off":
        return read_off(path)
    if path.suffix.lower() == ".obj":
        return read_obj(path)
    import open3d as o3d

    if not path.is_file():
        raise DataFormatError(path, "file not found")
    if path.suffix.lower() == ".ply":
        check_ply_counts(path)
    mesh = o3d.io.read_triangle_mesh(str(path))  # type: ignore[arg-type]
    verts = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.triangles, dtype=np.int64)
    if len(verts) == 0 or len(faces) == 0:
        raise DataFormatError(path, "Open3D read no triangles from this mesh file")
    if not np.isfinite(verts).all():
        raise DataFormatError(path, "mesh has non-finite vertex coordinates")
    if faces.min() < 0 or faces.max() >= len(verts):
        bad = int(np.flatnonzero((faces < 0).any(1) | (faces >= len(verts)).any(1))[0])
        raise DataFormatError(
            path,
            f"face {bad} ({faces[bad].tolist()}) indexes a vertex outside [0, {len(verts)})",
        )
    return Mesh(verts, faces)


def integer_labels(values: np.ndarray, path: str | Path, what: str = "label") -> np.ndarray:
    """Labels as ``int64``, refusing non-integral values instead of truncating them.

    Args:
        values: a label array of any numeric dtype (hdf5 releases store float or int).
        path: file the labels come from (for the error).
        what: what one entry is called in the error (``"label"``).

    Raises:
        DataFormatError: a value that is not a whole number (``3.7``, NaN), naming its index.
    """
    values = np.asarray(values)
    if not np.issubdtype(values.dtype, np.number) or np.issubdtype(
        values.dtype, np.complexfloating
    ):
        raise DataFormatError(path, f"{what}s are {values.dtype}, not numbers")
    if not np.issubdtype(values.dtype, np.integer):
        bad = np.flatnonzero(~np.isfinite(values) | (values != np.round(values)))
        if len(bad):
            index = np.unravel_index(int(bad[0]), values.shape)
            where = index[0] if len(index) == 1 else tuple(int(i) for i in index)
            value = float(values.flat[bad[0]])
            raise DataFormatError(path, f"{what} {value:g} at index {where} is not a whole number")
    return values.astype(np.int64)


def normalize_vertices(vertices: np.ndarray) -> np.ndarray:
    """Centre on the bounding-box centre and scale into the unit sphere."""
    centre = (vertices.min(0) + vertices.max(0)) / 2
    out = vertices - centre
    scale = np.linalg.norm(out, axis=1).max()
    return out / scale if scale > 0 else out


def sample_mesh(
    mesh: Mesh, num_points: int, rng: np.random.Generator, path: str | Path = "<mesh>"
) -> tuple[np.ndarray, np.ndarray]:
    """Sample points uniformly on a mesh's surface (probability proportional to face area).

    Uses barycentric coordinates with the ``sqrt(r1)`` trick.

    Returns:
        ``(points [num_points, 3], normals [num_points, 3])`` float32; normals are the unit
        normals of the faces the points were drawn from.
    """
    v = mesh.vertices[mesh.faces]  # [F, 3, 3]
    cross = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])  # [F, 3]
    area2 = np.linalg.norm(cross, axis=1)
    total = area2.sum()
    if not np.isfinite(total) or total <= 0:
        raise DataFormatError(path, "mesh has zero surface area: nothing to sample")
    face = rng.choice(len(area2), size=num_points, p=area2 / total)
    r1 = np.sqrt(rng.random(num_points))[:, None]
    r2 = rng.random(num_points)[:, None]
    tri = v[face]
    points = (1 - r1) * tri[:, 0] + r1 * (1 - r2) * tri[:, 1] + r1 * r2 * tri[:, 2]
    normals = cross[face] / np.maximum(area2[face], 1e-12)[:, None]
    return points.astype(np.float32), normals.astype(np.float32)


def read_las(path: str | Path) -> dict[str, np.ndarray]:
    """Read a LAS or LAZ file (laspy; LAZ through the ``lazrs`` backend).

    Coordinates are returned in float64: LAS files hold georeferenced coordinates
    (hundreds of kilometres) that float32 would round to decimetres.

    Returns:
        Dict with ``pos [N, 3]`` float64, ``rgb [N, 3]`` (0-1) when the point format has
        colours, ``intensity [N]`` float32 and ``classification [N]`` int64 when any point
        has a non-zero class code (ASPRS codes: 0 never classified, 1 unclassified, 2 ground...).

    Raises:
        DataFormatError: not a LAS/LAZ file, a truncated file, no points, or non-finite
            coordinates.
    """
    import laspy

    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "file not found")
    try:
        las = laspy.read(path)
    except Exception as err:  # noqa: BLE001 (laspy raises several types; all mean unreadable)
        raise DataFormatError(path, f"not a readable LAS/LAZ file ({err})") from err
    n = len(las.points)
    if n == 0:
        raise DataFormatError(path, "LAS file holds no points")
    pos = np.stack([np.asarray(las.x), np.asarray(las.y), np.asarray(las.z)], 1)
    if not np.isfinite(pos).all():
        raise DataFormatError(path, "point coordinates contain NaN or infinity")
    out: dict[str, np.ndarray] = {"pos": pos.astype(np.float64)}
    names = set(las.point_format.dimension_names)
    if {"red", "green", "blue"} <= names:
        rgb = np.stack([np.asarray(las.red), np.asarray(las.green), np.asarray(las.blue)], 1)
        # LAS stores 16-bit colours; some writers put 8-bit values in them
        scale = 65535.0 if rgb.max(initial=0) > 255 else 255.0
        out["rgb"] = (rgb / scale).astype(np.float32)
    if "intensity" in names:
        out["intensity"] = np.asarray(las.intensity, dtype=np.float32)
    classification = np.asarray(las.classification, dtype=np.int64)
    if classification.any():
        out["classification"] = classification
    return out


def read_scan(path: str | Path) -> dict[str, np.ndarray]:
    """Read a scan for whole-scene prediction: any point file :func:`read_point_file` reads.

    Unlike :func:`read_point_file`, LAS/LAZ coordinates stay float64 (see :func:`read_las`),
    as do a binary PCD file's 8-byte (double) ``x y z``; ``.bin`` files are KITTI velodyne
    scans (float32 ``x y z intensity``).

    Returns:
        Dict with ``pos [N, 3]`` (float64 for LAS/LAZ and double PCD, else float32) and,
        where the file has them, ``rgb`` (0-1), ``normal``, ``intensity``,
        ``classification``, ``features``.
    """
    path = Path(path)
    if path.suffix.lower() in (".las", ".laz"):
        return read_las(path)
    if path.suffix.lower() == ".pcd" and path.is_file():
        found = _pcd_layout(path)
        if found is not None and found[0].wide:
            # georeferenced doubles: kept, as LAS's
            return _read_wide_pcd(path, np.float64 if found[0].double else np.float32)
    if path.suffix.lower() == ".bin":  # KITTI / SemanticKITTI velodyne scan
        from lightning_pc.data.datasets.semantickitti import read_velodyne

        scan = read_velodyne(path)
        return {"pos": np.ascontiguousarray(scan[:, :3]), "intensity": scan[:, 3].copy()}
    return read_point_file(path)


def read_point_file(path: str | Path) -> dict[str, np.ndarray]:
    """Read a point file: PLY/PCD through Open3D, XYZ/PTS/TXT text, NPY, or LAS/LAZ.

    Text and NPY files hold ``x y z`` in the first three columns; further columns are
    returned as ``features``. PLY/PCD return ``normal`` and ``rgb`` (0-1) where present;
    LAS/LAZ ``rgb``, ``intensity`` and ``classification`` (see :func:`read_las`).

    Returns:
        Dict with ``pos [N, 3]`` float32 and optionally ``normal``, ``rgb``, ``features``,
        ``intensity``, ``classification``.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".las", ".laz"):
        las = read_las(path)
        las["pos"] = las["pos"].astype(np.float32)
        return las
    if suffix == ".npy":
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
    if suffix in (".xyz", ".pts", ".txt"):
        return _split_columns(_read_point_text(path))
    if suffix == ".ply":
        out = read_ply_vertices(path)
        if out is not None:
            return out
    if suffix == ".pcd" and path.is_file():
        found = _pcd_layout(path)
        if found is not None and found[0].wide:
            return _read_wide_pcd(path)
    if suffix in (".ply", ".pcd"):
        return _read_open3d_points(path)
    raise DataFormatError(path, f"unsupported point file suffix {suffix!r}")


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
    except (OSError, ValueError, EOFError) as err:
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


def _uncommented(line: str) -> str:
    """A text row without its ``#`` comment, stripped (empty for a comment or blank line)."""
    return line.split("#", 1)[0].strip()


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
            return arr.astype(np.float32)
    except ValueError:
        pass
    raise _locate_table_error(path, body, ncols, delimiter, "#")


def _split_columns(arr: np.ndarray) -> dict[str, np.ndarray]:
    out = {"pos": np.ascontiguousarray(arr[:, :3], dtype=np.float32)}
    if arr.shape[1] > 3:
        out["features"] = np.ascontiguousarray(arr[:, 3:], dtype=np.float32)
    return out


def _read_wide_pcd(path: Path, coord: type = np.float32) -> dict[str, np.ndarray]:
    """A binary PCD file with 8-byte coordinates or normals (which Open3D reads as 0), read
    with numpy through :class:`ScanChunks`: the rows, checks and warning of
    :func:`_read_open3d_points`, coordinates as ``coord``."""
    reader = ScanChunks(path, chunk=SCAN_CHUNK)
    n = reader.num_points
    out: dict[str, np.ndarray] = {
        key: np.empty((n, width), coord if key == "pos" else np.float32)
        for key, width in reader.keys.items()
    }
    start = 0
    for part in reader:
        stop = start + len(part["pos"])
        for key, value in part.items():
            out[key][start:stop] = value
        start = stop
    return out


def _read_open3d_points(path: Path) -> dict[str, np.ndarray]:
    import open3d as o3d

    if not path.is_file():
        raise DataFormatError(path, "file not found")
    if path.suffix.lower() == ".pcd":
        check_pcd_normals(path)
    cloud = o3d.io.read_point_cloud(
        str(path),  # type: ignore[arg-type]
        remove_nan_points=False,
        remove_infinite_points=False,
    )
    pos = np.asarray(cloud.points, dtype=np.float32)
    if len(pos) == 0:
        raise DataFormatError(path, "Open3D read no points (empty, truncated or not a point file)")
    if path.suffix.lower() == ".pcd":
        check_pcd_counts(path)
    declared = _declared_points(path)
    if declared is not None and declared != len(pos):
        raise DataFormatError(
            path, f"header declares {declared} points, Open3D read {len(pos)} (truncated file?)"
        )
    out = {"pos": pos}
    if cloud.has_normals():
        out["normal"] = np.asarray(cloud.normals, dtype=np.float32)
    if cloud.has_colors():
        out["rgb"] = np.asarray(cloud.colors, dtype=np.float32)
    valid = np.isfinite(pos).all(1)
    if not valid.all():
        if path.suffix.lower() != ".pcd" or not valid.any():
            where = _data_line(path, int(np.flatnonzero(~valid)[0]))
            raise DataFormatError(path, "point coordinates contain NaN or infinity", where)
        # an organised cloud (Kinect, PCL): pixels without depth are NaN points
        warnings.warn(
            f"{path}: dropped {int((~valid).sum())} of {len(pos)} points with NaN or infinite "
            "coordinates (an organised cloud's pixels without depth)",
            stacklevel=3,
        )
        out = {key: value[valid] for key, value in out.items()}
    for key in ("normal", "rgb"):
        if key in out and not np.isfinite(out[key]).all():
            bad = int(np.flatnonzero(~np.isfinite(out[key]).all(1))[0])
            row = int(np.flatnonzero(valid)[bad])
            raise DataFormatError(
                path,
                f"{key} of point {row} is NaN or infinite ({int((~np.isfinite(out[key]).all(1)).sum())} "
                "points in all)",
                _data_line(path, row),
            )
    return out


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


def check_pcd_counts(path: str | Path) -> None:
    """Refuse a PCD file holding more points than its ``POINTS`` line declares.

    Open3D reads the declared count and drops the rest without a word. ASCII files are
    counted by data lines, binary files by bytes (``SIZE`` x ``COUNT`` per point);
    ``binary_compressed`` files carry their own sizes and are left to Open3D.

    Raises:
        DataFormatError: naming the first extra line (ASCII) or the extra bytes (binary).
    """
    path = Path(path)
    raw = path.read_bytes()
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
            raise DataFormatError(
                path,
                f"header declares {declared} points ({need} bytes), the file holds "
                f"{len(tail)} more bytes after them (wrong count in the header?)",
            )


def ply_has_faces(path: str | Path) -> bool:
    """Whether a PLY file's header declares a non-empty ``face`` element."""
    with open(path, "rb") as fh:
        for _ in range(200):
            line = fh.readline()
            if not line or line.strip() == b"end_header":
                break
            parts = line.split()
            if len(parts) == 3 and parts[0] == b"element" and parts[1] == b"face":
                return int(parts[2]) > 0
    return False


def _check_ascii_ply_lines(
    path: Path, lines: list[str], elements: list[tuple[str, int, Any]], first_line: int
) -> None:
    """An ASCII PLY body holds one line per element row: refuse rows beyond the counts."""
    declared = sum(e[1] for e in elements)
    extra = [i for i in range(declared, len(lines)) if lines[i].strip()]
    if extra:
        counts = ", ".join(f"{n} {name}" for name, n, _ in elements)
        raise DataFormatError(
            path,
            f"header declares {counts} rows, but {len(extra)} more data line(s) follow "
            "(wrong count in the header?)",
            first_line + extra[0],
        )


def check_ply_counts(path: str | Path) -> None:
    """Refuse an ASCII PLY file whose body has more rows than its header declares.

    (Binary files and truncated ASCII files are checked by the readers themselves.)

    Raises:
        DataFormatError: naming the first extra line.
    """
    path = Path(path)
    raw = path.read_bytes()
    end = raw.find(b"end_header")
    if not raw.startswith(b"ply") or end < 0:
        raise DataFormatError(path, "not a PLY file (no 'ply' magic or 'end_header')")
    header = raw[:end].decode("ascii", errors="replace").splitlines()
    elements: list[tuple[str, int, Any]] = []
    for number, line in enumerate(header, 1):
        parts = line.split()
        if parts[:1] == ["element"]:
            try:
                elements.append((parts[1], int(parts[2]), []))
            except (IndexError, ValueError):
                raise DataFormatError(path, f"bad PLY header line {line!r}", number) from None
        elif parts[:1] == ["property"] and elements:
            elements[-1][2].append(parts[1:])
    nl = raw.find(b"\n", end)
    body_start = nl + 1 if nl >= 0 else len(raw)
    fmt = next((line.split()[1] for line in header if line.split()[:1] == ["format"]), "")
    if fmt.startswith("binary"):
        _check_binary_ply_size(path, raw, body_start, elements, "<" if "little" in fmt else ">")
        return
    if fmt != "ascii":
        return
    body = raw[body_start:]
    lines = body.decode("ascii", errors="replace").splitlines()
    _check_ascii_ply_lines(path, lines, elements, len(header) + 2)
    rows = [i for i, line in enumerate(lines) if line.strip()]
    declared = sum(e[1] for e in elements)
    if len(rows) < declared:
        seen = 0
        for name, count, _ in elements:
            if len(rows) < seen + count:
                raise DataFormatError(
                    path,
                    f"truncated: header declares {count} {name} rows, the file ends after "
                    f"{len(rows) - seen}",
                    len(header) + 2 + (rows[-1] + 1 if rows else 0),
                )
            seen += count


def _check_binary_ply_size(
    path: Path, raw: bytes, start: int, elements: list[tuple[str, int, Any]], order: str
) -> None:
    """Walk a binary PLY body element by element: refuse a file that ends early.

    Elements with list properties (faces) are walked row by row, or at once when every row
    of the element has the same list length (triangles), which is checked.
    """
    offset = start
    for name, count, props in elements:
        scalar = 0
        lists: list[tuple[np.dtype, np.dtype]] = []
        for prop in props:
            if prop[:1] == ["list"] and len(prop) >= 3:
                if prop[1] not in _PLY_TYPES or prop[2] not in _PLY_TYPES:
                    return
                lists.append(
                    (np.dtype(order + _PLY_TYPES[prop[1]]), np.dtype(order + _PLY_TYPES[prop[2]]))
                )
            elif prop and prop[0] in _PLY_TYPES:
                scalar += np.dtype(_PLY_TYPES[prop[0]]).itemsize
            else:
                return  # a type we do not know: leave the file to its reader
        done = 0
        if not lists:
            need = count * scalar
        elif len(lists) == 1 and props[0][:1] == ["list"] and count:
            size_t, item_t = lists[0]
            if offset + size_t.itemsize > len(raw):
                need = len(raw) - offset + 1  # not even the first row's length: truncated
            else:
                first = int(np.frombuffer(raw, size_t, 1, offset)[0])
                stride = size_t.itemsize + first * item_t.itemsize + scalar
                fits = min(count, (len(raw) - offset) // stride)
                heads = np.ndarray((fits,), size_t, raw, offset, (stride,))
                if (heads == first).all():
                    need, done = count * stride, fits
                else:
                    need = -1
            if need == -1:
                need = _walk_rows(raw, offset, count, lists, scalar)
        else:
            need = _walk_rows(raw, offset, count, lists, scalar)
        if offset + need > len(raw):
            have = done if done else "fewer"
            raise DataFormatError(
                path,
                f"truncated: header declares {count} {name} rows, the file holds data for "
                f"{have} of them",
            )
        offset += need


def _walk_rows(
    raw: bytes, offset: int, count: int, lists: list[tuple[np.dtype, np.dtype]], scalar: int
) -> int:
    """Bytes taken by ``count`` rows with list properties (scalars assumed first, then the
    lists), or more than the file holds when it ends early."""
    pos = offset
    for _ in range(count):
        pos += scalar
        for size_t, item_t in lists:
            if pos + size_t.itemsize > len(raw):
                return len(raw) - offset + 1
            n = int(np.frombuffer(raw, size_t, 1, pos)[0])
            pos += size_t.itemsize + n * item_t.itemsize
    return pos - offset


_PLY_TYPES = {
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


def read_ply_vertices(path: str | Path) -> dict[str, np.ndarray] | None:
    """Read the vertex element of a PLY file with numpy, validating it fully.

    Handles ASCII and binary (little/big endian) files whose vertex element has scalar
    properties only (and, for binary files, comes first). Returns ``None`` for other files,
    which the caller hands to Open3D.

    Returns:
        Dict with ``pos`` and, where present, ``normal`` and ``rgb`` (0-1).

    Raises:
        DataFormatError: bad header, truncated data, more data than declared, non-numeric
            or non-finite values.
    """
    path = Path(path)
    raw = path.read_bytes()
    end = raw.find(b"end_header")
    if not raw.startswith(b"ply") or end < 0:
        raise DataFormatError(path, "not a PLY file (no 'ply' magic or 'end_header')")
    header = raw[:end].decode("ascii", errors="replace").splitlines()
    body_start = raw.index(b"\n", end) + 1
    fmt = ""
    elements: list[tuple[str, int, list[tuple[str, str] | None]]] = []  # None: a list property
    for number, line in enumerate(header, 1):
        parts = line.split()
        if not parts:
            continue
        try:
            if parts[0] == "format":
                fmt = parts[1]
            elif parts[0] == "element":
                elements.append((parts[1], int(parts[2]), []))
            elif parts[0] == "property" and elements:
                elements[-1][2].append(None if parts[1] == "list" else (parts[-1], parts[1]))
        except (IndexError, ValueError):
            raise DataFormatError(path, f"bad PLY header line {line!r}", number) from None
    names = [e[0] for e in elements]
    if "vertex" not in names:
        raise DataFormatError(path, "PLY header declares no vertex element")
    k = names.index("vertex")
    _, count, maybe_props = elements[k]
    props = [p for p in maybe_props if p is not None]
    if count == 0:
        raise DataFormatError(path, "PLY file declares 0 vertices")
    if len(props) != len(maybe_props) or any(t not in _PLY_TYPES for _, t in props):
        return None
    if fmt == "ascii":
        lines = raw[body_start:].decode("ascii", errors="replace").splitlines()
        skip = sum(e[1] for e in elements[:k])
        first_line = len(header) + 2 + skip  # 1-based line of the first vertex
        block = lines[skip : skip + count]
        _check_ascii_ply_lines(path, lines, elements, len(header) + 2)
        if len(block) < count:
            raise DataFormatError(
                path,
                f"truncated: header declares {count} vertices, found {len(block)}",
                first_line + len(block),
            )
        text = "\n".join(block)
        try:
            arr = np.loadtxt(io.StringIO(text), ndmin=2, dtype=np.float64)
            ok = arr.shape == (count, len(props)) and _fits_float32(arr)
        except ValueError:
            ok = False
        if not ok:
            err = _locate_table_error(path, text, len(props), None, None)
            raise DataFormatError(path, err.reason, (err.line or 1) + first_line - 1)
        values = {name: arr[:, i] for i, (name, _) in enumerate(props)}
    elif fmt in ("binary_little_endian", "binary_big_endian"):
        if k != 0:
            return None
        order = "<" if fmt == "binary_little_endian" else ">"
        dtype = np.dtype([(name, order + _PLY_TYPES[t]) for name, t in props])
        need = count * dtype.itemsize
        if len(raw) - body_start < need:
            raise DataFormatError(
                path,
                f"truncated: header declares {count} vertices ({need} bytes), "
                f"file holds {len(raw) - body_start} bytes of data",
            )
        tail = raw[body_start + need :]
        if len(elements) == 1 and tail.strip():
            raise DataFormatError(
                path,
                f"header declares {count} vertices ({need} bytes), the file holds "
                f"{len(tail)} more bytes after them (wrong count in the header?)",
            )
        rec = np.frombuffer(raw, dtype=dtype, count=count, offset=body_start)
        values = {name: rec[name].astype(np.float64) for name, _ in props}
    else:
        raise DataFormatError(path, f"unknown PLY format {fmt!r}")
    if not all(a in values for a in "xyz"):
        raise DataFormatError(path, "PLY vertex element has no x, y, z properties")
    out = {"pos": np.stack([values[a] for a in "xyz"], 1).astype(np.float32)}
    if not np.isfinite(out["pos"]).all():
        raise DataFormatError(path, "point coordinates contain NaN or infinity")
    if all(a in values for a in ("nx", "ny", "nz")):
        out["normal"] = np.stack([values[a] for a in ("nx", "ny", "nz")], 1).astype(np.float32)
    if all(a in values for a in ("red", "green", "blue")):
        rgb = np.stack([values[a] for a in ("red", "green", "blue")], 1)
        scale = 255.0 if dict(props)["red"] in ("uchar", "uint8") else 1.0
        out["rgb"] = (rgb / scale).astype(np.float32)
    return out


SCAN_CHUNK = 1 << 20  # rows per chunk of a scan read piecewise (about 24 MiB of float64 x y z)


class ScanChunks:
    """A scan read in consecutive chunks of rows, so a large file is never held whole.

    NPY arrays, KITTI ``.bin`` scans, binary PLY files (vertex element first, scalar
    properties only) and binary PCD files are memory-mapped; LAS/LAZ files are read with
    laspy's chunk iterator; text scans (``.txt``, ``.xyz``, ``.pts``), ASCII PLY files
    (scalar vertex properties) and ASCII PCD files are parsed :data:`TEXT_BLOCK` bytes at a
    time after one pass that counts their rows; a text file holding a line break or blank
    :func:`read_point_file` would split otherwise than ``\n`` / ``\r\n`` and ASCII
    blanks (a lone ``\r``, a form feed, ...), an ASCII PLY body holding a ``#``, and a PCD
    file Open3D reads in ways this does not follow (compressed data, an unusual header, see
    :func:`_pcd_layout` and :meth:`_open_pcd`) are read whole by :func:`read_scan` and
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
        self.path, self.chunk = Path(path), max(int(chunk), 1)
        self._source: Any = None
        self._records: Any = None  # a binary PCD file's memory-mapped records
        self._whole: dict[str, np.ndarray] | None = None
        self._rgb_scale = "one"  # how raw colours become 0-1: "one", "byte", "las"
        suffix = self.path.suffix.lower()
        if not self.path.is_file():
            raise DataFormatError(self.path, "file not found")
        if suffix == ".npy":
            self._open_npy()
        elif suffix == ".bin":
            self._open_bin()
        elif suffix in (".las", ".laz"):
            self._open_las()
        elif suffix == ".ply" and (self._open_binary_ply() or self._open_ascii_ply()):
            pass
        elif suffix in (".txt", ".xyz", ".pts") and self._open_text():
            pass
        elif suffix == ".pcd" and self._open_pcd():
            pass
        else:
            whole = read_scan(self.path)
            self._kind, self._whole = "whole", whole
            self.num_points = len(whole["pos"])
            self.coord_dtype = np.dtype(whole["pos"].dtype)
            self.keys = {k: (v.shape[1] if v.ndim == 2 else 1) for k, v in whole.items()}
            self.keys.pop("classification", None)

    def _open_npy(self) -> None:
        check_npy_size(self.path)
        try:
            arr = np.load(self.path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise DataFormatError(self.path, f"not a readable .npy array ({err})") from err
        if arr.ndim != 2 or arr.shape[1] < 3 or arr.shape[0] == 0:
            raise DataFormatError(
                self.path, f"expected an [N, >=3] array, found shape {arr.shape}"
            )
        if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
            raise DataFormatError(self.path, f"array of {arr.dtype}, not real numbers")
        self._kind, self._source = "npy", arr
        self.num_points = arr.shape[0]
        self.coord_dtype = np.dtype(np.float32 if arr.dtype.itemsize <= 4 else np.float64)
        self.keys = {"pos": 3, **({"features": arr.shape[1] - 3} if arr.shape[1] > 3 else {})}

    def _open_bin(self) -> None:
        size = self.path.stat().st_size
        if size == 0 or size % 16:
            raise DataFormatError(
                self.path, f"{size} bytes is not a whole number of points (16 bytes: float32 x y z i)"
            )
        self._kind = "bin"
        self._source = np.memmap(self.path, dtype="<f4", mode="r").reshape(-1, 4)
        self.num_points = size // 16
        self.coord_dtype = np.dtype(np.float32)
        self.keys = {"pos": 3, "intensity": 1}

    def _open_las(self) -> None:
        import laspy

        try:
            with laspy.open(self.path) as reader:
                header = reader.header
                self.num_points = int(header.point_count)
                names = set(header.point_format.dimension_names)
        except Exception as err:  # noqa: BLE001 (laspy raises several types; all mean unreadable)
            raise DataFormatError(self.path, f"not a readable LAS/LAZ file ({err})") from err
        if self.num_points == 0:
            raise DataFormatError(self.path, "LAS file holds no points")
        self._kind, self.coord_dtype, self._rgb_scale = "las", np.dtype(np.float64), "las"
        self.keys = {"pos": 3}
        if {"red", "green", "blue"} <= names:
            self.keys["rgb"] = 3
        if "intensity" in names:
            self.keys["intensity"] = 1

    def _open_binary_ply(self) -> bool:
        """Memory-map a binary PLY whose first element is the vertices, all scalar."""
        with open(self.path, "rb") as f:
            head = f.read(1 << 16)
        end = head.find(b"end_header")
        if not head.startswith(b"ply") or end < 0 or head.find(b"\n", end) < 0:
            return False  # no header in the first 64 KiB: leave the file to read_scan
        body_start = head.index(b"\n", end) + 1
        lines = [line.split() for line in head[:end].decode("ascii", "replace").splitlines()]
        fmt = next((p[1] for p in lines if p[:1] == ["format"] and len(p) > 1), "")
        if fmt not in ("binary_little_endian", "binary_big_endian"):
            return False
        elements: list[tuple[str, int, list[list[str]]]] = []
        for parts in lines:
            if parts[:1] == ["element"] and len(parts) == 3 and parts[2].isdigit():
                elements.append((parts[1], int(parts[2]), []))
            elif parts[:1] == ["property"] and elements:
                elements[-1][2].append(parts[1:])
            elif parts[:1] == ["element"]:
                return False  # a malformed header: read_scan names the line
        if not elements or elements[0][0] != "vertex" or elements[0][1] == 0:
            return False
        props = elements[0][2]
        if any(len(p) != 2 or p[0] not in _PLY_TYPES for p in props):
            return False
        names = [p[1] for p in props]
        if not {"x", "y", "z"} <= set(names) or len(set(names)) != len(names):
            return False
        order = "<" if fmt == "binary_little_endian" else ">"
        dtype = np.dtype([(name, order + _PLY_TYPES[t]) for t, name in props])
        count = elements[0][1]
        need = count * dtype.itemsize
        held = self.path.stat().st_size - body_start
        if held < need:
            raise DataFormatError(
                self.path,
                f"truncated: header declares {count} vertices ({need} bytes), "
                f"file holds {held} bytes of data",
            )
        if len(elements) == 1 and held - need > 16:
            raise DataFormatError(
                self.path,
                f"header declares {count} vertices ({need} bytes), the file holds "
                f"{held - need} more bytes after them (wrong count in the header?)",
            )
        self._kind = "ply"
        self._source = np.memmap(self.path, dtype=dtype, mode="r", offset=body_start, shape=count)
        self.num_points = count
        types = dict((name, t) for t, name in props)
        self.coord_dtype = np.dtype(np.float64 if _PLY_TYPES[types["x"]] == "f8" else np.float32)
        self.keys = {"pos": 3}
        if {"red", "green", "blue"} <= set(names):
            self.keys["rgb"] = 3
            self._rgb_scale = "byte" if types["red"] in ("uchar", "uint8") else "one"
        return True

    def _open_text(self) -> bool:
        """Count a text scan's rows and settle its columns as :func:`read_point_file` does."""
        layout = _text_layout(self.path)
        if layout is None:
            return False  # characters that split lines or fields otherwise: read whole
        self._kind, self._source = "text", layout
        self.num_points = layout.rows
        self.coord_dtype = np.dtype(np.float32)
        self.keys = {"pos": 3, **({"features": layout.ncols - 3} if layout.ncols > 3 else {})}
        return True

    def _open_pcd(self) -> bool:
        """Memory-map a binary PCD file's records, or check an ASCII one's rows parse, and
        count the points with finite coordinates, raising the errors and the warning
        :func:`read_point_file` raises for the file; ``False`` for a file read whole (see
        :func:`_pcd_layout`; an ASCII file whose rows do not all parse as floats, with as many
        columns as its fields, or hold a line break or blank other than ``\n`` / ``\r\n``,
        space and tab, or more or fewer rows than its header declares)."""
        check_pcd_normals(self.path)
        found = _pcd_layout(self.path)
        if found is None:
            return False
        pcd, declared = found
        self._source = pcd
        if pcd.columns is None:
            need = pcd.count * pcd.dtype.itemsize
            held = self.path.stat().st_size - pcd.body_start
            if held < need and pcd.wide:
                raise DataFormatError(
                    self.path,
                    f"truncated: header declares {declared} points ({need} bytes), the file "
                    f"holds {held} bytes of data",
                )
            if held < need:  # Open3D stops at the first short record and returns no points
                raise DataFormatError(
                    self.path, "Open3D read no points (empty, truncated or not a point file)"
                )
            if held > need and _holds_more_than_whitespace(self.path, pcd.body_start + need):
                raise DataFormatError(  # check_pcd_counts' refusal
                    self.path,
                    f"header declares {declared} points ({need} bytes), the file holds "
                    f"{held - need} more bytes after them (wrong count in the header?)",
                )
            self._records = np.memmap(
                self.path, dtype=pcd.dtype, mode="r", offset=pcd.body_start, shape=pcd.count
            )
        rows = valid = 0
        first_nan, first_bad, bad_normals = -1, -1, 0  # normals not finite, of finite points
        try:
            for start, rec in self._pcd_blocks(PCD_BLOCK):
                keep = self._pcd_finite(rec)
                rows += len(rec)
                valid += int(np.count_nonzero(keep))
                if first_nan < 0 and not keep.all():
                    first_nan = start + int(np.flatnonzero(~keep)[0])
                if pcd.normals:
                    wrong = ~np.isfinite(self._pcd_normals(rec)).all(1) & keep
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
                stacklevel=3,
            )
        if bad_normals:
            raise DataFormatError(
                self.path,
                f"normal of point {first_bad} is NaN or infinite ({bad_normals} points in all)",
                pcd.header_lines + 1 + first_bad if ascii else None,
            )
        self._kind = "pcd"
        self.num_points = valid
        self.coord_dtype = np.dtype(np.float64 if pcd.double else np.float32)  # as read_scan's
        self.keys = {"pos": 3}
        if pcd.normals:
            self.keys["normal"] = 3
        if pcd.colour is not None:
            self.keys["rgb"] = 3
        return True

    def _pcd_blocks(self, step: int) -> Iterator[tuple[int, np.ndarray]]:
        """A PCD file's points as records of :attr:`_Pcd.dtype`, a block at a time, each
        with the row of its first point; binary records ``step`` at a time.

        Raises:
            _ReadWhole: an ASCII block that does not parse as plain rows of floats.
        """
        pcd: _Pcd = self._source
        if pcd.columns is None:
            for start in range(0, pcd.count, step):
                yield start, np.asarray(self._records[start : start + step])
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

    def _pcd_pos(self, rec: np.ndarray) -> np.ndarray:
        """x y z as read_point_file holds them: float32 (Open3D's doubles, rounded), or
        float64 for 8-byte coordinates (read by numpy)."""
        coord = np.float64 if self._source.double else np.float32
        return np.stack([rec[a].astype(coord) for a in "xyz"], 1)

    @staticmethod
    def _pcd_normals(rec: np.ndarray) -> np.ndarray:
        return np.stack([rec[f"normal_{a}"].astype(np.float32) for a in "xyz"], 1)

    def _pcd_finite(self, rec: np.ndarray) -> np.ndarray:
        return np.isfinite(self._pcd_pos(rec)).all(1)

    def _pcd_arrays(self) -> Iterator[np.ndarray]:
        """The records of points with finite coordinates, a block at a time."""
        try:
            for _, rec in self._pcd_blocks(max(self.chunk, PCD_BLOCK)):
                keep = self._pcd_finite(rec)
                yield rec if keep.all() else rec[keep]
        except _ReadWhole:
            raise DataFormatError(
                self.path, "no longer parses as it did when it was opened (changed while read?)"
            ) from None

    def _pcd_rows(self, rec: np.ndarray) -> dict[str, np.ndarray]:
        pcd: _Pcd = self._source
        out = {"pos": self._pcd_pos(rec).astype(np.float64)}
        if pcd.normals:
            out["normal"] = self._pcd_normals(rec)
        if pcd.colour is not None:
            # packed colour: bytes b g r (a) of a little-endian 0x(aa)rrggbb, as Open3D reads it
            packed = rec[pcd.colour]
            out["rgb"] = (packed[:, [2, 1, 0]].astype(np.float64) / 255.0).astype(np.float32)
        return out

    def _open_ascii_ply(self) -> bool:
        """Count an ASCII PLY file's lines and check its vertex rows are all there, as
        :func:`read_ply_vertices` does; ``False`` for a file it reads otherwise or refuses
        for its header (read whole, so the error is the same)."""
        with open(self.path, "rb") as f:
            head = f.read(1 << 20)
        end = head.find(b"end_header")
        if not head.startswith(b"ply") or end < 0 or head.find(b"\n", end) < 0:
            return False
        header = head[:end].decode("ascii", errors="replace").splitlines()
        fmt = ""
        elements: list[tuple[str, int, list[tuple[str, str] | None]]] = []
        for line in header:
            parts = line.split()
            try:
                if parts[:1] == ["format"]:
                    fmt = parts[1]
                elif parts[:1] == ["element"]:
                    elements.append((parts[1], int(parts[2]), []))
                elif parts[:1] == ["property"] and elements:
                    elements[-1][2].append(None if parts[1] == "list" else (parts[-1], parts[1]))
            except (IndexError, ValueError):
                return False
        names = [e[0] for e in elements]
        if fmt != "ascii" or "vertex" not in names:
            return False
        k = names.index("vertex")
        count, maybe = elements[k][1], elements[k][2]
        props = [p for p in maybe if p is not None]
        if count == 0 or len(props) != len(maybe) or any(t not in _PLY_TYPES for _, t in props):
            return False
        column = {name: i for i, (name, _) in enumerate(props)}  # the last of a name wins
        if not all(a in column for a in "xyz"):
            return False
        body_start = head.index(b"\n", end) + 1
        declared = sum(e[1] for e in elements)
        lines = 0  # lines of the body, as str.splitlines counts them
        extra, first_extra = 0, -1  # non-blank lines after the declared rows
        for block, line0 in _line_blocks(self.path, body_start):
            if any(c in block for c in _ODD_ASCII) or block.count(b"\r") != block.count(b"\r\n"):
                return False  # lines split otherwise than at \n: read whole
            if b"#" in block:
                # np.loadtxt drops '#' comments where read_ply_vertices' error scan does not:
                # which line an error names depends on the whole file, so read it whole
                return False
            held = block.count(b"\n") + (not block.endswith(b"\n"))
            lines = line0 + held
            if lines > declared:
                at = _line_offset(block, max(declared - line0, 0))
                raw = np.frombuffer(block, dtype=np.uint8)[at:]
                seq = raw[_PLY_SIGNIFICANT[raw]]
                if len(seq):
                    starts = (seq != 10) & np.concatenate(([True], seq[:-1] == 10))
                    extra += int(np.count_nonzero(starts))
                    if first_extra < 0 and starts.any():
                        hit = _PLY_NOT_BLANK.search(block, at)
                        assert hit is not None
                        first_extra = line0 + block.count(b"\n", 0, hit.start())
        if extra:
            counts = ", ".join(f"{n} {name}" for name, n, _ in elements)
            raise DataFormatError(
                self.path,
                f"header declares {counts} rows, but {extra} more data line(s) follow "
                "(wrong count in the header?)",
                len(header) + 2 + first_extra,
            )
        skip = sum(e[1] for e in elements[:k])
        first_line = len(header) + 2 + skip  # 1-based line of the first vertex
        if lines < skip + count:
            have = max(0, lines - skip)
            raise DataFormatError(
                self.path,
                f"truncated: header declares {count} vertices, found {have}",
                first_line + have,
            )
        self._kind = "ascii_ply"
        self._source = _AsciiPly(body_start, skip, count, len(props), first_line, column)
        self.num_points = count
        self.coord_dtype = np.dtype(np.float32)
        self.keys = {"pos": 3}
        if all(a in column for a in ("nx", "ny", "nz")):
            self.keys["normal"] = 3
        if all(a in column for a in ("red", "green", "blue")):
            self.keys["rgb"] = 3
            self._source.rgb_scale = 255.0 if dict(props)["red"] in ("uchar", "uint8") else 1.0
        return True

    def rgb_divisor(self, top: float) -> float:
        """What the raw ``rgb`` values are divided by, given their maximum over the scan.

        LAS holds 16-bit colours (some writers put 8-bit values in them), PLY ``uchar``
        colours are 0-255, others are 0-1 already.
        """
        if self._rgb_scale == "las":
            return 65535.0 if top > 255 else 255.0
        return 255.0 if self._rgb_scale == "byte" else 1.0

    def _check(self, block: np.ndarray, start: int, what: str = "point") -> None:
        finite = np.isfinite(block)
        if not finite.all():
            bad = finite.reshape(len(block), -1).all(1)
            row = start + int(np.flatnonzero(~bad)[0])
            raise DataFormatError(self.path, f"{what} {row} has a NaN or infinite value")

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        if self._kind == "las":
            yield from self._las_chunks()
            return
        if self._kind == "text":
            yield from self._text_chunks()
            return
        if self._kind == "ascii_ply":
            yield from self._rebatch(self._ply_arrays(), self._ply_rows)
            return
        if self._kind == "pcd":
            yield from self._rebatch(self._pcd_arrays(), self._pcd_rows)
            return
        for start in range(0, self.num_points, self.chunk):
            stop = min(start + self.chunk, self.num_points)
            yield self._rows(start, stop)

    def _rows(self, start: int, stop: int) -> dict[str, np.ndarray]:
        if self._kind == "whole":
            assert self._whole is not None
            out = {k: self._whole[k][start:stop] for k in self.keys}
            out["pos"] = out["pos"].astype(np.float64)
            return out
        if self._kind == "npy":
            block = np.asarray(self._source[start:stop])
            self._check(block, start, "row")
            out = {"pos": block[:, :3].astype(np.float64)}
            if block.shape[1] > 3:
                out["features"] = block[:, 3:].astype(np.float32)
            return out
        if self._kind == "bin":
            block = np.asarray(self._source[start:stop])
            self._check(block, start)
            return {"pos": block[:, :3].astype(np.float64), "intensity": block[:, 3].copy()}
        rec = np.asarray(self._source[start:stop])  # binary PLY
        pos = np.stack([rec[a].astype(np.float64) for a in "xyz"], 1)
        self._check(pos, start)
        out = {"pos": pos}
        if "rgb" in self.keys:
            out["rgb"] = np.stack([rec[c] for c in ("red", "green", "blue")], 1).astype(np.float32)
            self._check(out["rgb"], start, "colour of point")
        return out

    def _las_chunks(self) -> Iterator[dict[str, np.ndarray]]:
        import laspy

        start = 0
        try:
            with laspy.open(self.path) as reader:
                for points in reader.chunk_iterator(self.chunk):
                    pos = np.stack([np.asarray(points.x), np.asarray(points.y),
                                    np.asarray(points.z)], 1).astype(np.float64)  # fmt: skip
                    self._check(pos, start)
                    out = {"pos": pos}
                    if "rgb" in self.keys:
                        out["rgb"] = np.stack(
                            [np.asarray(points.red), np.asarray(points.green),
                             np.asarray(points.blue)], 1
                        ).astype(np.float32)  # fmt: skip
                    if "intensity" in self.keys:
                        out["intensity"] = np.asarray(points.intensity, dtype=np.float32)
                    start += len(pos)
                    yield out
        except DataFormatError:
            raise
        except Exception as err:  # noqa: BLE001 (laspy raises several types; all mean unreadable)
            raise DataFormatError(self.path, f"not a readable LAS/LAZ file ({err})") from err
        if start != self.num_points:
            raise DataFormatError(
                self.path,
                f"truncated: header declares {self.num_points} points, the file holds {start}",
            )

    def _rebatch(
        self, arrays: Iterator[np.ndarray], convert: Any
    ) -> Iterator[dict[str, np.ndarray]]:
        """Hand out parsed blocks of rows as chunks of exactly ``self.chunk`` rows."""
        rest: np.ndarray | None = None  # parsed rows not yet handed out
        done = 0
        for rows in arrays:
            rest = rows if rest is None or len(rest) == 0 else np.concatenate([rest, rows])
            at = 0
            while len(rest) - at >= self.chunk:
                yield convert(rest[at : at + self.chunk])
                at += self.chunk
            done += at
            rest = rest[at:]
        if rest is not None and len(rest):
            yield convert(rest)
            done += len(rest)
        if done != self.num_points:
            raise DataFormatError(
                self.path,
                f"holds {done} rows, {self.num_points} when it was opened (changed while read?)",
            )

    def _text_chunks(self) -> Iterator[dict[str, np.ndarray]]:
        return self._rebatch(self._text_arrays(), self._text_rows)

    def _text_arrays(self) -> Iterator[np.ndarray]:
        layout: _TextLayout = self._source
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
                raise self._text_error(text, line0, blocks)
            if len(arr):
                yield arr.astype(np.float32)  # read_point_file's values, to the bit

    def _ply_arrays(self) -> Iterator[np.ndarray]:
        ply: _AsciiPly = self._source
        blocks = _line_blocks(self.path, ply.body_start)
        seen = 0  # rows parsed or scanned so far (read_ply_vertices: empty vs unparsable)
        error: DataFormatError | None = None
        stop = ply.skip + ply.count
        for block, line0 in blocks:
            held = block.count(b"\n") + (not block.endswith(b"\n"))
            lo, hi = max(line0, ply.skip), min(line0 + held, stop)
            if lo >= hi:
                if line0 >= stop:
                    break
                continue
            part = block[_line_offset(block, lo - line0) : _line_offset(block, hi - line0)]
            text = part.decode("ascii", errors="replace")
            if "\r" in text:
                text = text.replace("\r\n", "\n")
            first = ply.first_line + lo - ply.skip  # the file's line of this part's first row
            if error is None:
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        arr = np.loadtxt(io.StringIO(text), ndmin=2, dtype=np.float64)
                    good = arr.shape == (hi - lo, ply.ncols) and _fits_float32(arr)
                except ValueError:
                    good = False
                if good:
                    seen += hi - lo
                    yield arr
                    continue
                error = DataFormatError(self.path, "could not parse table")
            # the first malformed line of the vertex rows, as read_ply_vertices names it
            bad, rows = _first_bad_line(self.path, text, ply.ncols, None, None, first)
            if bad is not None:
                raise bad
            seen += rows
        if error is not None:
            reason = "could not parse table" if seen else "file is empty (no data rows)"
            raise DataFormatError(self.path, reason, ply.first_line)

    def _ply_rows(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        ply: _AsciiPly = self._source
        c = ply.column
        pos = rows[:, [c["x"], c["y"], c["z"]]].astype(np.float32)
        out = {"pos": pos.astype(np.float64)}
        if "normal" in self.keys:
            out["normal"] = rows[:, [c["nx"], c["ny"], c["nz"]]].astype(np.float32)
        if "rgb" in self.keys:
            rgb = rows[:, [c["red"], c["green"], c["blue"]]]
            out["rgb"] = (rgb / ply.rgb_scale).astype(np.float32)
        return out

    def _text_rows(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        out = {"pos": rows[:, :3].astype(np.float64)}
        if rows.shape[1] > 3:
            out["features"] = np.ascontiguousarray(rows[:, 3:])
        return out

    def _text_error(
        self, text: str, line0: int, blocks: Iterator[tuple[bytes, int]]
    ) -> DataFormatError:
        """The error :func:`read_point_file` raises: the file's first malformed line, which
        may lie in a later block when this block failed in a way no line explains."""
        layout: _TextLayout = self._source
        error, _ = _first_bad_line(self.path, text, layout.ncols, layout.delimiter, "#", line0 + 1)
        for raw, start in blocks:
            if error is not None:
                break
            later = _block_text(self.path, raw, start, layout.header_line)
            error, _ = _first_bad_line(
                self.path, later, layout.ncols, layout.delimiter, "#", start + 1
            )
        return error if error is not None else DataFormatError(self.path, "could not parse table")


PCD_BLOCK = 1 << 16  # records of a binary PCD file decoded at a time (a few MiB)
TEXT_BLOCK = 1 << 21  # bytes of a text scan parsed at a time (about 50k rows)

_BLANK = b" \t\r\x00"  # the blanks of a text scan's lines (NUL: a known S3DIS defect)
_NOT_BLANK = re.compile(rb"[^ \t\r\n\x00]")
_SIGNIFICANT = np.ones(256, dtype=bool)  # bytes that are neither blanks nor whitespace
_SIGNIFICANT[list(_BLANK)] = False
# ASCII characters str.splitlines or str.split treat as line breaks or blanks beyond those
_ODD_ASCII = (b"\x0b", b"\x0c", b"\x1c", b"\x1d", b"\x1e", b"\x1f")
_ODD_UNICODE = re.compile("[\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]")


@dataclass
class _AsciiPly:
    """Where an ASCII PLY file's vertex rows are, and how its columns are named."""

    body_start: int  # byte offset of the first line after end_header
    skip: int  # body lines before the vertex rows (earlier elements)
    count: int
    ncols: int
    first_line: int  # 1-based line of the first vertex row
    column: dict[str, int]
    rgb_scale: float = 1.0


_PLY_SIGNIFICANT = np.ones(256, dtype=bool)  # str.strip keeps NUL: only these are blank
_PLY_SIGNIFICANT[list(b" \t\r")] = False
_PLY_NOT_BLANK = re.compile(rb"[^ \t\r\n]")


def _line_offset(block: bytes, line: int) -> int:
    """Byte offset of 0-based ``line`` in a block of lines (its length past the last)."""
    if line == 0:
        return 0
    ends = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10)
    return int(ends[line - 1]) + 1 if line <= len(ends) else len(block)


@dataclass
class _TextLayout:
    """What one pass over a text scan found: its rows, columns and .pts count line."""

    rows: int
    ncols: int
    delimiter: str | None
    header_line: int | None  # 0-based line of a Leica PTS point-count line


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
    return _TextLayout(rows, ncols, delimiter, header)


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


class _ReadWhole(Exception):
    """A file this module streams holds something only the whole read reads as it should."""


@dataclass
class _Pcd:
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


def _pcd_layout(path: Path) -> tuple[_Pcd, int] | None:
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
        pcd = _Pcd(pos, declared, dtype, normals, colour, columns=columns, width=column)
        pcd.header_lines = header_lines
        pcd.colour_type = colour_type
        return pcd, declared
    dtype = np.dtype(
        {
            "names": list(layout),
            "formats": [f for f, _ in layout.values()],
            "offsets": [o for _, o in layout.values()],
            "itemsize": offset,
        }
    )
    double = any(dtype[a].itemsize == 8 for a in "xyz")
    return _Pcd(pos, declared, dtype, normals, colour, wide, double=double), declared


def _holds_more_than_whitespace(path: Path, offset: int) -> bool:
    """Whether a file holds anything but ASCII whitespace from ``offset`` on."""
    with open(path, "rb") as fh:
        fh.seek(offset)
        while block := fh.read(TEXT_BLOCK):
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
