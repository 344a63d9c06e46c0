"""Voxel grids in numpy: one sort of the points by voxel, shared by every numpy voxel user.

:func:`voxel_sort` is the one place the grid key is computed: scene fragments keep the first
point of each voxel (:func:`lightning_pc.data.datasets.scenes.voxel_keep`) and the precise
scene evaluation groups the points of each voxel
(:func:`lightning_pc.callbacks.scene_evaluation.voxel_groups`). The torch grid of the
transforms (:class:`~lightning_pc.data.transforms.GridSubsample`) is separate: it runs on
tensors and draws a random point per voxel.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class VoxelSort(NamedTuple):
    """The points of a cloud sorted by voxel.

    Attributes:
        order: ``[n]`` point indices sorted by voxel; a voxel's points keep their input order
            (a stable sort).
        first: ``[n]`` bool, in sorted order: the point starts a new voxel.
        sorted_voxel: ``[n]`` voxel index (``0 .. V - 1``, voxels in key order) of each point
            of ``order``.
        voxel: ``[n]`` voxel index of each point in input order (``voxel[order] ==
            sorted_voxel``).
    """

    order: np.ndarray
    first: np.ndarray
    sorted_voxel: np.ndarray
    voxel: np.ndarray


def voxel_sort(pos: np.ndarray, voxel_size: float) -> VoxelSort:
    """Sort ``pos [n, 3]`` by voxels of edge ``voxel_size``, the grid anchored at the minimum
    of the cloud (so large coordinates, e.g. georeferenced, cost no precision in the key).

    Voxels are numbered in the order of their key ``(i * dims_y + j) * dims_z + k``, which is
    lexicographic in the cell ``(i, j, k)``.
    """
    n = len(pos)
    cells = np.floor((pos - pos.min(0)) / voxel_size).astype(np.int64)
    dims = cells.max(0) + 1
    key = (cells[:, 0] * dims[1] + cells[:, 1]) * dims[2] + cells[:, 2]  # one int per voxel
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    first = np.ones(n, dtype=bool)
    first[1:] = sorted_key[1:] != sorted_key[:-1]
    sorted_voxel = np.cumsum(first) - 1
    voxel = np.empty(n, dtype=np.int64)
    voxel[order] = sorted_voxel
    return VoxelSort(order, first, sorted_voxel, voxel)
