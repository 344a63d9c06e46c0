"""CPU backend on scipy's ``cKDTree``: one tree per cloud, queries spread over threads."""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import Tensor

from lightning_pc.ops._checks import SortedClouds, without_self
from lightning_pc.ops._threads import parallel_ranges


def _query_all(
    x: SortedClouds, y: SortedClouds, k: int, bound: float = np.inf, first: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``k`` nearest (within ``bound``) for every query, cloud by cloud; with ``first``, the
    first ``k`` by index among all those within ``bound`` (``query_ball_point`` lists them
    sorted by index).

    Trees are built once per cloud (scipy's default, balanced, settings: unbalanced trees
    build faster but queried 1.6x slower on surface samples), then the queries are split
    into ranges run on the thread pool with ``workers=1`` each: cKDTree releases the GIL,
    and this avoids scipy starting new threads for every cloud.

    Returns:
        ``idx`` ``[M, k]`` (local indices, ``n`` where missing), the cloud of each query
        and the offset of its cloud in ``x``.
    """
    xn = x.pos.detach().numpy()
    yn = y.pos.detach().numpy()
    px, py = x.ptr.numpy(), y.ptr.numpy()
    trees = [
        cKDTree(xn[px[b] : px[b + 1]]) if px[b + 1] > px[b] and py[b + 1] > py[b] else None
        for b in range(x.num_clouds)
    ]
    m = yn.shape[0]
    idx = np.empty((m, k), dtype=np.int64)
    cloud = np.repeat(np.arange(x.num_clouds), np.diff(py))

    def run(q0: int, q1: int) -> None:
        for b in range(int(cloud[q0]), int(cloud[q1 - 1]) + 1):
            s, e = max(py[b], q0), min(py[b + 1], q1)
            if s >= e:
                continue
            tree = trees[b]
            if tree is None:
                idx[s:e] = np.iinfo(np.int64).max
                continue
            if first:
                idx[s:e] = tree.n  # missing
                balls = tree.query_ball_point(yn[s:e], bound, workers=1, return_sorted=True)
                for i, ball in enumerate(balls):
                    idx[s + i, : min(k, len(ball))] = ball[:k]
                continue
            kk = min(k, tree.n)
            _, found = tree.query(yn[s:e], k=kk, distance_upper_bound=bound, workers=1)
            idx[s:e, :kk] = found.reshape(e - s, kk)
            idx[s:e, kk:] = tree.n

    if m:
        parallel_ranges(run, np.full(m, 50, dtype=np.int64), min_work=1e5)
    return idx, cloud, px


def _edges(idx: np.ndarray, cloud: np.ndarray, px: np.ndarray) -> tuple[Tensor, Tensor]:
    n_of = np.diff(px)[cloud]  # size of each query's cloud
    keep = idx < n_of[:, None]
    rows = np.broadcast_to(np.arange(idx.shape[0])[:, None], idx.shape)[keep]
    cols = (idx + px[:-1][cloud][:, None])[keep]
    return torch.from_numpy(np.ascontiguousarray(rows)), torch.from_numpy(cols)


def knn(
    x: SortedClouds, y: SortedClouds, k: int, cosine: bool, skip_self: bool
) -> tuple[Tensor, Tensor]:
    """k nearest neighbours on per-cloud kd-trees. A kd-tree cannot prune by the cosine
    distance: the registry declares it unsupported, and :func:`~lightning_pc.ops._backend.choose`
    hands those calls to another backend."""
    if cosine:
        raise ValueError("scipy ops backend: the cosine distance is not supported")
    row, col = _edges(*_query_all(x, y, k))
    return without_self(row, col, k) if skip_self else (row, col)


def radius(
    x: SortedClouds, y: SortedClouds, r: float, max_num_neighbors: int, first: bool = False
) -> tuple[Tensor, Tensor]:
    # cKDTree keeps d <= bound; our rule (as torch-cluster's) is strict: d < r.
    bound = float(np.nextafter(float(r), 0.0))
    return _edges(*_query_all(x, y, max_num_neighbors, bound, first=first))
