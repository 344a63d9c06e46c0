"""RenderPredictions: pictures in TensorBoard, CSV (PNG), W&B and MLflow; failures; ranks."""

from __future__ import annotations

import glob
import os
from typing import Any

import lightning as L
import numpy as np
import pytest
from lightning.pytorch.loggers import CSVLogger, MLFlowLogger, TensorBoardLogger, WandbLogger
from PIL import Image

import lightning_pc.callbacks.render_predictions as rp
from lightning_pc.callbacks import RenderPredictions, log_image
from lightning_pc.data import SyntheticShapesDataModule
from lightning_pc.tasks import ClassificationTask
from tests.conftest import TINY_MODELS


def _fit(tmp_path: Any, loggers: list, callback: RenderPredictions, epochs: int = 2, test: bool = False) -> L.Trainer:
    dm = SyntheticShapesDataModule(num_train=32, num_val=16, num_test=16, num_points=64, batch_size=16, num_workers=0)
    task = ClassificationTask(num_classes=dm.num_classes, model_kwargs=TINY_MODELS["pointnet2_ssg"])
    trainer = L.Trainer(
        max_epochs=epochs, logger=loggers, callbacks=[callback], enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp_path),
        num_sanity_val_steps=1,
    )
    trainer.fit(task, dm)
    if test:
        trainer.test(task, dm)
    return trainer


def test_csv_and_tensorboard(tmp_path: Any) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    csv, tb = CSVLogger(tmp_path, name="csv"), TensorBoardLogger(tmp_path, name="tb")
    cb = RenderPredictions(num_samples=3, every_n_epochs=2, size=64)
    _fit(tmp_path, [csv, tb], cb, epochs=2, test=True)
    assert not cb.disabled
    pngs = sorted(glob.glob(os.path.join(csv.log_dir, "images", "**", "*.png"), recursive=True))
    assert [os.path.relpath(p, csv.log_dir).split(os.sep)[1:3] for p in pngs] == [
        ["test", "confusion_matrix"], ["val", "predictions"]]  # one render: epoch 2 of 2, not the sanity check
    assert np.asarray(Image.open(pngs[1])).std() > 0
    events = EventAccumulator(tb.log_dir)
    events.Reload()
    assert set(events.Tags()["images"]) == {"val/predictions", "test/confusion_matrix"}


def test_failure_warns_once_and_training_continues(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def broken(*args: object, **kwargs: object) -> None:
        calls.append(1)
        raise RuntimeError("renderer exploded")

    monkeypatch.setattr(rp, "prediction_figure", broken)
    cb = RenderPredictions(size=32)
    with pytest.warns(UserWarning, match="renderer exploded") as record:
        trainer = _fit(tmp_path, [CSVLogger(tmp_path)], cb, epochs=3)
    assert trainer.current_epoch == 3 and cb.disabled and len(calls) == 1
    assert sum("renderer exploded" in str(w.message) for w in record) == 1


def test_other_ranks_only_read_log_dir() -> None:
    reads = []

    class FakeTrainer:
        sanity_checking = False
        current_epoch = 0
        is_global_zero = False
        default_root_dir = "."

        @property
        def log_dir(self) -> str:
            reads.append(1)  # the collective call every rank must make
            return "."

        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"rank > 0 touched trainer.{name}")

    RenderPredictions().on_validation_epoch_end(FakeTrainer(), None)  # type: ignore[arg-type]
    assert reads == [1]


def test_wandb_and_mlflow_dispatch(tmp_path: Any) -> None:
    got: dict[str, Any] = {}

    class W(WandbLogger):
        def __init__(self) -> None:  # no wandb needed: only the dispatch is under test
            pass

        def log_image(self, key: str, images: list, step: int | None = None, **kwargs: Any) -> None:
            got["wandb"] = (key, images, step)

    class Client:
        def log_image(self, run_id: str, image: Any, artifact_file: str) -> None:
            got["mlflow"] = (run_id, image, artifact_file)

    class M(MLFlowLogger):
        def __init__(self) -> None:
            pass

        @property
        def experiment(self) -> Any:
            return Client()

        @property
        def run_id(self) -> str:
            return "run1"

    image = Image.new("RGB", (8, 8), (10, 20, 30))
    written = log_image([W(), M()], "val/predictions", image, 7, str(tmp_path))
    assert written == []
    assert got["wandb"] == ("val/predictions", [image], 7)
    assert got["mlflow"] == ("run1", image, "images/val_predictions/step_000007.png")
    assert log_image([], "x/y", image, 3, str(tmp_path)) == [os.path.join(str(tmp_path), "images", "x", "y", "step_000003.png")]


def test_part_segmentation_renders_per_point_colours(tmp_path: Any) -> None:
    from lightning_pc.tasks import PartSegmentationTask

    dm = SyntheticShapesDataModule(
        num_train=8, num_val=4, num_test=4, num_points=64, task="part_segmentation", batch_size=4
    )
    tiny_part = {"num_samples": [[8], [8]], "sa_mlps": [[[8]], [[16]]], "global_mlp": [16],
                 "fp_mlps": [[16], [16], [16]], "head": [16]}
    task = PartSegmentationTask(model_kwargs=tiny_part, num_classes=dm.num_classes, part_offsets=dm.part_offsets)
    csv = CSVLogger(tmp_path, name="csv")
    cb = RenderPredictions(num_samples=2, every_n_epochs=1, size=64)
    trainer = L.Trainer(
        max_epochs=1, logger=[csv], callbacks=[cb], enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=str(tmp_path), num_sanity_val_steps=0,
        limit_train_batches=1, limit_val_batches=1, limit_test_batches=1,
    )
    trainer.fit(task, dm)
    assert not cb.disabled
    pngs = glob.glob(os.path.join(csv.log_dir, "images", "val", "**", "*.png"), recursive=True)
    assert len(pngs) == 1
    img = np.asarray(Image.open(pngs[0]).convert("RGB")).astype(int)
    h, w, _ = img.shape
    panel = img[: h // 2, : int(w * 0.4)].reshape(-1, 3)  # the first cloud's ground truth
    saturated = panel[(panel.max(axis=1) - panel.min(axis=1)) > 60]  # not text, not background
    colours, counts = np.unique(saturated, axis=0, return_counts=True)
    # a synthetic shape has two or more parts: per-point colours, not one colour per cloud
    assert (counts >= 5).sum() >= 2
    trainer.test(task, dm)  # and a confusion matrix over parts at the end of test
    matrices = glob.glob(os.path.join(csv.log_dir, "images", "test", "**", "*.png"), recursive=True)
    assert len(matrices) == 1 and "confusion_matrix" in matrices[0]
