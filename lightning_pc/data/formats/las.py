"""LAS and LAZ point clouds (ASPRS), through laspy (LAZ through its ``lazrs`` backend).

Coordinates stay float64 in :func:`read_scan` and chunked reads (georeferenced
coordinates, hundreds of kilometres, lose decimetres in float32). Writing: a copy of a
scan with new classification codes (:func:`write_las_labels`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from lightning_pc.data.errors import DataFormatError
from lightning_pc.data.formats.base import Arrays, ChunkSource, Format

LAS_CHUNK = 1 << 20  # points copied at a time by write_las_labels


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


def read_point_file(path: Path) -> Arrays:
    """:func:`read_las` with coordinates as float32."""
    las = read_las(path)
    las["pos"] = las["pos"].astype(np.float32)
    return las


class LasChunks(ChunkSource):
    """A LAS/LAZ file read with laspy's chunk iterator."""

    kind = "las"
    rgb_scale = "las"

    def __init__(self, path: Path) -> None:
        import laspy

        super().__init__(path)
        try:
            with laspy.open(path) as reader:
                header = reader.header
                self.num_points = int(header.point_count)
                names = set(header.point_format.dimension_names)
        except Exception as err:  # noqa: BLE001 (laspy raises several types; all mean unreadable)
            raise DataFormatError(path, f"not a readable LAS/LAZ file ({err})") from err
        if self.num_points == 0:
            raise DataFormatError(path, "LAS file holds no points")
        self.coord_dtype = np.dtype(np.float64)
        self.keys = {"pos": 3}
        if {"red", "green", "blue"} <= names:
            self.keys["rgb"] = 3
        if "intensity" in names:
            self.keys["intensity"] = 1

    def chunks(self, chunk: int) -> Iterator[Arrays]:
        import laspy

        start = 0
        try:
            with laspy.open(self.path) as reader:
                for points in reader.chunk_iterator(chunk):
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
        except DataFormatError:
            raise
        except Exception as err:  # noqa: BLE001 (laspy raises several types; all mean unreadable)
            raise DataFormatError(self.path, f"not a readable LAS/LAZ file ({err})") from err
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
    import copy

    import laspy
    from laspy.point.dims import preferred_file_version_for_point_format
    from laspy.point.record import PackedPointRecord

    tmp = target.with_name(target.name + ".tmp")
    try:
        with laspy.open(source) as reader:
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
                tmp, mode="w", header=header, do_compress=target.suffix.lower() == ".laz"
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
        if start != len(labels):
            raise ValueError(f"{source}: {start} points read, {len(labels)} labels given")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


FORMAT = Format(
    "las",
    (".las", ".laz"),
    read_points=read_point_file,
    read_scan=read_las,
    open_chunks=LasChunks,
    write_labels=write_las_labels,
)

FORMATS = (FORMAT,)
