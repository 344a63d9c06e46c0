"""Sparse convolution in pure PyTorch: sparse tensor, kernel maps, convolutions, norm, pooling.

No compiled extension: kernel maps come from sorted 64-bit keys and ``searchsorted``, the
convolutions are gather-GEMM-scatter with a memory-lean custom backward. Exact: equal to
dense ``conv3d`` / ``conv_transpose3d`` read at the sites.

Voxelisation, the coordinate check, the kernel-map builders and the convolution (forward and
backward) are ``torch.library`` custom ops (``torch.ops.lightning_pc.sparse_*``) whose fake
kernels give the data-dependent sizes through ``new_dynamic_size()``: ``torch.compile``
traces a sparse network as one graph and ``torch.export`` exports it, with the input checks
still running inside the ops.
"""

from lightning_pc.nn.sparse.activation import SparseReLU
from lightning_pc.nn.sparse.conv import SparseConv3d, SparseConvTranspose3d, sparse_conv
from lightning_pc.nn.sparse.kernel_map import (
    KernelMap,
    decode,
    downsample_map,
    encode,
    kernel_offsets,
    submanifold_map,
)
from lightning_pc.nn.sparse.norm import SparseBatchNorm
from lightning_pc.nn.sparse.pool import global_max_pool, global_mean_pool, global_pool
from lightning_pc.nn.sparse.tensor import MapCache, SparseTensor, devoxelize, voxelize

__all__ = [
    "KernelMap",
    "MapCache",
    "SparseBatchNorm",
    "SparseConv3d",
    "SparseConvTranspose3d",
    "SparseReLU",
    "SparseTensor",
    "decode",
    "devoxelize",
    "downsample_map",
    "encode",
    "global_max_pool",
    "global_mean_pool",
    "global_pool",
    "kernel_offsets",
    "sparse_conv",
    "submanifold_map",
    "voxelize",
]
