"""File formats: one module per format, and the one table that maps suffixes to them.

Every reader of point and mesh files goes through this table: :func:`read_point_file`,
:func:`read_scan`, :func:`read_mesh`, :class:`~lightning_pc.data.formats.chunks.ScanChunks`,
the folder dataset (which files it reads, and whether one is a mesh) and the prediction
writers (which format writes a cloud, which one copies a scan with new labels).

Adding a format
---------------
1. Write one module here, ``lightning_pc/data/formats/<name>.py``, holding the format's
   readers (and writers, where it has them) and ending with a tuple ``FORMATS`` of
   :class:`~lightning_pc.data.formats.base.Format` records: each names its suffixes and
   the callables it implements; leave out what the format cannot do. ``read_points``
   makes files of the suffix readable by :func:`read_point_file` and the folder dataset;
   ``read_scan`` (if coordinates need more than float32) by :func:`read_scan`;
   ``open_chunks`` lets :class:`ScanChunks` stream the file instead of reading it whole;
   ``read_mesh`` makes it a mesh (sampled by area in the folder dataset).
2. Add the module's name to :data:`FORMAT_MODULES` below. That is the one registry line.

Rules every reader here keeps (``tests/data/formats/test_<format>.py`` test them):

- a malformed file raises :class:`~lightning_pc.data.errors.DataFormatError` naming the
  file (and the line, for text); a third-party decoder's exceptions never escape as anything
  else (lazrs panics derive from ``BaseException``: catch them by name, see ``las.py``);
- every count in a header is checked against the file's size before anything is allocated
  or looped over, and before a C++ reader (Open3D) sees the file; PLY never reaches Open3D;
- a body shorter than its header declares is an error for binary data and for formats
  whose header counts rows (PLY, PCD, OFF); text without counts reads the rows it has
  (a Leica PTS count line that disagrees: the rows, with a warning);
- imports point downwards: nothing from datasets, modules, tasks or callbacks.

``tests/data/formats/test_registry.py`` adds a format from a test.

At run time, :func:`register` adds a :class:`Format` (a plugin's, or a test's) and
:func:`unregister` removes it.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np

from lightning_pc.data.errors import DataFormatError
from lightning_pc.data.formats.base import SCAN_CHUNK, Arrays, ChunkSource, Format, Mesh
from lightning_pc.data.formats.chunks import ScanChunks

# The registry: format modules, in the order their suffixes are listed to users.
FORMAT_MODULES = ("ply", "pcd", "text", "npy", "las", "mesh", "kitti")

_BY_SUFFIX: dict[str, Format] = {}


def register(fmt: Format, replace: bool = False) -> Format:
    """Add a format to the table under each of its suffixes.

    Args:
        fmt: the format.
        replace: take suffixes another format holds (else that is an error).

    Raises:
        ValueError: a suffix that is not lower case with a leading dot, or one another
            format holds.
    """
    for suffix in fmt.suffixes:
        if not suffix.startswith(".") or suffix != suffix.lower() or len(suffix) < 2:
            raise ValueError(f"format {fmt.name!r}: suffix {suffix!r} is not like '.ply'")
        held = _BY_SUFFIX.get(suffix)
        if held is not None and held is not fmt and not replace:
            raise ValueError(f"format {fmt.name!r}: suffix {suffix!r} is {held.name!r}'s")
    for suffix in fmt.suffixes:
        _BY_SUFFIX[suffix] = fmt
    return fmt


def unregister(fmt: Format | str) -> None:
    """Remove a format (or the format holding a suffix such as ``".ply"``) from the table."""
    if isinstance(fmt, str):
        found = _BY_SUFFIX.get(fmt.lower())
        if found is None:
            return
        fmt = found
    for suffix in [s for s, f in _BY_SUFFIX.items() if f is fmt]:
        del _BY_SUFFIX[suffix]


for _name in FORMAT_MODULES:
    for _fmt in importlib.import_module(f"{__name__}.{_name}").FORMATS:
        register(_fmt)


def lookup(path: str | Path) -> Format | None:
    """The format of a file, by its suffix (any case); ``None``: no format has it."""
    return _BY_SUFFIX.get(Path(path).suffix.lower())


def for_suffix(suffix: str) -> Format:
    """The format registered for ``suffix`` (``".laz"``, any case).

    Raises:
        KeyError: no format has it.
    """
    fmt = _BY_SUFFIX.get(suffix.lower())
    if fmt is None:
        raise KeyError(f"no format reads {suffix!r}; registered: {' '.join(_BY_SUFFIX)}")
    return fmt


def registered() -> list[Format]:
    """Every format in the table, each once, in the order they were registered."""
    return list(dict.fromkeys(_BY_SUFFIX.values()))


def suffixes(points: bool = False, scans: bool = False, meshes: bool = False) -> tuple[str, ...]:
    """Registered suffixes, in table order: all of them, or those whose format reads
    ``points`` (:func:`read_point_file`), ``scans`` (:func:`read_scan`) or ``meshes``
    (:func:`read_mesh`); several flags: any of those."""
    out = []
    for suffix, fmt in _BY_SUFFIX.items():
        wanted = not (points or scans or meshes)
        wanted |= points and fmt.read_points is not None
        wanted |= scans and fmt.scan_reader() is not None
        wanted |= meshes and fmt.read_mesh is not None
        if wanted:
            out.append(suffix)
    return tuple(out)


def read_point_file(path: str | Path) -> Arrays:
    """Read a point file: PLY/PCD, XYZ/PTS/TXT text, NPY, LAS/LAZ (or a registered format).

    Text and NPY files hold ``x y z`` in the first three columns; further columns are
    returned as ``features``. PLY/PCD return ``normal`` and ``rgb`` (0-1) where present;
    LAS/LAZ ``rgb``, ``intensity`` and ``classification`` (see
    :func:`~lightning_pc.data.formats.las.read_las`).

    Returns:
        Dict with ``pos [N, 3]`` float32 and optionally ``normal``, ``rgb``, ``features``,
        ``intensity``, ``classification``.

    Raises:
        DataFormatError: a malformed file, or a suffix no format reads points from.
    """
    path = Path(path)
    fmt = lookup(path)
    if fmt is None or fmt.read_points is None:
        raise DataFormatError(path, f"unsupported point file suffix {path.suffix.lower()!r}")
    out = fmt.read_points(path)
    if not np.isfinite(out["pos"]).all():  # float64 coordinates beyond float32's range
        raise DataFormatError(
            path, "point coordinates beyond float32's range (3.4e38; read_scan keeps float64)"
        )
    return out


def read_scan(path: str | Path) -> Arrays:
    """Read a scan for whole-scene prediction: any point file :func:`read_point_file` reads.

    Unlike :func:`read_point_file`, LAS/LAZ coordinates stay float64 (see
    :func:`~lightning_pc.data.formats.las.read_las`), as do a binary PCD file's 8-byte
    (double) ``x y z``; ``.bin`` files are KITTI velodyne scans (float32 ``x y z
    intensity``).

    Returns:
        Dict with ``pos [N, 3]`` (float64 for LAS/LAZ and double PCD, else float32) and,
        where the file has them, ``rgb`` (0-1), ``normal``, ``intensity``,
        ``classification``, ``features``.
    """
    path = Path(path)
    fmt = lookup(path)
    reader = None if fmt is None else fmt.scan_reader()
    if reader is None:
        return read_point_file(path)  # refuses the suffix
    return reader(path)


def read_mesh(path: str | Path) -> Mesh:
    """Read a triangle mesh: OFF and OBJ with our readers, STL/PLY (and any other suffix)
    through Open3D after the format's checks.

    Raises:
        DataFormatError: unreadable file, a mesh without triangles, a face index outside the
            vertex list, or (ASCII PLY) more or fewer data lines than the header declares.
    """
    from lightning_pc.data.formats.mesh import read_open3d_mesh

    path = Path(path)
    fmt = lookup(path)
    if fmt is None or fmt.read_mesh is None:
        return read_open3d_mesh(path)
    return fmt.read_mesh(path)


__all__ = [
    "FORMAT_MODULES",
    "SCAN_CHUNK",
    "ChunkSource",
    "Format",
    "Mesh",
    "ScanChunks",
    "for_suffix",
    "lookup",
    "read_mesh",
    "read_point_file",
    "read_scan",
    "register",
    "registered",
    "suffixes",
    "unregister",
]
