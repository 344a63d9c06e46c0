"""Every classification network evaluates well above chance after one short epoch.

Batch norm normalises with the running statistics in evaluation; before the warm-up of
:mod:`lightning_pc.nn.norm_warmup` they kept most of their initial variance 1.0 for tens of
steps, and every network predicted one class in evaluation (25 % here) while training
accuracy rose.
"""

from __future__ import annotations

import warnings
from typing import Any

import lightning as L
import pytest
from torch_geometric.loader import DataLoader

from lightning_pc.tasks import ClassificationTask
from tests.models.shapes import make_batch

NETWORKS: dict[str, dict[str, Any]] = {
    "pointnet2_ssg": dict(num_samples=[[16], [16]], sa_mlps=[[[16, 32]], [[32]]], head=[32]),
    "pointnet2_msg": dict(
        radii=[[0.2, 0.4], [0.4, 0.8]],
        num_samples=[[8, 16], [8, 16]],
        sa_mlps=[[[16], [16]], [[32], [32]]],
        head=[32],
    ),
    "dgcnn": dict(k=8, edge_mlps=[[16], [16]], emb_dims=32, head=[32]),
    "sparse_resnet": dict(voxel_size=0.1, channels=[16, 16, 32], layers=[1, 1], head=[32]),
}


def clouds(num: int, seed: int) -> list:
    """``num`` clouds of the four shape kinds, 48-80 points each."""
    sizes = [48 + (7 * i) % 33 for i in range(num)]
    return make_batch(sizes, seed=seed, kinds=[i % 4 for i in range(num)]).to_data_list()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_validation_after_one_short_epoch_is_well_above_chance(name: str) -> None:
    L.seed_everything(0, verbose=False)
    task = ClassificationTask(
        model=name, model_kwargs=NETWORKS[name], num_classes=4, lr=0.01, scheduler="none"
    )
    train = DataLoader(clouds(96, seed=0), batch_size=8, shuffle=True)  # 12 steps
    val = DataLoader(clouds(32, seed=1), batch_size=16)
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's advice on workers and logging
        trainer.fit(task, train, val)
    acc = float(trainer.callback_metrics["val/acc"])
    assert acc >= 0.5, f"{name}: validation accuracy {acc:.3f} after one epoch (chance 0.25)"
