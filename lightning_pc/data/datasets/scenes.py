"""Whole scans of any size, cut lazily into overlapping fragments for prediction.

A scan (any file :func:`~lightning_pc.data.io.read_scan` reads) is covered by square blocks
of ``block_size`` in x-y, ``stride`` apart (so neighbouring blocks overlap when
``stride < block_size``), or by spheres of diameter ``block_size`` centred on a 3-D grid of
``stride`` (``crop="sphere"``, optionally at most ``sphere_points`` points each, the nearest
to the centre); every fragment's points are voxelised (the first point of each
``voxel_size`` voxel is kept) and handed to the network. Each fragment carries the rows of
the scan's points it covers (``source_rows``) and, for each, the kept point it maps to
(``inverse_index``), so the network's class probabilities can be voted back onto every
original point (:class:`~lightning_pc.callbacks.prediction_writer.ScenePredictionWriter`).

Fragments are produced lazily, inside the loader's worker processes: memory holds one
scan's points (float32 coordinates, the requested features and one int32 sort order:
about 20 bytes a point plus 4 per feature channel) per worker plus the fragments in flight,
never the list of all fragments. For prediction,
:class:`~lightning_pc.data.datasets.fragment_batches.FragmentBatches` packs them into
batches by point count. Scans are read in chunks
(:class:`~lightning_pc.data.io.ScanChunks`: NPY, KITTI ``.bin`` and binary PLY
memory-mapped, LAS/LAZ through laspy's chunk iterator, text scans parsed a block at a
time), so reading costs no more.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info
from torch_geometric.data import Data

from lightning_pc.data import formats
from lightning_pc.data.errors import DataFormatError, MissingDataError
from lightning_pc.data.grid import voxel_sort
from lightning_pc.data.io import SCAN_CHUNK, ScanChunks

SCENE_FEATURES = ("rgb", "intensity", "normal")
CROPS = ("block", "sphere")


def list_scans(root: str | Path) -> list[Path]:
    """The scan files under ``root`` (a file, or a folder searched recursively), sorted.

    Raises:
        MissingDataError: ``root`` does not exist or holds no scan file.
    """
    root = Path(root).expanduser()
    suffixes = formats.suffixes(scans=True)  # what read_scan reads: the format table's
    layout = f"  a scan file or a folder of them: {' '.join(suffixes)}"
    if root.is_file():
        if root.suffix.lower() not in suffixes:
            raise MissingDataError("PredictScenes", root, layout)
        return [root.resolve()]
    files = (
        sorted(
            p.resolve()
            for p in root.rglob("*")
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in suffixes
        )
        if root.is_dir()
        else []
    )
    if not files:
        raise MissingDataError("PredictScenes", root, layout)
    return files


def block_origins(xy: np.ndarray, block_size: float, stride: float) -> tuple[np.ndarray, int, int]:
    """The lower-left corner of the block grid and its number of columns and rows.

    Blocks start at the scan's minimum and step by ``stride`` until one reaches the
    maximum, so every point lies in at least one block.
    """
    low, high = xy.min(0), xy.max(0)
    extent = np.maximum(high - low - block_size, 0.0)
    nx, ny = (int(math.ceil(e / stride)) + 1 for e in extent)
    return low, nx, ny


def last_blocks(rel: np.ndarray, nx: int, ny: int, stride: float) -> np.ndarray:
    """Per point, the highest block column and row whose lower edge it is past ``[N, 2]``
    (its *home* block)."""
    return np.minimum(np.floor(rel / stride).astype(np.int64), [nx - 1, ny - 1])


def in_blocks(
    rel: np.ndarray, last: np.ndarray, i: np.ndarray | int, block_size: float, stride: float
) -> np.ndarray:
    """Along one axis, whether each point lies in block ``i`` (per point, or one for all).

    A point lies in block ``i`` when it is past the block's lower edge (``i <= last``) and
    within ``block_size`` of it (``rel <= i * stride + block_size``), or when ``i`` is its
    home block (``i == last``): in exact arithmetic a point is always within its home
    block, and this keeps it there when rounding (float32 coordinates, ``stride ==
    block_size``, the grid's last block) puts it an ulp past the upper edge. Edges are
    float64 (``rel`` in its own dtype, compared in float64).
    """
    top = np.asarray(i * stride + block_size, dtype=np.float64)  # not float32 with rel
    return (last >= i) & ((rel <= top) | (last == i))


def nonempty_blocks(
    rel: np.ndarray, last: np.ndarray, ny: int, block_size: float, stride: float
) -> np.ndarray:
    """Ids ``i * ny + j`` of the blocks holding at least one point, sorted.

    Point ``p`` lies in block ``(i, j)`` when :func:`in_blocks` says so in x (for ``i``)
    and in y (for ``j``); the fragments use the same test, so the count is exact.
    """
    return block_counts(rel, last, ny, block_size, stride)[0]


def block_counts(
    rel: np.ndarray, last: np.ndarray, ny: int, block_size: float, stride: float
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`nonempty_blocks` and, for each, how many of the points it holds (``int64``)."""
    reach = int(math.ceil(block_size / stride))  # a point falls in at most this many + 1
    found: list[np.ndarray] = []
    for di in range(reach + 1):
        for dj in range(reach + 1):
            i, j = last[:, 0] - di, last[:, 1] - dj
            ok = (i >= 0) & (j >= 0)
            ok &= in_blocks(rel[:, 0], last[:, 0], i, block_size, stride)
            ok &= in_blocks(rel[:, 1], last[:, 1], j, block_size, stride)
            found.append(i[ok] * ny + j[ok])  # distinct blocks for each point over (di, dj)
    every = np.concatenate(found)
    top = (int(last[:, 0].max()) + 1) * ny if len(last) else 0
    if top <= 4 * len(every) + (1 << 16):  # a small grid: count in an array over it
        counts = np.bincount(every, minlength=top)
        ids = np.flatnonzero(counts)
        return ids.astype(np.int64), counts[ids].astype(np.int64)
    ids, counts = np.unique(every, return_counts=True)
    return ids, counts.astype(np.int64)


class ScanBlocks:
    """The non-empty square blocks of a scan's x-y grid, each with its points, lazily.

    The grid is :func:`block_origins`'; point ``p`` lies in block ``(i, j)`` when
    :func:`in_blocks` says so in x and in y, so every point lies in at least one block
    (its home block, :func:`last_blocks`). Construction finds the non-empty blocks a
    ``chunk`` of points at a time (memory: the chunk, and the ids of the non-empty
    blocks); iterating yields ``(i, j, rows)`` for each, ``rows`` the sorted int64 rows of
    its points, sweeping along the grid's longer side one slab (a column of blocks) at a
    time, so slabs stay thin on a long corridor in x or in y (memory: one int32 sort
    order and one coordinate per point, plus a slab).

    Coordinates are compared in ``xy``'s dtype (``xy - low``; integers as float64), block
    edges in float64.

    Args:
        xy: ``[N, 2]`` point coordinates (float32 or float64).
        block_size: side of a block.
        stride: step between neighbouring blocks (``0 < stride <= block_size``).
        chunk: points per discovery step (``None``: ``SCAN_CHUNK``).
    """

    def __init__(
        self, xy: np.ndarray, block_size: float, stride: float, chunk: int | None = None
    ) -> None:
        if not 0 < stride <= block_size:
            raise ValueError(
                f"need 0 < stride <= block_size, got stride={stride}, block_size={block_size}"
            )
        if not np.issubdtype(xy.dtype, np.floating):
            xy = xy.astype(np.float64)
        self.xy, self.block_size, self.stride = xy, block_size, stride
        self._sorted: tuple[np.ndarray, np.ndarray] | None = None
        n = len(xy)
        if n == 0:
            self.low, self.nx, self.ny = np.zeros(2, dtype=xy.dtype), 0, 0
            self.ids = np.zeros(0, dtype=np.int64)
            self.counts = np.zeros(0, dtype=np.int64)
            return
        self.low, self.nx, self.ny = block_origins(xy, block_size, stride)
        step = chunk or SCAN_CHUNK
        found, counted = [], []
        for s in range(0, n, step):
            rel = xy[s : s + step] - self.low
            last = last_blocks(rel, self.nx, self.ny, stride)
            ids, counts = block_counts(rel, last, self.ny, block_size, stride)
            found.append(ids)
            counted.append(counts)
        #: ids ``i * ny + j`` of the non-empty blocks, sorted
        self.ids, where = np.unique(np.concatenate(found), return_inverse=True)
        #: points of each block of :attr:`ids`
        self.counts = np.bincount(where, np.concatenate(counted), len(self.ids)).astype(np.int64)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def sweep_axis(self) -> int:
        """The axis along which blocks are visited (the grid's longer side; x on a tie)."""
        return 0 if self.nx >= self.ny else 1

    def order(self) -> np.ndarray:
        """Positions in :attr:`ids` of the blocks in the order iteration yields them."""
        if self.sweep_axis == 0:
            return np.arange(len(self.ids))
        return np.lexsort((self.ids // self.ny, self.ids % self.ny))

    def columns(self, first: int, last: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All blocks of sweep columns ``first`` to ``last`` at once: ``(keys, ptr, rows)``.

        ``keys`` are ``column * n + other`` (``other`` the block's index across the sweep
        axis, ``n`` the grid's size across it), sorted: the blocks in the order iteration
        yields them; block ``q``'s rows are ``rows[ptr[q]:ptr[q + 1]]`` (sorted int64), what
        iteration yields for it, found without a loop over blocks or columns.
        """
        xy, low, size, stride = self.xy, self.low, self.block_size, self.stride
        n, a = len(xy), self.sweep_axis
        b = 1 - a
        across = (self.nx, self.ny)[b]
        if self._sorted is None:
            order = compact_index(np.argsort(xy[:, a], kind="stable"), n)
            self._sorted = (order, xy[order, a] - low[a])
        order, sweep = self._sorted
        lo, hi = self._slab(first, sweep)[0], self._slab(last, sweep)[1]
        slab = order[lo:hi].astype(np.int64)
        rel = xy[slab] - low
        home = last_blocks(rel, self.nx, self.ny, stride)
        reach = int(math.ceil(size / stride))
        keys, rows = [], []
        for da in range(reach + 1):
            column = home[:, a] - da
            in_a = (column >= first) & (column <= last)
            in_a &= in_blocks(rel[:, a], home[:, a], column, size, stride)
            sel = np.flatnonzero(in_a)  # the points in their column: the rest is skipped
            column, rel_b, home_b, rows_a = column[sel], rel[sel, b], home[sel, b], slab[sel]
            for db in range(reach + 1):
                other = home_b - db
                ok = (other >= 0) & in_blocks(rel_b, home_b, other, size, stride)
                keys.append(column[ok] * across + other[ok])
                rows.append(rows_a[ok])
        key_all, rows_all = np.concatenate(keys), np.concatenate(rows)
        if len(key_all) and int(key_all.max()) < (1 << 62) // max(n, 1):
            pairs = np.sort(key_all * n + rows_all)  # (block, row) pairs are distinct
            key_all, rows_all = np.divmod(pairs, n)
        else:
            sort = np.lexsort((rows_all, key_all))
            key_all, rows_all = key_all[sort], rows_all[sort]
        found, starts = np.unique(key_all, return_index=True)
        return found, np.append(starts, len(rows_all)).astype(np.int64), rows_all

    def _slab(self, column: int, sweep: np.ndarray) -> tuple[int, int]:
        """The sorted positions ``[lo, hi)`` of the points that may lie in ``column``: a
        margin each side (the exact test follows): below, a stride; above, what rounding
        can add to the points of home column c (rel / stride rounded under c + 1 in xy's
        dtype: rel < (c + 1) * stride * (1 + eps)); the last column takes every point past
        its lower edge (its home block)."""
        stride, n = self.stride, len(sweep)
        columns = (self.nx, self.ny)[self.sweep_axis]
        eps = float(np.finfo(self.xy.dtype).eps)
        lo = int(np.searchsorted(sweep, (column - 1) * stride, side="left"))
        bound = column * stride + self.block_size + 4 * eps * (column + 1) * stride
        hi = n if column == columns - 1 else int(np.searchsorted(sweep, bound, side="right"))
        return lo, hi

    def corner(self, i: int, j: int) -> tuple[float, float]:
        """Lower-left corner of block ``(i, j)`` (float64, in ``xy``'s frame)."""
        return float(self.low[0]) + i * self.stride, float(self.low[1]) + j * self.stride

    def __iter__(self) -> Iterator[tuple[int, int, np.ndarray]]:
        xy, low, size, stride = self.xy, self.low, self.block_size, self.stride
        n, ny = len(xy), self.ny
        if not len(self.ids):
            return
        a = 0 if self.nx >= ny else 1  # sweep axis: the longer side
        b = 1 - a
        columns = (self.nx, ny)[a]
        index = np.stack([self.ids // ny, self.ids % ny], 1)
        order = compact_index(np.argsort(xy[:, a], kind="stable"), n)
        sweep = xy[order, a] - low[a]  # == (xy - low)[:, a] sorted, in xy's dtype as below
        eps = float(np.finfo(xy.dtype).eps)
        for column in np.unique(index[:, a]):
            # the slab, with a margin each side (the exact test follows): below, a stride;
            # above, what rounding can add to the points of home column c (rel / stride
            # rounded under c + 1 in xy's dtype: rel < (c + 1) * stride * (1 + eps)); the
            # last column takes every point past its lower edge (its home block)
            lo = int(np.searchsorted(sweep, (column - 1) * stride, side="left"))
            bound = column * stride + size + 4 * eps * (column + 1) * stride
            hi = n if column == columns - 1 else int(np.searchsorted(sweep, bound, side="right"))
            slab = order[lo:hi]
            rel = xy[slab] - low
            last = last_blocks(rel, self.nx, ny, stride)
            keep = in_blocks(rel[:, a], last[:, a], column, size, stride)
            slab, rel, last = slab[keep], rel[keep], last[keep]
            for other in index[index[:, a] == column, b]:
                inside = in_blocks(rel[:, b], last[:, b], other, size, stride)
                rows = np.sort(slab[inside]).astype(np.int64)
                i, j = (column, other) if a == 0 else (other, column)
                yield int(i), int(j), rows


def voxel_keep(pos: np.ndarray, voxel_size: float | None) -> tuple[np.ndarray, np.ndarray]:
    """First point of each voxel: ``(kept rows, inverse)`` with ``pos[kept][inverse] ~ pos``."""
    n = len(pos)
    if not voxel_size:
        return np.arange(n), np.arange(n)
    grid = voxel_sort(pos, voxel_size)
    kept = grid.order[grid.first]  # the first point (in scan order) of each voxel
    return kept, grid.voxel


def load_scan(
    path: str | Path, features: Sequence[str], chunk: int = SCAN_CHUNK
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A scan's points for fragmenting, read chunk by chunk into compact arrays.

    Returns:
        ``(pos, feats, origin)``: ``pos [N, 3]`` float32 relative to ``origin`` (float64
        ``[3]``: zero for files holding float32 coordinates, else the first chunk's floor,
        so georeferenced float64 coordinates keep millimetres), and ``feats [N, F]`` float32
        in the order of ``features``: ``rgb`` in 0-1 (text and NPY columns 4-6 divided by
        255 when any exceeds 1), ``intensity`` divided by its maximum when that exceeds 1,
        ``normal`` as read (PLY/PCD files that hold ``nx ny nz``).

    Raises:
        DataFormatError: an unreadable file, or one lacking a requested feature.
    """
    path = Path(path)
    source = ScanChunks(path, chunk)
    n = source.num_points
    columns: list[tuple[str, str, slice]] = []  # (feature, chunk key, its columns)
    for name in features:
        if name in source.keys:
            columns.append((name, name, slice(None)))
        elif name == "rgb" and source.keys.get("features", 0) >= 3:
            columns.append((name, "features", slice(0, 3)))
        else:
            raise DataFormatError(
                path, f"has no {name!r}, which features={list(features)} needs (the model's input)"
            )
    widths = [3 if name in ("rgb", "normal") else 1 for name, _, _ in columns]
    pos = np.empty((n, 3), dtype=np.float32)
    feats = np.empty((n, sum(widths)), dtype=np.float32)
    top = np.zeros(len(columns))
    origin = np.zeros(3)
    start = 0
    for part in source:
        stop = start + len(part["pos"])
        if start == 0 and source.coord_dtype == np.float64:
            origin = np.floor(part["pos"].min(0))
        pos[start:stop] = part["pos"] - origin
        at = 0
        for c, ((_, key, cols), width) in enumerate(zip(columns, widths)):
            value = part[key].reshape(stop - start, -1)[:, cols]
            feats[start:stop, at : at + width] = value
            top[c] = max(top[c], float(value.max(initial=0.0)))
            at += width
        start = stop
    at = 0
    for c, ((name, key, _), width) in enumerate(zip(columns, widths)):
        if name == "intensity":  # raw sensor units (LAS: 16-bit): scale into 0-1
            divisor = top[c] if top[c] > 1.0 else 1.0
        elif name == "normal":  # unit vectors, as read
            divisor = 1.0
        elif key == "features":  # text / NPY columns 4-6: 0-255 or 0-1
            divisor = 255.0 if top[c] > 1.0 else 1.0
        else:
            divisor = source.rgb_divisor(top[c])
        if divisor != 1.0:
            for s in range(0, n, chunk):
                feats[s : s + chunk, at : at + width] /= np.float32(divisor)
        at += width
    return pos, feats, origin


class SceneFragments(IterableDataset):
    """Overlapping, voxelised fragments of whole scans, produced lazily.

    Each fragment is a ``Data`` with ``pos [n, 3]`` (float32, moved so the block's or
    sphere's x-y centre is the origin and its lowest point is at ``z = 0``, as the S3DIS
    crops are), ``x [n, F]`` (the requested ``features``; absent without any),
    ``inverse_index [m]`` (each covered scan point -> its kept point), ``source_rows [m]``
    (the covered points' rows in the scan, int64, sorted), and per fragment ``idx`` (the
    scan's index in :attr:`names`), ``num_fragments`` and ``scan_points`` (``[1]`` each).
    Every point of a scan is covered by at least one of its fragments.

    Scans are dealt to the DDP ranks and loader workers whole (scan ``k`` to slot
    ``k mod (world_size x workers)``), so every fragment of a scan comes from one process
    and each rank predicts its own scans.

    Args:
        files: scan files.
        features: per-point inputs: ``"rgb"`` (0-1) and/or ``"intensity"`` (scaled to 0-1).
        block_size: side of a square fragment in x-y, or a sphere's diameter (scan units,
            metres for most scans).
        stride: distance between neighbouring blocks, or the grid of sphere centres
            (``<= block_size``; spheres need ``block_size >= stride * sqrt(3)`` to reach
            every corner of their grid cell).
        voxel_size: voxel edge of the grid sampling inside a fragment (``None``: none).
        crop: ``"block"`` (square columns in x-y, all heights) or ``"sphere"`` (balls
            around the centres of the non-empty ``stride`` cells in 3-D).
        sphere_points: with ``crop="sphere"``, at most this many points per sphere, the
            nearest to its centre (``None``: every point within the radius). Points no
            sphere kept get spheres of their own, centred on them, until none is left.

    Attributes:
        rank, world_size: this process's share of the scans (set by the data module).
    """

    def __init__(
        self,
        files: Sequence[str | Path],
        features: Sequence[str] = (),
        block_size: float = 3.0,
        stride: float = 1.5,
        voxel_size: float | None = 0.04,
        crop: str = "block",
        sphere_points: int | None = None,
    ) -> None:
        if block_size <= 0 or stride <= 0 or stride > block_size:
            raise ValueError(
                f"need 0 < stride <= block_size, got stride={stride}, block_size={block_size}"
            )
        if crop not in CROPS:
            raise ValueError(f"crop must be one of {CROPS}, got {crop!r}")
        if crop == "sphere" and block_size < stride * math.sqrt(3) * (1 - 1e-9):
            raise ValueError(
                f"spheres of diameter block_size={block_size} leave the corners of their "
                f"stride={stride} grid cells uncovered: need block_size >= stride * sqrt(3)"
            )
        if sphere_points is not None and (crop != "sphere" or sphere_points < 1):
            raise ValueError("sphere_points (a positive count) needs crop='sphere'")
        unknown = set(features) - set(SCENE_FEATURES)
        if unknown:
            raise ValueError(f"unknown features {sorted(unknown)}; choose from {SCENE_FEATURES}")
        self.files = [Path(f) for f in files]
        self.features = tuple(features)
        self.block_size, self.stride, self.voxel_size = block_size, stride, voxel_size
        self.crop, self.sphere_points = crop, sphere_points
        self.rank, self.world_size = 0, 1

    @property
    def names(self) -> list[str]:
        """The scan files (absolute paths), indexed by a fragment's ``idx``."""
        return [str(f) for f in self.files]

    def my_scans(self) -> list[int]:
        """Indices of the scans this process (rank and loader worker) fragments."""
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        slots, slot = self.world_size * workers, self.rank * workers + worker
        return list(range(slot, len(self.files), slots))

    def __iter__(self) -> Iterator[Data]:
        for k in self.my_scans():
            yield from self.fragments(k)

    def fragments(self, k: int) -> Iterator[Data]:
        """The fragments of scan ``k``, one at a time."""
        pos, feats, _ = load_scan(self.files[k], self.features)
        if self.crop == "sphere":
            yield from self._spheres(k, pos, feats)
        else:
            yield from self._blocks(k, pos, feats)

    @staticmethod
    def _header(k: int, num_fragments: int, n: int) -> dict[str, torch.Tensor]:
        return {
            "idx": torch.tensor([k]),
            "num_fragments": torch.tensor([num_fragments]),
            "scan_points": torch.tensor([n]),
        }

    def _blocks(self, k: int, pos: np.ndarray, feats: np.ndarray) -> Iterator[Data]:
        """Square blocks (:class:`ScanBlocks`), moved so their x-y centre is the origin."""
        blocks = ScanBlocks(pos[:, :2], self.block_size, self.stride)
        header = self._header(k, len(blocks), len(pos))
        half = self.block_size / 2
        for i, j, rows in blocks:
            x0, y0 = blocks.corner(i, j)
            yield self._fragment(pos, feats, rows, (x0 + half, y0 + half), header)

    def _spheres(self, k: int, pos: np.ndarray, feats: np.ndarray) -> Iterator[Data]:
        """Balls of diameter ``block_size`` around the centres of the non-empty cells."""
        grid, plan, _ = self.sphere_plan(pos)
        header = self._header(k, len(plan), len(pos))
        radius = self.block_size / 2
        for c, first in plan:
            rows = grid.query(c, radius, self.sphere_points, first=first)
            yield self._fragment(pos, feats, rows, (c[0], c[1]), header)

    def sphere_plan(
        self, pos: np.ndarray
    ) -> tuple[SphereGrid, list[tuple[np.ndarray, int]], np.ndarray]:
        """The spheres of a scan: ``(grid, plan, counts)``, ``plan`` the ``(centre, first)``
        of each sphere in order (``first``: the row put first among equally near points,
        ``-1`` for none) and ``counts`` the points each holds."""
        n = len(pos)
        grid = SphereGrid(pos, self.stride)
        radius = self.block_size / 2
        # plan: the centres that hold points, then a sphere on each point none kept (its
        # own point first among equally near ones, duplicates included)
        covered = np.zeros(n, dtype=bool)
        plan: list[tuple[np.ndarray, int]] = []
        counts: list[int] = []
        for c in grid.cell_centres():
            rows = grid.query(c, radius, self.sphere_points)
            if len(rows):
                covered[rows] = True
                plan.append((c, -1))
                counts.append(len(rows))
        for missed in np.flatnonzero(~covered):
            row = int(missed)
            if not covered[row]:
                c = pos[row].astype(np.float64)
                rows = grid.query(c, radius, self.sphere_points, first=row)
                covered[rows] = True
                plan.append((c, row))
                counts.append(len(rows))
        return grid, plan, np.asarray(counts, dtype=np.int64)

    def fragment_points(self, pos: np.ndarray) -> np.ndarray:
        """The points of each fragment of a scan (before voxelising), in the fragments'
        order: a grid pass over the coordinates (spheres: the plan's queries)."""
        if self.crop == "sphere":
            return self.sphere_plan(pos)[2]
        blocks = ScanBlocks(pos[:, :2], self.block_size, self.stride)
        return blocks.counts[blocks.order()]

    def _fragment(
        self,
        pos: np.ndarray,
        feats: np.ndarray,
        rows: np.ndarray,
        centre: tuple[float, float],
        header: dict[str, torch.Tensor],
    ) -> Data:
        local = pos[rows].astype(np.float64)
        local[:, 0] -= centre[0]
        local[:, 1] -= centre[1]
        local[:, 2] -= local[:, 2].min()
        kept, inverse = voxel_keep(local, self.voxel_size)
        data = Data(pos=torch.from_numpy(local[kept].astype(np.float32)))
        if feats.shape[1]:
            data.x = torch.from_numpy(np.ascontiguousarray(feats[rows[kept]]))
        data.inverse_index = torch.from_numpy(inverse.astype(np.int64))
        data.source_rows = torch.from_numpy(rows.astype(np.int64))
        for key, value in header.items():
            data[key] = value.clone()
        data.source = str(self.files[int(header["idx"])])  # the scan (batch schema: source)
        return data


def compact_index(index: np.ndarray, n: int) -> np.ndarray:
    """``index`` as int32 when ``n`` rows fit (half the memory of int64), else unchanged."""
    return index.astype(np.int32) if n < 2**31 else index


class SphereGrid:
    """Points bucketed in x-y columns of ``cell`` for ball and nearest-point queries.

    Holds one int32 sort order of the points (by column) and the sorted ids of the
    non-empty columns only, so a far outlier or large empty regions cost nothing.
    """

    def __init__(self, pos: np.ndarray, cell: float) -> None:
        self.pos, self.cell = pos, cell
        self.low = pos.min(0).astype(np.float64)
        n = len(pos)
        cols = np.empty((n, 2), dtype=np.int64)
        for s in range(0, n, SCAN_CHUNK):
            cols[s : s + SCAN_CHUNK] = self._cells(pos[s : s + SCAN_CHUNK, :2], 2)
        self.nx, self.ny = (int(v) + 1 for v in cols.max(0))
        key = cols[:, 0] * self.ny + cols[:, 1]
        del cols
        self.order = compact_index(np.argsort(key, kind="stable"), n)
        sorted_key = key[self.order]
        del key
        self.keys, self.starts = np.unique(sorted_key, return_index=True)
        self.starts = np.append(self.starts, n)

    def _cells(self, p: np.ndarray, dims: int) -> np.ndarray:
        return np.floor((p - self.low[:dims]) / self.cell).astype(np.int64)

    def cell_centres(self) -> np.ndarray:
        """Centres ``[M, 3]`` (float64) of the non-empty 3-D cells, in lexicographic order."""
        found = [
            np.unique(self._cells(self.pos[s : s + SCAN_CHUNK], 3), axis=0)
            for s in range(0, len(self.pos), SCAN_CHUNK)
        ]
        cells = np.unique(np.concatenate(found), axis=0)
        return self.low + (cells + 0.5) * self.cell

    def query(
        self, centre: np.ndarray, radius: float, limit: int | None = None, first: int = -1
    ) -> np.ndarray:
        """Rows within ``radius`` of ``centre``, sorted: at most ``limit``, the nearest
        (ties: row ``first``, then the lower rows)."""
        lo = self._cells(np.asarray(centre[:2]) - radius, 2)
        hi = self._cells(np.asarray(centre[:2]) + radius, 2)
        lo_y, hi_y = max(int(lo[1]), 0), min(int(hi[1]), self.ny - 1)
        parts = []
        for i in range(max(int(lo[0]), 0), min(int(hi[0]), self.nx - 1) + 1):
            a = int(np.searchsorted(self.keys, i * self.ny + lo_y, side="left"))
            b = int(np.searchsorted(self.keys, i * self.ny + hi_y, side="right"))
            if b > a:
                parts.append(self.order[self.starts[a] : self.starts[b]])
        if not parts:
            return np.zeros(0, dtype=np.int64)
        rows = np.concatenate(parts).astype(np.int64)
        d2 = ((self.pos[rows].astype(np.float64) - centre) ** 2).sum(1)
        near = d2 <= radius * radius
        rows, d2 = rows[near], d2[near]
        if limit is not None and len(rows) > limit:
            rows = rows[np.lexsort((rows, rows != first, d2))[:limit]]
        return np.sort(rows)
