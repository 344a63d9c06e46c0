"""The fused CPU batch norm kernels equal torch's BatchNorm1d + activation / segment max."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_pc.nn import fused
from lightning_pc.nn.mlp import SharedMLP
from lightning_pc.nn.segment import segment_max


@pytest.fixture(autouse=True)
def _always_fuse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fused, "FUSE_MIN_NUMEL", 0)


def _norm(channels: int, dtype: torch.dtype, momentum: float | None = 0.1) -> nn.BatchNorm1d:
    torch.manual_seed(1)
    norm = nn.BatchNorm1d(channels, momentum=momentum).to(dtype)
    with torch.no_grad():  # signs of both kinds, so that the max picks either end
        norm.weight.copy_(torch.randn(channels))
        norm.bias.copy_(torch.randn(channels))
        norm.running_mean.normal_()
        norm.running_var.uniform_(0.5, 2.0)
    return norm


def _reference(norm: nn.Module, h: torch.Tensor, act: str) -> torch.Tensor:
    z = norm(h)
    if act == "relu":
        return F.relu(z)
    if act == "leaky_relu":
        return F.leaky_relu(z, 0.2)
    return z


@pytest.mark.parametrize("act", ["relu", "leaky_relu", "identity"])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_batch_norm_act_equals_torch(act: str, momentum: float | None) -> None:
    norm = _norm(24, torch.float32, momentum)
    ref_norm = copy.deepcopy(norm)
    h = (torch.randn(5000, 24) * 3 + 2).requires_grad_()
    h_ref = h.detach().clone().requires_grad_()
    assert fused.fusable(norm, h)
    for _ in range(2):  # running statistics over two updates
        out = fused.batch_norm_act(norm, h, act)
        ref = _reference(ref_norm, h_ref, act)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    grad = torch.randn_like(out)
    out.backward(grad)
    ref.backward(grad)
    torch.testing.assert_close(h.grad, h_ref.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(norm.weight.grad, ref_norm.weight.grad, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(norm.bias.grad, ref_norm.bias.grad, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(norm.running_mean, ref_norm.running_mean)
    torch.testing.assert_close(norm.running_var, ref_norm.running_var)
    assert int(norm.num_batches_tracked) == int(ref_norm.num_batches_tracked) == 2


def test_batch_norm_segment_max_equals_torch() -> None:
    norm = _norm(16, torch.float32)
    ref_norm = copy.deepcopy(norm)
    lengths = torch.tensor([1, 7, 30, 2, 0, 11, 64])  # an empty segment gives 0
    ptr = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
    h = (torch.randn(int(lengths.sum()), 16) * 2 - 1).requires_grad_()
    h_ref = h.detach().clone().requires_grad_()
    out = fused.batch_norm_segment_max(norm, h, ptr)
    ref = segment_max(ref_norm(h_ref), ptr)
    torch.testing.assert_close(out, ref)
    assert torch.all(out[4] == 0)
    grad = torch.randn_like(out)
    out.backward(grad)
    ref.backward(grad)
    torch.testing.assert_close(h.grad, h_ref.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(norm.weight.grad, ref_norm.weight.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(norm.bias.grad, ref_norm.bias.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(norm.running_var, ref_norm.running_var)


def test_gradcheck_float64() -> None:
    norm = _norm(5, torch.float64)
    ptr = torch.tensor([0, 3, 4, 9, 12])
    h = torch.randn(12, 5, dtype=torch.float64, requires_grad=True)

    def act(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        mean, invstd = fused._batch_stats(norm, x)  # depend on x, as in batch_norm_act
        return fused._BatchNormAct.apply(x, w, b, mean, invstd, 0.2, None)

    def pooled(x: torch.Tensor) -> torch.Tensor:
        return fused.batch_norm_segment_max(norm, x, ptr)

    w = norm.weight.detach().clone().requires_grad_()
    b = norm.bias.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(act, (h, w, b))
    assert torch.autograd.gradcheck(pooled, (h,))


def test_falls_back_where_the_kernels_do_not_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    h = torch.randn(100, 8)
    norm = _norm(8, torch.float32)
    assert fused.fusable(norm, h)
    monkeypatch.setenv("LIGHTNING_PC_FUSED", "off")
    assert not fused.fusable(norm, h)
    monkeypatch.setenv("LIGHTNING_PC_FUSED", "sometimes")
    with pytest.raises(ValueError, match="LIGHTNING_PC_FUSED"):
        fused.fusable(norm, h)
    monkeypatch.setenv("LIGHTNING_PC_FUSED", "auto")
    assert not fused.fusable(norm.eval(), h)  # running statistics: torch's op
    assert not fused.fusable(nn.SyncBatchNorm(8), h)  # synchronised statistics
    assert not fused.fusable(norm.train(), h.to(torch.bfloat16))
    out = fused.batch_norm_act(norm.eval(), h, "relu")
    torch.testing.assert_close(out, F.relu(norm(h)))


def test_one_variable_chooses_the_implementation(monkeypatch: pytest.MonkeyPatch) -> None:
    """``LIGHTNING_PC_IMPL_BATCH_NORM`` names the implementation and wins over the older
    ``LIGHTNING_PC_FUSED``; ``fused`` runs at any size (as ``always``) where it applies."""
    h = torch.randn(100, 8)
    norm = _norm(8, torch.float32)
    monkeypatch.setattr(fused, "FUSE_MIN_NUMEL", 10_000)  # 800 elements: auto says torch
    assert not fused.fusable(norm, h)
    monkeypatch.setenv("LIGHTNING_PC_FUSED", "always")
    assert fused.fusable(norm, h)
    monkeypatch.setenv("LIGHTNING_PC_IMPL_BATCH_NORM", "torch")
    assert not fused.fusable(norm, h)
    monkeypatch.setenv("LIGHTNING_PC_FUSED", "off")
    monkeypatch.setenv("LIGHTNING_PC_IMPL_BATCH_NORM", "fused")
    assert fused.fusable(norm, h)
    assert not fused.fusable(norm.eval(), h)  # does not apply: torch's op, no error
    assert not fused.fusable(norm.train(), h.to(torch.bfloat16))
    monkeypatch.setenv("LIGHTNING_PC_IMPL_BATCH_NORM", "triton")
    with pytest.raises(ValueError, match="LIGHTNING_PC_IMPL_BATCH_NORM"):
        fused.fusable(norm, h)


def _assert_same_training_state(module: nn.Module, ref: nn.Module) -> None:
    """Every parameter has a gradient equal to ``ref``'s; every buffer (running statistics,
    batch counts) equals ``ref``'s."""
    for (name, a), b in zip(module.named_parameters(), ref.parameters(), strict=True):
        assert a.grad is not None, name
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-3, atol=1e-3, msg=name)
    for (name, a), b in zip(module.named_buffers(), ref.buffers(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=name)


@pytest.mark.parametrize("pool", [False, True])
def test_shared_mlp_fused_equals_torch_ops(pool: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whole MLPs (the bias before each norm left to the running mean) train identically."""
    torch.manual_seed(0)
    mlp = SharedMLP([6, 32, 32, 48], act="leaky_relu")
    ref = copy.deepcopy(mlp)
    x = torch.randn(3000, 6) * 2
    ptr = torch.tensor([0, 5, 900, 901, 2500, 3000]) if pool else None
    for _step in range(2):
        out = mlp.run(x, last_act=False, pool_ptr=ptr)
        monkeypatch.setattr(fused, "FUSE_MIN_NUMEL", 1 << 62)
        expected = ref.run(x, last_act=False, pool_ptr=ptr)
        monkeypatch.setattr(fused, "FUSE_MIN_NUMEL", 0)
        torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)
        grad = torch.randn_like(out)
        out.backward(grad)
        expected.backward(grad)
        _assert_same_training_state(mlp, ref)
    mlp.eval(), ref.eval()
    torch.testing.assert_close(
        mlp.run(x, pool_ptr=ptr), ref.run(x, pool_ptr=ptr), rtol=1e-4, atol=1e-4
    )


def test_gather_batch_norm_act_equals_torch_and_gradchecks() -> None:
    torch.manual_seed(3)
    norm = _norm(12, torch.float64)
    ref_norm = copy.deepcopy(norm)
    lengths = torch.tensor([4, 1, 9, 6, 3])
    ptr = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
    col = torch.randint(0, 10, (int(lengths.sum()),))  # repeated points, as balls overlap
    p = torch.randn(10, 12, dtype=torch.float64, requires_grad=True)
    q = torch.randn(5, 12, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(12, dtype=torch.float64, requires_grad=True)
    out = fused.gather_batch_norm_act(norm, p, q, ptr, col, "relu", pre_bias=bias)
    row = torch.repeat_interleave(torch.arange(5), lengths)
    expected = F.relu(ref_norm(p[col] - q[row] + bias))
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(norm.running_mean, ref_norm.running_mean)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, (p, q, bias, norm.weight), grad)
    want = torch.autograd.grad(expected, (p, q, bias, ref_norm.weight), grad)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b)

    def fn(p_: torch.Tensor, q_: torch.Tensor) -> torch.Tensor:
        return fused.gather_batch_norm_act(norm, p_, q_, ptr, col, "leaky_relu")

    assert torch.autograd.gradcheck(fn, (p, q))


def test_set_abstraction_trains_the_same_fused_and_unfused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A PointNet++ set abstraction level in training: outputs, every gradient and the
    running statistics agree between the fused kernels and the torch ops."""
    from lightning_pc.nn.pointnet2 import SetAbstraction
    from tests.models.shapes import make_batch

    torch.manual_seed(0)
    sa = SetAbstraction(5, 0.25, [0.3, 0.6], [16, 24], [[32, 16], [16, 16, 24]], random_start=False)
    ref = copy.deepcopy(sa)
    batch = make_batch([300, 170], in_channels=5)
    out = sa(batch.x, batch.pos, batch.batch, batch.ptr)[0]
    monkeypatch.setattr(fused, "FUSE_MIN_NUMEL", 1 << 62)
    expected = ref(batch.x, batch.pos, batch.batch, batch.ptr)[0]
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)
    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad)
    _assert_same_training_state(sa, ref)
