"""Point clouds read through Open3D (PLY and PCD files our numpy readers leave to it)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lightning_pc.data.errors import DataFormatError
from lightning_pc.data.formats._common import _data_line, _declared_points


def read_open3d_points(
    path: Path,
    before: Callable[[Path], None] | None = None,
    after: Callable[[Path], None] | None = None,
    organised: bool = False,
) -> dict[str, np.ndarray]:
    """Read a PLY or PCD point cloud through Open3D, checked as our own readers check.

    Args:
        path: the file.
        before: the format's checks of the file, run before Open3D sees it.
        after: checks run once Open3D has read points.
        organised: NaN points are an organised cloud's pixels without depth (PCD): dropped
            with a warning (else refused).
    """
    if not path.is_file():
        raise DataFormatError(path, "file not found")
    if before is not None:
        before(path)
    import open3d as o3d

    cloud = o3d.io.read_point_cloud(
        str(path),  # type: ignore[arg-type]
        remove_nan_points=False,
        remove_infinite_points=False,
    )
    pos = np.asarray(cloud.points, dtype=np.float32)
    if len(pos) == 0:
        raise DataFormatError(path, "Open3D read no points (empty, truncated or not a point file)")
    if after is not None:
        after(path)
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
        if not organised or not valid.any():
            where = _data_line(path, int(np.flatnonzero(~valid)[0]))
            raise DataFormatError(path, "point coordinates contain NaN or infinity", where)
        # an organised cloud (Kinect, PCL): pixels without depth are NaN points
        warnings.warn(
            f"{path}: dropped {int((~valid).sum())} of {len(pos)} points with NaN or infinite "
            "coordinates (an organised cloud's pixels without depth)",
            stacklevel=4,
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
