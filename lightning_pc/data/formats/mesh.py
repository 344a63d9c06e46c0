"""Triangle meshes: OFF and OBJ (our readers, every quirk of the ModelNet release and of
other writers), STL (through Open3D); area-weighted sampling of points on a mesh.

PLY meshes are read by :mod:`lightning_pc.data.formats.ply`.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lightning_pc.data.errors import DataFormatError
from lightning_pc.data.formats._common import _read_text, _strip_comment
from lightning_pc.data.formats.base import Format, Mesh, checked_mesh

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
    except (ValueError, OverflowError):  # the line-by-line pass names the line
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
    except (ValueError, OverflowError):  # the line-by-line pass names the line
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
    (texture coordinates, normals, groups, materials, lines, points) is ignored, and so
    are the bytes of their names: a file that is not UTF-8 (a Latin-1 ``usemtl`` name) is
    read as Latin-1.

    Raises:
        DataFormatError: naming the line of a malformed vertex or face, an index outside the
            vertices defined so far, or a file without faces.
    """
    path = Path(path)
    text = _read_text(path, latin1=True)  # material and group names may be Latin-1
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


def read_open3d_mesh(path: str | Path, before: Callable[[Path], None] | None = None) -> Mesh:
    """A triangle mesh read through Open3D (STL, PLY, or another format it reads).

    Args:
        path: the mesh file.
        before: the format's checks of the file, run before Open3D sees it.

    Raises:
        DataFormatError: unreadable file, a mesh without triangles, non-finite vertices or a
            face index outside the vertex list.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "file not found")
    if before is not None:
        before(path)
    import open3d as o3d

    mesh = o3d.io.read_triangle_mesh(str(path))  # type: ignore[arg-type]
    verts = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.triangles, dtype=np.int64)
    if len(verts) == 0 or len(faces) == 0:
        raise DataFormatError(path, "Open3D read no triangles from this mesh file")
    return checked_mesh(path, verts, faces)


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


def check_stl(path: Path) -> None:
    """Check a binary STL's triangle count against the file's size before Open3D reads it
    (an ASCII STL, ``solid ... facet ...``, has no count).

    Raises:
        DataFormatError: a file too short for a binary STL's header, or a count that
            needs more bytes (50 a triangle) than the file holds.
    """
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(1024)
    ascii = head.lstrip().startswith(b"solid") and b"facet" in head
    if len(head) < 84:
        if ascii:
            return
        raise DataFormatError(
            path, f"not an STL file ({size} bytes; a binary STL's header alone is 84)"
        )
    (count,) = struct.unpack_from("<I", head, 80)
    if 84 + 50 * count > size and not ascii:
        raise DataFormatError(
            path,
            f"truncated: header declares {count} triangles ({84 + 50 * count} bytes), the "
            f"file holds {size}",
        )


def read_stl(path: Path) -> Mesh:
    """An STL mesh (binary or ASCII) through Open3D, after :func:`check_stl`."""
    return read_open3d_mesh(path, check_stl)


OFF = Format("off", (".off",), read_mesh=read_off)
OBJ = Format("obj", (".obj",), read_mesh=read_obj)
STL = Format("stl", (".stl",), read_mesh=read_stl)

FORMATS = (OFF, OBJ, STL)
