"""Tasks: construction, plain-YAML hparams, weights-only checkpoints, full-resolution scoring."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from lightning.pytorch.loggers import CSVLogger
from torch import nn
from torch_geometric.data import Data

from lightning_pc.data import SyntheticShapesDataModule, collate
from lightning_pc.data.datasets.shapenetpart import PART_OFFSETS as SHAPENETPART_OFFSETS
from lightning_pc.data.transforms import GridSubsample
from lightning_pc.tasks import (
    ClassificationTask,
    PartSegmentationTask,
    SemanticSegmentationTask,
    full_resolution,
)
from tests.conftest import TINY_MODELS
from tests.data import load_fixture

TINY_CLS = TINY_MODELS["pointnet2_ssg"]
TINY_PART = TINY_MODELS["pointnet2_ssg_part_seg"]
TINY_SEM = dict(
    ratios=[0.5, 0.5],
    radii=[[0.5], [1.0]],
    num_samples=[[4], [4]],
    sa_mlps=[[[8]], [[8]]],
    fp_mlps=[[8], [8]],
    head=[8],
)


def _trainer(tmp_path: Path) -> L.Trainer:
    return L.Trainer(
        default_root_dir=tmp_path,
        logger=CSVLogger(tmp_path),
        max_epochs=1,
        limit_train_batches=1,
        limit_val_batches=1,
        accelerator="cpu",
        enable_progress_bar=False,
        enable_model_summary=False,
    )


def test_hparams_are_plain_yaml() -> None:
    task = ClassificationTask(model_kwargs=TINY_CLS, num_classes=12, class_weights=[1.0] * 12)
    yaml.safe_dump(dict(task.hparams))
    assert task.hparams["model"] == "pointnet2_ssg"
    assert task.model(collate([Data(pos=torch.rand(32, 3))] * 2)).shape == (2, 12)


def test_module_instance_is_not_a_hyperparameter() -> None:
    net = nn.Sequential()
    task = ClassificationTask(model=net, num_classes=3)
    assert task.model is net and "model" not in task.hparams


def test_class_weights_must_match_classes() -> None:
    with pytest.raises(ValueError, match="class_weights"):
        ClassificationTask(model_kwargs=TINY_CLS, num_classes=12, class_weights=[1.0, 2.0])


def test_part_offsets_must_match_classes() -> None:
    with pytest.raises(ValueError, match="part_offsets end at 20 parts but num_classes is 27"):
        PartSegmentationTask(num_classes=27, part_offsets=[0, 10, 20])


def test_part_task_without_a_data_module_is_shapenetpart() -> None:
    task = PartSegmentationTask(model_kwargs=TINY_PART)
    assert task.part_offsets == list(SHAPENETPART_OFFSETS)
    assert task.model.backbone.num_categories == 16 and task.hparams["part_offsets"] is None
    batch = collate([Data(pos=torch.rand(40, 3), category=torch.tensor([k])) for k in (0, 15)])
    task.eval()
    with torch.no_grad():
        pred = task.predict_step(batch, 0)
    offsets = torch.tensor(SHAPENETPART_OFFSETS)
    cat = batch.category[batch.batch]
    assert bool(((pred >= offsets[cat]) & (pred < offsets[cat + 1])).all())


def test_part_task_needs_a_layout_for_other_part_counts(tmp_path: Path) -> None:
    """Neither the task nor the data module gives the layout of 27 parts: a clear error."""
    task = PartSegmentationTask(model_kwargs=TINY_PART, num_classes=27)
    assert task.part_offsets is None and not hasattr(task, "model")
    with pytest.raises(RuntimeError, match="no\\s+part_offsets has no network yet"):
        task(collate([Data(pos=torch.rand(8, 3), category=torch.tensor([0]))]))
    data = SyntheticShapesDataModule(num_train=4, num_points=64, task="part_segmentation")
    data.setup("fit")
    with pytest.raises(ValueError, match="the data module has no part_offsets"):
        _trainer(tmp_path).fit(task, data.train_dataloader())  # loaders alone: no layout


def test_part_layout_must_be_the_data_module_s(tmp_path: Path) -> None:
    data = SyntheticShapesDataModule(num_points=64, task="part_segmentation", num_train=4)
    parts = data.num_classes
    task = PartSegmentationTask(
        model_kwargs=TINY_PART, num_classes=parts, part_offsets=[0, parts // 2, parts]
    )
    with pytest.raises(ValueError, match="differ from the task's"):
        _trainer(tmp_path).fit(task, data)
    # ShapeNetPart's default layout against the synthetic shapes' parts
    with pytest.raises(ValueError, match="data module's part_offsets end at"):
        _trainer(tmp_path).fit(PartSegmentationTask(model_kwargs=TINY_PART), data)


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_default_optimizer_and_cosine_schedule(optimizer: str, tmp_path: Path) -> None:
    task = ClassificationTask(
        model_kwargs=TINY_CLS,
        num_classes=12,
        optimizer=optimizer,
        lr=0.5,
        min_lr=0.01,  # type: ignore[arg-type]
    )
    trainer = L.Trainer(default_root_dir=tmp_path, max_epochs=7, logger=False)
    task.trainer = trainer
    config = task.configure_optimizers()
    opt = config["optimizer"]
    assert type(opt).__name__ == {"adamw": "AdamW", "sgd": "SGD"}[optimizer]
    sched = config["lr_scheduler"]["scheduler"]
    assert sched.T_max == 7 and sched.eta_min == 0.01


def test_part_segmentation_fit_and_weights_only_checkpoint(tmp_path: Path) -> None:
    data = SyntheticShapesDataModule(
        num_train=4, num_val=4, num_test=4, num_points=64, task="part_segmentation", batch_size=4
    )
    # no part_offsets: the layout comes from the data module when the trainer sets up
    task = PartSegmentationTask(model_kwargs=TINY_PART, num_classes=data.num_classes)
    trainer = _trainer(tmp_path)
    trainer.fit(task, data)
    assert task.part_offsets == data.part_offsets == task.hparams["part_offsets"]
    assert task.model.backbone.num_categories == 12  # taken from part_offsets
    metrics = trainer.callback_metrics
    assert 0.0 <= float(metrics["val/instance_miou"]) <= 1.0
    assert "val/miou_cube" in metrics  # per-category mIoU named by the data module
    path = tmp_path / "task.ckpt"
    trainer.save_checkpoint(path)
    loaded = PartSegmentationTask.load_from_checkpoint(path, weights_only=True)
    assert loaded.part_offsets == data.part_offsets
    batch = next(iter(data.val_dataloader()))
    task.eval(), loaded.eval()
    pred = loaded.predict_step(batch, 0)
    torch.testing.assert_close(pred, task.predict_step(batch, 0))
    # predictions stay inside each shape's category
    offsets = torch.tensor(data.part_offsets)
    cat = batch.category[batch.batch]
    assert bool(((pred >= offsets[cat]) & (pred < offsets[cat + 1])).all())


def test_full_resolution_projects_voxel_predictions() -> None:
    pos = torch.tensor([[0.0, 0, 0], [0.01, 0, 0], [1.0, 0, 0], [1.01, 0, 0], [2.0, 0, 0]])
    y = torch.tensor([1, 1, 2, 0, 2])
    grid = GridSubsample(0.5, training=False, keep_inverse=True)
    clouds = [grid(Data(pos=pos, y=y)), grid(Data(pos=pos + 10, y=y))]
    batch = collate(clouds)
    kept = batch.pos.size(0)
    assert kept == 6 and batch.y_full.numel() == 10
    pred = torch.arange(kept)  # each kept point predicts its own index
    full, target = full_resolution(pred, batch)
    # every original point takes its voxel's prediction; voxels of cloud 1 are offset by 3
    assert full.tolist() == [0, 0, 1, 1, 2, 3, 3, 4, 4, 5]
    assert target.tolist() == y.tolist() * 2


def test_semantic_segmentation_scores_every_original_point() -> None:
    task = SemanticSegmentationTask(
        model_kwargs=TINY_SEM,
        num_classes=3,
        in_channels=0,
    )
    pos = torch.rand(40, 3) * 2
    y = torch.randint(0, 3, (40,))
    batch = collate([GridSubsample(0.4, training=False, keep_inverse=True)(Data(pos=pos, y=y))])
    task.eval()
    with torch.no_grad():
        logits = task(batch)
        task.test_metrics.update(*full_resolution(logits.argmax(1), batch))
    pred = logits.argmax(1)[batch.inverse_index]
    oa = (pred == y).float().mean()
    torch.testing.assert_close(task.test_metrics["test/oa"].compute(), oa)


def test_semantic_segmentation_fit_and_weights_only_checkpoint(tmp_path: Path) -> None:
    from lightning_pc.data import S3DISDataModule

    root = load_fixture("s3dis").make_raw(tmp_path / "Stanford3dDataset_v1.2_Aligned_Version")
    data = S3DISDataModule(
        str(root),
        num_points=64,
        voxel_size=0.5,
        crops_per_room=1,
        batch_size=2,
        num_workers=0,
        cache_dir=str(tmp_path / "cache"),
    )
    weights = [1.0 + i / 10 for i in range(data.num_classes)]
    task = SemanticSegmentationTask(
        model_kwargs=TINY_SEM,
        num_classes=data.num_classes,
        in_channels=3,
        class_weights=weights,
        ignore_index=-1,
        scheduler="none",
    )
    trainer = _trainer(tmp_path)
    trainer.fit(task, data)
    assert 0.0 <= float(trainer.callback_metrics["val/miou"]) <= 1.0
    path = tmp_path / "task.ckpt"
    trainer.save_checkpoint(path)
    loaded = SemanticSegmentationTask.load_from_checkpoint(path, weights_only=True)
    assert dict(loaded.hparams) == dict(task.hparams)
    assert loaded.hparams["class_weights"] == weights and loaded.hparams["ignore_index"] == -1
    torch.testing.assert_close(loaded.criterion.weight, torch.tensor(weights))
    for key, value in task.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, msg=key)
    batch = next(iter(data.val_dataloader()))
    task.eval(), loaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(batch), task(batch))
        pred = loaded.predict_step(batch, 0)
    torch.testing.assert_close(pred, task.predict_step(batch, 0))
    assert bool(((pred >= 0) & (pred < data.num_classes)).all())


def test_cli_part_segmentation_takes_the_layout_from_the_data_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through ``lightning-pc``: no ``part_offsets`` in the config; the synthetic shapes'
    layout is taken at setup, saved in the checkpoint, and a resumed fit and a test from
    the checkpoint rebuild the same network."""
    from lightning_pc.cli import main
    from lightning_pc.data.datasets.synthetic import PART_OFFSETS as SYNTHETIC_OFFSETS

    monkeypatch.chdir(tmp_path)
    config = {
        "seed_everything": 0,
        "trainer": {
            "max_epochs": 1,
            "limit_train_batches": 1,
            "limit_val_batches": 1,
            "limit_test_batches": 1,
            "accelerator": "cpu",
            "devices": 1,
            "logger": False,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "callbacks": [
                {
                    "class_path": "lightning_pc.callbacks.ModelCheckpoint",
                    "init_args": {"dirpath": "checkpoints", "save_last": True},
                }
            ],
        },
        "model": {
            "class_path": "lightning_pc.tasks.PartSegmentationTask",
            "init_args": {"model_kwargs": TINY_PART},
        },
        "data": {
            "class_path": "lightning_pc.data.SyntheticShapesDataModule",
            "init_args": {
                "task": "part_segmentation",
                "num_train": 4,
                "num_val": 2,
                "num_test": 2,
                "num_points": 48,
                "batch_size": 2,
            },
        },
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    main(["fit", "--config", str(path)])
    last = tmp_path / "checkpoints" / "last.ckpt"
    saved = torch.load(last, weights_only=True)
    assert saved["hyper_parameters"]["part_offsets"] == list(SYNTHETIC_OFFSETS)
    main(["fit", "--config", str(path), "--trainer.max_epochs=2", "--ckpt_path=last"])
    assert torch.load(last, weights_only=True)["global_step"] == 2
    main(["test", "--config", str(path), f"--ckpt_path={last}"])
