"""The branch-free batch norm that compiled sparse networks use equals the eager one."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from lightning_pc.nn.mlp import batch_norm_rows
from lightning_pc.nn.sparse.norm import _site_batch_norm


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("rows", [1, 2, 7])
@pytest.mark.parametrize("training", [True, False])
def test_site_batch_norm_equals_batch_norm_rows(rows, training, momentum):
    """Outputs, input and affine gradients, running statistics and the batch counter, over
    three steps (one site: running statistics, left unchanged, as in eager)."""
    torch.manual_seed(rows)
    eager = nn.BatchNorm1d(5, momentum=momentum)
    with torch.no_grad():
        eager.weight.uniform_(0.5, 1.5)
        eager.bias.uniform_(-0.5, 0.5)
        eager.running_mean.uniform_(-1, 1)
        eager.running_var.uniform_(0.5, 2)
    branch_free = copy.deepcopy(eager)
    for bn in (eager, branch_free):
        bn.train(training)
    for step in range(3):
        h = (torch.randn(rows, 5) * 2 + step).requires_grad_()
        g = torch.randn(rows, 5)
        outs = []
        for bn, fn in ((eager, batch_norm_rows), (branch_free, _site_batch_norm)):
            x = h.detach().clone().requires_grad_()
            out = fn(bn, x)
            out.backward(g)
            outs.append((out.detach(), x.grad, bn.weight.grad.clone(), bn.bias.grad.clone()))
            bn.zero_grad()
        for a, b in zip(*outs, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(eager.running_mean, branch_free.running_mean)
        torch.testing.assert_close(eager.running_var, branch_free.running_var)
        assert int(eager.num_batches_tracked) == int(branch_free.num_batches_tracked)
