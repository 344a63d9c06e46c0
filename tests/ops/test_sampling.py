"""fps: identical to torch-cluster without random start, ceil(n * ratio) per cloud,
reproducible random start."""

from __future__ import annotations

import math

import pytest
import torch
import torch_cluster

from lightning_pc import ops
from lightning_pc.ops import _backend
from tests.ops.shapes import batch_of_clouds

CPU_BACKENDS = [*_backend.names("fps"), None]  # None: automatic choice


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_fps_identical_to_torch_cluster(backend):
    x, bx = batch_of_clouds([1024, 700, 333, 1], seed=20)
    ours = ops.fps(x, bx, 0.25, random_start=False, backend=backend)
    theirs = torch_cluster.fps(x, bx, 0.25, random_start=False)
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_fps_single_large_cloud_identical(backend):
    x, _ = batch_of_clouds([5000], seed=21)
    ours = ops.fps(x, ratio=0.05, random_start=False, backend=backend)
    assert torch.equal(ours, torch_cluster.fps(x, None, 0.05, random_start=False))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("ratio", [0.1, 0.3, 0.5, 0.77, 1.0])
def test_fps_keeps_ceil_n_ratio_per_cloud(backend, ratio):
    sizes = [1000, 37, 5, 256]
    x, bx = batch_of_clouds(sizes, seed=22)
    idx = ops.fps(x, bx, ratio, backend=backend)
    got = torch.bincount(bx[idx], minlength=len(sizes)).tolist()
    assert got == [math.ceil(torch.tensor(n * ratio, dtype=torch.float32).item()) for n in sizes]
    assert got == torch.bincount(bx[torch_cluster.fps(x, bx, ratio)], minlength=4).tolist()
    for b in range(len(sizes)):  # distinct points, each from its own cloud
        picked = idx[bx[idx] == b]
        assert picked.unique().numel() == picked.numel()


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_fps_per_cloud_ratio_tensor(backend):
    x, bx = batch_of_clouds([100, 100], seed=23)
    idx = ops.fps(x, bx, torch.tensor([0.1, 0.5]), backend=backend)
    assert torch.bincount(bx[idx]).tolist() == [10, 50]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_fps_random_start_obeys_manual_seed(backend):
    x, bx = batch_of_clouds([500, 400, 300], seed=24)
    torch.manual_seed(0)
    a = ops.fps(x, bx, 0.1, random_start=True, backend=backend)
    torch.manual_seed(0)
    b = ops.fps(x, bx, 0.1, random_start=True, backend=backend)
    torch.manual_seed(1)
    c = ops.fps(x, bx, 0.1, random_start=True, backend=backend)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_fps_random_start_same_on_every_backend():
    x, bx = batch_of_clouds([600, 300], seed=25)
    results = []
    for b in CPU_BACKENDS:
        torch.manual_seed(7)
        results.append(ops.fps(x, bx, 0.2, random_start=True, backend=b))
    assert all(torch.equal(r, results[0]) for r in results)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_fps_is_farthest_point_order(backend):
    x, _ = batch_of_clouds([400], seed=26)
    idx = ops.fps(x, ratio=0.1, random_start=False, backend=backend)
    # every pick maximises the distance to the picks before it
    for i in range(1, idx.numel()):
        d = torch.cdist(x, x[idx[:i]]).min(dim=1).values
        assert torch.isclose(d[idx[i]], d.max())


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_fps_unsorted_batch_and_ptr(backend):
    x, bx = batch_of_clouds([200, 150], seed=27)
    sorted_idx = ops.fps(x, bx, 0.2, random_start=False, backend=backend)
    # interleave the two clouds, keeping each cloud's own point order
    within = torch.cat([torch.arange(200), torch.arange(150)])
    perm = torch.argsort(within * 2 + bx, stable=True)
    assert not bool((bx[perm][1:] >= bx[perm][:-1]).all())
    shuffled_idx = ops.fps(x[perm], bx[perm], 0.2, random_start=False, backend=backend)
    assert torch.equal(perm[shuffled_idx], sorted_idx)
    ptr = torch.tensor([0, 200, 350])
    assert torch.equal(
        ops.fps(x, ptr=ptr, ratio=0.2, random_start=False, backend=backend), sorted_idx
    )


def test_fps_bad_arguments():
    x, bx = batch_of_clouds([10], seed=28)
    for r in (0.0, -0.5, 1.5):
        with pytest.raises(ValueError, match="ratio"):
            ops.fps(x, bx, r)
    with pytest.raises(ValueError, match="either batch or ptr"):
        ops.fps(x, bx, 0.5, ptr=torch.tensor([0, 10]))


def test_fps_empty_cloud_in_batch():
    x, _ = batch_of_clouds([30, 20], seed=29)
    bx = torch.tensor([0] * 30 + [2] * 20)  # cloud 1 is empty
    idx = ops.fps(x, bx, 0.5, random_start=True)
    assert torch.bincount(bx[idx], minlength=3).tolist() == [15, 0, 10]
