"""The shipped configs' optimisation recipes are the papers' / Pointcept's numbers.

Each config's ``model.init_args`` (with a tiny network) builds the task; the parameter
groups, the loss and the schedule are checked against the numbers of the reference config
named in the config's header (Pointcept's ``configs/s3dis/semseg-pt-v3m1-*``,
``semseg-spunet-v1m1-0-base`` for S3DIS / ScanNet / SemanticKITTI; the DGCNN and PointNet++
releases). Every config also runs end to end in ``tests/test_cli.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from torch import nn

from lightning_pc.tasks import PartSegmentationTask, SemanticSegmentationTask
from lightning_pc.tasks.losses import WeightedLossSum
from lightning_pc.tasks.optim import build_scheduler
from tests.conftest import tiny_kwargs

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _task(name: str, **over: Any) -> Any:
    source = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    assert "optimizer" not in source and "lr_scheduler" not in source, "the task's optimiser"
    args = dict(source["model"]["init_args"])
    args["model_kwargs"] = tiny_kwargs(args["model"])
    cls = {
        "SemanticSegmentationTask": SemanticSegmentationTask,
        "PartSegmentationTask": PartSegmentationTask,
    }[source["model"]["class_path"].rsplit(".", 1)[-1]]
    return cls(**{**args, **over})


def _lrs(task: Any) -> dict[str, float]:
    where = {id(p): g["lr"] for g in task.optimizer_param_groups() for p in g["params"]}
    return {n: where[id(p)] for n, p in task.named_parameters()}


def _schedule(task: Any, steps: int, epochs: int | None = None) -> list[float]:
    """Base-group learning rate over ``steps`` scheduler steps."""
    groups = task.optimizer_param_groups()
    hp = task.hparams
    opt_cls = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam, "sgd": torch.optim.SGD}
    opt = opt_cls[hp["optimizer"]](groups, lr=hp["lr"])
    config = build_scheduler(
        opt, hp["scheduler"], total_steps=steps, max_epochs=epochs, min_lr=hp["min_lr"],
        scheduler_kwargs=hp.get("scheduler_kwargs"),
    )  # fmt: skip
    assert config is not None
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        config["scheduler"].step()
    return out


def test_s3dis_ptv3_is_pointcepts_recipe() -> None:
    task = _task("s3dis_ptv3", num_classes=13)
    hp = task.hparams
    assert (hp["optimizer"], hp["lr"], hp["weight_decay"]) == ("adamw", 0.006, 0.05)
    # param_dicts = [dict(keyword="block", lr=0.0006)]
    blocks = {n for n, m in task.named_modules() if type(m).__name__ == "Block"}
    for name, lr in _lrs(task).items():
        in_block = any(name.startswith(b + ".") for b in blocks)
        assert lr == pytest.approx(0.0006 if in_block else 0.006), name
    # OneCycleLR(max_lr=[0.006, 0.0006], pct_start=0.05, anneal cos, div 10, final div 1000)
    lrs = _schedule(task, 1000)
    assert lrs[0] == pytest.approx(0.0006) and max(lrs) == pytest.approx(0.006, rel=1e-4)
    assert lrs.index(max(lrs)) == 49 and lrs[-1] == pytest.approx(0.006 / 1e4, rel=1e-3)
    # criteria: CrossEntropyLoss + LovaszLoss(multiclass), weights 1 and 1
    assert isinstance(task.criterion, WeightedLossSum)
    assert task.criterion.weights == {"cross_entropy": 1.0, "lovasz": 1.0}


def test_scannet_sparse_unet_is_pointcepts_recipe() -> None:
    task = _task("scannet_sparse_unet", num_classes=20)
    hp = task.hparams
    assert (hp["optimizer"], hp["lr"], hp["momentum"], hp["nesterov"], hp["weight_decay"]) == (
        "sgd", 0.05, 0.9, True, 0.0001,
    )  # fmt: skip
    lrs = _schedule(task, 1000)
    assert lrs[0] == pytest.approx(0.005) and lrs[-1] == pytest.approx(0.05 / 1e5, rel=1e-3)
    assert isinstance(task.criterion, nn.CrossEntropyLoss) and task.criterion.ignore_index == -1


def test_s3dis_sparse_unet_is_pointcepts_recipe() -> None:
    task = _task("s3dis_sparse_unet", num_classes=13)
    assert (task.hparams["lr"], task.hparams["nesterov"]) == (0.1, True)
    lrs = _schedule(task, 100)  # PolyLR: (1 - s / (total + 1)) ** 0.9
    assert lrs == pytest.approx([0.1 * (1 - s / 101) ** 0.9 for s in range(100)])


def test_semantickitti_sparse_unet_is_pointcepts_recipe() -> None:
    task = _task("semantickitti_sparse_unet", num_classes=19)
    hp = task.hparams
    assert (hp["optimizer"], hp["lr"], hp["weight_decay"]) == ("adamw", 0.002, 0.005)
    lrs = _schedule(task, 1000)
    assert lrs.index(max(lrs)) == 39 and lrs[-1] == pytest.approx(0.002 / 1e3, rel=1e-3)
    assert task.criterion.weight is not None
    assert task.criterion.weight[:3].tolist() == pytest.approx([3.1557, 8.7029, 7.8281])


@pytest.mark.parametrize(
    ("name", "step", "gamma"), [("s3dis_pointnet2", 10, 0.7), ("shapenetpart_pointnet2", 20, 0.5)]
)
def test_pointnet2_step_decay_has_the_releases_floor(name: str, step: int, gamma: float) -> None:
    task = _task(name)
    lrs = _schedule(task, 300, epochs=300)
    want = [max(0.001 * gamma ** (e // step), 1e-5) for e in range(300)]
    assert lrs == pytest.approx(want)
    assert task.hparams["optimizer"] == "adam" and task.hparams["weight_decay"] == 1e-4


def test_dgcnn_part_smoothing_is_the_releases() -> None:
    task = _task("shapenetpart_dgcnn")
    logits = torch.randn(64, 50)
    target = torch.randint(0, 50, (64,))
    # the release's cal_loss: 1 - 0.2 on the true part, 0.2 / 49 on each other one
    one_hot = torch.nn.functional.one_hot(target, 50).float()
    soft = one_hot * 0.8 + (1 - one_hot) * 0.2 / 49
    release = -(soft * logits.log_softmax(1)).sum(1).mean()
    assert task.criterion(logits, target).item() == pytest.approx(release.item(), rel=1e-6)
