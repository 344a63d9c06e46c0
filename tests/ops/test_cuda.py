"""The neighbour ops on CUDA agree with the CPU (skipped without a GPU).

Apart from the other ops tests, which import torch-cluster as their oracle: these run on a
GPU machine without it (the pure-torch backend then serves CUDA), as ``make gpu-check`` does.
"""

from __future__ import annotations

import pytest
import torch

from lightning_pc import ops
from tests.ops.shapes import batch_of_clouds, edge_set


@pytest.mark.gpu
def test_cuda_matches_cpu():
    x, bx = batch_of_clouds([2000, 1500], seed=13)
    y, by = batch_of_clouds([500, 400], seed=14)
    cpu_knn = ops.knn(x, y, 16, bx, by)
    cuda_knn = ops.knn(x.cuda(), y.cuda(), 16, bx.cuda(), by.cuda()).cpu()
    assert edge_set(cpu_knn) == edge_set(cuda_knn)
    cpu_r = ops.radius(x, y, 0.2, bx, by, 32)
    for b in ("torch", None):
        cuda_r = ops.radius(x.cuda(), y.cuda(), 0.2, bx.cuda(), by.cuda(), 32, backend=b).cpu()
        assert edge_set(cpu_r) == edge_set(cuda_r)


@pytest.mark.gpu
def test_fps_cuda_matches_cpu():
    x, bx = batch_of_clouds([2048, 1024], seed=30)
    cpu = ops.fps(x, bx, 0.25, random_start=False)
    for b in ("torch", None):
        assert torch.equal(
            ops.fps(x.cuda(), bx.cuda(), 0.25, random_start=False, backend=b).cpu(), cpu
        )
