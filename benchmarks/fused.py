"""The fused CPU batch-norm kernels (``lightning_pc.nn.fused``) beside torch's own ops.

Run: ``flock /tmp/lpc-bench.lock .venv/bin/python benchmarks/fused.py``. The rows are the
three places PointNet++ SSG's first set abstraction level (32 clouds x 1024 surface points,
512 centres per cloud, ball radius 0.2, at most 32 neighbours: about 270k (centre,
neighbour) rows on these clouds) spends its time, each timed as forward + backward (median):

- ``BN + ReLU``: a hidden layer's norm and activation on ``[E, 64]`` rows;
- ``BN + max over balls``: the last layer's norm and the max over each ball, ``[E, 128]``;
- ``gathered first layer``: ``relu(BN(p[col] - q[row]))`` from the per-point and per-centre
  halves of the first linear map, ``[E, 64]``.

The peer is the same call with ``LIGHTNING_PC_IMPL_BATCH_NORM=torch`` (alias
``LIGHTNING_PC_FUSED=off``): ``torch.nn.BatchNorm1d``,
``F.relu``, ``index_select`` and our ``embedding_bag`` segment max, which is what the
networks run without the kernels. The end-to-end effect is the ``ours (torch BN ops)`` row
of ``benchmarks/train_step.py``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import clouds, fmt_ms, median_time, print_table  # noqa: E402

from lightning_pc.nn import fused  # noqa: E402
from lightning_pc.nn.segment import ptr_from_index  # noqa: E402
from lightning_pc.ops import fps, radius  # noqa: E402
from lightning_pc.ops._backend import KINDS  # noqa: E402


def _groups() -> tuple[torch.Tensor, torch.Tensor, int, int]:
    pos, batch = clouds(32, 1024)
    idx = fps(pos, batch, ratio=0.5)
    row, col = radius(pos, pos[idx], 0.2, batch, batch[idx], max_num_neighbors=32)
    return ptr_from_index(row, idx.numel()), col, pos.size(0), idx.numel()


def _time(make: Callable[[], torch.Tensor], impl: str) -> float:
    """Median forward + backward with the ``batch_norm`` kind's implementation ``impl``."""
    os.environ[KINDS["batch_norm"].env_var()] = impl

    def step() -> None:
        out = make()
        out.backward(torch.ones_like(out))

    return median_time(step, repeat=7, warmup=2)


def main() -> None:
    torch.manual_seed(0)
    rowptr, col, n, m = _groups()
    e = col.numel()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {e:,} rows, {m:,} balls")
    norm64, norm128 = nn.BatchNorm1d(64), nn.BatchNorm1d(128)
    h64 = torch.randn(e, 64, requires_grad=True)
    h128 = torch.randn(e, 128, requires_grad=True)
    p = torch.randn(n, 64, requires_grad=True)
    q = torch.randn(m, 64, requires_grad=True)
    cases: list[tuple[str, Callable[[], torch.Tensor]]] = [
        ("BN + ReLU [E, 64]", lambda: fused.batch_norm_act(norm64, h64, "relu")),
        (
            "BN + max over balls [E, 128]",
            lambda: fused.batch_norm_segment_max(norm128, h128, rowptr),
        ),
        (
            "gathered first layer [E, 64]",
            lambda: fused.gather_batch_norm_act(norm64, p, q, rowptr, col, "relu"),
        ),
    ]
    rows = []
    for name, make in cases:
        ours, peer = _time(make, "auto"), _time(make, KINDS["batch_norm"].reference)
        rows.append([name, fmt_ms(ours), fmt_ms(peer), f"{ours / peer:.2f}"])
    print_table(["op (forward + backward)", "fused ms", "torch ops ms", "fused / torch"], rows)


if __name__ == "__main__":
    main()
