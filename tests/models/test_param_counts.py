"""Parameter counts of the official architectures for 40 classes (FORMATS.md)."""

from __future__ import annotations

import pytest
from torch import nn

from lightning_pc.models import create_model

OFFICIAL = {"pointnet2_ssg": 1_475_688, "pointnet2_msg": 1_747_368, "dgcnn": 1_809_576}


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_parameter_count_matches_official(name: str) -> None:
    n = count(create_model(name, num_classes=40))
    assert abs(n - OFFICIAL[name]) <= 0.01 * OFFICIAL[name]
    assert n == OFFICIAL[name]  # in fact layer for layer


def test_normals_add_only_first_layer_weights() -> None:
    # 3 extra input channels widen each first-level MLP's first layer (64 outputs for SSG)
    assert (
        count(create_model("pointnet2_ssg", 40, in_channels=3))
        == OFFICIAL["pointnet2_ssg"] + 3 * 64
    )
    msg_first = 32 + 64 + 64
    assert (
        count(create_model("pointnet2_msg", 40, in_channels=3))
        == OFFICIAL["pointnet2_msg"] + 3 * msg_first
    )


def test_only_torch_batchnorm_layers() -> None:
    """``sync_batchnorm`` converts every norm layer: all are torch.nn BatchNorm."""
    for name in ("pointnet2_msg_part_seg", "pointnet2_ssg_sem_seg", "dgcnn_part_seg", "dgcnn"):
        model = create_model(name, num_classes=5)
        norms = [m for m in model.modules() if "norm" in type(m).__name__.lower()]
        assert norms and all(isinstance(m, nn.BatchNorm1d) for m in norms)
        synced = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        assert sum(isinstance(m, nn.SyncBatchNorm) for m in synced.modules()) == len(norms)
        assert not any(isinstance(m, nn.BatchNorm1d) for m in synced.modules())
