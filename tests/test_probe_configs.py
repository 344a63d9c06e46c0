"""The probing and fine-tuning configs (configs/probe_*.yaml, configs/finetune_*.yaml) on the
LiDAR folder fixture: what they freeze, what they train, and the zero-filled channels."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from lightning_pc.cli import main
from lightning_pc.data import input_channels
from tests.conftest import TINY_MODELS
from tests.data import load_fixture

REPO = Path(__file__).resolve().parents[1]
RECORD: dict[str, Any] = {}


class RecordWeights(Callback):
    """Keeps the network's weights before and after training, and the optimiser's groups."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        model = pl_module.model  # type: ignore[attr-defined]
        RECORD["before"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        optimizer = trainer.optimizers[0]
        names = {id(p): n for n, p in model.named_parameters()}
        RECORD["groups"] = [
            (group["lr"], [names.get(id(p), "?") for p in group["params"]])
            for group in optimizer.param_groups
        ]

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any
    ) -> None:
        model = pl_module.model  # type: ignore[attr-defined]
        RECORD["backbone_training"] = model.backbone.training
        RECORD["after"] = {k: v.detach().clone() for k, v in model.state_dict().items()}


def _fit(config: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "las_tiles"
    load_fixture("folder", "make_las_fixture.py").make_las_folder(root)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(input_channels, "_WARNED", set())
    RECORD.clear()
    main(
        ["fit", "--config", str(REPO / "configs" / config),
         f"--data.init_args.root={root}", f"--data.init_args.cache_dir={tmp_path / 'cache'}",
         "--data.init_args.num_workers=0",
         f"--model.init_args.model_kwargs={json.dumps(TINY_MODELS['sonata_base'])}",
         "--model.init_args.pretrained=false",
         "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1",
         "--trainer.max_epochs=1", "--trainer.accelerator=cpu", "--trainer.devices=1",
         "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
         "--trainer.callbacks+=tests.test_probe_configs.RecordWeights"]
    )  # fmt: skip


def _changed(prefix: str) -> list[str]:
    before, after = RECORD["before"], RECORD["after"]
    return [k for k in before if k.startswith(prefix) and not torch.equal(before[k], after[k])]


def test_probe_config_trains_the_head_alone_on_zero_filled_lidar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.warns(UserWarning, match=r"rgb \(3 channels: red green blue\)") as record:
        _fit("probe_las_sonata.yaml", tmp_path, monkeypatch)
    text = "\n".join(str(w.message) for w in record)
    assert "normal (3 channels: nx ny nz)" in text and "LAS tiles" in text
    assert sum("zero-filled" in str(w.message) for w in record) == 1  # once
    assert _changed("head.")  # the head trained
    assert not _changed("backbone.")  # the backbone did not move
    assert RECORD["backbone_training"] is False  # and stayed in evaluation mode
    trained = [name for _, names in RECORD["groups"] for name in names]
    assert trained and all(name.startswith("head.") for name in trained)
    assert (tmp_path / "runs" / "probe_las_sonata" / "checkpoints" / "last.ckpt").is_file()


def test_finetune_config_warms_the_head_up_with_layer_decay_ready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.warns(UserWarning, match="zero-filled"):
        _fit("finetune_las_sonata.yaml", tmp_path, monkeypatch)
    assert _changed("head.")
    assert not _changed("backbone.")  # epoch 0 of the head warm-up
    groups = RECORD["groups"]
    backbone_lrs = {lr for lr, names in groups if any(n.startswith("backbone.") for n in names)}
    head_lrs = {lr for lr, names in groups if any(n.startswith("head.") for n in names)}
    assert len(backbone_lrs) >= 2  # layer-wise decay: several learning rates down the encoder
    assert max(backbone_lrs) < min(head_lrs)
