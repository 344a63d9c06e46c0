"""Whole-scan prediction batches packed by point count.

:class:`FragmentBatches` serves the fragments of
:class:`~lightning_pc.data.datasets.scenes.SceneFragments` a batch at a time: the points of
every fragment are counted first (a grid pass over each scan's coordinates; 3 int64 per batch
are kept), so the number of batches is known before the first, then a batch's fragments are
cut and collated together with a few array operations (:func:`pack_fragments`), so a scan of
many tiny fragments (a block size too small for its density or units) costs about what its
points cost.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from lightning_pc.data.collate import PackedBatch
from lightning_pc.data.datasets.scenes import ScanBlocks, SceneFragments, load_scan


def pack_fragments(
    pos: np.ndarray,
    feats: np.ndarray,
    rows: np.ndarray,
    lengths: np.ndarray,
    centres: np.ndarray,
    header: tuple[int, int, int],
    voxel_size: float | None,
    source: str | None = None,
) -> tuple[dict[str, torch.Tensor | list[str]], dict[str, torch.Tensor]]:
    """Several fragments of one scan cut and collated at once, with no loop over them.

    Fragment ``f`` holds the scan rows ``rows[s_f : s_f + lengths[f]]`` (sorted; ``s_f`` the
    sum of the lengths before) and is centred on ``centres[f]`` (x-y, float64). The result
    is what :func:`~lightning_pc.data.collate.collate` makes of the fragments
    :class:`SceneFragments` yields one by one (the same tensors, bit for bit: each
    fragment's kept points in the order :func:`voxel_keep` gives them), as the
    ``(values, sizes)`` that :class:`~lightning_pc.data.collate.PackedBatch` takes.

    Args:
        header: ``(scan index, fragments of the scan, points of the scan)``.
        source: the scan file (the batch's ``source``, one per fragment; ``None``: none).
    """
    num, m = len(lengths), len(rows)
    lengths = np.asarray(lengths, dtype=np.int64)
    seg = np.repeat(np.arange(num), lengths)
    starts = np.zeros(num, dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    local = pos[rows].astype(np.float64)
    local[:, 0] -= centres[seg, 0]
    local[:, 1] -= centres[seg, 1]
    local[:, 2] -= np.minimum.reduceat(local[:, 2], starts)[seg]
    if voxel_size:
        cells = np.floor(
            (local - np.minimum.reduceat(local, starts, axis=0)[seg]) / voxel_size
        ).astype(np.int64)
        dims = (np.maximum.reduceat(cells, starts, axis=0) + 1)[seg]
        key = (cells[:, 0] * dims[:, 1] + cells[:, 1]) * dims[:, 2] + cells[:, 2]
        top = int(key.max()) + 1
        if top < (1 << 62) // max(num * m, 1):  # one int64: by fragment, voxel, position
            order = np.sort((seg * top + key) * m + np.arange(m)) % m
        else:
            order = np.lexsort((key, seg))
        first = np.ones(m, dtype=bool)
        first[1:] = (key[order][1:] != key[order][:-1]) | (seg[order][1:] != seg[order][:-1])
        kept = order[first]
        inverse = np.empty(m, dtype=np.int64)
        inverse[order] = np.cumsum(first) - 1
        kept_counts = np.bincount(seg[kept], minlength=num).astype(np.int64)
    else:
        kept, inverse, kept_counts = np.arange(m), np.arange(m), lengths
    nodes = torch.from_numpy(kept_counts)
    covered = torch.from_numpy(lengths)
    ones = torch.ones(num, dtype=torch.long)
    values: dict[str, torch.Tensor | list[str]] = {
        "pos": torch.from_numpy(local[kept].astype(np.float32))
    }
    sizes = {"__nodes__": nodes, "pos": nodes}
    if feats.shape[1]:
        values["x"] = torch.from_numpy(np.ascontiguousarray(feats[rows[kept]]))
        sizes["x"] = nodes
    values["inverse_index"] = torch.from_numpy(inverse)
    values["source_rows"] = torch.from_numpy(np.asarray(rows, dtype=np.int64))
    sizes["inverse_index"] = sizes["source_rows"] = covered
    for key, value in zip(("idx", "num_fragments", "scan_points"), header):
        values[key] = torch.full((num,), value, dtype=torch.long)
        sizes[key] = ones
    if source is not None:
        values["source"] = [source] * num
    return values, sizes


def pack_bounds(counts: np.ndarray, batch_size: int, batch_points: int) -> np.ndarray:
    """Batch boundaries ``[0, ..., len(counts)]`` over fragments of ``counts`` points, in
    order: a batch takes at least ``batch_size`` fragments (the scan's last may take
    fewer), and more while its points stay within ``batch_points``."""
    bounds = [0]
    taken, points = 0, 0
    for f, c in enumerate(np.asarray(counts).tolist()):
        if taken >= batch_size and points + c > batch_points:
            bounds.append(f)
            taken, points = 0, 0
        taken += 1
        points += c
    if len(counts):
        bounds.append(len(counts))
    return np.asarray(bounds, dtype=np.int64)


class _CutScan:
    """One scan loaded for cutting its fragments by their position in the scan's order."""

    def __init__(self, owner: SceneFragments, k: int) -> None:
        self.owner, self.k = owner, k
        self.pos, self.feats, _ = load_scan(owner.files[k], owner.features)
        self._columns: tuple[int, int, np.ndarray, np.ndarray, np.ndarray] | None = None
        if owner.crop == "sphere":
            self.grid, self.plan, counts = owner.sphere_plan(self.pos)
        else:
            self.blocks = ScanBlocks(self.pos[:, :2], owner.block_size, owner.stride)
            order = self.blocks.order()
            ids = self.blocks.ids[order]
            i, j = ids // max(self.blocks.ny, 1), ids % max(self.blocks.ny, 1)
            self.i, self.j = i, j
            a = self.blocks.sweep_axis
            self.col = (i, j)[a]
            self.key = self.col * (self.blocks.nx, self.blocks.ny)[1 - a] + (j, i)[a]
            counts = self.blocks.counts[order]
        self.num_fragments = len(counts)

    def cut(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Fragments ``[start, stop)``: ``(rows, lengths, centres)`` for :func:`pack_fragments`."""
        if self.owner.crop == "sphere":
            radius, limit = self.owner.block_size / 2, self.owner.sphere_points
            parts = [self.grid.query(c, radius, limit, first=f) for c, f in self.plan[start:stop]]
            centres = np.array([c[:2] for c, _ in self.plan[start:stop]], dtype=np.float64)
            lengths = np.array([len(p) for p in parts], dtype=np.int64)
            return np.concatenate(parts), lengths, centres.reshape(-1, 2)
        columns = self.col[start:stop]
        first, last = int(columns[0]), int(columns[-1])
        cached = self._columns
        if cached is None or not cached[0] <= first <= last <= cached[1]:
            cached = self._columns = (first, last, *self.blocks.columns(first, last))
        _, _, keys, ptr, column_rows = cached
        want = self.key[start:stop]
        q0, q1 = np.searchsorted(keys, [want[0], want[-1] + 1])
        if not np.array_equal(keys[q0:q1], want):
            raise RuntimeError(f"blocks {start}-{stop}: other blocks found than counted")
        rows, sizes = column_rows[ptr[q0] : ptr[q1]], np.diff(ptr[q0 : q1 + 1])
        half, low, stride = self.owner.block_size / 2, self.blocks.low, self.blocks.stride
        x0 = float(low[0]) + self.i[start:stop].astype(np.float64) * stride
        y0 = float(low[1]) + self.j[start:stop].astype(np.float64) * stride
        return rows, sizes, np.c_[x0 + half, y0 + half]


class FragmentBatches(Dataset):
    """The fragments of :class:`SceneFragments`, packed into batches by point count: item
    ``b`` is batch ``b``, collated (a map-style dataset: its length, the number of batches,
    is known before the first one).

    Before the first batch, each scan of this rank (scan ``k`` when ``k mod world_size ==
    rank``) is read once for its coordinates and the points of each fragment counted (a
    grid pass; spheres: the sphere plan). The fragments of a scan, in
    :class:`SceneFragments`' order, are then cut into batches of at least ``batch_size``
    fragments and more while their points (before voxelising) stay within ``batch_points``,
    so a scan of many small fragments costs about what its points cost. A batch holds
    fragments of one scan. Loader workers each keep the scan they are cutting (one at a
    time) and cut a batch's fragments with a few array operations
    (:func:`pack_fragments`), bit for bit the batch :func:`~lightning_pc.data.collate`
    makes of the same fragments.

    Attributes:
        stats: per planned scan, ``(scan index, fragments, points covered by them in all,
            points of the scan)``, set by :meth:`plan`.
    """

    def __init__(self, fragments: SceneFragments, batch_size: int, batch_points: int) -> None:
        if batch_size < 1 or batch_points < 1:
            raise ValueError(
                f"need batch_size >= 1 and batch_points >= 1, got {batch_size}, {batch_points}"
            )
        self.fragments, self.batch_size, self.batch_points = fragments, batch_size, batch_points
        self._planned: tuple[int, int] | None = None
        self._batches = np.zeros((0, 3), dtype=np.int64)  # (scan, first, stop) per batch
        self._totals: dict[int, int] = {}
        self.stats: list[tuple[int, int, int, int]] = []
        self._scan: _CutScan | None = None

    @property
    def names(self) -> list[str]:
        """The scan files (absolute paths), indexed by a fragment's ``idx``."""
        return self.fragments.names

    def scans(self) -> list[int]:
        """The scans of this rank."""
        f = self.fragments
        return list(range(f.rank, len(f.files), f.world_size))

    def plan(self) -> None:
        """Count every fragment of this rank's scans and cut them into batches (once per
        rank and world size)."""
        key = (self.fragments.rank, self.fragments.world_size)
        if self._planned == key:
            return
        batches: list[np.ndarray] = []
        self.stats, self._totals = [], {}
        for k in self.scans():
            pos, _, _ = load_scan(self.fragments.files[k], ())
            counts = self.fragments.fragment_points(pos)
            self.stats.append((k, len(counts), int(counts.sum()), len(pos)))
            self._totals[k] = len(counts)
            del pos
            bounds = pack_bounds(counts, self.batch_size, self.batch_points)
            batches.append(np.c_[np.full(len(bounds) - 1, k), bounds[:-1], bounds[1:]])
        self._batches = np.concatenate(batches).astype(np.int64) if batches else self._batches
        self._planned = key

    def __len__(self) -> int:
        self.plan()
        return len(self._batches)

    def scan_of_batches(self) -> np.ndarray:
        """The scan index of each batch."""
        self.plan()
        return self._batches[:, 0].copy()

    def __getitem__(self, b: int) -> Any:
        self.plan()
        k, start, stop = (int(v) for v in self._batches[b])
        if self._scan is None or self._scan.k != k:
            self._scan = None  # the previous scan goes before the next is read
            self._scan = _CutScan(self.fragments, k)
        scan = self._scan
        if scan.num_fragments != self._totals[k]:
            raise RuntimeError(
                f"{self.fragments.files[k]}: {scan.num_fragments} fragments now, "
                f"{self._totals[k]} when counted (did the file change?)"
            )
        rows, lengths, centres = scan.cut(start, stop)
        header = (k, scan.num_fragments, len(scan.pos))
        source = str(self.fragments.files[k])
        values, sizes = pack_fragments(
            scan.pos, scan.feats, rows, lengths, centres, header, self.fragments.voxel_size, source
        )
        packed = PackedBatch(values, sizes)
        return packed if get_worker_info() is not None else packed.to_batch()
