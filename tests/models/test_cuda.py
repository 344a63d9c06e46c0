"""The networks on CUDA agree with CPU (skipped without a GPU)."""

from __future__ import annotations

import pytest
import torch

from lightning_pc.models import create_model
from tests.models.shapes import make_batch


@pytest.mark.gpu
@pytest.mark.parametrize(
    "name, in_channels",
    [
        ("pointnet2_ssg", 0),
        ("pointnet2_msg_part_seg", 3),
        ("pointnet2_ssg_sem_seg", 6),
        ("dgcnn", 0),
        ("dgcnn_part_seg", 0),
        ("dgcnn_sem_seg", 6),
    ],
)
def test_cuda_matches_cpu(name: str, in_channels: int) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=8, in_channels=in_channels).eval()
    batch = make_batch([300, 256, 200], in_channels=in_channels)
    with torch.no_grad():
        cpu = model(batch)
        gpu = model.cuda()(batch.cuda()).cpu()
    torch.testing.assert_close(gpu, cpu, rtol=1e-3, atol=1e-3)
    model.train()
    model(batch.cuda()).float().square().mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
