"""Whole scans of any size, cut lazily into overlapping fragments for prediction.

A scan (any file :func:`~lightning_pc.data.io.read_scan` reads) is covered by square blocks
of ``block_size`` in x-y, ``stride`` apart (so neighbouring blocks overlap when
``stride < block_size``); every block's points are voxelised (the first point of each
``voxel_size`` voxel is kept) and handed to the network. Each fragment carries the rows of
the scan's points it covers (``source_rows``) and, for each, the kept point it maps to
(``inverse_index``), so the network's class probabilities can be voted back onto every
original point (:class:`~lightning_pc.callbacks.prediction_writer.ScenePredictionWriter`).

Fragments are produced one at a time, inside the loader's worker processes: memory holds
one scan's points (and one sort order of them) per worker plus the fragments in flight,
never the list of all fragments.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info
from torch_geometric.data import Data

from lightning_pc.data.errors import DataFormatError, MissingDataError
from lightning_pc.data.io import read_scan

SCAN_SUFFIXES = (".ply", ".pcd", ".las", ".laz", ".npy", ".txt", ".xyz", ".pts", ".bin")
SCENE_FEATURES = ("rgb", "intensity")


def list_scans(root: str | Path) -> list[Path]:
    """The scan files under ``root`` (a file, or a folder searched recursively), sorted.

    Raises:
        MissingDataError: ``root`` does not exist or holds no scan file.
    """
    root = Path(root).expanduser()
    layout = f"  a scan file or a folder of them: {' '.join(SCAN_SUFFIXES)}"
    if root.is_file():
        if root.suffix.lower() not in SCAN_SUFFIXES:
            raise MissingDataError("PredictScenes", root, layout)
        return [root.resolve()]
    files = (
        sorted(
            p.resolve()
            for p in root.rglob("*")
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in SCAN_SUFFIXES
        )
        if root.is_dir()
        else []
    )
    if not files:
        raise MissingDataError("PredictScenes", root, layout)
    return files


def scan_features(arrays: dict[str, np.ndarray], features: Sequence[str], path: Path) -> np.ndarray:
    """Per-point input features ``[N, F]`` float32 in the order of ``features``.

    Text and NPY scans (``x y z r g b ...``) give their columns 4-6 as ``rgb`` (divided by
    255 when any exceeds 1).

    Raises:
        DataFormatError: the scan lacks a requested feature.
    """
    columns = []
    extra = arrays.get("features")
    if "rgb" in features and "rgb" not in arrays and extra is not None and extra.shape[1] >= 3:
        rgb = extra[:, :3].astype(np.float32)
        arrays = {**arrays, "rgb": rgb / 255.0 if rgb.max(initial=0.0) > 1.0 else rgb}
    for name in features:
        if name not in arrays:
            raise DataFormatError(
                path, f"has no {name!r}, which features={list(features)} needs (the model's input)"
            )
        value = arrays[name].astype(np.float32)
        if name == "intensity":  # raw sensor units (LAS: 16-bit): scale into 0-1
            top = float(value.max(initial=0.0))
            value = value / top if top > 1.0 else value
        columns.append(value.reshape(len(value), -1))
    if not columns:
        return np.zeros((len(arrays["pos"]), 0), dtype=np.float32)
    return np.concatenate(columns, 1)


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
    """Per point, the highest block column and row whose lower edge it is past ``[N, 2]``."""
    return np.minimum(np.floor(rel / stride).astype(np.int64), [nx - 1, ny - 1])


def nonempty_blocks(
    rel: np.ndarray, last: np.ndarray, ny: int, block_size: float, stride: float
) -> np.ndarray:
    """Ids ``i * ny + j`` of the blocks holding at least one point, sorted.

    Point ``p`` lies in block ``(i, j)`` when ``i <= last[p, 0]`` and
    ``rel[p, 0] <= i * stride + block_size`` (the same for ``j`` in y); the fragments use
    the same test, so the count is exact.
    """
    reach = int(math.ceil(block_size / stride))  # a point falls in at most this many + 1
    found: list[np.ndarray] = []
    for di in range(reach + 1):
        for dj in range(reach + 1):
            i, j = last[:, 0] - di, last[:, 1] - dj
            ok = (i >= 0) & (j >= 0)
            ok &= rel[:, 0] <= i * stride + block_size
            ok &= rel[:, 1] <= j * stride + block_size
            found.append(np.unique(i[ok] * ny + j[ok]))
    return np.unique(np.concatenate(found))


def voxel_keep(pos: np.ndarray, voxel_size: float | None) -> tuple[np.ndarray, np.ndarray]:
    """First point of each voxel: ``(kept rows, inverse)`` with ``pos[kept][inverse] ~ pos``."""
    n = len(pos)
    if not voxel_size:
        return np.arange(n), np.arange(n)
    cells = np.floor((pos - pos.min(0)) / voxel_size).astype(np.int64)
    dims = cells.max(0) + 1
    key = (cells[:, 0] * dims[1] + cells[:, 1]) * dims[2] + cells[:, 2]  # one int per voxel
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    first = np.ones(n, dtype=bool)
    first[1:] = sorted_key[1:] != sorted_key[:-1]
    kept = order[first]  # the first point (in scan order) of each voxel
    inverse = np.empty(n, dtype=np.int64)
    inverse[order] = np.cumsum(first) - 1
    return kept, inverse


class SceneFragments(IterableDataset):
    """Overlapping, voxelised fragments of whole scans, produced lazily.

    Each fragment is a ``Data`` with ``pos [n, 3]`` (float32, moved so the block's x-y
    centre is the origin and its lowest point is at ``z = 0``, as the S3DIS crops are),
    ``x [n, F]`` (the requested ``features``; absent without any), ``inverse_index [m]``
    (each covered scan point -> its kept point), ``source_rows [m]`` (the covered points'
    rows in the scan), and per fragment ``idx`` (the scan's index in :attr:`names`),
    ``num_fragments`` and ``scan_points`` (``[1]`` each).

    Scans are dealt to the DDP ranks and loader workers whole (scan ``k`` to slot
    ``k mod (world_size x workers)``), so every fragment of a scan comes from one process
    and each rank predicts its own scans.

    Args:
        files: scan files.
        features: per-point inputs: ``"rgb"`` (0-1) and/or ``"intensity"`` (scaled to 0-1).
        block_size: side of a square fragment in x-y (scan units, metres for most scans).
        stride: distance between neighbouring fragments (``<= block_size``).
        voxel_size: voxel edge of the grid sampling inside a fragment (``None``: none).

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
    ) -> None:
        if block_size <= 0 or stride <= 0 or stride > block_size:
            raise ValueError(
                f"need 0 < stride <= block_size, got stride={stride}, block_size={block_size}"
            )
        unknown = set(features) - set(SCENE_FEATURES)
        if unknown:
            raise ValueError(f"unknown features {sorted(unknown)}; choose from {SCENE_FEATURES}")
        self.files = [Path(f) for f in files]
        self.features = tuple(features)
        self.block_size, self.stride, self.voxel_size = block_size, stride, voxel_size
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
        path = self.files[k]
        arrays = read_scan(path)
        pos = arrays["pos"]
        feats = scan_features(arrays, self.features, path)
        del arrays
        n = len(pos)
        low, nx, ny = block_origins(pos[:, :2], self.block_size, self.stride)
        rel = pos[:, :2] - low
        last = last_blocks(rel, nx, ny, self.stride)
        blocks = nonempty_blocks(rel, last, ny, self.block_size, self.stride)
        order = np.argsort(rel[:, 0], kind="stable")
        xs = rel[order, 0]
        header = {
            "idx": torch.tensor([k]),
            "num_fragments": torch.tensor([len(blocks)]),
            "scan_points": torch.tensor([n]),
        }
        for column in np.unique(blocks // ny):
            top = column * self.stride + self.block_size
            lo = int(np.searchsorted(xs, (column - 1) * self.stride, side="left"))
            hi = int(np.searchsorted(xs, top, side="right"))
            slab = order[lo:hi]
            slab = slab[(last[slab, 0] >= column) & (rel[slab, 0] <= top)]
            for j in blocks[blocks // ny == column] % ny:
                inside = (last[slab, 1] >= j) & (rel[slab, 1] <= j * self.stride + self.block_size)
                rows = np.sort(slab[inside])
                x0, y0 = low[0] + column * self.stride, low[1] + j * self.stride
                yield self._fragment(pos, feats, rows, x0, y0, header)

    def _fragment(
        self,
        pos: np.ndarray,
        feats: np.ndarray,
        rows: np.ndarray,
        x0: float,
        y0: float,
        header: dict[str, torch.Tensor],
    ) -> Data:
        local = pos[rows].astype(np.float64)
        local[:, 0] -= x0 + self.block_size / 2
        local[:, 1] -= y0 + self.block_size / 2
        local[:, 2] -= local[:, 2].min()
        kept, inverse = voxel_keep(local, self.voxel_size)
        data = Data(pos=torch.from_numpy(local[kept].astype(np.float32)))
        if feats.shape[1]:
            data.x = torch.from_numpy(np.ascontiguousarray(feats[rows[kept]]))
        data.inverse_index = torch.from_numpy(inverse.astype(np.int64))
        data.source_rows = torch.from_numpy(rows.astype(np.int64))
        for key, value in header.items():
            data[key] = value.clone()
        return data
