"""Kernel maps without a hash table: sorted 64-bit keys and ``searchsorted``.

A site ``(b, x, y, z)`` is packed into one collision-free ``int64`` key: the batch index in
bits 48-62 and each axis, shifted by ``2**15``, in 16 bits. Keys of a site set are sorted
once; the neighbour at offset ``d`` of every site is then one vectorised ``searchsorted``
of ``key + delta(d)``, because adding ``delta(d) = dx * 2**32 + dy * 2**16 + dz`` to a key
adds ``d`` to the coordinates as long as no axis field leaves ``[0, 2**16)``, which the
coordinate range check (:data:`COORD_MIN`, :data:`COORD_MAX`, a margin of 64 on each side)
guarantees for every offset used here. The queries ``sorted_keys + delta`` are themselves
sorted, so the search walks memory in order.

A map lists, per kernel offset ``k``, the pairs ``(in_idx, out_idx)`` such that output
site ``out_idx`` reads input site ``in_idx`` through weight ``W[k]``:

.. math::
    \\mathbf{y}_o = \\sum_k \\sum_{(i, o) \\in M_k} \\mathbf{x}_i W_k

For a submanifold map of a symmetric kernel only half of the offsets are searched: the
pairs of ``-d`` are those of ``+d`` with the roles swapped; the centre offset is the
identity and stores no pairs. A kernel-2 stride-2 map needs no search at all: the output
site is ``floor(c / 2)`` and the kernel index is ``c mod 2``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

AXIS_BITS = 16
_AXIS_SHIFT = 1 << (AXIS_BITS - 1)
_MARGIN = 64
COORD_MIN = -_AXIS_SHIFT + _MARGIN
"""Smallest voxel coordinate a sparse tensor may hold (at any stride)."""
COORD_MAX = _AXIS_SHIFT - _MARGIN - 1
"""Largest voxel coordinate a sparse tensor may hold (at any stride)."""
MAX_BATCH = (1 << 15) - 1
"""Largest batch index a key can hold."""
_MASK = (1 << AXIS_BITS) - 1


def _check_shape(coords: Tensor) -> None:
    if coords.dim() != 2 or coords.size(1) != 4:
        raise ValueError(f"expected coords of shape [N, 4] (b, x, y, z), got {tuple(coords.shape)}")


def check_coords(coords: Tensor) -> None:
    """Raises ``ValueError`` when ``coords`` ([N, 4] ``(b, x, y, z)``) do not fit in a key."""
    _check_shape(coords)
    if coords.numel() == 0:
        return
    lo = coords.amin(0).tolist()
    hi = coords.amax(0).tolist()
    if lo[0] < 0 or hi[0] > MAX_BATCH:
        raise ValueError(f"batch index must lie in [0, {MAX_BATCH}], got [{lo[0]}, {hi[0]}]")
    if min(lo[1:]) < COORD_MIN or max(hi[1:]) > COORD_MAX:
        raise ValueError(
            f"voxel coordinates must lie in [{COORD_MIN}, {COORD_MAX}] (16 bits per axis), got "
            f"[{min(lo[1:])}, {max(hi[1:])}]: centre the clouds or use a larger voxel size"
        )


@torch.library.custom_op("lightning_pc::sparse_checked_coords", mutates_args=())
def checked_coords(coords: Tensor) -> Tensor:
    """A copy of ``coords`` [N, 4] as ``int64`` once :func:`check_coords` has passed.

    A custom op, so that the range check (which reads the data) stays in compiled graphs and
    exported programs and raises the same ``ValueError`` there.
    """
    check_coords(coords)
    return coords.to(torch.long, copy=True)


@checked_coords.register_fake
def _checked_coords_fake(coords: Tensor) -> Tensor:
    _check_shape(coords)
    return torch.empty_like(coords, dtype=torch.long)


def encode(coords: Tensor) -> Tensor:
    """Packs ``coords`` [N, 4] ``(b, x, y, z)`` into keys [N] ``int64`` (order: b, x, y, z)."""
    c = coords.long()
    return (
        (c[:, 0] << 48)
        | ((c[:, 1] + _AXIS_SHIFT) << 32)
        | ((c[:, 2] + _AXIS_SHIFT) << 16)
        | (c[:, 3] + _AXIS_SHIFT)
    )


def decode(keys: Tensor) -> Tensor:
    """Inverse of :func:`encode`: keys [N] -> coords [N, 4] ``int64``."""
    return torch.stack(
        [
            keys >> 48,
            ((keys >> 32) & _MASK) - _AXIS_SHIFT,
            ((keys >> 16) & _MASK) - _AXIS_SHIFT,
            (keys & _MASK) - _AXIS_SHIFT,
        ],
        dim=1,
    )


def delta(offset: tuple[int, int, int]) -> int:
    """Key increment that moves a site by ``offset`` (valid inside the coordinate range)."""
    dx, dy, dz = offset
    return (dx << 32) + (dy << 16) + dz


def kernel_offsets(kernel_size: int, dilation: int = 1) -> list[tuple[int, int, int]]:
    """Offsets of a cubic kernel, ``x`` slowest: ``(j - (k - 1) // 2) * dilation`` per axis.

    The order matches the flattened ``[k, k, k]`` spatial dims of a dense ``conv3d`` weight, and
    the centring matches ``conv3d(padding=(k - 1) // 2 * dilation)`` for odd ``k``.
    """
    r = range(kernel_size)
    c = (kernel_size - 1) // 2
    return [
        ((i - c) * dilation, (j - c) * dilation, (k - c) * dilation)
        for i in r
        for j in r
        for k in r
    ]


def identity_index(kernel_size: int) -> int:
    """Index of the zero offset in :func:`kernel_offsets` (the centre for odd sizes)."""
    c = (kernel_size - 1) // 2
    return (c * kernel_size + c) * kernel_size + c


@dataclass(frozen=True)
class KernelMap:
    """Input/output site pairs of a sparse convolution, grouped by kernel offset.

    Attributes:
        in_idx: [P] input row of each pair, pairs of offset ``k`` at ``splits[k]:splits[k+1]``.
        out_idx: [P] output row of each pair.
        splits: [K + 1] ``int64`` offsets into the pair lists, always on the CPU (the
            convolution reads them with no device sync).
        num_in: number of input sites.
        num_out: number of output sites.
        identity: kernel index whose pairs are ``(i, i)`` for every site and are not stored
            (the centre of a submanifold map), or ``None``.
    """

    in_idx: Tensor
    out_idx: Tensor
    splits: Tensor
    num_in: int
    num_out: int
    identity: int | None = None

    @property
    def kernel_volume(self) -> int:
        return self.splits.numel() - 1

    @property
    def num_pairs(self) -> int:
        """Stored pairs plus the implicit identity pairs."""
        return int(self.splits[-1]) + (self.num_in if self.identity is not None else 0)

    def transposed(self) -> KernelMap:
        """The same pairs with inputs and outputs swapped (for transposed convolutions)."""
        return KernelMap(
            self.out_idx, self.in_idx, self.splits, self.num_out, self.num_in, self.identity
        )

    def pairs(self, k: int) -> tuple[Tensor, Tensor]:
        """``(in_idx, out_idx)`` of kernel offset ``k`` (identity pairs are materialised)."""
        if k == self.identity:
            ar = torch.arange(self.num_in, device=self.in_idx.device)
            return ar, ar
        a, b = self.splits[k : k + 2].tolist()
        return self.in_idx[a:b], self.out_idx[a:b]

    def nbytes(self) -> int:
        return self.in_idx.numel() * self.in_idx.element_size() * 2


# ----------------------------------------------------------------------------------------
# Map construction. Each builder is a ``torch.library`` custom op (its pair counts and
# output sites depend on the data), so ``torch.compile`` and ``torch.export`` see one call
# with data-dependent sizes instead of Python branches and splits.


def _is_sorted(keys: Tensor) -> bool:
    return keys.numel() < 2 or bool((keys[1:] > keys[:-1]).all())


def _sorted_keys(coords: Tensor) -> tuple[Tensor, Tensor | None]:
    """Sorted keys of ``coords`` and the permutation that sorted them (``None``: already)."""
    keys = encode(coords)  # [N]
    if _is_sorted(keys):
        return keys, None
    sk, perm = keys.sort()
    return sk, perm


def _lookup(sorted_keys: Tensor, queries: Tensor) -> tuple[Tensor, Tensor]:
    """Rows ``q`` of ``queries`` found in ``sorted_keys`` and their positions there."""
    n = sorted_keys.numel()
    pos = torch.searchsorted(sorted_keys, queries)  # [Q]
    pos.clamp_(max=max(n - 1, 0))
    hit = sorted_keys[pos] == queries if n else torch.zeros_like(queries, dtype=torch.bool)
    q = hit.nonzero().squeeze(1)  # [H]
    return q, pos[q]


def _splits(counts: list[int]) -> Tensor:
    """[K + 1] CPU ``int64`` running sums of the per-offset pair counts."""
    splits = [0]
    for c in counts:
        splits.append(splits[-1] + c)
    return torch.tensor(splits, dtype=torch.long)


def _concat(ins: list[Tensor], outs: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    return torch.cat(ins), torch.cat(outs), _splits([t.numel() for t in ins])


def _pairs_fake(like: Tensor, num_pairs: Any, kernel_volume: int) -> tuple[Tensor, ...]:
    long = torch.long
    return (
        like.new_empty((num_pairs,), dtype=long),
        like.new_empty((num_pairs,), dtype=long),
        torch.empty(kernel_volume + 1, dtype=long, device="cpu"),
    )


@torch.library.custom_op("lightning_pc::sparse_submanifold_map", mutates_args=())
def submanifold_pairs(
    coords: Tensor, kernel_size: int, dilation: int
) -> tuple[Tensor, Tensor, Tensor]:
    """``(in_idx, out_idx, splits)`` of :func:`submanifold_map` (identity pairs not stored)."""
    sk, perm = _sorted_keys(coords)
    offsets = kernel_offsets(kernel_size, dilation)
    kv = len(offsets)
    ins: list[Tensor] = [sk.new_zeros(0)] * kv
    outs: list[Tensor] = [sk.new_zeros(0)] * kv
    symmetric = kernel_size % 2 == 1
    centre = identity_index(kernel_size)
    for k in range(kv // 2) if symmetric else range(kv):
        if k == centre:
            continue
        o, i = _lookup(sk, sk + delta(offsets[k]))  # out site o reads its neighbour i at o + d
        if perm is not None:
            o, i = perm[o], perm[i]
        ins[k], outs[k] = i, o
        if symmetric:  # offset -d: site i reads o
            ins[kv - 1 - k], outs[kv - 1 - k] = o, i
    return _concat(ins, outs)


@submanifold_pairs.register_fake
def _submanifold_pairs_fake(
    coords: Tensor, kernel_size: int, dilation: int
) -> tuple[Tensor, Tensor, Tensor]:
    num_pairs = torch.library.get_ctx().new_dynamic_size()
    return _pairs_fake(coords, num_pairs, kernel_size**3)  # type: ignore[return-value]


def submanifold_map(coords: Tensor, kernel_size: int, dilation: int = 1) -> KernelMap:
    """Map of a stride-1 convolution whose outputs are its input sites.

    Args:
        coords: [N, 4] ``(b, x, y, z)`` sites, distinct.
        kernel_size: cubic kernel size (odd sizes use the half-offset symmetry).
        dilation: spacing of the kernel taps.
    """
    n = coords.size(0)
    in_idx, out_idx, splits = submanifold_pairs(coords, kernel_size, dilation)
    return KernelMap(in_idx, out_idx, splits, n, n, identity_index(kernel_size))


def _tiles(kernel_size: int, stride: int, dilation: int) -> bool:
    """Whether the taps are ``0 .. stride - 1``: each input feeds exactly one output."""
    return kernel_size == stride and (kernel_size - 1) // 2 == 0 and dilation == 1


@torch.library.custom_op("lightning_pc::sparse_downsample_map", mutates_args=())
def downsample_pairs(
    coords: Tensor, kernel_size: int, stride: int, dilation: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(in_idx, out_idx, splits, out_coords)`` of :func:`downsample_map`."""
    c = coords.long()
    coarse = c.clone()
    coarse[:, 1:] = torch.div(c[:, 1:], stride, rounding_mode="floor")
    out_keys, inverse = torch.unique(encode(coarse), return_inverse=True)  # [M], [N]
    out_coords = decode(out_keys)  # [M, 4]
    if _tiles(kernel_size, stride, dilation):
        r = c[:, 1:] - coarse[:, 1:] * stride  # [N, 3] in [0, stride)
        kidx = (r[:, 0] * stride + r[:, 1]) * stride + r[:, 2]  # [N]
        order = torch.argsort(kidx, stable=True)  # [N]
        counts = torch.bincount(kidx, minlength=stride**3).tolist()
        return order, inverse[order], _splits(counts), out_coords
    sk, perm = _sorted_keys(c)
    base = out_coords.clone()
    base[:, 1:] *= stride
    base_keys = encode(base)  # [M], sorted
    ins, outs = [], []
    for d in kernel_offsets(kernel_size, dilation):
        o, i = _lookup(sk, base_keys + delta(d))
        ins.append(perm[i] if perm is not None else i)
        outs.append(o)
    in_idx, out_idx, splits = _concat(ins, outs)
    return in_idx, out_idx, splits, out_coords


@downsample_pairs.register_fake
def _downsample_pairs_fake(
    coords: Tensor, kernel_size: int, stride: int, dilation: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    ctx = torch.library.get_ctx()
    num_out = ctx.new_dynamic_size()
    tiles = _tiles(kernel_size, stride, dilation)
    num_pairs = coords.size(0) if tiles else ctx.new_dynamic_size()
    in_idx, out_idx, splits = _pairs_fake(coords, num_pairs, kernel_size**3)
    return in_idx, out_idx, splits, coords.new_empty((num_out, 4), dtype=torch.long)


def downsample_map(
    coords: Tensor, kernel_size: int, stride: int, dilation: int = 1
) -> tuple[KernelMap, Tensor]:
    """Map of a strided convolution and its output sites ``unique(floor(coords / stride))``.

    Output site ``o`` reads the inputs at ``o * stride + d`` for the kernel offsets ``d`` of
    :func:`kernel_offsets`: the taps of ``conv3d(stride=stride, padding=(k - 1) // 2 *
    dilation)``. With ``kernel_size == stride == 2`` the taps ``0, 1`` tile the grid, so each
    input belongs to exactly one output (kernel index ``c mod 2``) and no search is needed.

    Args:
        coords: [N, 4] ``(b, x, y, z)`` input sites, distinct.

    Returns:
        The map and the output coords [M, 4] (sorted by key).
    """
    in_idx, out_idx, splits, out_coords = downsample_pairs(coords, kernel_size, stride, dilation)
    kmap = KernelMap(in_idx, out_idx, splits, coords.size(0), out_coords.size(0), None)
    return kmap, out_coords
