"""The numpy voxel grid: both of its users give what their own copies gave before."""

from __future__ import annotations

import numpy as np
import pytest

from lightning_pc.callbacks.scene_evaluation import voxel_groups
from lightning_pc.data.datasets.scenes import voxel_keep
from lightning_pc.data.grid import voxel_sort


def old_voxel_keep(pos: np.ndarray, voxel_size: float | None) -> tuple[np.ndarray, np.ndarray]:
    """``scenes.voxel_keep`` as it was before the shared grid (the reference)."""
    n = len(pos)
    if not voxel_size:
        return np.arange(n), np.arange(n)
    cells = np.floor((pos - pos.min(0)) / voxel_size).astype(np.int64)
    dims = cells.max(0) + 1
    key = (cells[:, 0] * dims[1] + cells[:, 1]) * dims[2] + cells[:, 2]
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    first = np.ones(n, dtype=bool)
    first[1:] = sorted_key[1:] != sorted_key[:-1]
    kept = order[first]
    inverse = np.empty(n, dtype=np.int64)
    inverse[order] = np.cumsum(first) - 1
    return kept, inverse


def old_voxel_groups(pos: np.ndarray, voxel_size: float) -> tuple[np.ndarray, ...]:
    """``scene_evaluation.voxel_groups`` as it was before the shared grid (the reference)."""
    n = len(pos)
    cells = np.floor((pos - pos.min(0)) / voxel_size).astype(np.int64)
    dims = cells.max(0) + 1
    key = (cells[:, 0] * dims[1] + cells[:, 1]) * dims[2] + cells[:, 2]
    order = np.argsort(key, kind="stable")
    first = np.ones(n, dtype=bool)
    first[1:] = key[order][1:] != key[order][:-1]
    starts = np.flatnonzero(first)
    counts = np.diff(np.append(starts, n))
    sorted_voxel = np.cumsum(first) - 1
    voxel = np.empty(n, dtype=np.int64)
    voxel[order] = sorted_voxel
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - starts[sorted_voxel]
    return order, starts, counts, voxel, rank


def cloud(seed: int, n: int, offset: float, dtype: type) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pos = rng.uniform(0, 3, (n, 3))
    dup = rng.integers(0, n, n // 4)
    pos[rng.integers(0, n, n // 4)] = pos[dup]  # exact duplicates
    pos[: n // 10] = np.round(pos[: n // 10] / 0.1) * 0.1  # points on cell faces
    return (pos + offset).astype(dtype)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("offset", [0.0, 1e5])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("voxel_size", [0.05, 0.1, 0.7])
def test_both_users_unchanged(seed: int, offset: float, dtype: type, voxel_size: float) -> None:
    pos = cloud(seed, 2000 + 37 * seed, offset, dtype)
    for got, want in zip(voxel_keep(pos, voxel_size), old_voxel_keep(pos, voxel_size)):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    for got, want in zip(voxel_groups(pos, voxel_size), old_voxel_groups(pos, voxel_size)):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


def test_no_voxel_keeps_every_point_and_grid_invariants() -> None:
    pos = cloud(0, 500, 1e5, np.float64)
    for got in voxel_keep(pos, None):
        np.testing.assert_array_equal(got, np.arange(500))
    grid = voxel_sort(pos, 0.2)
    np.testing.assert_array_equal(grid.voxel[grid.order], grid.sorted_voxel)
    assert grid.first[0] and grid.sorted_voxel[-1] == grid.first.sum() - 1
    # points of one voxel share a cell; different voxels do not
    cells = np.floor((pos - pos.min(0)) / 0.2).astype(np.int64)
    kept = grid.order[grid.first]
    np.testing.assert_array_equal(cells[kept][grid.voxel], cells)
    assert len(np.unique(cells[kept], axis=0)) == len(kept)
