"""A tiny batch of surface-sampled shapes is learnt to 100% accuracy."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_pc.models import create_model
from tests.models.shapes import make_batch


@torch.no_grad()
def refresh_batchnorm(model: nn.Module, batch) -> None:
    """Set the running statistics to the current weights' batch statistics."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average: one pass gives the batch statistics
    model.train()
    model(batch)


@pytest.mark.parametrize(
    "name, kwargs", [("pointnet2_ssg", {"random_start": False}), ("dgcnn", {"k": 10})]
)
def test_tiny_batch_overfits(name: str, kwargs: dict) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=4, **kwargs)
    # two clouds per class, different sizes; the classes are the shape kinds
    batch = make_batch([96, 80, 90, 72, 96, 64, 88, 70], kinds=[0, 1, 2, 3, 3, 2, 1, 0])
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = F.cross_entropy(model(batch), batch.y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.3 * losses[0]
    refresh_batchnorm(model, batch)
    model.eval()
    with torch.no_grad():
        pred = model(batch).argmax(1)
    assert (pred == batch.y).all(), (pred, batch.y, losses[::5])
