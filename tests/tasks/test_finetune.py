"""Fine-tuning options of the tasks: linear probing (``freeze_backbone``) and the head-only
warm-up (``head_warmup_epochs``), over real runs, interrupted and resumed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from torch import nn

from lightning_pc.cli import main
from lightning_pc.data import SyntheticShapesDataModule
from lightning_pc.tasks import ClassificationTask
from tests.conftest import tiny_kwargs

REPO = Path(__file__).resolve().parents[2]


def _task(**kwargs: Any) -> ClassificationTask:
    torch.manual_seed(0)
    return ClassificationTask(
        model="pointnet2_ssg", model_kwargs=tiny_kwargs("pointnet2_ssg"), num_classes=12, **kwargs
    )


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and buffers (batch-norm statistics and counters included), copied."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class Watch(L.Callback):
    """Per training epoch: the backbone's state at its end, whether it was frozen and in
    evaluation mode during the batches, and the optimiser's view of its parameters."""

    def __init__(self) -> None:
        self.states: dict[int, dict[str, torch.Tensor]] = {}
        self.frozen: dict[int, set[tuple[bool, bool, bool]]] = {}
        self.optimised: dict[int, tuple[bool, bool]] = {}

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        backbone = pl_module.model.backbone
        norms = [m for m in backbone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        assert norms, "the test network needs batch norms in its backbone"
        self.frozen.setdefault(trainer.current_epoch, set()).add(
            (
                pl_module.model.backbone_frozen,
                any(p.requires_grad for p in backbone.parameters()),
                any(m.training for m in norms),
            )
        )

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        backbone = pl_module.model.backbone
        self.states[trainer.current_epoch] = _state(backbone)
        optimizer = trainer.optimizers[0]
        ids = {id(p) for g in optimizer.param_groups for p in g["params"]}
        in_optimizer = any(id(p) in ids for p in backbone.parameters())
        has_state = any(len(optimizer.state.get(p, {})) > 0 for p in backbone.parameters())
        self.optimised[trainer.current_epoch] = (in_optimizer, has_state)


class StopAfterFirstEpoch(L.Callback):
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.should_stop = True


def _fit(
    task: ClassificationTask,
    root: Path,
    max_epochs: int,
    callbacks: list[L.Callback],
    ckpt_path: str | None = None,
) -> None:
    data = SyntheticShapesDataModule(num_train=12, num_val=4, num_test=4, num_points=32,
                                     batch_size=4)  # fmt: skip
    L.Trainer(
        default_root_dir=root, max_epochs=max_epochs, accelerator="cpu", devices=1,
        logger=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=1, num_sanity_val_steps=0, callbacks=callbacks,
    ).fit(task, data, ckpt_path=ckpt_path)  # fmt: skip


def test_linear_probe_trains_the_head_alone(tmp_path: Path) -> None:
    task = _task(freeze_backbone=True, lr=0.05)
    before = _state(task.model.backbone)
    head_before = _state(task.model.head)
    watch = Watch()
    _fit(task, tmp_path, 2, [watch])
    # backbone: weights, batch-norm statistics and counters all where they were
    assert _same(watch.states[0], before) and _same(watch.states[1], before)
    assert not _same(_state(task.model.head), head_before)
    # frozen, without gradients, batch norms in evaluation mode, at every batch
    assert watch.frozen == {0: {(True, False, False)}, 1: {(True, False, False)}}
    # not in the optimiser
    assert watch.optimised == {0: (False, False), 1: (False, False)}


def test_head_warmup_freezes_then_trains_the_backbone(tmp_path: Path) -> None:
    task = _task(head_warmup_epochs=1, lr=0.05, lr_scales={"backbone": 0.5})
    before = _state(task.model.backbone)
    watch = Watch()
    _fit(task, tmp_path, 2, [watch])
    assert _same(watch.states[0], before)  # warm-up: untouched, statistics included
    assert not _same(watch.states[1], before)  # then trained
    assert watch.frozen == {0: {(True, False, False)}, 1: {(False, True, True)}}
    # in the optimiser from the start (its own groups), state only once it trains
    assert watch.optimised == {0: (True, False), 1: (True, True)}


def test_head_warmup_resumes_frozen_or_not_as_the_uninterrupted_run(tmp_path: Path) -> None:
    full = Watch()
    _fit(_task(head_warmup_epochs=2), tmp_path / "full", 3, [full])
    first = tmp_path / "first"
    ckpt = L.pytorch.callbacks.ModelCheckpoint(dirpath=first, save_last=True)
    stopped = Watch()
    _fit(_task(head_warmup_epochs=2), first, 3, [stopped, ckpt, StopAfterFirstEpoch()])
    resumed = Watch()
    _fit(_task(head_warmup_epochs=2), first, 3, [resumed], ckpt_path=str(first / "last.ckpt"))
    assert set(resumed.frozen) == {1, 2}
    assert resumed.frozen == {k: full.frozen[k] for k in (1, 2)}
    assert resumed.frozen[1] == {(True, False, False)}  # still warming up after the resume
    assert resumed.frozen[2] == {(False, True, True)}
    assert _same(resumed.states[1], stopped.states[0])  # frozen through epoch 1
    assert not _same(resumed.states[2], stopped.states[0])


def test_fine_tuning_options_need_a_backbone_and_agree() -> None:
    with pytest.raises(ValueError, match="no freeze_backbone"):
        ClassificationTask(model=nn.Linear(3, 2), num_classes=2, freeze_backbone=True)
    with pytest.raises(ValueError, match="head_warmup_epochs would never unfreeze"):
        _task(freeze_backbone=True, head_warmup_epochs=2)
    with pytest.raises(ValueError, match="head_warmup_epochs must be >= 0"):
        _task(head_warmup_epochs=-1)


def test_cli_optimizer_section_refuses_task_group_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    args = [
        "fit", "--config", str(REPO / "configs" / "quickstart.yaml"),
        "--trainer.max_epochs=1", "--trainer.limit_train_batches=1",
        "--trainer.limit_val_batches=1", "--trainer.accelerator=cpu",
        "--trainer.enable_progress_bar=false", "--data.init_args.num_train=8",
        "--data.init_args.num_val=4", "--data.init_args.num_points=64",
        "--optimizer=torch.optim.Adam", "--model.init_args.lr_scales={head: 0.1}",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="lr_scales would be ignored"):
        main(args)


class SaveBackbone(L.Callback):
    """Each rank writes its backbone's state at the end of every training epoch."""

    def __init__(self, out: str) -> None:
        self.out = out

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        state = _state(pl_module.model.backbone)
        torch.save(
            state, Path(self.out) / f"rank{trainer.global_rank}_epoch{trainer.current_epoch}.pt"
        )


@pytest.mark.slow
def test_head_warmup_under_ddp_synchronises_the_backbone_once_it_trains(tmp_path: Path) -> None:
    # DDP registers at wrapping time the parameters that require gradients: a backbone
    # frozen then would never have its gradients averaged, and the ranks would drift apart
    task = _task(head_warmup_epochs=1, lr=0.05)
    before = _state(task.model.backbone)
    data = SyntheticShapesDataModule(num_train=16, num_val=4, num_test=4, num_points=32,
                                     batch_size=4)  # fmt: skip
    L.Trainer(
        default_root_dir=tmp_path, max_epochs=2, accelerator="cpu", devices=2,
        strategy="ddp_spawn", logger=False, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, limit_val_batches=0,
        callbacks=[SaveBackbone(str(tmp_path))],
    ).fit(task, data)  # fmt: skip
    states = {(r, e): torch.load(tmp_path / f"rank{r}_epoch{e}.pt") for r in (0, 1) for e in (0, 1)}
    assert _same(states[0, 0], before) and _same(states[1, 0], before)  # warm-up
    assert not _same(states[0, 1], before)  # then trained...
    params = {n for n, _ in task.model.backbone.named_parameters()}
    assert params
    for key in params:  # ...alike on both ranks (the weights: each rank keeps its own
        value = states[0, 1][key]  # batch-norm statistics, DDP broadcasts them at forward)
        assert torch.allclose(value.float(), states[1, 1][key].float(), atol=1e-6), key
