"""The contract every task keeps, checked on every task class the package defines.

The task classes are discovered (every concrete :class:`~lightning_pc.tasks.BaseTask`
subclass in ``lightning_pc``), not listed: a new task is checked here as soon as it exists,
and fails until :data:`CASES` says how to build it on tiny data.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
import yaml
from lightning.pytorch.loggers import CSVLogger
from torch_geometric.data import Data

import lightning_pc.tasks
from lightning_pc.data import SyntheticShapesDataModule
from lightning_pc.data.transforms import Transform
from lightning_pc.tasks import (
    BaseTask,
    ClassificationTask,
    NonFiniteError,
    PartSegmentationTask,
    SemanticSegmentationTask,
)
from lightning_pc.tasks.base import CHECKPOINT_KEY, SPLITS


def discovered_tasks() -> list[type[BaseTask]]:
    """Every concrete ``BaseTask`` subclass defined in ``lightning_pc`` (the modules of
    ``lightning_pc.tasks`` are imported first, so a task in a new module is found too)."""
    for info in pkgutil.walk_packages(lightning_pc.tasks.__path__, "lightning_pc.tasks."):
        importlib.import_module(info.name)
    found: set[type[BaseTask]] = set()
    stack = [BaseTask]
    while stack:
        for sub in stack.pop().__subclasses__():
            stack.append(sub)
            if sub.__module__.startswith("lightning_pc.") and not inspect.isabstract(sub):
                found.add(sub)
    return sorted(found, key=lambda cls: cls.__qualname__)


def _part_data(data: dict[str, Any]) -> SyntheticShapesDataModule:
    return SyntheticShapesDataModule(
        num_train=6,
        num_val=4,
        num_test=4,
        num_points=48,
        task="part_segmentation",
        batch_size=3,
        **data,
    )


Case = tuple[BaseTask, L.LightningDataModule]


def _classification(tiny: dict[str, Any], data: dict[str, Any], **kwargs: Any) -> Case:
    dm = SyntheticShapesDataModule(
        num_train=6, num_val=4, num_test=4, num_points=48, batch_size=3, **data
    )
    task = ClassificationTask(
        model_kwargs=tiny["pointnet2_ssg"], num_classes=dm.num_classes, **kwargs
    )
    return task, dm


def _part(tiny: dict[str, Any], data: dict[str, Any], **kwargs: Any) -> Case:
    dm = _part_data(data)
    # no part_offsets: the layout comes from the data module
    task = PartSegmentationTask(
        model_kwargs=tiny["pointnet2_ssg_part_seg"], num_classes=dm.num_classes, **kwargs
    )
    return task, dm


def _semantic(tiny: dict[str, Any], data: dict[str, Any], **kwargs: Any) -> Case:
    dm = _part_data(data)  # per-point labels: the parts, scored as classes
    task = SemanticSegmentationTask(
        model="dgcnn_sem_seg",
        model_kwargs=tiny["dgcnn_sem_seg"],
        num_classes=dm.num_classes,
        in_channels=0,
        **kwargs,
    )
    return task, dm


#: task class name -> a builder of (task, data module) on tiny data, given the tiny
#: network table, data module arguments and task arguments
CASES: dict[str, Callable[..., Case]] = {
    "ClassificationTask": _classification,
    "PartSegmentationTask": _part,
    "SemanticSegmentationTask": _semantic,
}

TASKS = discovered_tasks()


def _case(cls: type[BaseTask]) -> Callable[..., Case]:
    if cls.__name__ not in CASES:
        pytest.fail(
            f"{cls.__module__}.{cls.__qualname__} has no contract case: add one to CASES in "
            f"{__file__} (a builder of the task and a data module on tiny data)"
        )
    return CASES[cls.__name__]


def _trainer(tmp_path: Path, **kwargs: Any) -> L.Trainer:
    args: dict[str, Any] = dict(
        default_root_dir=tmp_path,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
        num_sanity_val_steps=0,
    )
    args.update(kwargs)
    return L.Trainer(**args)


class PoisonAll(Transform):
    """A NaN on one point of every cloud."""

    def forward(self, data: Data, generator: torch.Generator | None) -> Data:
        data.pos = data.pos.clone()
        data.pos[0, 0] = float("nan")
        return data


class Unchanged(L.Callback):
    """Fails unless the task's weights and buffers end training as they started it."""

    checked = False

    def on_train_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        self.before = {k: v.clone() for k, v in pl_module.state_dict().items()}

    def on_train_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        after = pl_module.state_dict()
        assert after.keys() == self.before.keys()
        for key, value in after.items():
            assert torch.equal(value, self.before[key]), key
        self.checked = True


def test_the_shipped_tasks_are_discovered() -> None:
    names = {cls.__name__ for cls in TASKS}
    assert {"ClassificationTask", "PartSegmentationTask", "SemanticSegmentationTask"} <= names


def test_a_new_task_cannot_escape_discovery() -> None:
    """A task defined anywhere in the package is found (here: one made on the fly)."""

    class Extra(ClassificationTask):
        pass

    Extra.__module__ = "lightning_pc.tasks.extra"
    try:
        assert Extra in discovered_tasks()
    finally:
        del Extra


@pytest.mark.parametrize("cls", TASKS, ids=lambda cls: cls.__name__)
def test_fit_logs_every_metric_and_checkpoints_load_weights_only(
    cls: type[BaseTask], tiny_models: dict[str, Any], tmp_path: Path
) -> None:
    L.seed_everything(0, verbose=False)
    task, dm = _case(cls)(tiny_models, {})
    assert type(task) is cls
    trainer = _trainer(
        tmp_path,
        logger=CSVLogger(tmp_path),
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=2,
        limit_test_batches=2,
        log_every_n_steps=1,
    )
    trainer.fit(task, dm)
    trainer.test(task, dm)
    yaml.safe_dump(dict(task.hparams))  # plain YAML types only

    # one collection per split, cloned from the same metrics; every logged name
    names = list(task.split_metrics().keys())
    assert names
    for split in SPLITS:
        assert list(getattr(task, f"{split}_metrics").keys()) == [f"{split}/{n}" for n in names]
    logged = set(trainer.logger.experiment.metrics_keys) | set(trainer.callback_metrics)
    expected = {f"{split}/loss" for split in SPLITS}
    expected |= {f"{split}/{name}" for split in SPLITS for name in names}
    assert expected <= logged, sorted(expected - logged)
    per_class = task.per_class_metric()
    if per_class is not None:
        for split in ("val", "test"):
            assert any(key.startswith(f"{split}/{per_class[0]}_") for key in logged), split

    # the checkpoint: plain hyperparameters, the task's own entry, same weights and outputs
    path = tmp_path / "task.ckpt"
    trainer.save_checkpoint(path)
    assert CHECKPOINT_KEY in torch.load(path, weights_only=True)
    loaded = cls.load_from_checkpoint(path, weights_only=True)
    state, again = task.state_dict(), loaded.state_dict()
    assert state.keys() == again.keys()
    for key, value in state.items():
        torch.testing.assert_close(again[key], value, rtol=0, atol=0, msg=key)
    batch = next(iter(dm.test_dataloader()))
    task.eval(), loaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded.predict_step(batch, 0), task.predict_step(batch, 0))


@pytest.mark.parametrize("cls", TASKS, ids=lambda cls: cls.__name__)
def test_nonfinite_inputs_raise_or_are_skipped(
    cls: type[BaseTask], tiny_models: dict[str, Any], tmp_path: Path
) -> None:
    """Every task's training step runs the guard: ``raise`` names the batch, ``skip``
    leaves every weight and buffer as it was."""
    poison = {"train_transforms": [PoisonAll()]}
    task, dm = _case(cls)(tiny_models, poison)
    with pytest.raises(NonFiniteError, match="train batch 0"):
        _trainer(tmp_path, max_epochs=1, limit_train_batches=1, limit_val_batches=0).fit(task, dm)

    task, dm = _case(cls)(tiny_models, poison, nonfinite="skip")
    unchanged = Unchanged()
    trainer = _trainer(
        tmp_path, max_epochs=1, limit_train_batches=2, limit_val_batches=0, callbacks=[unchanged]
    )
    with pytest.warns(UserWarning, match="skipped: non-finite values"):
        trainer.fit(task, dm)
    assert trainer.global_step == 2 and unchanged.checked
