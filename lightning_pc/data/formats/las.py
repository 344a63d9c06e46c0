"""LAS and LAZ point clouds (ASPRS), through laspy (LAZ through its ``lazrs`` backend).

Coordinates stay float64 in :func:`read_scan` and chunked reads (georeferenced
coordinates, hundreds of kilometres, lose decimetres in float32). Writing: a copy of a
scan with new classification codes (:func:`write_las_labels`).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from lightning_pc.data.errors import DataFormatError
from lightning_pc.data.formats.base import SCAN_CHUNK, Arrays, ChunkSource, Format

_T = TypeVar("_T")

LAS_CHUNK = 1 << 20  # points copied at a time by write_las_labels


_VLR_BYTES = 54  # a VLR's header: a VLR takes at least this many bytes
_EVLR_BYTES = 60  # an EVLR's header


@dataclass
class LasLayout:
    """The header fields checked against the file before laspy reads it."""

    size: int  # bytes of the file
    header_size: int
    offset: int  # offset to the point data
    vlrs: int
    point_count: int
    record_length: int
    compressed: bool
    evlr_start: int = 0
    evlrs: int = 0


def check_las_header(path: Path) -> LasLayout | None:
    """Check a LAS/LAZ header's counts against the file's size, before laspy reads it
    (laspy loops over the VLRs a header declares, and allocates its points at once).

    Returns:
        The header's layout, or ``None`` for a file too short or without the ``LASF``
        signature (laspy's error names what is wrong).

    Raises:
        DataFormatError: more VLRs than fit between the header and the point data, point
            data or EVLRs beyond the end of the file, or (uncompressed) fewer bytes of
            point data than the point count needs.
    """
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(375)
    except OSError as err:
        raise DataFormatError(path, f"cannot read file ({err})") from err
    if len(head) < 227 or head[:4] != b"LASF":
        return None
    minor = head[25]
    header_size, offset, vlrs = struct.unpack_from("<HII", head, 94)
    point_format, record_length, legacy_count = struct.unpack_from("<BHI", head, 104)
    layout = LasLayout(
        size, header_size, offset, vlrs, legacy_count, record_length, bool(point_format & 0xC0)
    )
    if minor >= 4 and header_size >= 375 and len(head) >= 375:
        layout.evlr_start, layout.evlrs, count = struct.unpack_from("<QIQ", head, 235)
        layout.point_count = count or legacy_count
    if header_size > size or offset > size:
        raise DataFormatError(
            path,
            f"header says the point data starts at byte {offset} (header {header_size} bytes), "
            f"the file has {size} bytes: truncated or not a LAS file",
        )
    room = offset - header_size
    if vlrs * _VLR_BYTES > max(room, 0):
        raise DataFormatError(
            path,
            f"header declares {vlrs:,} VLRs ({_VLR_BYTES} bytes each at least), but only "
            f"{max(room, 0):,} bytes lie between the header and the point data: a damaged header",
        )
    if layout.evlrs and layout.evlr_start + layout.evlrs * _EVLR_BYTES > size:
        raise DataFormatError(
            path,
            f"header declares {layout.evlrs:,} EVLRs from byte {layout.evlr_start}, beyond the "
            f"file's {size} bytes",
        )
    if layout.compressed and layout.point_count:
        _check_chunk_table(path, layout)
    if not layout.compressed:
        end = layout.evlr_start if layout.evlrs and layout.evlr_start >= offset else size
        need, held = layout.point_count * record_length, end - offset
        if need > held:
            raise DataFormatError(
                path,
                f"truncated: header declares {layout.point_count:,} points of {record_length} "
                f"bytes ({need:,} bytes), the file holds {held:,} bytes of point data",
            )
    return layout


def _check_chunk_table(path: Path, layout: LasLayout) -> None:
    """A LAZ file's chunk table (its offset opens the point data) checked against the file
    before lazrs sizes its buffers from it: a damaged one asks for gigabytes.

    Raises:
        DataFormatError: an offset outside the file, or a table whose version or chunk count
            cannot be right (more chunks than points).
    """
    with open(path, "rb") as fh:
        fh.seek(layout.offset)
        head = fh.read(8)
        if len(head) < 8:
            raise DataFormatError(path, "truncated: LAZ point data without its chunk table offset")
        (table,) = struct.unpack("<q", head)
        if table == -1:
            return  # written without a table (streaming writers): lazrs reads on
        if not layout.offset + 8 <= table <= layout.size - 8:
            raise DataFormatError(
                path,
                f"damaged LAZ chunk table offset {table} (the file has {layout.size} bytes)",
            )
        fh.seek(table)
        version, chunks = struct.unpack("<II", fh.read(8))
    if version != 0 or chunks > layout.point_count:
        raise DataFormatError(
            path,
            f"damaged LAZ chunk table (version {version}, {chunks:,} chunks for "
            f"{layout.point_count:,} points)",
        )
    size = _laz_chunk_size(path, layout)
    if size is not None and layout.point_count > chunks * size:
        raise DataFormatError(
            path,
            f"header declares {layout.point_count:,} points, the LAZ chunk table holds "
            f"{chunks:,} chunks of {size:,}: a damaged header",
        )


def _laz_chunk_size(path: Path, layout: LasLayout) -> int | None:
    """Points per chunk from the LASzip VLR (``None``: variable-size chunks, or no VLR)."""
    with open(path, "rb") as fh:
        fh.seek(layout.header_size)
        area = fh.read(max(layout.offset - layout.header_size, 0))
    at = 0
    for _ in range(layout.vlrs):  # counted against the room for them already
        if at + 54 > len(area):
            return None
        user = area[at + 2 : at + 18].rstrip(b"\0")
        record, length = struct.unpack_from("<HH", area, at + 18)
        if user == b"laszip encoded" and record == 22204 and length >= 16:
            (size,) = struct.unpack_from("<I", area, at + 54 + 12)
            return None if size in (0, 0xFFFFFFFF) else size
        at += 54 + length
    return None


def _is_panic(err: BaseException) -> bool:
    """A Rust panic from lazrs (``pyo3_runtime.PanicException``, a ``BaseException``)."""
    return type(err).__name__ == "PanicException"


def _backends(layout: LasLayout | None) -> list[Any]:
    """The LAZ backends to try in turn (``[None]``: laspy's choice, for LAS files)."""
    import laspy

    if layout is None or not layout.compressed:
        return [None]
    return list(laspy.LazBackend.detect_available()) or [None]


def _failure(err: BaseException) -> str:
    if _is_panic(err):
        return f"the LAZ decoder crashed: {err}"
    return str(err) or type(err).__name__


def _unreadable(path: Path, failures: list[tuple[Any, BaseException]]) -> DataFormatError:
    if len(failures) == 1:
        return DataFormatError(path, f"not a readable LAS/LAZ file ({_failure(failures[0][1])})")
    tried = "; ".join(f"{getattr(b, 'name', b)}: {_failure(e)}" for b, e in failures)
    return DataFormatError(
        path, f"not a readable LAS/LAZ file (every LAZ decoder laspy has failed: {tried})"
    )


def _readable(err: BaseException) -> bool:
    """Whether ``err`` means the file could not be read (laspy's errors, a lazrs panic),
    rather than an interrupt or exit that must go through."""
    return isinstance(err, Exception) or _is_panic(err)


def _first_backend(path: Path, layout: LasLayout | None, attempt: Callable[[Any], _T]) -> _T:
    """``attempt(backend)`` for the first backend of :func:`_backends` it succeeds with.

    Raises:
        DataFormatError: every backend failed (a lazrs panic included), naming the file.
    """
    failures: list[tuple[Any, BaseException]] = []
    for backend in _backends(layout):
        try:
            return attempt(backend)
        except BaseException as err:
            if not _readable(err):
                raise
            failures.append((backend, err))
    raise _unreadable(path, failures) from failures[-1][1]


def _las_records(
    path: Path, layout: LasLayout | None, chunk: int, start: int = 0
) -> Iterator[tuple[Any, Any]]:
    """``(header, points)`` of a LAS/LAZ file ``chunk`` points at a time from point
    ``start``, a LAZ file decoded by the next backend laspy has when one fails (picking up
    where the last one stopped).

    Raises:
        DataFormatError: every backend failed (a lazrs panic included), naming the file.
    """
    import laspy

    failures: list[tuple[Any, BaseException]] = []
    for backend in _backends(layout):
        try:
            with laspy.open(path, laz_backend=backend) as reader:
                if start:
                    reader.seek(start)
                for points in reader.chunk_iterator(chunk):
                    start += len(points)
                    yield reader.header, points
            return
        except DataFormatError:
            raise
        except BaseException as err:
            if not _readable(err):
                raise
            failures.append((backend, err))
    raise _unreadable(path, failures) from failures[-1][1]


def read_las(path: str | Path) -> dict[str, np.ndarray]:
    """Read a LAS or LAZ file (laspy; LAZ through the ``lazrs`` backend, or laspy's other
    LAZ backends where one fails).

    Coordinates are returned in float64: LAS files hold georeferenced coordinates
    (hundreds of kilometres) that float32 would round to decimetres. The header's counts
    are checked against the file's size first (:func:`check_las_header`), and points are
    decoded a chunk at a time, so a damaged header costs neither time nor memory.

    Returns:
        Dict with ``pos [N, 3]`` float64, ``rgb [N, 3]`` (0-1) when the point format has
        colours, ``intensity [N]`` float32 and ``classification [N]`` int64 when any point
        has a non-zero class code (ASPRS codes: 0 never classified, 1 unclassified, 2 ground...).

    Raises:
        DataFormatError: not a LAS/LAZ file, a damaged header, a truncated file, no points,
            or non-finite coordinates.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "file not found")
    layout = check_las_header(path)
    parts: dict[str, list[np.ndarray]] = {"x": [], "y": [], "z": [], "c": []}
    names: set[str] = set()
    for header, points in _las_records(path, layout, SCAN_CHUNK):
        names = set(header.point_format.dimension_names)
        for key in ("x", "y", "z"):
            parts[key].append(np.asarray(getattr(points, key), dtype=np.float64))
        parts["c"].append(np.asarray(points.classification, dtype=np.int64))
        for key in ("red", "green", "blue", "intensity"):
            if key in names:
                parts.setdefault(key, []).append(np.asarray(getattr(points, key)))
    if not parts["x"] or sum(map(len, parts["x"])) == 0:
        raise DataFormatError(path, "LAS file holds no points")
    cat = {key: np.concatenate(value) for key, value in parts.items()}
    pos = np.stack([cat["x"], cat["y"], cat["z"]], 1)
    if not np.isfinite(pos).all():
        raise DataFormatError(path, "point coordinates contain NaN or infinity")
    out: dict[str, np.ndarray] = {"pos": pos.astype(np.float64)}
    if {"red", "green", "blue"} <= names:
        rgb = np.stack([cat["red"], cat["green"], cat["blue"]], 1)
        # LAS stores 16-bit colours; some writers put 8-bit values in them
        scale = 65535.0 if rgb.max(initial=0) > 255 else 255.0
        out["rgb"] = (rgb / scale).astype(np.float32)
    if "intensity" in names:
        out["intensity"] = cat["intensity"].astype(np.float32)
    if cat["c"].any():
        out["classification"] = cat["c"]
    return out


def classification_codes(path: str | Path) -> np.ndarray:
    """``[256]`` bool: which classification codes a LAS/LAZ file's points use (read a chunk
    at a time).

    Raises:
        DataFormatError: an unreadable file.
    """
    path = Path(path)
    seen = np.zeros(256, dtype=bool)
    for _, points in _las_records(path, check_las_header(path), SCAN_CHUNK):
        seen[np.unique(np.asarray(points.classification))] = True
    return seen


def read_point_file(path: Path) -> Arrays:
    """:func:`read_las` with coordinates as float32."""
    las = read_las(path)
    las["pos"] = las["pos"].astype(np.float32)
    return las


class LasChunks(ChunkSource):
    """A LAS/LAZ file read with laspy's chunk iterator (after :func:`check_las_header`)."""

    kind = "las"
    rgb_scale = "las"

    def __init__(self, path: Path) -> None:
        import laspy

        super().__init__(path)
        self.layout = check_las_header(path)

        def read_header(backend: Any) -> tuple[int, set[str]]:
            with laspy.open(path, laz_backend=backend) as reader:
                header = reader.header
                return int(header.point_count), set(header.point_format.dimension_names)

        self.num_points, names = _first_backend(path, self.layout, read_header)
        if self.num_points == 0:
            raise DataFormatError(path, "LAS file holds no points")
        self.coord_dtype = np.dtype(np.float64)
        self.keys = {"pos": 3}
        if {"red", "green", "blue"} <= names:
            self.keys["rgb"] = 3
        if "intensity" in names:
            self.keys["intensity"] = 1

    def chunks(self, chunk: int) -> Iterator[Arrays]:
        start = 0
        for _, points in _las_records(self.path, self.layout, chunk):
            pos = np.stack([np.asarray(points.x), np.asarray(points.y),
                            np.asarray(points.z)], 1).astype(np.float64)  # fmt: skip
            self.check(pos, start)
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
        if start != self.num_points:
            raise DataFormatError(
                self.path,
                f"truncated: header declares {self.num_points} points, the file holds {start}",
            )


def write_las_labels(
    source: Path, target: Path, labels: np.ndarray, chunk: int = LAS_CHUNK
) -> None:
    """A copy of the LAS/LAZ file ``source`` with ``labels`` as its classification field,
    copied ``chunk`` points at a time (never the whole file in memory).

    Point formats 0-5 hold class codes 0-31; larger labels convert the copy to format 6
    (7 with colours; the file version rises to 1.4). The source file is not modified; the
    copy is written to ``target.tmp`` and renamed into place.
    """
    tmp = target.with_name(target.name + ".tmp")
    layout = check_las_header(source)
    try:
        start = _first_backend(
            source, layout, lambda backend: _copy_with_labels(source, tmp, labels, chunk, backend)
        )
        if start != len(labels):
            raise ValueError(f"{source}: {start} points read, {len(labels)} labels given")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _copy_with_labels(source: Path, tmp: Path, labels: np.ndarray, chunk: int, backend: Any) -> int:
    """Write the labelled copy to ``tmp`` decoding with ``backend``; the points copied."""
    import copy

    import laspy
    from laspy.point.dims import preferred_file_version_for_point_format
    from laspy.point.record import PackedPointRecord

    with laspy.open(source, laz_backend=backend) as reader:
        header = copy.deepcopy(reader.header)
        convert = int(labels.max(initial=0)) > 31 and header.point_format.id < 6
        if convert:
            has_rgb = "red" in set(header.point_format.dimension_names)
            fmt = laspy.PointFormat(7 if has_rgb else 6)
            fmt.dimensions.extend(header.point_format.extra_dimensions)
            version = max(str(header.version), preferred_file_version_for_point_format(fmt.id))
            header.set_version_and_point_format(laspy.header.Version.from_str(version), fmt)
        evlrs = header.evlrs
        with laspy.open(
            tmp, mode="w", header=header, do_compress=tmp.name.lower().endswith(".laz.tmp")
        ) as writer:
            start = 0
            for points in reader.chunk_iterator(chunk):
                if convert:
                    points = PackedPointRecord.from_point_record(points, header.point_format)
                points.classification = labels[start : start + len(points)].astype(np.uint8)
                start += len(points)
                writer.write_points(points)
            if evlrs and header.version.minor >= 4:
                writer.write_evlrs(evlrs)
    return start


FORMAT = Format(
    "las",
    (".las", ".laz"),
    read_points=read_point_file,
    read_scan=read_las,
    open_chunks=LasChunks,
    write_labels=write_las_labels,
)

FORMATS = (FORMAT,)
