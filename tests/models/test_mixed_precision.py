"""Every network trains under CPU autocast in bfloat16 and float16.

Lightning's ``precision="bf16-mixed"`` on the CPU is ``torch.autocast("cpu",
dtype=torch.bfloat16)`` around the step; Lightning turns ``"16-mixed"`` on the CPU into
``"bf16-mixed"`` (tests/tasks/test_precision.py), so float16 is tested here under
``torch.autocast("cpu", dtype=torch.float16)`` directly, which is what ``"16-mixed"`` runs
on a GPU.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lightning_pc.models import create_model
from tests.models.shapes import make_batch

# name, in_channels, per-point labels
NETWORKS = [
    ("pointnet2_ssg", 0, False),
    ("pointnet2_msg", 0, False),
    ("pointnet2_ssg_part_seg", 3, True),
    ("pointnet2_msg_part_seg", 3, True),
    ("pointnet2_ssg_sem_seg", 6, True),
    ("pointnet2_msg_sem_seg", 6, True),
    ("dgcnn", 0, False),
    ("dgcnn_part_seg", 0, True),
    ("dgcnn_sem_seg", 6, True),
    ("sparse_resnet", 0, False),
    ("sparse_unet", 3, True),
]
DTYPES = [torch.bfloat16, torch.float16]
# relative error of eval-mode logits under autocast against float32. Measured here: at most
# 0.012 (bf16) and 0.0017 (fp16) over the networks of test_autocast_logits_close_to_float32;
# with DGCNN's kNN graphs built from the rounded features, dgcnn_sem_seg gave 0.019 / 0.0069
TOLERANCE = {torch.bfloat16: 0.03, torch.float16: 0.004}


def _setup(name: str, in_channels: int, per_point: bool):
    torch.manual_seed(0)
    model = create_model(name, num_classes=5, in_channels=in_channels)
    batch = make_batch([300, 260], in_channels=in_channels, point_labels=4 if per_point else 0)
    return model, batch


@pytest.mark.parametrize("dtype", DTYPES, ids=["bf16", "fp16"])
@pytest.mark.parametrize("name, in_channels, per_point", NETWORKS, ids=[n[0] for n in NETWORKS])
def test_training_step_under_autocast(
    name: str, in_channels: int, per_point: bool, dtype: torch.dtype, monkeypatch
) -> None:
    # the fused float32 CPU kernels at every size, so that their fallback for reduced
    # precision inputs (and their use where a tensor stays float32) is exercised
    monkeypatch.setenv("LIGHTNING_PC_FUSED", "always")
    model, batch = _setup(name, in_channels, per_point)
    model.train()
    with torch.autocast("cpu", dtype=dtype):
        logits = model(batch)
        assert logits.dtype == dtype  # autocast reached the head
        loss = F.cross_entropy(logits.float(), batch.y)
    loss.backward()
    assert torch.isfinite(loss)
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert p.grad.dtype == torch.float32, pname
        assert torch.isfinite(p.grad).all(), pname
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("dtype", DTYPES, ids=["bf16", "fp16"])
@pytest.mark.parametrize(
    "name, in_channels, per_point",
    [n for n in NETWORKS if n[0] in ("pointnet2_ssg_part_seg", "dgcnn_sem_seg", "sparse_unet")],
    ids=["pointnet2_ssg_part_seg", "dgcnn_sem_seg", "sparse_unet"],
)
def test_autocast_logits_close_to_float32(
    name: str, in_channels: int, per_point: bool, dtype: torch.dtype
) -> None:
    """Same function as in float32 up to rounding: the neighbour searches, samplings and
    interpolations see full-precision inputs (a graph built from rounded features would
    change the logits far beyond rounding)."""
    model, batch = _setup(name, in_channels, per_point)
    # a trained model's running statistics, so that eval mode normalises sensibly
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(batch)
    model.eval()
    with torch.no_grad():
        ref = model(batch)
        with torch.autocast("cpu", dtype=dtype):
            out = model(batch).float()
    err = (out - ref).norm() / ref.norm()
    assert err < TOLERANCE[dtype], float(err)


@pytest.mark.parametrize("dtype", DTYPES, ids=["bf16", "fp16"])
def test_fused_edge_conv_statistics_under_autocast(dtype: torch.dtype) -> None:
    """DGCNN's single-layer EdgeConv takes its batch statistics from sums weighted by
    in-degrees; with hub points (in-degree in the thousands) those sums overflow float16
    (an infinite running variance, then NaN logits in eval) unless kept in float32."""
    import copy

    from lightning_pc.nn.edge_conv import EdgeConv

    g = torch.Generator().manual_seed(0)
    n, k = 4000, 20
    x = torch.randn(n, 64, generator=g) * 3 + 5
    neighbours = torch.randint(0, n, (n, k), generator=g)
    neighbours[:, 1:8] = torch.randint(0, 30, (n, 7), generator=g)  # 30 hubs
    conv = EdgeConv(64, [64])
    ref = copy.deepcopy(conv)
    expected = ref(x, neighbours)
    with torch.autocast("cpu", dtype=dtype):
        out = conv(x, neighbours)
    norm, ref_norm = conv.mlp.layers[0].norm, ref.mlp.layers[0].norm
    for a, b in (
        (norm.running_mean, ref_norm.running_mean),
        (norm.running_var, ref_norm.running_var),
    ):
        assert torch.isfinite(a).all()
        assert (a - b).norm() / b.norm() < 1e-2
    assert torch.isfinite(out).all()
    assert (out.float() - expected).norm() / expected.norm() < TOLERANCE[dtype]


def test_float64_stays_float64_under_autocast() -> None:
    """The float32 islands under autocast (sparse convolution, EdgeConv statistics) widen
    reduced precision; they never narrow a float64 model."""
    from lightning_pc.nn.edge_conv import EdgeConv
    from lightning_pc.nn.sparse import sparse_conv, submanifold_map

    g = torch.Generator().manual_seed(0)
    coords = torch.cat(
        [torch.zeros(50, 1, dtype=torch.long), torch.randint(0, 6, (50, 3), generator=g)], 1
    )
    coords = torch.unique(coords, dim=0)
    feats = torch.randn(coords.size(0), 4, generator=g, dtype=torch.float64)
    weight = torch.randn(27, 4, 5, generator=g, dtype=torch.float64)
    kmap = submanifold_map(coords, 3)
    expected = sparse_conv(feats, weight, kmap)
    conv = EdgeConv(4, [8]).double()
    nbr = torch.randint(0, coords.size(0), (coords.size(0), 5), generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = sparse_conv(feats, weight, kmap)
        edge = conv(feats, nbr)
    assert out.dtype == torch.float64 and edge.dtype == torch.float64
    torch.testing.assert_close(out, expected)
