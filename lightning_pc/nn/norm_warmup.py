r"""Batch-norm running statistics that are right from the first training step.

A batch norm's running statistics start at mean 0 and variance 1 and move towards the
batch statistics by ``momentum`` (0.1) per step. Where a layer's true variance is far from
1 (the first layer of PointNet++ sees neighbour offsets within a ball of radius 0.2: its
output variance is about 0.002), the running variance keeps ``0.9^t`` of the initial 1.0
after ``t`` steps and stays wrong for tens of steps, so the network in eval mode (which
normalises with the running statistics) predicts one class for the first epochs while the
same weights in train mode are right.

The warm-up here replaces the first updates by the cumulative average of the batch
statistics seen so far: the factor of the ``t``-th update (``t = 1, 2, ...``, counted by
the layer's ``num_batches_tracked``) is

.. math::
    f_t = \max(1 / t, \mathrm{momentum}),

so the first update *sets* the statistics to those of the first batch, the next ones
average, and from ``t = 1 / momentum`` on the update is the usual exponential one. The
initial values 0 and 1 never enter. This is the cumulative moving average that PyTorch
uses for ``momentum=None``, ended where it would weigh new batches less than the
exponential average does (PointNet++'s TensorFlow release gets the same effect by starting
the momentum at 0.5 and lowering it on a schedule).

It works on whatever the network's layers did during the step (``nn.BatchNorm*``,
``SyncBatchNorm``, the fused kernels of :mod:`lightning_pc.nn.fused`, compiled or not): the
running statistics are kept before the step and the step's update is rescaled after it,
``running = before + (f_t / m_k) (after - before)``, where ``m_k = 1 - (1 - momentum)^k``
is the weight that ``k`` updates by ``momentum`` gave the step's batches (``k`` is
usually 1). Layers past the warm-up, without running statistics, or with
``momentum=None`` are left alone. The state lives in the layers' own buffers, so a run
resumed from a checkpoint continues exactly.

>>> warmup = BatchNormWarmup()
>>> warmup.before_step(model)   # doctest: +SKIP
>>> loss = criterion(model(batch), y)   # doctest: +SKIP
>>> warmup.after_step()   # doctest: +SKIP
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

_BatchNorm = nn.modules.batchnorm._BatchNorm


def _warming(module: nn.Module) -> bool:
    """Whether ``module`` is a batch norm whose next update is still a warm-up one."""
    if not isinstance(module, _BatchNorm) or module.momentum is None:
        return False
    tracked = module.num_batches_tracked
    if module.running_mean is None or module.running_var is None or tracked is None:
        return False
    return 0 < module.momentum < 1 and int(tracked) * module.momentum < 1


class BatchNormWarmup:
    """Cumulative-average warm-up of every batch norm's running statistics in a network.

    Call :meth:`before_step` before a training forward pass and :meth:`after_step` after
    it (and after anything that may put the buffers back, such as a skipped batch). Both
    do nothing once every layer is past its warm-up (``1 / momentum`` updates: 10 by
    default).
    """

    def __init__(self) -> None:
        self._saved: list[tuple[_BatchNorm, int, Tensor, Tensor]] = []

    def before_step(self, model: nn.Module) -> None:
        """Keep the running statistics of the layers still warming up."""
        self._saved = [
            (m, int(m.num_batches_tracked), m.running_mean.clone(), m.running_var.clone())  # type: ignore[arg-type, union-attr]
            for m in model.modules()
            if _warming(m)
        ]

    @torch.no_grad()
    def after_step(self) -> None:
        """Rescale the update of this step to the cumulative average (see the module)."""
        for norm, before, mean0, var0 in self._saved:
            after = int(norm.num_batches_tracked)  # type: ignore[arg-type]
            k = after - before
            if k <= 0:  # not run this step, or its buffers were put back
                continue
            momentum = float(norm.momentum)  # type: ignore[arg-type]
            given = 1.0 - (1.0 - momentum) ** k
            wanted = max(k / after, given)
            scale = wanted / given
            for running, saved in ((norm.running_mean, mean0), (norm.running_var, var0)):
                assert running is not None
                running.sub_(saved).mul_(scale).add_(saved)
        self._saved = []
