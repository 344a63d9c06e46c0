from __future__ import annotations

import pytest
import torch

from lightning_pc.models import PointNetwork, create_model
from lightning_pc.nn.pointnet2 import SetAbstraction, ball_query, sample_centres
from tests.models.shapes import make_batch, permute_within_clouds


def small(name: str, num_classes: int, **kw) -> PointNetwork:
    torch.manual_seed(0)
    return create_model(name, num_classes=num_classes, **kw)


@pytest.mark.parametrize(
    "name, in_channels, num_classes, per_point",
    [
        ("pointnet2_ssg", 0, 40, False),
        ("pointnet2_msg", 3, 10, False),
        ("pointnet2_ssg_part_seg", 3, 50, True),
        ("pointnet2_msg_part_seg", 0, 50, True),
        ("pointnet2_ssg_sem_seg", 6, 13, True),
        ("pointnet2_msg_sem_seg", 0, 13, True),
    ],
)
def test_output_shapes_variable_cloud_sizes(name, in_channels, num_classes, per_point) -> None:
    model = small(name, num_classes, in_channels=in_channels)
    batch = make_batch([300, 180, 257], in_channels=in_channels)
    for mode in (True, False):
        model.train(mode)
        out = model(batch)
        expected = (batch.num_nodes, num_classes) if per_point else (3, num_classes)
        assert out.shape == expected and torch.isfinite(out).all()


def test_sample_centres_order_invariant_in_eval() -> None:
    batch = make_batch([200, 150])
    permuted, perm = permute_within_clouds(batch)
    a = sample_centres(batch.pos, batch.batch, batch.ptr, 0.25, random_start=False)
    b = sample_centres(permuted.pos, permuted.batch, permuted.ptr, 0.25, random_start=False)
    assert a.numel() == 50 + 38
    assert torch.equal(a, perm[b])  # the same points, in the same order


@pytest.mark.parametrize("name, in_channels", [("pointnet2_ssg", 0), ("pointnet2_msg", 3)])
def test_classification_invariant_to_point_order(name, in_channels) -> None:
    """With ``ball_query="nearest"`` the network does not depend on the order of the points,
    even where balls overflow (radii widened so that most balls hold more than their cap)."""
    radii = [[0.5] * len(sa.radii) for sa in create_model(name, num_classes=5).backbone.sa]
    model = small(name, 5, in_channels=in_channels, ball_query="nearest", radii=radii).eval()
    batch = make_batch([256, 200, 230], in_channels=in_channels)
    permuted, _ = permute_within_clouds(batch)
    torch.testing.assert_close(model(permuted), model(batch), rtol=1e-4, atol=1e-4)


def test_first_in_ball_follows_storage_order() -> None:
    """The default ``ball_query="first"`` (the authors' kernel) keeps the first points in
    storage order: a permutation changes which points a full ball holds, and so the features;
    ``"nearest"`` gives the same features in any order."""
    assert {sa.ball_query for sa in small("pointnet2_ssg", 5).backbone.sa} == {"first"}
    batch = make_batch([256, 200])
    permuted, _ = permute_within_clouds(batch)
    diffs = {}
    for keep in ("first", "nearest"):
        torch.manual_seed(0)
        sa = SetAbstraction(0, 0.25, [0.5], [16], [[32, 32]], ball_query=keep).eval()
        a = sa(None, batch.pos, batch.batch, batch.ptr)[0]
        b = sa(None, permuted.pos, permuted.batch, permuted.ptr)[0]
        diffs[keep] = float((a - b).abs().max())
    assert diffs["nearest"] < 1e-5 < 1e-3 < diffs["first"]


@pytest.mark.parametrize("keep", ["first", "nearest"])
def test_ball_query_keeps_the_chosen_points(keep) -> None:
    """Each full ball holds the first ``k`` within ``r`` by index, or the ``k`` nearest."""
    batch = make_batch([600, 500])
    pos, b = batch.pos, batch.batch
    centres = torch.arange(0, pos.size(0), 25)
    row, col, rowptr = ball_query(pos, pos[centres], 0.5, 16, b, b[centres], keep)
    d = torch.cdist(pos[centres].double(), pos.double())
    d[b[centres].view(-1, 1) != b.view(1, -1)] = float("inf")
    full = 0
    for q in range(centres.numel()):
        inside = (d[q] < 0.5).nonzero().flatten()
        want = inside[:16] if keep == "first" else inside[d[q, inside].argsort()[:16]]
        got = col[rowptr[q] : rowptr[q + 1]]
        assert sorted(got.tolist()) == sorted(want.tolist())
        full += inside.numel() > 16
    assert full > centres.numel() // 2  # most balls overflow: the rule matters


def test_ball_query_rule_is_checked() -> None:
    with pytest.raises(ValueError, match="ball_query must be 'first' or 'nearest', got 'all'"):
        small("pointnet2_ssg", 5, ball_query="all")


def test_part_segmentation_equivariant_to_point_order() -> None:
    model = small("pointnet2_ssg_part_seg", 50, in_channels=3, ball_query="nearest").eval()
    batch = make_batch([256, 200], in_channels=3)
    permuted, perm = permute_within_clouds(batch)
    torch.testing.assert_close(model(permuted), model(batch)[perm], rtol=1e-4, atol=1e-4)


def test_eval_is_deterministic() -> None:
    model = small("pointnet2_msg_part_seg", 50).eval()
    batch = make_batch([256, 200])
    assert torch.equal(model(batch), model(batch))


@pytest.mark.parametrize(
    "name, in_channels",
    [("pointnet2_ssg", 0), ("pointnet2_msg_part_seg", 3), ("pointnet2_ssg_sem_seg", 3)],
)
def test_gradients_reach_every_parameter(name, in_channels) -> None:
    model = small(name, 4, in_channels=in_channels).train()
    batch = make_batch([200, 180, 150], in_channels=in_channels)
    model(batch).square().mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname  # DDP needs a gradient for every parameter
        if pname.endswith("lin.bias"):
            # the bias of a linear map followed by batch norm with batch statistics: the
            # norm subtracts it again, its true gradient is 0 (its effect is on the
            # running mean, checked in tests/models/test_fused.py)
            continue
        assert p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("in_channels, mlps", [(4, [[32, 16], [16, 8]]), (40, [[16, 8]])])
def test_set_abstraction_matches_direct_computation(in_channels: int, mlps: list) -> None:
    """Both first-layer paths (direct for narrow inputs, decomposed for wide ones) and the
    segment max equal MLP([p_j - p_i, x_j]) followed by a max over the ball."""
    torch.manual_seed(0)
    radii, num_samples = [0.3, 0.6][: len(mlps)], [16, 24][: len(mlps)]
    sa = SetAbstraction(in_channels, 0.25, radii, num_samples, mlps).double().eval()
    with torch.no_grad():
        for m in sa.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2)
    batch = make_batch([200, 170], in_channels=in_channels)
    pos, x = batch.pos.double(), batch.x.double()
    out, pos_c, batch_c, _ = sa(x, pos, batch.batch, batch.ptr)
    idx = sample_centres(pos, batch.batch, batch.ptr, sa.ratio, random_start=False)
    torch.testing.assert_close(pos_c, pos[idx])
    refs = []
    for r, k, mlp in zip(sa.radii, sa.num_samples, sa.mlps, strict=True):
        row, col, _ = ball_query(pos, pos_c, r, k, batch.batch, batch_c)
        h = mlp(torch.cat([pos[col] - pos_c[row], x[col]], 1))
        ref = torch.zeros(pos_c.size(0), h.size(1), dtype=h.dtype)
        refs.append(ref.index_reduce_(0, row, h, "amax", include_self=False))
    torch.testing.assert_close(out, torch.cat(refs, 1))


def test_feature_propagation_interpolates_then_mlp() -> None:
    model = small("pointnet2_ssg_sem_seg", 13).eval().double()
    fp = model.backbone.fp[1]
    g = torch.Generator().manual_seed(0)
    pos_c, pos = torch.rand(20, 3, generator=g).double(), torch.rand(50, 3, generator=g).double()
    bc, b = torch.zeros(20, dtype=torch.long), torch.zeros(50, dtype=torch.long)
    xc = torch.randn(20, 256, generator=g).double()
    skip = torch.randn(50, fp.mlp[0].lin.in_features - 256, generator=g).double()
    d2 = torch.cdist(pos, pos_c).square()
    dist, nn_idx = d2.topk(3, largest=False)
    w = 1 / dist
    interp = (xc[nn_idx] * w[..., None]).sum(1) / w.sum(1, keepdim=True)
    ref = fp.mlp(torch.cat([interp, skip], 1))
    torch.testing.assert_close(fp(xc, pos_c, bc, skip, pos, b), ref)


def test_part_segmentation_uses_the_category() -> None:
    model = small("pointnet2_ssg_part_seg", 50).eval()
    batch = make_batch([200, 200])
    out = model(batch)
    batch.category = (batch.category + 3) % 16
    assert not torch.allclose(model(batch), out)
    del batch.category
    with pytest.raises(ValueError, match="category"):
        model(batch)


def test_missing_features_raise() -> None:
    model = small("pointnet2_ssg", 5, in_channels=3)
    with pytest.raises(ValueError, match="in_channels=3"):
        model(make_batch([100, 100]))
