r"""Batch-norm running statistics that are right from the first training step.

A batch norm's running statistics start at mean 0 and variance 1 and move towards the
batch statistics by ``momentum`` (0.1) per step. Where a layer's true variance is far from
1 (the first layer of PointNet++ sees neighbour offsets within a ball of radius 0.2: its
output variance is about 0.002), the running variance keeps ``0.9^t`` of the initial 1.0
after ``t`` steps and stays wrong for tens of steps, so the network in eval mode (which
normalises with the running statistics) predicts one class for the first epochs while the
same weights in train mode are right.

The warm-up here replaces the first updates: the factor of the ``t``-th update
(``t = 1, 2, ...``, counted by the layer's ``num_batches_tracked``) is

.. math::
    f_t = \max\big(1 / t,\; 0.5 \cdot 2^{-t / 20},\; \mathrm{momentum}\big),

so the first update *sets* the statistics to those of the first batch (the initial 0 and 1
never enter), and the next ones follow the batch statistics closely (a momentum of 0.5,
halved every 20 steps) while the weights still change fast, until the factor reaches the
layer's own ``momentum`` (after 46 steps for 0.1) and the usual exponential update takes
over. The start at 0.5 is PointNet++'s (the authors' TensorFlow release schedules the
batch-norm momentum from 0.5 down to 0.01); ``1 / t`` is the cumulative average that
PyTorch uses for ``momentum=None``.

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

from typing import cast

import torch
from torch import Tensor, nn

_BatchNorm = nn.modules.batchnorm._BatchNorm


#: momentum of the first updates (PointNet++'s initial batch-norm momentum)
START = 0.5
#: updates over which the early momentum halves
HALF_LIFE = 20.0


def warmup_factor(t: int, momentum: float) -> float:
    """Weight of the batch statistics in the ``t``-th update (``t >= 1``) of a layer with
    ``momentum``."""
    return max(1.0 / t, START * 0.5 ** (t / HALF_LIFE), momentum)


def _warming(module: nn.Module) -> bool:
    """Whether ``module`` is a batch norm whose next update is still a warm-up one."""
    if not isinstance(module, _BatchNorm) or module.momentum is None:
        return False
    tracked = module.num_batches_tracked
    if module.running_mean is None or module.running_var is None or tracked is None:
        return False
    momentum = float(module.momentum)
    return 0 < momentum < 1 and warmup_factor(int(tracked) + 1, momentum) > momentum


class BatchNormWarmup:
    """Warm-up of every batch norm's running statistics in a network (see the module).

    Call :meth:`before_step` before a training forward pass and :meth:`after_step` after
    it (and after anything that may put the buffers back, such as a skipped batch). Once
    no layer of the network is warming up (after 46 updates for the default momentum of
    0.1, or at once for a network loaded past them), both do nothing for good: no more
    reading of the layers' counters, which are on the accelerator.
    """

    def __init__(self) -> None:
        self._saved: list[tuple[_BatchNorm, int, Tensor, Tensor]] = []
        self._done = False

    def before_step(self, model: nn.Module) -> None:
        """Keep the running statistics of the layers still warming up."""
        self._saved = []
        if self._done:
            return
        for m in model.modules():
            if _warming(m):
                assert isinstance(m, _BatchNorm)
                mean, var = cast(Tensor, m.running_mean), cast(Tensor, m.running_var)
                tracked = int(cast(Tensor, m.num_batches_tracked))
                self._saved.append((m, tracked, mean.clone(), var.clone()))
        self._done = not self._saved

    @torch.no_grad()
    def after_step(self) -> None:
        """Rescale the update of this step to the warm-up factor (see the module)."""
        for norm, before, mean0, var0 in self._saved:
            after = int(cast(Tensor, norm.num_batches_tracked))
            k = after - before
            if k <= 0:  # not run this step, or its buffers were put back
                continue
            momentum = float(norm.momentum)  # type: ignore[arg-type]
            given = 1.0 - (1.0 - momentum) ** k
            # the k batches of this step weighed as one update, numbered ``after``
            wanted = max(k / after, warmup_factor(after, momentum), given)
            scale = wanted / given
            for running, saved in ((norm.running_mean, mean0), (norm.running_var, var0)):
                assert running is not None
                running.sub_(saved).mul_(scale).add_(saved)
        self._saved = []
