"""A user's own project (task and data module subclasses) trained through the CLI."""

from __future__ import annotations

import csv
import json
import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY_MODELS

MYPROJ = '''
"""A user's project: focal loss on the procedural shapes, with a smaller default data set."""

import torch
from torch import nn

from lightning_pc.data import SyntheticShapesDataModule
from lightning_pc.tasks import ClassificationTask


class FocalLoss(nn.Module):
    def __init__(self, gamma: float) -> None:
        super().__init__()
        self.gamma = gamma
        self.calls = 0

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        logp = logits.log_softmax(1).gather(1, target.view(-1, 1)).squeeze(1)
        return (-((1 - logp.exp()) ** self.gamma) * logp).mean()


class FocalTask(ClassificationTask):
    def __init__(self, gamma: float = 2.0, **kwargs) -> None:
        super().__init__(**kwargs)

    def configure_losses(self) -> None:
        self.criterion = FocalLoss(self.hparams["gamma"])

    def on_train_epoch_end(self) -> None:
        self.log("focal_calls", float(self.criterion.calls))
        self.log("focal_gamma", float(self.criterion.gamma))


class MyData(SyntheticShapesDataModule):
    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("num_train", 8)
        kwargs.setdefault("num_val", 4)
        kwargs.setdefault("num_test", 4)
        super().__init__(**kwargs)
'''


@pytest.mark.slow
def test_user_subclasses_run_through_the_cli(tmp_path: Path) -> None:
    (tmp_path / "myproj.py").write_text(textwrap.dedent(MYPROJ))
    # the user's folder first, then whatever this checkout is run with (a worktree's code)
    pythonpath = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": pythonpath, "PYTHONWARNINGS": "ignore"}
    args = [
        sys.executable,
        "-m",
        "lightning_pc",
        "fit",
        "--model=myproj.FocalTask",
        "--model.init_args.gamma=3.0",
        "--model.init_args.model=pointnet2_ssg",
        f"--model.init_args.model_kwargs={json.dumps(TINY_MODELS['pointnet2_ssg'])}",
        "--data=myproj.MyData",
        "--data.init_args.num_points=48",
        "--data.init_args.batch_size=4",
        # (the CLI passes every default explicitly, so MyData's setdefault applies in Python only)
        "--data.init_args.num_train=8",
        "--data.init_args.num_val=4",
        "--trainer.max_epochs=1",
        "--trainer.accelerator=cpu",
        "--trainer.devices=1",
        "--trainer.log_every_n_steps=1",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--trainer.num_sanity_val_steps=0",
        "--trainer.logger=CSVLogger",
        f"--trainer.logger.save_dir={tmp_path / 'logs'}",
    ]
    out = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-4000:]
    assert "Training finished." in out.stdout and "lightning-pc test" in out.stdout
    (metrics,) = (tmp_path / "logs").glob("lightning_logs/version_*/metrics.csv")
    with metrics.open() as f:
        rows = list(csv.DictReader(f))
    calls = [float(r["focal_calls"]) for r in rows if r.get("focal_calls")]
    gamma = [float(r["focal_gamma"]) for r in rows if r.get("focal_gamma")]
    # 8 clouds / batch 4 = 2 training steps, plus one validation pass
    assert calls and calls[-1] >= 2 and gamma == [3.0]
    assert [float(r["val/acc"]) for r in rows if r.get("val/acc")]
    (ckpt,) = (tmp_path / "logs").glob("lightning_logs/version_*/checkpoints/*.ckpt")
    saved = torch.load(ckpt, weights_only=True)
    assert saved["hyper_parameters"]["gamma"] == 3.0
    assert saved["hyper_parameters"]["num_classes"] == 12  # linked from MyData


MYNET = '''
"""A user's network: a per-point MLP and a max over each cloud, registered by name."""

from torch import nn
from torch_geometric.nn import global_max_pool

from lightning_pc.models import register_model


class MyNet(nn.Module):
    def __init__(self, num_classes: int, in_channels: int = 0, width: int = 16) -> None:
        super().__init__()
        self.point = nn.Sequential(nn.Linear(3, width), nn.BatchNorm1d(width), nn.ReLU())
        self.head = nn.Linear(width, num_classes)

    def forward(self, data):
        return self.head(global_max_pool(self.point(data.pos), data.batch))


@register_model("my_net")
def my_net(num_classes: int, **kwargs) -> nn.Module:
    return MyNet(num_classes, **kwargs)
'''

MYNET_CONFIG = """
imports: [mynet]
model:
  class_path: ClassificationTask
  init_args:
    model: my_net
    model_kwargs: {width: 8}
data:
  class_path: SyntheticShapesDataModule
  init_args: {num_train: 8, num_val: 4, num_test: 4, num_points: 32, batch_size: 4}
trainer:
  max_epochs: 1
  accelerator: cpu
  devices: 1
  enable_progress_bar: false
  enable_model_summary: false
  default_root_dir: runs
  logger: {class_path: CSVLogger, init_args: {save_dir: runs}}
  callbacks:
    - class_path: lightning_pc.callbacks.ModelCheckpoint
      init_args: {dirpath: runs/checkpoints, filename: best, monitor: val/acc, mode: max}
"""


@pytest.mark.slow
def test_registered_user_network_is_found_by_the_console_script(tmp_path: Path) -> None:
    """``imports:`` in the config imports the user's module from the working folder (not on
    PYTHONPATH), for ``fit`` and for the ``test`` command that ``fit`` prints."""
    (tmp_path / "mynet.py").write_text(MYNET)
    (tmp_path / "fit.yaml").write_text(MYNET_CONFIG)
    (tmp_path / "noimport.yaml").write_text(MYNET_CONFIG.replace("imports: [mynet]", ""))
    script = str(Path(sys.executable).with_name("lightning-pc"))
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}  # PYTHONPATH: the package only

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [script, *args], cwd=tmp_path, capture_output=True, text=True, timeout=180, env=env
        )

    out = run("fit", "--config", "noimport.yaml")
    assert out.returncode != 0 and "unknown model 'my_net'" in out.stderr
    out = run("fit", "--config", "fit.yaml")
    assert out.returncode == 0, out.stderr[-4000:]
    evaluate = next(line for line in out.stdout.splitlines() if "lightning-pc test" in line)
    args = shlex.split(evaluate.strip())[1:]
    out = run(*args)
    assert out.returncode == 0, out.stderr[-4000:]
    assert "test/acc" in out.stdout
