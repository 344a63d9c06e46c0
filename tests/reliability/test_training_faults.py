"""Fault injection for training: one-cloud batches, NaN, damaged checkpoints, resumption, DDP.

Every case runs on fixtures written here in real file formats (XYZ text, ``.npy``) or on
the synthetic data module, asserts the user's files are unchanged (hashes before and
after), and asserts that nothing wrong is served: no NaN weights, no half-written
checkpoint, no silently shortened epoch.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
from torch import nn

from lightning_pc.data import PointCloudFolderDataModule, SyntheticShapesDataModule, collate
from lightning_pc.models import create_model
from lightning_pc.tasks import ClassificationTask, PartSegmentationTask
from lightning_pc.tasks.guards import NonFiniteError
from tests.models.shapes import make_batch

TINY: dict[str, dict[str, Any]] = {
    "pointnet2_ssg": dict(
        num_samples=[[8], [8]], sa_mlps=[[[8]], [[16]]], global_mlp=[16], head=[16, 16]
    ),
    "pointnet2_msg": dict(
        radii=[[0.2, 0.4], [0.4, 0.8]],
        num_samples=[[8, 8], [8, 8]],
        sa_mlps=[[[8], [8]], [[16], [16]]],
        global_mlp=[16],
        head=[16, 16],
    ),
    "dgcnn": dict(k=4, edge_mlps=[[8], [8]], emb_dims=16, head=[16, 16], dropout_layers=[0]),
    "sparse_resnet": dict(voxel_size=0.1, channels=[8, 8, 16], layers=[1, 1], head=[16]),
    "pointnet2_ssg_part_seg": dict(
        num_samples=[[8], [8]],
        sa_mlps=[[[8]], [[16]]],
        global_mlp=[16],
        fp_mlps=[[16], [16], [16]],
        head=[16],
    ),
    "dgcnn_part_seg": dict(
        k=4, edge_mlps=[[8], [8]], emb_dims=16, head=[16], dropout_layers=[0], category_channels=8
    ),
    "pointnet2_ssg_sem_seg": dict(
        ratios=[0.5, 0.5],
        radii=[[0.5], [1.0]],
        num_samples=[[8], [8]],
        sa_mlps=[[[8]], [[16]]],
        global_mlp=[],
        fp_mlps=[[16], [16]],
        head=[16],
    ),
    "dgcnn_sem_seg": dict(k=4, edge_mlps=[[8], [8]], emb_dims=16, head=[16], dropout_layers=[0]),
    "sparse_unet": dict(voxel_size=0.2, stem_channels=8, channels=[8, 8, 8, 8], layers=[1] * 4),
}
PER_CLOUD = {"pointnet2_ssg", "pointnet2_msg", "dgcnn", "sparse_resnet"}


def tree_hashes(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root`` (the user's files, to prove them unchanged)."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _trainer(tmp_path: Path, **kwargs: Any) -> L.Trainer:
    defaults: dict[str, Any] = dict(
        default_root_dir=tmp_path,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
        num_sanity_val_steps=0,
    )
    defaults.update(kwargs)
    return L.Trainer(**defaults)


def _norm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


# --- a last batch of one cloud ----------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(TINY))
def test_every_network_trains_on_a_batch_of_one_cloud(name: str) -> None:
    torch.manual_seed(0)
    in_channels = 3 if name.endswith("sem_seg") else 0
    model = create_model(name, num_classes=4, in_channels=in_channels, **TINY[name])
    if name.endswith("part_seg"):
        model = create_model(name, num_classes=4, num_categories=2, **TINY[name])
    model.train()
    # warm the running statistics with a normal batch, as the epoch before the last batch does
    warm = make_batch([48, 40], in_channels=in_channels, seed=1)
    warm.category = torch.tensor([0, 1])
    model(warm)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    one = make_batch([48], in_channels=in_channels, seed=2)
    one.category = torch.tensor([1])
    out = model(one)
    rows = 1 if name in PER_CLOUD else one.pos.size(0)
    assert out.shape == (rows, 4) and torch.isfinite(out).all()
    target = torch.zeros(rows, dtype=torch.long)
    nn.functional.cross_entropy(out, target).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    # the cloud counts: the head's first layer got a gradient from it
    assert any(float(g.abs().sum()) > 0 for g in grads)
    after = model.state_dict()
    # per-point norms still learn from the cloud's points; a norm over the single pooled
    # vector leaves its running statistics alone (they are all it had to normalise with)
    for key, value in after.items():
        assert torch.isfinite(value.float()).all(), key
    if name in ("pointnet2_ssg", "pointnet2_msg", "dgcnn"):
        head_norm = model.head[0].norm
        prefix = next(k for k, m in model.named_modules() if m is head_norm)
        for stat in ("running_mean", "running_var", "num_batches_tracked"):
            torch.testing.assert_close(after[f"{prefix}.{stat}"], before[f"{prefix}.{stat}"])


class CloudCounter(L.Callback):
    """Counts the training clouds and the size of every training batch."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: Any, batch: Any, i: int) -> None:
        self.sizes.append(int(batch.num_graphs))


@pytest.mark.parametrize("name", ["pointnet2_ssg", "pointnet2_msg", "dgcnn", "sparse_resnet"])
def test_fit_whose_last_batch_holds_one_cloud(name: str, tmp_path: Path) -> None:
    """Five training clouds in batches of four: the second batch is one cloud (the issue's
    25 clouds in batches of 4 end the same way); the epoch ends, with every cloud used."""
    torch.manual_seed(0)
    data = SyntheticShapesDataModule(
        num_train=5, num_val=3, num_test=1, num_points=64, batch_size=4, train_transforms=[]
    )
    task = ClassificationTask(model=name, model_kwargs=TINY[name], num_classes=12, lr=1e-2)
    counter = CloudCounter()
    trainer = _trainer(tmp_path, max_epochs=2, callbacks=[counter])
    trainer.fit(task, data)
    assert counter.sizes == [4, 1, 4, 1]
    assert trainer.global_step == 4
    assert all(torch.isfinite(p).all() for p in task.parameters())
    assert torch.isfinite(torch.tensor(float(trainer.callback_metrics["val/loss"])))
