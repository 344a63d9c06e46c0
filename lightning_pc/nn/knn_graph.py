"""k-nearest-neighbour graphs in feature space, as ``[N, k]`` neighbour tables.

DGCNN rebuilds its graph from the current features at every layer. Two paths give the same
neighbours (up to exact distance ties):

- ``"padded"``: the clouds are laid out as ``[B, n_max, C]`` and all pairwise squared
  distances :math:`\\lVert x_i \\rVert^2 - 2 x_i^\\top x_j + \\lVert x_j \\rVert^2` come from
  one batched matrix product, then ``topk``: dense BLAS work, which is what makes
  high-dimensional kNN fast (tree searches degrade to brute force above a few dimensions).
  No distance block exceeds 2**26 elements (256 MiB in float32): small clouds go several
  to a block, a cloud above 8192 points is split into blocks of query rows;
- ``"packed"``: :func:`lightning_pc.ops.knn` on the packed rows.

The two are the ``knn_table`` kind of the implementation registry
(:mod:`lightning_pc.ops._backend`): ``mode=None`` takes ``LIGHTNING_PC_IMPL_KNN_TABLE`` where
set, else ``"padded"``.

Each point is its own nearest neighbour, as in the reference implementation. A cloud with
fewer than ``k`` points repeats its nearest neighbour to fill the table (which leaves a max
over neighbours unchanged).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from lightning_pc.nn.segment import lengths_from_ptr
from lightning_pc.ops import knn
from lightning_pc.ops._backend import Call, choose

KnnMode = Literal["padded", "packed"]

# Upper bound on the elements of one pairwise-distance block: 2**26 float32 = 256 MiB. Small
# clouds are processed several at a time (b * n_max**2 <= _MAX_BLOCK); a cloud with more than
# sqrt(_MAX_BLOCK) = 8192 points in query-row blocks of its own ([rows, n] with
# rows * n <= _MAX_BLOCK), so the padded path's memory is bounded whatever the cloud size.
_MAX_BLOCK = 1 << 26


def query_rows(n: int, budget: int | None = None) -> int:
    """Query rows per ``[rows, n]`` distance block of a cloud of ``n`` points within
    ``budget`` elements (default ``_MAX_BLOCK``; at least one row)."""
    return max(1, (_MAX_BLOCK if budget is None else budget) // max(n, 1))


def _at_least_float32(x: Tensor) -> Tensor:
    return x.float() if torch.finfo(x.dtype).bits < 32 else x


def _fill_short_rows(table: Tensor, lengths: Tensor, k: int) -> Tensor:
    """Replace slots ``>= n_b`` of clouds with fewer than ``k`` points by slot 0."""
    per_point = torch.repeat_interleave(lengths, lengths)  # [N]
    slot = torch.arange(k, device=table.device)
    bad = slot[None, :] >= per_point[:, None]  # [N, k]
    return torch.where(bad, table[:, :1].expand_as(table), table)


@torch.no_grad()
def knn_table_padded(x: Tensor, ptr: Tensor, k: int) -> Tensor:
    """Neighbour table ``[N, k]`` (global indices, nearest first) from dense distances.

    Args:
        x: ``[N, C]`` packed features.
        ptr: ``[B + 1]`` offsets.
        k: neighbours per point, self included.
    """
    x = _at_least_float32(x)  # see knn_table
    lengths = lengths_from_ptr(ptr)  # [B]
    num_clouds = lengths.numel()
    n_max = int(lengths.max())
    if n_max * n_max > _MAX_BLOCK:
        return _knn_table_blocked(x, ptr, lengths, k)
    kk = min(k, n_max)
    uniform = bool((lengths == n_max).all())
    if uniform:
        dense = x.view(num_clouds, n_max, -1)  # [B, n, C]
        valid = None
    else:
        batch = torch.repeat_interleave(torch.arange(num_clouds, device=x.device), lengths)
        local = torch.arange(x.size(0), device=x.device) - ptr[batch]
        dense = x.new_zeros(num_clouds, n_max, x.size(1))
        dense[batch, local] = x
        valid = torch.arange(n_max, device=x.device)[None, :] < lengths[:, None]  # [B, n]
    sq = dense.square().sum(-1)  # [B, n]
    chunk = max(1, _MAX_BLOCK // (n_max * n_max))
    tables = []
    for s in range(0, num_clouds, chunk):
        d = torch.baddbmm(
            sq[s : s + chunk, :, None],
            dense[s : s + chunk],
            dense[s : s + chunk].transpose(1, 2),
            alpha=-2.0,
        )  # [b, n, n]
        d += sq[s : s + chunk, None, :]
        if valid is not None:
            d.masked_fill_(~valid[s : s + chunk, None, :], float("inf"))
        tables.append(d.topk(kk, dim=-1, largest=False, sorted=True).indices)  # [b, n, kk]
        del d  # before the next block is allocated: one block at a time
    table = torch.cat(tables, 0) + ptr[:-1, None, None]  # [B, n, kk]
    table = table.view(-1, kk) if uniform else table[valid]  # [N, kk]
    if kk < k:
        table = torch.cat([table, table[:, :1].expand(-1, k - kk)], 1)
    if not uniform and int(lengths.min()) < k:
        table = _fill_short_rows(table, lengths, k)
    return table


def _knn_table_blocked(x: Tensor, ptr: Tensor, lengths: Tensor, k: int) -> Tensor:
    """The padded path for large clouds: one cloud at a time, in blocks of query rows, so
    that no distance block holds more than ``_MAX_BLOCK`` elements."""
    table = torch.empty(x.size(0), k, dtype=torch.long, device=x.device)
    for start, n in zip(ptr[:-1].tolist(), lengths.tolist(), strict=True):
        if n == 0:
            continue
        cloud = x[start : start + n]  # [n, C]
        sq = cloud.square().sum(-1)  # [n]
        kk = min(k, n)
        rows = query_rows(n)
        block = x.new_empty(min(rows, n), n)  # one buffer for every block of this cloud
        for r in range(0, n, rows):
            m = min(rows, n - r)
            d = block[:m]
            torch.addmm(sq[r : r + m, None], cloud[r : r + m], cloud.t(), alpha=-2.0, out=d)
            d += sq[None, :]  # [m, n]
            nearest = d.topk(kk, dim=-1, largest=False, sorted=True).indices + start
            out = table[start + r : start + r + m]
            out[:, :kk] = nearest
            if kk < k:
                out[:, kk:] = nearest[:, :1]
        del block
    return table


@torch.no_grad()
def knn_table_packed(x: Tensor, batch: Tensor, ptr: Tensor, k: int) -> Tensor:
    """Neighbour table ``[N, k]`` from :func:`lightning_pc.ops.knn` (same contract as
    :func:`knn_table_padded`)."""
    num_points = x.size(0)
    row, col = knn(x, x, k, batch_x=batch, batch_y=batch)
    expected = torch.arange(num_points, device=x.device).repeat_interleave(k)
    if row.numel() == num_points * k and torch.equal(row, expected):
        return col.view(num_points, k)  # every point got k neighbours, grouped by query
    order = torch.argsort(row, stable=True)
    row, col = row[order], col[order]
    counts = torch.bincount(row, minlength=num_points)  # [N]
    start = torch.cumsum(counts, 0) - counts
    slot = torch.arange(row.numel(), device=x.device) - start[row]
    table = col.new_empty(num_points, k)
    table[:] = col[start][:, None]
    table[row, slot] = col
    return table


def knn_table(
    x: Tensor, batch: Tensor, ptr: Tensor, k: int, mode: KnnMode | Literal["auto"] | None = None
) -> Tensor:
    """``[N, k]`` nearest neighbours of every point among the points of its cloud.

    ``mode`` names the path (``"padded"`` or ``"packed"``); ``None`` (or ``"auto"``) lets the
    registry choose (``LIGHTNING_PC_IMPL_KNN_TABLE``, else ``"padded"``).

    Distances are computed with autocast off, in float32 for bfloat16 or float16 ``x``:
    under mixed precision the features arrive in bfloat16 or float16, whose 8 or 11
    significant bits cannot order close neighbours (and float16 squared norms overflow
    past 65504).

    Runs as the custom op ``torch.ops.lightning_pc.knn_table``: its output shape is known
    from the inputs' (``[N, k]``), so ``torch.compile`` and ``torch.export`` trace a model
    through it without reading the cloud sizes.
    """
    request: str = "" if mode is None else mode  # "": not named (the op's schema takes a str)
    if not torch.compiler.is_compiling():  # eagerly, an unknown mode raises here
        request = choose("knn_table", _call(x), mode)
    with torch.autocast(x.device.type, enabled=False):
        return knn_table_op(_at_least_float32(x.detach()), batch, ptr, int(k), request)


def _call(x: Tensor) -> Call:
    return Call(x.device, x.dtype, x.numel())


@torch.library.custom_op("lightning_pc::knn_table", mutates_args=())
def knn_table_op(x: Tensor, batch: Tensor, ptr: Tensor, k: int, mode: str) -> Tensor:
    """The custom op behind :func:`knn_table` (runs eagerly); ``mode`` as there, ``""`` for
    none named."""
    chosen = choose("knn_table", _call(x), mode or None)
    table = (
        knn_table_padded(x, ptr, k) if chosen == "padded" else knn_table_packed(x, batch, ptr, k)
    )
    # the fake kernel promises a fresh tensor; the packed path may return a view into knn's
    return table if table.storage_offset() == 0 else table.clone()


@knn_table_op.register_fake
def _knn_table_fake(x: Tensor, batch: Tensor, ptr: Tensor, k: int, mode: str) -> Tensor:
    return x.new_empty((x.size(0), k), dtype=torch.long)
