"""The sparse tensor: voxel sites with a batch index, their features and their stride.

Sites are integer coordinates ``(b, x, y, z)`` on the grid of their own level: a tensor at
stride 4 holds ``floor(voxel / 4)``. Tensors derived from one voxelisation share a
:class:`MapCache`, so kernel maps are built once per stride level and reused by every layer
of that level and by the transposed convolutions that come back to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import torch
from torch import Tensor

from lightning_pc.nn.sparse.kernel_map import (
    KernelMap,
    check_coords,
    checked_coords,
    decode,
    downsample_map,
    encode,
    submanifold_map,
)

Reduce = Literal["mean", "max", "first"]


@dataclass
class MapCache:
    """Sites per stride level and kernel maps, shared by the tensors of one forward pass."""

    coords: dict[int, Tensor] = field(default_factory=dict)
    maps: dict[tuple, KernelMap] = field(default_factory=dict)

    def submanifold(self, stride: int, kernel_size: int, dilation: int) -> KernelMap:
        """Submanifold map of the sites at ``stride`` (built on first use)."""
        key = ("sub", stride, kernel_size, dilation)
        if key not in self.maps:
            self.maps[key] = submanifold_map(self.coords[stride], kernel_size, dilation)
        return self.maps[key]

    def downsample(self, stride: int, kernel_size: int, factor: int, dilation: int) -> KernelMap:
        """Map from the sites at ``stride`` to those at ``stride * factor`` (which it defines)."""
        key = ("down", stride, kernel_size, factor, dilation)
        if key not in self.maps:
            kmap, out_coords = downsample_map(self.coords[stride], kernel_size, factor, dilation)
            coarse = stride * factor
            if coarse in self.coords:
                # Another downsampling made this level: same sites (both are the sorted
                # ``unique(floor(c / coarse))``); keep the tensors that already use them.
                if not torch.compiler.is_compiling() and not torch.equal(
                    self.coords[coarse], out_coords
                ):
                    raise ValueError(
                        f"sites at stride {coarse} were already made by another downsampling"
                    )
                kmap = replace(kmap, num_out=self.coords[coarse].size(0))
            else:
                self.coords[coarse] = out_coords
            self.maps[key] = kmap
        return self.maps[key]


class SparseTensor:
    """Features on sparse voxel sites.

    Args:
        coords: [N, 4] ``int64`` sites ``(b, x, y, z)`` on the grid of this stride, distinct.
        feats: [N, C] features.
        stride: grid spacing in voxels of the finest level (1, 2, 4, ...).
        cache: shared maps; a new one is made when omitted.
    """

    def __init__(
        self, coords: Tensor, feats: Tensor, stride: int = 1, cache: MapCache | None = None
    ) -> None:
        if feats.dim() != 2 or feats.size(0) != coords.size(0):
            raise ValueError(
                f"expected feats [N, C] with N = {coords.size(0)}, got {tuple(feats.shape)}"
            )
        if cache is None:
            cache = MapCache()
            cache.coords[stride] = checked_coords(coords)
        self.coords = coords  # [N, 4]
        self.feats = feats  # [N, C]
        self.stride = stride
        self.cache = cache

    @property
    def num_sites(self) -> int:
        return self.coords.size(0)

    @property
    def batch(self) -> Tensor:
        """[N] cloud index of every site."""
        return self.coords[:, 0]

    def replace(self, feats: Tensor) -> SparseTensor:
        """Same sites, new features [N, C']."""
        return SparseTensor(self.coords, feats, self.stride, self.cache)

    def dense(self, shape: tuple[int, int, int], batch_size: int) -> Tensor:
        """Dense [B, C, X, Y, Z] tensor with zeros off the sites (tests and debugging)."""
        out = self.feats.new_zeros(batch_size, *shape, self.feats.size(1))
        c = self.coords
        out[c[:, 0], c[:, 1], c[:, 2], c[:, 3]] = self.feats
        return out.permute(0, 4, 1, 2, 3).contiguous()

    def __repr__(self) -> str:
        return (
            f"SparseTensor(sites={self.num_sites}, channels={self.feats.size(1)}, "
            f"stride={self.stride})"
        )


def _segment_first(inverse: Tensor, m: int) -> Tensor:
    """[M] index of the first row of each of the ``m`` segments of ``inverse`` [N]."""
    n = inverse.numel()
    first = torch.full((m,), n, dtype=torch.long, device=inverse.device)
    ar = torch.arange(n, device=inverse.device)
    return first.scatter_reduce_(0, inverse, ar, reduce="amin", include_self=True)


@torch.library.custom_op("lightning_pc::sparse_voxel_sites", mutates_args=())
def voxel_sites(coords: Tensor) -> tuple[Tensor, Tensor]:
    """Distinct sites [M, 4] of the voxel coordinates ``coords`` [N, 4] ``(b, x, y, z)``,
    sorted by key, and ``inverse`` [N], the site of each row.

    Raises:
        ValueError: coordinates outside the key's range (see :func:`check_coords`).
    """
    check_coords(coords)
    keys, inverse = torch.unique(encode(coords), return_inverse=True)  # [M], [N]
    return decode(keys), inverse


@voxel_sites.register_fake
def _voxel_sites_fake(coords: Tensor) -> tuple[Tensor, Tensor]:
    num_sites = torch.library.get_ctx().new_dynamic_size()
    long = torch.long
    return coords.new_empty((num_sites, 4), dtype=long), coords.new_empty(
        (coords.size(0),), dtype=long
    )


def voxelize(
    pos: Tensor,
    feats: Tensor,
    batch: Tensor | None,
    voxel_size: float,
    reduce: Reduce = "mean",
) -> tuple[SparseTensor, Tensor]:
    """Voxelises packed points into a stride-1 sparse tensor.

    Args:
        pos: [N, 3] point coordinates.
        feats: [N, C] point features, reduced per voxel.
        batch: [N] cloud index (all zeros when ``None``).
        voxel_size: edge length of a voxel, in the units of ``pos``.
        reduce: ``"mean"``, ``"max"`` or ``"first"`` (the lowest point index in the voxel).

    Returns:
        The sparse tensor (sites sorted by key) and ``inverse`` [N], the site of each point.
    """
    if batch is None:
        batch = torch.zeros(pos.size(0), dtype=torch.long, device=pos.device)
    grid = torch.floor(pos / voxel_size).long()  # [N, 3]
    coords = torch.cat([batch.long().view(-1, 1), grid], dim=1)  # [N, 4]
    sites, inverse = voxel_sites(coords)  # [M, 4], [N]
    m = sites.size(0)
    if reduce == "first":
        vfeats = feats[_segment_first(inverse, m)]
    elif reduce in ("mean", "max"):
        idx = inverse.view(-1, 1).expand_as(feats)
        vfeats = feats.new_zeros(m, feats.size(1)).scatter_reduce(
            0, idx, feats, reduce="mean" if reduce == "mean" else "amax", include_self=False
        )
    else:
        raise ValueError(f"reduce must be 'mean', 'max' or 'first', got {reduce!r}")
    cache = MapCache()
    cache.coords[1] = sites  # checked already
    return SparseTensor(sites, vfeats, 1, cache), inverse


def devoxelize(x: SparseTensor, inverse: Tensor) -> Tensor:
    """Features of every original point: ``x.feats[inverse]`` [N, C] (``x`` at stride 1)."""
    if x.stride != 1:
        raise ValueError(f"devoxelize needs the stride-1 tensor, got stride {x.stride}")
    return x.feats.index_select(0, inverse)
