"""k-nearest-neighbour and radius search with torch-cluster's signatures and conventions.

Every function returns an edge index ``[2, E]``: for :func:`knn` and :func:`radius`,
``row`` indexes the queries ``y`` and ``col`` the searched points ``x``; rows come out
ascending and, within a row, neighbours ascending by distance.

Each public function validates its non-tensor arguments in Python and calls one
``torch.library`` custom op (``torch.ops.lightning_pc.knn``, ``.radius``, ``.nearest``)
whose kernel does the rest eagerly: data checks (finite coordinates, batch vectors),
sorting by cloud, and the call of the backend's kernel chosen by
:func:`~lightning_pc.ops._backend.resolve`. Their fake kernels give ``torch.compile`` and
``torch.export`` the output shapes, ``[2, E]`` with a data-dependent ``E`` (an unbacked
size), so a compiled model calls the ops without a graph break (with dynamo's
``capture_dynamic_output_shape_ops``).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from lightning_pc.ops._backend import Call, resolve
from lightning_pc.ops._checks import (
    SortedClouds,
    check_points,
    drop_self_loops,
    first_k_per_row,
    num_clouds,
    require_tensors,
    restore_rows,
    same_device,
    sort_clouds,
    stack,
)

Flow = Literal["source_to_target", "target_to_source"]
#: which points a radius search keeps when more than ``max_num_neighbors`` lie within ``r``
Keep = Literal["nearest", "first"]


def _prepare(
    x: Tensor, y: Tensor, batch_x: Tensor | None, batch_y: Tensor | None, batch_size: int | None
) -> tuple[SortedClouds, SortedClouds]:
    if isinstance(x, Tensor) and isinstance(y, Tensor) and x.dtype != y.dtype:
        raise ValueError(f"x and y must share a dtype, got {x.dtype} and {y.dtype}")
    x = check_points("x", x)
    y = check_points("y", y, dim=x.size(1))
    same_device(x, y, "x and y")
    size = num_clouds(batch_x, batch_y, batch_size=batch_size)
    return sort_clouds("x", x, batch_x, size), sort_clouds("y", y, batch_y, size)


def _run_knn(
    px: SortedClouds,
    py: SortedClouds,
    k: int,
    cosine: bool,
    backend: str | None,
    skip_self: bool = False,
) -> Tensor:
    """knn on sorted inputs, ``[2, E]`` in the caller's indexing. With ``skip_self`` (``py``
    is ``px``), ``k`` counts the point itself, which is removed: each row keeps its
    ``k - 1`` nearest other points."""
    device = px.pos.device
    if px.pos.size(0) == 0 or py.pos.size(0) == 0:
        return torch.empty(2, 0, dtype=torch.long, device=device)
    call = Call(device, px.pos.dtype, px.pos.numel(), facts={"cosine": cosine})
    row, col = resolve("knn", call, backend)(px, py, k, cosine, skip_self)
    return stack(*restore_rows(row, col, py, px))


def knn(
    x: Tensor,
    y: Tensor,
    k: int,
    batch_x: Tensor | None = None,
    batch_y: Tensor | None = None,
    cosine: bool = False,
    num_workers: int = 1,
    batch_size: int | None = None,
    *,
    backend: str | None = None,
) -> Tensor:
    r"""For each point in ``y``, the ``k`` nearest points in ``x`` of the same cloud.

    Args:
        x: ``[N, D]`` points searched.
        y: ``[M, D]`` query points.
        k: neighbours per query. A cloud with fewer than ``k`` points in ``x`` yields all of
            them; an empty cloud yields none.
        batch_x: ``[N]`` cloud index of each point of ``x`` (need not be sorted).
        batch_y: ``[M]`` cloud index of each point of ``y``.
        cosine: use the cosine distance ``1 - cos(x, y)`` instead of Euclidean.
        num_workers: accepted for torch-cluster compatibility; threads follow
            ``torch.get_num_threads()``.
        batch_size: number of clouds, if known (saves a device sync).
        backend: force a backend (see :mod:`lightning_pc.ops._backend`).

    Returns:
        ``[2, E]`` long tensor: ``row`` indexes ``y``, ``col`` indexes ``x``.

    Raises:
        ValueError: on NaN/infinite coordinates, mismatched shapes or bad batch vectors.
    """
    _check_k(k)
    require_tensors(x=x, y=y, batch_x=batch_x, batch_y=batch_y)
    return knn_op(
        x,
        y,
        batch_x,
        batch_y,
        int(k),
        cosine=bool(cosine),
        batch_size=batch_size,
        exclude_self=False,
        flip=False,
        need_all=False,
        backend=backend,
    )


def knn_graph(
    x: Tensor,
    k: int,
    batch: Tensor | None = None,
    loop: bool = False,
    flow: Flow = "source_to_target",
    cosine: bool = False,
    num_workers: int = 1,
    batch_size: int | None = None,
    *,
    backend: str | None = None,
) -> Tensor:
    r"""The k-nearest-neighbour graph of ``x``.

    With ``flow="source_to_target"`` (PyG's message-passing default) an edge ``(j, i)``
    means ``j`` is one of the ``k`` nearest neighbours of ``i``: ``row`` holds neighbours,
    ``col`` centres. Without ``loop`` a point is not its own neighbour, and each point
    still gets ``k`` neighbours (where its cloud has them).
    """
    _check_flow(flow)
    _check_k(k)
    require_tensors(x=x, batch=batch)
    flip = flow == "source_to_target"
    return knn_op(
        x,
        x,
        batch,
        batch,
        int(k),
        cosine=bool(cosine),
        batch_size=batch_size,
        exclude_self=not loop,
        flip=flip,
        need_all=False,
        backend=backend,
    )


def radius(
    x: Tensor,
    y: Tensor,
    r: float,
    batch_x: Tensor | None = None,
    batch_y: Tensor | None = None,
    max_num_neighbors: int = 32,
    num_workers: int = 1,
    batch_size: int | None = None,
    *,
    keep: Keep = "nearest",
    backend: str | None = None,
) -> Tensor:
    r"""For each point in ``y``, the points of ``x`` (same cloud) strictly within ``r``.

    Truncation rule, the same on every backend and device: when more than
    ``max_num_neighbors`` points lie within ``r``, ``keep="nearest"`` keeps the
    ``max_num_neighbors`` **nearest**, ``keep="first"`` the first ``max_num_neighbors`` in
    the order of ``x`` (within the cloud), as PointNet++'s reference ball query does.
    (torch-cluster keeps a kd-tree-order subset on CPU and the first by index on CUDA.)
    Nearest-first makes the result independent of the order of the points; first-by-index
    spreads the kept points over the whole ball when ``x`` is in random order (sampled
    surfaces, shuffled scans), which is what PointNet++'s radii were chosen for. Among points
    at exactly equal distance at the cut, which are kept may differ between backends.

    Returns:
        ``[2, E]`` long tensor, ``row`` indexing ``y`` and ``col`` indexing ``x``; rows
        ascending, neighbours ascending by distance (``keep="first"``: by index).
    """
    _check_radius(r, max_num_neighbors)
    _check_keep(keep)
    require_tensors(x=x, y=y, batch_x=batch_x, batch_y=batch_y)
    return radius_op(
        x,
        y,
        batch_x,
        batch_y,
        float(r),
        int(max_num_neighbors),
        batch_size=batch_size,
        exclude_self=False,
        flip=False,
        backend=backend,
        first=keep == "first",
    )


def radius_graph(
    x: Tensor,
    r: float,
    batch: Tensor | None = None,
    loop: bool = False,
    max_num_neighbors: int = 32,
    flow: Flow = "source_to_target",
    num_workers: int = 1,
    batch_size: int | None = None,
    *,
    keep: Keep = "nearest",
    backend: str | None = None,
) -> Tensor:
    r"""The radius graph of ``x``: edges between points of one cloud closer than ``r``.

    ``max_num_neighbors`` bounds the neighbours of each point (not counting itself when
    ``loop=False``), the nearest or the first by index as ``keep`` says (see
    :func:`radius`); ``flow`` as in :func:`knn_graph`.
    """
    _check_flow(flow)
    _check_radius(r, max_num_neighbors)
    _check_keep(keep)
    require_tensors(x=x, batch=batch)
    flip = flow == "source_to_target"
    return radius_op(
        x,
        x,
        batch,
        batch,
        float(r),
        int(max_num_neighbors),
        batch_size=batch_size,
        exclude_self=not loop,
        flip=flip,
        backend=backend,
        first=keep == "first",
    )


def nearest(
    x: Tensor,
    y: Tensor,
    batch_x: Tensor | None = None,
    batch_y: Tensor | None = None,
    *,
    backend: str | None = None,
) -> Tensor:
    r"""For each point of ``x``, the index of its nearest point of ``y`` in the same cloud.

    The batch vectors need not be sorted (torch-cluster's ``nearest`` raises ``ValueError``
    on unsorted ones; here, as in every op, points are grouped by cloud first).

    Raises:
        ValueError: if a cloud has points in ``x`` but none in ``y``.
    """
    require_tensors(x=x, y=y, batch_x=batch_x, batch_y=batch_y)
    return nearest_op(x, y, batch_x, batch_y, backend)


# ----------------------------------------------------------------------------------------
# Argument checks that need no tensor data (they run in Python, also under tracing).


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")


def _check_flow(flow: str) -> None:
    if flow not in ("source_to_target", "target_to_source"):
        raise ValueError(f"flow must be 'source_to_target' or 'target_to_source', got {flow!r}")


def _check_keep(keep: str) -> None:
    if keep not in ("nearest", "first"):
        raise ValueError(f"keep must be 'nearest' or 'first', got {keep!r}")


def _check_radius(r: float, max_num_neighbors: int) -> None:
    if r <= 0:
        raise ValueError(f"r must be positive, got {r}")
    if max_num_neighbors < 1:
        raise ValueError(f"max_num_neighbors must be at least 1, got {max_num_neighbors}")


def _uncovered(searched: SortedClouds, queries: SortedClouds) -> int | None:
    """The first cloud with queries but no points to search, if any."""
    lonely = (queries.counts() > 0) & (searched.counts() == 0)
    return int(lonely.nonzero()[0, 0]) if bool(lonely.any()) else None


def _dynamic_edges(like: Tensor) -> Tensor:
    """A fake ``[2, E]`` edge index whose ``E`` depends on the data."""
    num_edges = torch.library.get_ctx().new_dynamic_size()
    return like.new_empty((2, num_edges), dtype=torch.long)


# ----------------------------------------------------------------------------------------
# The custom ops: tensors in, tensors out; everything data-dependent happens in here.


@torch.library.custom_op("lightning_pc::knn", mutates_args=())
def knn_op(
    x: Tensor,
    y: Tensor,
    batch_x: Tensor | None,
    batch_y: Tensor | None,
    k: int,
    cosine: bool,
    batch_size: int | None,
    exclude_self: bool,
    flip: bool,
    need_all: bool,
    backend: str | None,
) -> Tensor:
    """``[2, E]`` k-nearest-neighbour edges ``(y index, x index)``.

    Args:
        exclude_self: ``y`` is ``x`` and each point's ``k`` nearest *other* points are found
            (``knn_graph`` without loops).
        flip: return ``(x index, y index)`` instead.
        need_all: raise ``ValueError`` when a cloud has queries but no points to search.
    """
    px, py = _prepare(x, y, batch_x, batch_y, batch_size)
    if need_all and (cloud := _uncovered(px, py)) is not None:
        raise ValueError(f"cloud {cloud} has points in y but none in x to search")
    if exclude_self:
        edges = _run_knn(px, py, k + 1, cosine, backend, skip_self=True)
    else:
        edges = _run_knn(px, py, k, cosine, backend)
    return stack(edges[1], edges[0]) if flip else edges


@knn_op.register_fake
def _knn_fake(x: Tensor, *_: Any) -> Tensor:
    return _dynamic_edges(x)


@torch.library.custom_op("lightning_pc::radius", mutates_args=())
def radius_op(
    x: Tensor,
    y: Tensor,
    batch_x: Tensor | None,
    batch_y: Tensor | None,
    r: float,
    max_num_neighbors: int,
    batch_size: int | None,
    exclude_self: bool,
    flip: bool,
    backend: str | None,
    first: bool = False,
) -> Tensor:
    """``[2, E]`` radius edges ``(y index, x index)``; ``exclude_self`` and ``flip`` as in
    :func:`knn_op` (``max_num_neighbors`` then does not count the point itself); ``first``:
    keep the first points by index instead of the nearest."""
    px, py = _prepare(x, y, batch_x, batch_y, batch_size)
    device = px.pos.device
    if px.pos.size(0) == 0 or py.pos.size(0) == 0:
        return torch.empty(2, 0, dtype=torch.long, device=device)
    extra = 1 if exclude_self else 0
    call = Call(device, px.pos.dtype, px.pos.numel(), facts={"x": px, "r": r, "first": first})
    kernel = resolve("radius", call, backend)
    if first:
        centre, nbr = kernel(px, py, r, max_num_neighbors + extra, first=True)
    else:
        centre, nbr = kernel(px, py, r, max_num_neighbors + extra)
    centre, nbr = restore_rows(centre, nbr, py, px)
    if exclude_self:
        centre, nbr = drop_self_loops(centre, nbr)
        centre, nbr = first_k_per_row(centre, nbr, max_num_neighbors)
    return stack(nbr, centre) if flip else stack(centre, nbr)


@radius_op.register_fake
def _radius_fake(x: Tensor, *_: Any) -> Tensor:
    return _dynamic_edges(x)


@torch.library.custom_op("lightning_pc::nearest", mutates_args=())
def nearest_op(
    x: Tensor, y: Tensor, batch_x: Tensor | None, batch_y: Tensor | None, backend: str | None
) -> Tensor:
    """``[N]``: for each point of ``x`` the index of its nearest point of ``y``."""
    px, py = _prepare(y, x, batch_y, batch_x, None)  # search y, query x
    if (cloud := _uncovered(px, py)) is not None:
        raise ValueError(f"cloud {cloud} has points in x but none in y to be nearest to")
    row, col = _run_knn(px, py, 1, False, backend)
    out = torch.empty(py.pos.size(0), dtype=torch.long, device=col.device)
    out[row] = col
    return out


@nearest_op.register_fake
def _nearest_fake(x: Tensor, *_: Any) -> Tensor:
    return x.new_empty((x.size(0),), dtype=torch.long)
