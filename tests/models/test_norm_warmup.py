"""The batch-norm warm-up: early updates with the scheduled factor, the usual one after."""

from __future__ import annotations

import copy

import torch
from torch import nn

from lightning_pc.models import create_model
from lightning_pc.nn.norm_warmup import BatchNormWarmup, warmup_factor
from tests.models.shapes import make_batch

TINY = dict(num_samples=[[8], [8]], sa_mlps=[[[8, 8]], [[16]]], global_mlp=[16], head=[16])


def norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def batches(n: int) -> list:
    return [make_batch([40 + 4 * i, 48, 36], kinds=[i % 4, (i + 1) % 4, 2]) for i in range(n)]


@torch.no_grad()
def test_updates_follow_the_schedule_then_the_layer_momentum() -> None:
    """The oracle sets each layer's momentum to the scheduled factor before each step; the
    warm-up reaches the same statistics by rescaling whatever the layers did, here through
    PointNet++'s fused CPU kernels and ``nn.BatchNorm1d`` alike."""
    torch.manual_seed(0)
    model = create_model("pointnet2_ssg", num_classes=4, random_start=False, **TINY).train()
    oracle = copy.deepcopy(model)
    assert warmup_factor(1, 0.1) == 1.0 and warmup_factor(46, 0.1) > 0.1
    assert warmup_factor(47, 0.1) == 0.1
    warmup = BatchNormWarmup()
    for t, batch in enumerate(batches(46), start=1):
        warmup.before_step(model)
        model(batch)
        warmup.after_step()
        for m in norms(oracle):
            m.momentum = warmup_factor(t, 0.1)
        oracle(batch)
    for ours, theirs in zip(norms(model), norms(oracle), strict=True):
        assert int(ours.num_batches_tracked) == 46  # type: ignore[arg-type]
        torch.testing.assert_close(ours.running_mean, theirs.running_mean)
        torch.testing.assert_close(ours.running_var, theirs.running_var)
    # past the warm-up: the layer's own exponential update, untouched
    plain = copy.deepcopy(model)
    batch = batches(47)[-1]
    warmup.before_step(model)
    model(batch)
    warmup.after_step()
    plain(batch)
    for ours, theirs in zip(norms(model), norms(plain), strict=True):
        assert torch.equal(ours.running_var, theirs.running_var)


@torch.no_grad()
def test_first_step_sets_the_batch_statistics() -> None:
    torch.manual_seed(0)
    norm = nn.BatchNorm1d(3).train()
    x = torch.randn(64, 3) * 0.05 + 2.0  # variance far from the initial 1.0
    warmup = BatchNormWarmup()
    warmup.before_step(norm)
    norm(x)
    warmup.after_step()
    torch.testing.assert_close(norm.running_mean, x.mean(0))
    torch.testing.assert_close(norm.running_var, x.var(0))


@torch.no_grad()
def test_put_back_buffers_and_other_layers_are_left_alone() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.BatchNorm1d(4, momentum=None))
    model[2].momentum = None
    x = torch.randn(32, 3)
    warmup = BatchNormWarmup()
    # a skipped batch: the task puts the buffers back before the warm-up's second half
    saved = [b.clone() for b in model.buffers()]
    warmup.before_step(model)
    model(x)
    for buffer, value in zip(model.buffers(), saved, strict=True):
        buffer.copy_(value)
    warmup.after_step()
    assert all(torch.equal(b, v) for b, v in zip(model.buffers(), saved, strict=True))
    # a layer past its warm-up (a loaded checkpoint, say) and a momentum=None layer
    model[1].num_batches_tracked.fill_(60)
    plain = copy.deepcopy(model)
    warmup.before_step(model)
    model(x)
    warmup.after_step()
    plain(x)
    for ours, theirs in zip(model.buffers(), plain.buffers(), strict=True):
        assert torch.equal(ours, theirs)
