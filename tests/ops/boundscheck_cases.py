"""Runs every numba kernel over hostile clouds; meant for ``NUMBA_BOUNDSCHECK=1``.

numba compiles without bounds checks, so an index past an array is silent heap corruption
(the crash of ``fps(torch.randn(1024, 3))`` was one). Under ``NUMBA_BOUNDSCHECK=1`` (and a
fresh ``NUMBA_CACHE_DIR``, so nothing compiled without checks is reused) every such index
raises ``IndexError`` instead. ``tests/ops/test_boundscheck.py`` runs this module in a
subprocess; ``python -m tests.ops.boundscheck_cases`` runs it by hand.
"""

from __future__ import annotations

import os
import sys

import numba
import numpy as np
import torch

from lightning_pc import ops
from tests.ops.hostile import KINDS, layout


@numba.njit
def _probe(a: np.ndarray, i: int) -> float:
    return a[i]


def bounds_checked() -> bool:
    """Whether out-of-bounds indexing raises in this process (the mode is really on)."""
    try:
        _probe(np.zeros(2), 5)
    except IndexError:
        return True
    return False


def run_ops() -> int:
    cases = 0
    size_sets = [[0], [1], [2, 0, 3], [600], [1024, 1, 0, 200], [5000]]
    for kind in KINDS:
        for sizes in size_sets:
            for shuffle in (False, True):
                pos, batch = layout(kind, sizes, seed=len(sizes) + sum(sizes), shuffle=shuffle)
                nb = len(sizes)
                scale = float(pos.abs().max()) if pos.numel() else 1.0
                ops.fps(pos, batch, 0.25, batch_size=nb, backend="numba")
                ops.fps(pos, batch, 1.0, random_start=False, batch_size=nb, backend="numba")
                ops.knn(pos, pos[::3], 5, batch, batch[::3], batch_size=nb, backend="numba")
                ops.knn_graph(pos, 16, batch, batch_size=nb, backend="numba")
                for r in (1e-3, 0.1, 1.0):
                    ops.radius(pos, pos[::2], r * max(scale, 1e-30), batch, batch[::2], 16,
                               batch_size=nb, backend="numba")
                if pos.numel():
                    try:
                        ops.grid_cluster(pos, 0.05 * max(scale, 1e-30), backend="numba")
                    except ValueError:
                        pass  # more than 2**63 voxels: refused before any kernel runs
                cases += 1
    return cases


def run_fused() -> int:
    """The fused batch-norm kernels of PointNet++ (training mode, forward and backward)."""
    from lightning_pc.nn import fused
    from lightning_pc.nn.pointnet2 import GlobalSetAbstraction, SetAbstraction

    fused.FUSE_MIN_NUMEL = 0
    torch.manual_seed(0)
    sa = SetAbstraction(0, 0.25, [0.2, 0.4], [8, 16], [[16, 32], [16, 32]]).train()
    glob = GlobalSetAbstraction(sa.out_channels, [32, 64]).train()
    cases = 0
    for kind in ("gaussian", "heavy_tailed", "clusters", "identical", "chain"):
        for sizes in ([300, 1, 50], [2, 2], [800]):
            pos, batch = layout(kind, sizes, seed=3)
            pos = pos / max(float(pos.abs().max()), 1e-30)
            ptr = torch.zeros(len(sizes) + 1, dtype=torch.long)
            ptr[1:] = torch.tensor(sizes).cumsum(0)
            x, pos_c, _, ptr_c = sa(None, pos, batch, ptr)
            out = glob(x, pos_c, ptr_c)
            out.square().sum().backward()
            cases += 1
    return cases


def main() -> int:
    if not bounds_checked():
        print("bounds checking is off: set NUMBA_BOUNDSCHECK=1", file=sys.stderr)
        return 2
    os.environ.setdefault("LIGHTNING_PC_FUSED", "always")
    n = run_ops()
    m = run_fused()
    print(f"boundscheck cases: {n} op layouts, {m} fused layouts, no index out of bounds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
