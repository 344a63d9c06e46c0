from __future__ import annotations

import copy

import pytest
import torch

from lightning_pc.models import PointNetwork, create_model
from lightning_pc.nn.edge_conv import EdgeConv
from lightning_pc.nn.knn_graph import knn_table
from tests.models.shapes import make_batch, permute_within_clouds


def model_(name: str, num_classes: int, **kw) -> PointNetwork:
    torch.manual_seed(0)
    return create_model(name, num_classes=num_classes, **kw)


@pytest.mark.parametrize(
    "name, in_channels, num_classes, per_point",
    [
        ("dgcnn", 0, 40, False),
        ("dgcnn", 3, 10, False),
        ("dgcnn_part_seg", 0, 50, True),
        ("dgcnn_sem_seg", 6, 13, True),
    ],
)
def test_output_shapes_variable_cloud_sizes(name, in_channels, num_classes, per_point) -> None:
    model = model_(name, num_classes, in_channels=in_channels, k=8)
    batch = make_batch([100, 64, 81], in_channels=in_channels)
    for mode in (True, False):
        model.train(mode)
        out = model(batch)
        assert out.shape == ((batch.num_nodes if per_point else 3), num_classes)
        assert torch.isfinite(out).all()


def test_edge_conv_matches_direct_computation() -> None:
    """Decomposed first layer == MLP([x_j - x_i, x_i]) on every edge, then max."""
    torch.manual_seed(0)
    conv = EdgeConv(5, [16, 8]).double().train()
    ref_conv = copy.deepcopy(conv)
    x = torch.randn(40, 5, dtype=torch.float64, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    nbr = torch.randint(0, 40, (40, 6))
    out = conv(x, nbr)
    xi = x_ref[:, None, :].expand(-1, 6, -1)
    edges = torch.cat([x_ref[nbr] - xi, xi], -1).reshape(-1, 10)  # [N k, 2 C]
    ref = ref_conv.mlp(edges).view(40, 6, -1).amax(1)
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(out)
    out.backward(g)
    ref.backward(g)
    torch.testing.assert_close(x.grad, x_ref.grad)
    for pa, pb in zip(conv.parameters(), ref_conv.parameters(), strict=True):
        torch.testing.assert_close(pa.grad, pb.grad)
    x = x.detach()
    # the running statistics saw the same edge statistics
    for a, b in zip(conv.mlp, ref_conv.mlp, strict=True):
        torch.testing.assert_close(a.norm.running_mean, b.norm.running_mean)
        torch.testing.assert_close(a.norm.running_var, b.norm.running_var)
    conv.eval()
    ref_conv.eval()
    torch.testing.assert_close(conv(x, nbr), ref_conv.mlp(edges).view(40, 6, -1).amax(1))


@pytest.mark.parametrize("bias", [False, True])
def test_edge_free_single_layer_edge_conv_matches_direct(bias: bool) -> None:
    """The per-edge-tensor-free path: values, gradients and running statistics."""
    torch.manual_seed(0)
    fused = EdgeConv(6, [12], bias=bias).double()
    with torch.no_grad():  # some negative batch-norm scales: those channels take the min
        fused.mlp[0].norm.weight.copy_(torch.linspace(-1.5, 1.5, 12))
        fused.mlp[0].norm.bias.normal_()
    direct = copy.deepcopy(fused)
    direct.edge_free = False
    x = torch.randn(60, 6, dtype=torch.float64) * 3 + 5  # off-centre features
    nbr = torch.randint(0, 60, (60, 7))
    for _step in range(2):
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        out_a, out_b = fused(xa, nbr), direct(xb, nbr)
        torch.testing.assert_close(out_a, out_b)
        g = torch.randn_like(out_a)
        out_a.backward(g)
        out_b.backward(g)
        torch.testing.assert_close(xa.grad, xb.grad)
        for (name, pa), pb in zip(fused.named_parameters(), direct.parameters(), strict=True):
            torch.testing.assert_close(pa.grad, pb.grad, msg=name)
    for ba, bb in zip(fused.buffers(), direct.buffers(), strict=True):
        torch.testing.assert_close(ba, bb)
    fused.eval()
    direct.eval()
    torch.testing.assert_close(fused(x, nbr), direct(x, nbr))


def test_edge_conv_old_fused_keyword_warns_and_still_works() -> None:
    """``fused=`` was renamed ``edge_free=``; configs and code using the old name keep working."""
    with pytest.warns(DeprecationWarning, match="renamed `edge_free`"):
        conv = EdgeConv(4, [8], fused=False)
    assert conv.edge_free is False
    with pytest.warns(DeprecationWarning, match="renamed `edge_free`"):
        assert conv.fused is False
    with pytest.warns(DeprecationWarning, match="renamed `edge_free`"):
        conv.fused = True
    assert conv.edge_free is True


def test_sync_batchnorm_takes_the_direct_path() -> None:
    torch.manual_seed(0)
    conv = EdgeConv(4, [8]).double()
    synced = torch.nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(conv))
    x = torch.randn(30, 4, dtype=torch.float64)
    nbr = torch.randint(0, 30, (30, 5))
    # without a process group SyncBatchNorm normalises like BatchNorm; the result must agree
    torch.testing.assert_close(synced(x, nbr), conv(x, nbr))


@pytest.mark.parametrize("dim", [3, 64])
def test_padded_knn_matches_packed(dim: int) -> None:
    g = torch.Generator().manual_seed(0)
    sizes = [50, 33, 64]
    x = torch.randn(sum(sizes), dim, generator=g, dtype=torch.float64)
    batch = torch.repeat_interleave(torch.arange(3), torch.tensor(sizes))
    ptr = torch.tensor([0, 50, 83, 147])
    a = knn_table(x, batch, ptr, 10, "padded")
    b = knn_table(x, batch, ptr, 10, "packed")
    assert a.shape == (147, 10)
    assert torch.equal(a, b)
    assert torch.equal(a[:, 0], torch.arange(147))  # self first
    assert (batch[a] == batch[:, None]).all()


def test_knn_fills_clouds_smaller_than_k() -> None:
    x = torch.randn(12, 3, dtype=torch.float64)
    batch = torch.tensor([0] * 4 + [1] * 8)
    ptr = torch.tensor([0, 4, 12])
    for mode in ("padded", "packed"):
        t = knn_table(x, batch, ptr, 6, mode)
        assert t.shape == (12, 6) and (batch[t] == batch[:, None]).all()
        assert set(t[0].tolist()) == {0, 1, 2, 3}  # all of its cloud, first neighbour repeated


@pytest.mark.parametrize("name", ["dgcnn", "dgcnn_part_seg", "dgcnn_sem_seg"])
def test_padded_path_matches_packed_path(name: str) -> None:
    in_channels = 3 if name == "dgcnn_sem_seg" else 0
    padded = model_(name, 6, k=10, in_channels=in_channels).double()
    packed = model_(name, 6, k=10, in_channels=in_channels, knn="packed").double()
    packed.load_state_dict(padded.state_dict())
    batch = make_batch([90, 70, 64], in_channels=in_channels)
    batch.pos = batch.pos.double()
    if in_channels:
        batch.x = batch.x.double()
    for mode in (True, False):  # training (batch statistics) and eval
        padded.train(mode)
        packed.train(mode)
        torch.manual_seed(0)  # same dropout masks
        a = padded(batch)
        torch.manual_seed(0)
        torch.testing.assert_close(a, packed(batch))


def test_classification_invariant_to_point_order() -> None:
    model = model_("dgcnn", 5, k=10).eval()
    batch = make_batch([100, 90, 80])
    permuted, _ = permute_within_clouds(batch)
    torch.testing.assert_close(model(permuted), model(batch), rtol=1e-4, atol=1e-4)


def test_eval_is_deterministic() -> None:
    model = model_("dgcnn_part_seg", 50, k=10).eval()
    batch = make_batch([100, 90])
    assert torch.equal(model(batch), model(batch))


@pytest.mark.parametrize("name", ["dgcnn", "dgcnn_part_seg", "dgcnn_sem_seg"])
def test_gradients_reach_every_parameter(name: str) -> None:
    model = model_(name, 4, k=8).train()
    if model.backbone.transform is not None:
        # the transform's last layer starts at zero (identity output), which blocks the
        # gradient to the layers before it at initialisation only
        torch.nn.init.normal_(model.backbone.transform.transform.weight, std=0.01)
    batch = make_batch([80, 70, 60])
    model(batch).square().mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname  # DDP needs a gradient for every parameter
        if pname.endswith("lin.bias"):
            continue  # before batch norm with batch statistics: its true gradient is 0
        assert p.grad.abs().sum() > 0, pname


def test_transform_starts_as_identity() -> None:
    model = model_("dgcnn_part_seg", 50, k=8).eval()
    batch = make_batch([64, 64])
    from lightning_pc.nn.knn_graph import knn_table as kt

    t = model.backbone.transform(batch.pos, kt(batch.pos, batch.batch, batch.ptr, 8), batch.ptr)
    torch.testing.assert_close(t, torch.eye(3).expand(2, 3, 3))
