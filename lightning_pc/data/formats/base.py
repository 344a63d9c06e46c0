"""What a file format provides (:class:`Format`), and the pieces its readers share: the
triangle :class:`Mesh`, the :class:`ChunkSource` a chunked read hands to
:class:`~lightning_pc.data.formats.chunks.ScanChunks`, and label checking."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lightning_pc.data.errors import DataFormatError

SCAN_CHUNK = 1 << 20  # rows per chunk of a scan read piecewise (about 24 MiB of float64 x y z)

Arrays = dict[str, np.ndarray]


@dataclass
class Mesh:
    """A triangle mesh: ``vertices [V, 3]`` float64 and ``faces [F, 3]`` int64."""

    vertices: np.ndarray
    faces: np.ndarray


def checked_mesh(path: Path, verts: np.ndarray, faces: np.ndarray) -> Mesh:
    """``Mesh(verts, faces)`` once every vertex is finite and every face indexes a vertex.

    Raises:
        DataFormatError: naming ``path`` and the first bad face.
    """
    if not np.isfinite(verts).all():
        raise DataFormatError(path, "mesh has non-finite vertex coordinates")
    if faces.min() < 0 or faces.max() >= len(verts):
        bad = int(np.flatnonzero((faces < 0).any(1) | (faces >= len(verts)).any(1))[0])
        raise DataFormatError(
            path,
            f"face {bad} ({faces[bad].tolist()}) indexes a vertex outside [0, {len(verts)})",
        )
    return Mesh(verts, faces)


class ChunkSource:
    """A scan opened for reading in chunks: what one format's ``open_chunks`` returns.

    Subclasses set :attr:`kind`, :attr:`num_points`, :attr:`keys` and :attr:`coord_dtype`
    when opened (raising :class:`DataFormatError` for a file they refuse) and implement
    :meth:`chunks`. See :class:`~lightning_pc.data.formats.chunks.ScanChunks` for what a
    chunk holds.
    """

    kind = "whole"  # a name for the way the file is read (tests check it)
    rgb_scale = "one"  # raw colours to 0-1: "one", "byte" (0-255), "short" (0-65535), "las"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.num_points = 0
        self.keys: dict[str, int] = {}
        self.coord_dtype: np.dtype = np.dtype(np.float32)

    def rgb_divisor(self, top: float) -> float:
        """What the raw ``rgb`` values are divided by, given their maximum over the scan."""
        if self.rgb_scale == "las":
            return 65535.0 if top > 255 else 255.0
        return {"byte": 255.0, "short": 65535.0}.get(self.rgb_scale, 1.0)

    def chunks(self, chunk: int) -> Iterator[Arrays]:
        """The scan's rows, ``chunk`` at a time (the last chunk may be shorter)."""
        raise NotImplementedError

    def check(self, block: np.ndarray, start: int, what: str = "point") -> None:
        """Refuse a NaN or infinite value in ``block`` (rows ``start`` on), naming the row."""
        finite = np.isfinite(block)
        if not finite.all():
            bad = finite.reshape(len(block), -1).all(1)
            row = start + int(np.flatnonzero(~bad)[0])
            raise DataFormatError(self.path, f"{what} {row} has a NaN or infinite value")

    def sliced(self, chunk: int, rows: Callable[[int, int], Arrays]) -> Iterator[Arrays]:
        """Chunks cut from a source that reads any row range (``rows(start, stop)``)."""
        for start in range(0, self.num_points, chunk):
            yield rows(start, min(start + chunk, self.num_points))

    def rebatch(
        self, arrays: Iterable[np.ndarray], convert: Callable[[np.ndarray], Arrays], chunk: int
    ) -> Iterator[Arrays]:
        """Hand out parsed blocks of rows as chunks of exactly ``chunk`` rows."""
        rest: np.ndarray | None = None  # parsed rows not yet handed out
        done = 0
        for rows in arrays:
            rest = rows if rest is None or len(rest) == 0 else np.concatenate([rest, rows])
            at = 0
            while len(rest) - at >= chunk:
                yield convert(rest[at : at + chunk])
                at += chunk
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


class WholeChunks(ChunkSource):
    """A scan read whole (by its format's ``read_scan``) and handed out in slices."""

    kind = "whole"

    def __init__(self, path: Path, whole: Arrays) -> None:
        super().__init__(path)
        self.whole = whole
        self.num_points = len(whole["pos"])
        self.coord_dtype = np.dtype(whole["pos"].dtype)
        self.keys = {k: (v.shape[1] if v.ndim == 2 else 1) for k, v in whole.items()}
        self.keys.pop("classification", None)

    def chunks(self, chunk: int) -> Iterator[Arrays]:
        def rows(start: int, stop: int) -> Arrays:
            out = {k: self.whole[k][start:stop] for k in self.keys}
            out["pos"] = out["pos"].astype(np.float64)
            return out

        return self.sliced(chunk, rows)


@dataclass(frozen=True)
class Format:
    """One file format: its suffixes and what it can do. Every callable is optional.

    Attributes:
        name: a short name (``"ply"``), used in messages.
        suffixes: lower-case suffixes with the dot (``(".las", ".laz")``).
        read_points: ``path -> arrays`` for :func:`~lightning_pc.data.formats.read_point_file`:
            ``pos [N, 3]`` float32 and, where the file has them, ``normal``, ``rgb`` (0-1),
            ``features``, ``intensity``, ``classification``.
        read_scan: ``path -> arrays`` for :func:`~lightning_pc.data.formats.read_scan`:
            as ``read_points`` with coordinates at the file's precision (float64 where it
            stores them so); ``None``: ``read_points``.
        open_chunks: ``path -> ChunkSource | None`` for
            :class:`~lightning_pc.data.formats.chunks.ScanChunks`; ``None`` (or a ``None``
            result): the scan is read whole with ``read_scan`` and handed out in slices.
        read_mesh: ``path -> Mesh`` for :func:`~lightning_pc.data.formats.read_mesh`.
        holds_mesh: ``path -> bool`` for a format that holds points or a mesh (PLY): whether
            this file is a mesh. Formats without ``read_points`` always hold meshes.
        write_points: write a cloud with labels (see :func:`~lightning_pc.data.formats.ply.write_ply`).
        write_chunks: the same, given chunk by chunk (no whole-cloud array).
        write_labels: ``(source, target, labels)``: a copy of the scan ``source`` with
            ``labels`` as its per-point class field (LAS/LAZ classification).
    """

    name: str
    suffixes: tuple[str, ...]
    read_points: Callable[[Path], Arrays] | None = None
    read_scan: Callable[[Path], Arrays] | None = None
    open_chunks: Callable[[Path], ChunkSource | None] | None = None
    read_mesh: Callable[[Path], Mesh] | None = None
    holds_mesh: Callable[[Path], bool] | None = None
    write_points: Callable[..., None] | None = None
    write_chunks: Callable[..., None] | None = None
    write_labels: Callable[..., None] | None = None

    def is_mesh(self, path: Path) -> bool:
        """Whether ``path`` (of this format) is read as a mesh rather than as points."""
        if self.read_mesh is None:
            return False
        if self.read_points is None or self.holds_mesh is None:
            return self.read_points is None
        return self.holds_mesh(path)

    def scan_reader(self) -> Callable[[Path], Arrays] | None:
        """The whole-scan reader: ``read_scan``, else ``read_points``."""
        return self.read_scan or self.read_points


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
