"""CPU kernels compiled with numba: the fast path for knn, radius, fps and grid_cluster.

Each kernel reproduces the reference semantics bit for bit: distances are float32 sums of
squared differences in coordinate order (as torch-cluster and the pure-torch reference
compute them), comparisons are strict where torch-cluster's are, and ties go to the lower
index. Pruning bounds are computed in float64 with a safety margin so that they never
skip a point the exhaustive algorithm would have taken.

Kernels are compiled on first use and cached on disk (``cache=True``).
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch
from torch import Tensor

from lightning_pc.ops._checks import SortedClouds, grid_frame
from lightning_pc.ops._threads import parallel_ranges

_LEAF = 64  # points per kd-tree leaf in FPS (measured best of 8-256 on surface clouds)
_MARGIN = 1.0 + 1e-5  # relative safety margin on float64 pruning bounds


def _require(ok: bool, message: str) -> None:
    """Raises ``ValueError`` unless ``ok``: the kernels index without bounds checks, so every
    size they rely on is checked here, at the numpy boundary, and never assumed."""
    if not ok:
        raise ValueError(f"numba ops backend: {message}")


def _check_ptr(name: str, ptr: np.ndarray, n: int) -> None:
    _require(
        ptr.ndim == 1 and ptr.size >= 1 and ptr[0] == 0 and ptr[-1] == n
        and bool((ptr[1:] >= ptr[:-1]).all()),
        f"{name} offsets must ascend from 0 to {n}",
    )


# ----------------------------------------------------------------------------------------
# farthest point sampling: bucketed, exact
# ----------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _grow(a: np.ndarray, cap: int) -> np.ndarray:
    """``a`` copied into a new array of ``cap`` rows (``cap >= len(a)``)."""
    out = np.empty((cap,) + a.shape[1:], dtype=a.dtype)
    out[: a.shape[0]] = a
    return out


@numba.njit(cache=True, nogil=True)
def _build_kdtree(p: np.ndarray, perm: np.ndarray, leaf: int):
    """A midpoint-split kd-tree over ``p``, reordering ``perm`` so each node is a slice.

    Returns per-node arrays: start, end, left child, right child (-1 for leaves), and the
    node's bounding box (float64).

    Size bound: a split always leaves points on both sides (a degenerate midpoint split is
    replaced by halving by position), so the tree is a full binary tree with at most ``n``
    leaves, i.e. at most ``2n - 1`` nodes, and the work stack never holds more entries than
    there are nodes. Midpoint splits are unbalanced on clouds with outliers or clusters (one
    point can be cut off at a time), so the arrays start at the balanced size and double
    when full, up to that bound; every write below is preceded by the capacity check.
    """
    n, dims = p.shape
    bound = max(1, 2 * n - 1)
    cap = min(bound, 2 * (n // max(1, leaf // 2) + 1) + 1)
    start = np.empty(cap, dtype=np.int64)
    end = np.empty(cap, dtype=np.int64)
    left = np.empty(cap, dtype=np.int64)
    right = np.empty(cap, dtype=np.int64)
    lo = np.empty((cap, dims))
    hi = np.empty((cap, dims))
    stack = np.empty(cap, dtype=np.int64)
    count = 1
    start[0], end[0] = 0, n
    left[0], right[0] = -1, -1
    stack[0] = 0
    top = 1
    while top > 0:
        top -= 1
        node = stack[top]
        s, e = start[node], end[node]
        for d in range(dims):
            a = np.inf
            b = -np.inf
            for i in range(s, e):
                v = p[perm[i], d]
                if v < a:
                    a = v
                if v > b:
                    b = v
            lo[node, d] = a
            hi[node, d] = b
        if e - s <= max(leaf, 1):
            continue
        axis = 0
        span = -1.0
        for d in range(dims):
            if hi[node, d] - lo[node, d] > span:
                span = hi[node, d] - lo[node, d]
                axis = d
        if not span > 0.0:
            continue  # all points identical: keep as one leaf
        mid = 0.5 * (lo[node, axis] + hi[node, axis])
        i, j = s, e - 1
        while i <= j:
            if p[perm[i], axis] < mid:
                i += 1
            else:
                perm[i], perm[j] = perm[j], perm[i]
                j -= 1
        if i == s or i == e:  # degenerate split (rounding): halve by position instead
            i = (s + e) // 2
        if count + 2 > cap or top + 2 > cap:
            if count + 2 > bound:
                raise RuntimeError("kd-tree node bound exceeded (internal error)")
            cap = min(bound, 2 * cap)
            start, end = _grow(start, cap), _grow(end, cap)
            left, right = _grow(left, cap), _grow(right, cap)
            lo, hi = _grow(lo, cap), _grow(hi, cap)
            stack = _grow(stack, cap)
        left[node], right[node] = count, count + 1
        for c in range(count, count + 2):
            left[c], right[c] = -1, -1
        start[count], end[count] = s, i
        start[count + 1], end[count + 1] = i, e
        stack[top] = count
        stack[top + 1] = count + 1
        top += 2
        count += 2
    return start[:count], end[:count], left[:count], right[:count], lo[:count], hi[:count]


@numba.njit(cache=True, nogil=True, inline="always")
def _box_dist2(lo: np.ndarray, hi: np.ndarray, node: int, q: np.ndarray) -> float:
    """Squared distance (float64) from point ``q`` to the bounding box of ``node``."""
    out = 0.0
    for d in range(q.shape[0]):
        v = q[d]
        if v < lo[node, d]:
            out += (lo[node, d] - v) ** 2
        elif v > hi[node, d]:
            out += (v - hi[node, d]) ** 2
    return out


@numba.njit(cache=True, nogil=True, inline="always")
def _leaf_update(p: np.ndarray, c: np.ndarray, mind: np.ndarray, s: int, e: int) -> None:
    """``mind = min(mind, |p - c|^2)`` over positions ``s:e`` (a loop LLVM vectorises)."""
    dims = p.shape[0]
    if dims == 3:
        c0, c1, c2 = c[0], c[1], c[2]
        for i in range(s, e):
            d0 = p[0, i] - c0
            d1 = p[1, i] - c1
            d2 = p[2, i] - c2
            mind[i] = min(mind[i], d0 * d0 + d1 * d1 + d2 * d2)
    else:
        for i in range(s, e):
            dist = (p[0, i] - c[0]) * (p[0, i] - c[0])
            for d in range(1, dims):
                dist += (p[d, i] - c[d]) * (p[d, i] - c[d])
            mind[i] = min(mind[i], dist)


@numba.njit(cache=True, nogil=True)
def _fps_tree(pts: np.ndarray, m: int, first: int, leaf: int) -> np.ndarray:
    """Exact farthest point sampling accelerated by a kd-tree (the QuickFPS idea).

    Every node keeps the largest distance-to-the-picks of its points; a new pick only
    visits nodes whose box is closer to it than that largest distance, since no other
    point's distance can change in a way that matters.
    """
    n, dims = pts.shape
    out = np.empty(m, dtype=np.int64)
    if m == 0 or n == 0:
        return out[:0]
    perm = np.arange(n)
    start, end, left, right, lo, hi = _build_kdtree(pts, perm, leaf)
    nn = start.shape[0]
    p = np.empty((dims, n), dtype=pts.dtype)  # coordinates by axis, in tree order
    for i in range(n):
        for d in range(dims):
            p[d, i] = pts[perm[i], d]
    mind = np.full(n, np.inf, dtype=pts.dtype)
    nmax = np.full(nn, np.inf, dtype=pts.dtype)
    narg = np.zeros(nn, dtype=np.int64)  # position (tree order) of each node's farthest point
    pos_of = np.empty(n, dtype=np.int64)
    for i in range(n):
        pos_of[perm[i]] = i
    cur = pos_of[first]
    c = np.empty(dims, dtype=pts.dtype)
    stack = np.empty(2 * nn + 2, dtype=np.int64)
    for it in range(m):
        out[it] = perm[cur]
        for d in range(dims):
            c[d] = p[d, cur]
        top = 0
        stack[0] = 0
        top = 1
        while top > 0:
            top -= 1
            node = stack[top]
            if node < 0:  # second visit: children are done, combine their maxima
                node = -node - 1
                a, b = left[node], right[node]
                if nmax[b] > nmax[a] or (nmax[b] == nmax[a] and perm[narg[b]] < perm[narg[a]]):
                    a = b
                nmax[node] = nmax[a]
                narg[node] = narg[a]
                continue
            if _box_dist2(lo, hi, node, c) > nmax[node] * _MARGIN:
                continue  # no point below gets closer to the picks than its node's maximum
            if left[node] >= 0:
                stack[top] = -node - 1
                stack[top + 1] = left[node]
                stack[top + 2] = right[node]
                top += 3
                continue
            s, e = start[node], end[node]
            _leaf_update(p, c, mind, s, e)
            best = mind[s]
            for i in range(s + 1, e):
                best = max(best, mind[i])
            arg = -1
            for i in range(s, e):
                if mind[i] == best and (arg < 0 or perm[i] < perm[arg]):
                    arg = i
            nmax[node] = best
            narg[node] = arg
        cur = narg[0]
    return out


@numba.njit(cache=True, nogil=True)
def _fps_clouds(pts, ptr, num, first, out_ptr, out, b0, b1, leaf):
    """Runs :func:`_fps_tree` on clouds ``b0:b1``, writing into ``out``."""
    for b in range(b0, b1):
        if num[b] == 0:
            continue
        idx = _fps_tree(pts[ptr[b] : ptr[b + 1]], num[b], first[b], leaf)
        for i in range(num[b]):
            out[out_ptr[b] + i] = idx[i] + ptr[b]


def fps(src: SortedClouds, num_samples: Tensor, ratio: float | Tensor, start: Tensor) -> Tensor:
    """Exact FPS cloud by cloud on kd-trees, clouds spread over threads (``ratio`` is not
    needed)."""
    pts = np.ascontiguousarray(src.pos.detach().numpy())
    ptr = src.ptr.numpy()
    _check_ptr("src", ptr, pts.shape[0])
    counts = np.diff(ptr)
    num = num_samples.numpy().astype(np.int64)
    first = start.numpy().astype(np.int64)
    _require(num.shape == counts.shape and first.shape == counts.shape, "one count per cloud")
    _require(pts.shape[1] >= 1, "points need at least one coordinate")
    _require(bool((num >= 0).all()), "negative sample counts")
    num = np.minimum(num, counts)  # never more picks than points
    _require(bool(((first >= 0) & (first < np.maximum(counts, 1))).all()), "start outside cloud")
    out_ptr = np.zeros(num.size + 1, dtype=np.int64)
    np.cumsum(num, out=out_ptr[1:])
    out = np.empty(int(out_ptr[-1]), dtype=np.int64)
    work = counts * num  # cost ~ points x picks
    parallel_ranges(
        lambda b0, b1: _fps_clouds(pts, ptr, num, first, out_ptr, out, b0, b1, _LEAF), work
    )
    return torch.from_numpy(out)


@numba.njit(cache=True, nogil=True)
def _minmax(pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n, dims = pos.shape
    lo = np.empty(dims, dtype=pos.dtype)
    hi = np.empty(dims, dtype=pos.dtype)
    for d in range(dims):
        lo[d] = pos[0, d]
        hi[d] = pos[0, d]
    for i in range(1, n):
        for d in range(dims):
            v = pos[i, d]
            if v < lo[d]:
                lo[d] = v
            elif v > hi[d]:
                hi[d] = v
    return lo, hi


def minmax(pos: Tensor) -> tuple[Tensor, Tensor]:
    """Per-axis minimum and maximum of a non-empty ``[N, D]`` CPU tensor in one pass
    (numpy's axis-0 reductions over ``[N, 3]`` rows are strided: ~6x slower here)."""
    _require(pos.dim() == 2 and pos.size(0) > 0 and pos.size(1) > 0, "minmax of no points")
    lo, hi = _minmax(np.ascontiguousarray(pos.detach().numpy()))
    return torch.from_numpy(lo), torch.from_numpy(hi)


# ----------------------------------------------------------------------------------------
# voxel grid
# ----------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _grid(pos: np.ndarray, size: np.ndarray, start: np.ndarray, stride: np.ndarray) -> np.ndarray:
    n, dims = pos.shape
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        acc = 0
        for d in range(dims):
            acc += np.int64((pos[i, d] - start[d]) / size[d]) * stride[d]
        out[i] = acc
    return out


def grid(pos: Tensor, size: Tensor, start: Tensor | None, end: Tensor | None) -> Tensor:
    """Voxel ids in one pass over the points (the grid's bounds in another, where needed)."""
    start, _, stride = grid_frame(pos, size, start, end, minmax)
    dims = pos.size(1)
    _require(all(t.numel() == dims for t in (size, start, stride)), "one value per axis")
    return torch.from_numpy(
        _grid(
            np.ascontiguousarray(pos.detach().numpy()),
            size.numpy(),
            start.numpy(),
            stride.numpy(),
        )
    )


# ----------------------------------------------------------------------------------------
# radius search on a sorted cell grid
# ----------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _insert(bd: np.ndarray, bi: np.ndarray, cnt: int, cap: int, d: float, j: int) -> int:
    """Inserts (d, j) into the ascending (distance, index) list ``bd/bi`` of length cnt."""
    if cnt == cap:
        if d > bd[cap - 1] or (d == bd[cap - 1] and j > bi[cap - 1]):
            return cnt
        cnt -= 1
    k = cnt
    while k > 0 and (bd[k - 1] > d or (bd[k - 1] == d and bi[k - 1] > j)):
        bd[k] = bd[k - 1]
        bi[k] = bi[k - 1]
        k -= 1
    bd[k] = d
    bi[k] = j
    return cnt + 1


@numba.njit(cache=True, nogil=True)
def _radius_queries(x, y, ptr_x, ptr_y, r, r2, cap, first, out_idx, out_cnt, q0, q1):
    """Radius search for the queries ``q0:q1`` of ``y`` (global indices), cloud by cloud.
    A query keeps its ``cap`` nearest points within ``r`` or, with ``first``, the ``cap``
    first by index (the list is then ranked by index instead of distance).

    Each cloud's points are bucketed into cubic cells of edge ``r`` (a hair more, so that
    rounding never hides a neighbour) identified by a 64-bit key and sorted by it; a
    query scans the 3 x 3 x 3 cells around its own, each row of 3 cells being one
    contiguous key range found by binary search. No hash table is needed.
    """
    dims = x.shape[1]
    h = r * _MARGIN
    bd = np.empty(cap, dtype=np.float64)
    bi = np.empty(cap, dtype=np.int64)
    lo = np.zeros(3)
    ncell = np.ones(3, dtype=np.int64)
    qc = np.zeros(3, dtype=np.int64)
    for b in range(ptr_y.shape[0] - 1):
        ys, ye = max(ptr_y[b], q0), min(ptr_y[b + 1], q1)
        if ys >= ye:
            continue
        xs, xe = ptr_x[b], ptr_x[b + 1]
        n = xe - xs
        if n == 0:
            for qi in range(ys, ye):
                out_cnt[qi] = 0
            continue
        for d in range(dims):
            lo[d] = x[xs:xe, d].min()
            ncell[d] = np.int64((x[xs:xe, d].max() - lo[d]) / h) + 1
        keys = np.empty(n, dtype=np.int64)
        for i in range(n):
            key = 0
            for d in range(dims - 1, -1, -1):
                key = key * ncell[d] + np.int64((x[xs + i, d] - lo[d]) / h)
            keys[i] = key
        order = np.argsort(keys, kind="mergesort")
        skeys = keys[order]
        total = ncell[0] * ncell[1] * ncell[2]
        dense = total <= 8 * n + 4096  # a start table per cell beats binary search
        if dense:
            cstart = np.searchsorted(skeys, np.arange(total + 1))
        else:
            cstart = np.zeros(1, dtype=np.int64)
        for qi in range(ys, ye):
            outside = False
            for d in range(dims):
                f = math.floor((y[qi, d] - lo[d]) / h)
                if f < -1.0 or f > ncell[d]:
                    outside = True
                    break
                qc[d] = np.int64(f)
            cnt = 0
            if not outside:
                x0 = max(qc[0] - 1, 0)
                x1 = min(qc[0] + 1, ncell[0] - 1)
                z0 = max(qc[2] - 1, 0) if dims > 2 else 0
                z1 = min(qc[2] + 1, ncell[2] - 1) if dims > 2 else 0
                y0 = max(qc[1] - 1, 0) if dims > 1 else 0
                y1 = min(qc[1] + 1, ncell[1] - 1) if dims > 1 else 0
                for cz in range(z0, z1 + 1):
                    for cy in range(y0, y1 + 1):
                        if x0 > x1:
                            continue
                        base = ncell[0] * (cy + ncell[1] * cz)
                        if dense:
                            a = cstart[base + x0]
                            e = cstart[base + x1 + 1]
                        else:
                            a = np.searchsorted(skeys, base + x0, side="left")
                            e = np.searchsorted(skeys, base + x1, side="right")
                        for t in range(a, e):
                            j = xs + order[t]
                            dist = (x[j, 0] - y[qi, 0]) * (x[j, 0] - y[qi, 0])
                            for d in range(1, dims):
                                dist += (x[j, d] - y[qi, d]) * (x[j, d] - y[qi, d])
                            if dist < r2:
                                key = np.float64(j) if first else np.float64(dist)
                                cnt = _insert(bd, bi, cnt, cap, key, j)
            for t in range(cnt):
                out_idx[qi, t] = bi[t]
            out_cnt[qi] = cnt


def radius_supported(x: SortedClouds, r: float) -> bool:
    """Whether the cell grid takes ``x``: at most 3 coordinates, and 64-bit cell keys."""
    if x.pos.size(1) > 3 or x.pos.size(0) == 0:
        return x.pos.size(0) == 0
    lo, hi = minmax(x.pos)
    span = (hi.double() - lo.double()) / (r * _MARGIN) + 2
    return float(span.prod()) < 2.0**62


def radius(
    x: SortedClouds, y: SortedClouds, r: float, max_num_neighbors: int, first: bool = False
) -> tuple[Tensor, Tensor]:
    """Radius search on per-cloud sorted cell grids, queries spread over threads (``first``:
    keep the first points by index instead of the nearest). Points
    with more than 3 coordinates, or a grid too fine for 64-bit keys (see
    :func:`radius_supported`), are declared unsupported in the registry, which hands them
    to scipy's kd-tree."""
    _require(radius_supported(x, r), "more than 3 coordinates or a grid too fine for 64-bit keys")
    xn = np.ascontiguousarray(x.pos.detach().numpy())
    yn = np.ascontiguousarray(y.pos.detach().numpy())
    _check_pair(xn, yn, x.ptr.numpy(), y.ptr.numpy())
    _require(1 <= xn.shape[1] <= 3, "radius search takes 1 to 3 coordinates")
    _require(r > 0 and math.isfinite(r), f"radius must be positive and finite, got {r}")
    _require(max_num_neighbors >= 1, "max_num_neighbors must be at least 1")
    # torch-cluster compares float distances with the float of r * r
    r2 = float(np.asarray(float(r) * float(r), dtype=xn.dtype))
    cap = max(1, min(max_num_neighbors, int(x.counts().max())))
    m = yn.shape[0]
    idx = np.empty((m, cap), dtype=np.int64)
    cnt = np.zeros(m, dtype=np.int64)
    px, py = x.ptr.numpy(), y.ptr.numpy()
    parallel_ranges(
        lambda q0, q1: _radius_queries(
            xn, yn, px, py, float(r), r2, cap, bool(first), idx, cnt, q0, q1
        ),
        np.full(m, 20, dtype=np.int64),
        min_work=5e4,  # about 2,500 queries: enough to pay for a thread hand-off
    )
    keep = np.arange(cap)[None, :] < cnt[:, None]
    return torch.from_numpy(np.repeat(np.arange(m, dtype=np.int64), cnt)), torch.from_numpy(
        idx[keep]
    )


# ----------------------------------------------------------------------------------------
# k nearest neighbours on a kd-tree
# ----------------------------------------------------------------------------------------

_KNN_LEAF = 16  # points per leaf; a cell grid (tried first) was no faster on surface
# samples and degrades on uneven density (a scan's near and far parts), which a tree does not


@numba.njit(cache=True, nogil=True)
def _tree_for_knn(x: np.ndarray):
    """Midpoint kd-tree over ``x`` with its points copied in tree order."""
    n, dims = x.shape
    perm = np.arange(n)
    start, end, left, right, lo, hi = _build_kdtree(x, perm, _KNN_LEAF)
    p = np.empty((n, dims), dtype=x.dtype)
    for i in range(n):
        p[i] = x[perm[i]]
    return p, perm, start, end, left, right, lo, hi


@numba.njit(cache=True, nogil=True)
def _tree_query(p, perm, start, end, left, right, lo, hi, y, qa, qb, k, xs, out_idx):
    """k nearest of ``y[qa:qb]`` in the tree; writes global indices (``xs`` + original)."""
    dims = p.shape[1]
    cap = min(k, p.shape[0])
    bd = np.empty(cap, dtype=p.dtype)
    bi = np.empty(cap, dtype=np.int64)
    stack = np.empty(2 * start.shape[0] + 2, dtype=np.int64)
    for qi in range(qa, qb):
        q = y[qi]
        cnt = 0
        top = 1
        stack[0] = 0
        while top > 0:
            top -= 1
            node = stack[top]
            if cnt == cap and _box_dist2(lo, hi, node, q) > bd[cap - 1] * _MARGIN:
                continue
            if left[node] < 0:
                for t in range(start[node], end[node]):
                    dist = (p[t, 0] - y[qi, 0]) * (p[t, 0] - y[qi, 0])
                    for d in range(1, dims):
                        dist += (p[t, d] - y[qi, d]) * (p[t, d] - y[qi, d])
                    j = xs + perm[t]
                    if cnt < cap or dist < bd[cap - 1] or (dist == bd[cap - 1] and j < bi[cap - 1]):
                        cnt = _insert(bd, bi, cnt, cap, dist, j)
                continue
            a, b = left[node], right[node]
            # visit the nearer child first: push it last
            if _box_dist2(lo, hi, a, q) <= _box_dist2(lo, hi, b, q):
                stack[top] = b
                stack[top + 1] = a
            else:
                stack[top] = a
                stack[top + 1] = b
            top += 2
        for t in range(cap):
            out_idx[qi, t] = bi[t]


@numba.njit(cache=True, nogil=True)
def _tree_knn_clouds(x, y, ptr_x, ptr_y, k, out_idx, b0, b1):
    for b in range(b0, b1):
        xs, xe = ptr_x[b], ptr_x[b + 1]
        if xe == xs or ptr_y[b + 1] == ptr_y[b]:
            continue
        p, perm, start, end, left, right, lo, hi = _tree_for_knn(x[xs:xe])
        _tree_query(
            p, perm, start, end, left, right, lo, hi, y, ptr_y[b], ptr_y[b + 1], k, xs, out_idx
        )


def knn(
    x: SortedClouds, y: SortedClouds, k: int, cosine: bool, skip_self: bool
) -> tuple[Tensor, Tensor]:
    """k nearest neighbours on per-cloud kd-trees, queries spread over threads.

    With ``skip_self`` (``y`` is ``x``), ``k`` is the count *including* the point itself,
    which is then dropped from its own row (or, where duplicates hide it, the farthest).
    A kd-tree cannot prune by the cosine distance: the registry declares it unsupported, and
    :func:`~lightning_pc.ops._backend.choose` hands those calls to another backend.
    """
    _require(not cosine, "the cosine distance is not supported")
    xn = np.ascontiguousarray(x.pos.detach().numpy())
    yn = np.ascontiguousarray(y.pos.detach().numpy())
    px, py = x.ptr.numpy(), y.ptr.numpy()
    _check_pair(xn, yn, px, py)
    _require(k >= 1, f"k must be at least 1, got {k}")
    nb = x.num_clouds
    m = yn.shape[0]
    idx = np.empty((m, k), dtype=np.int64)
    m_per = np.diff(py)
    if nb >= 2 * torch.get_num_threads():
        parallel_ranges(lambda b0, b1: _tree_knn_clouds(xn, yn, px, py, k, idx, b0, b1), m_per * k)
    else:
        for b in range(nb):
            if px[b + 1] == px[b] or m_per[b] == 0:
                continue
            tree = _tree_for_knn(xn[px[b] : px[b + 1]])

            def query(q0: int, q1: int, tree: tuple = tree, b: int = b) -> None:
                _tree_query(*tree, yn, py[b] + q0, py[b] + q1, k, px[b], idx)  # type: ignore[call-arg]

            parallel_ranges(query, np.full(m_per[b], k, dtype=np.int64))
    counts = np.minimum(np.diff(px), k)
    per_query = counts[np.repeat(np.arange(nb), m_per)]
    keep = np.arange(k)[None, :] < per_query[:, None]
    if skip_self:
        keep &= idx != np.arange(m)[:, None]
        keep &= np.cumsum(keep, axis=1) < k  # at most k - 1 others per row
    rows = np.broadcast_to(np.arange(m, dtype=np.int64)[:, None], idx.shape)[keep]
    return torch.from_numpy(rows), torch.from_numpy(idx[keep])


def _check_pair(xn: np.ndarray, yn: np.ndarray, px: np.ndarray, py: np.ndarray) -> None:
    """The searched points and the queries agree on coordinates and clouds."""
    _require(xn.ndim == 2 and yn.ndim == 2 and xn.shape[1] == yn.shape[1] >= 1,
             "x and y need the same number (>= 1) of coordinates")
    _require(px.size == py.size, "x and y must describe the same number of clouds")
    _check_ptr("x", px, xn.shape[0])
    _check_ptr("y", py, yn.shape[0])
