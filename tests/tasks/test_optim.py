"""The tasks' default optimiser: parameter groups and schedules.

``lr_scales`` is pinned against Pointcept's own ``build_optimizer`` on its PT-v3m1
(``tests/data/optim/param_groups_reference.json``, written by
``tests/data/optim/make_param_groups_reference.py``); the one-cycle schedule against
PyTorch's ``OneCycleLR`` with Pointcept's arguments over every optimiser step of real runs
(gradient accumulation, resumption); layer-wise decay against the layer numbering the docs
give.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from torch import nn

from lightning_pc.data import SyntheticShapesDataModule
from lightning_pc.models.heads import PointNetwork
from lightning_pc.nn.ptv3 import Block
from lightning_pc.tasks import ClassificationTask, SemanticSegmentationTask
from lightning_pc.tasks.optim import (
    ONECYCLE_DEFAULTS,
    build_scheduler,
    layer_ids,
    param_groups,
)
from tests.conftest import tiny_kwargs

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "optim" / "param_groups_reference.json"


def _lr_of(task: L.LightningModule, groups: list[dict[str, Any]]) -> dict[str, tuple[float, float]]:
    """Parameter name -> (lr, weight decay) of its group."""
    where = {id(p): (g["lr"], g["weight_decay"]) for g in groups for p in g["params"]}
    return {n: where[id(p)] for n, p in task.named_parameters() if id(p) in where}


def _ptv3_task(**kwargs: Any) -> SemanticSegmentationTask:
    return SemanticSegmentationTask(
        model="ptv3", model_kwargs=tiny_kwargs("ptv3"), num_classes=4, **kwargs
    )


# --- lr_scales: Pointcept's param_dicts ------------------------------------------------------
@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    return json.loads(REFERENCE.read_text())


@pytest.mark.parametrize("case", ["block", "attn_then_block", "block_then_attn", "block_no_decay"])
def test_lr_scales_give_pointcepts_param_dict_groups(reference: dict[str, Any], case: str) -> None:
    cfg = reference["config"]
    kwargs = dict(
        grid_size=0.2, stride=cfg["stride"], enc_depths=cfg["enc_depths"],
        enc_channels=cfg["enc_channels"], enc_num_head=cfg["enc_num_head"],
        enc_patch_size=cfg["enc_patch_size"], dec_depths=cfg["dec_depths"],
        dec_channels=cfg["dec_channels"], dec_num_head=cfg["dec_num_head"],
        dec_patch_size=cfg["dec_patch_size"],
    )  # fmt: skip
    lr, wd = reference["lr"], reference["weight_decay"]
    task = SemanticSegmentationTask(
        model="ptv3", model_kwargs=kwargs, in_channels=cfg["in_channels"] - 3, num_classes=4,
        lr=lr, weight_decay=wd, lr_scales=reference[case]["lr_scales"],
    )  # fmt: skip
    got = _lr_of(task, task.optimizer_param_groups())
    expected = {f"model.{k}": tuple(v) for k, v in reference[case]["groups"].items()}
    backbone = {k: v for k, v in got.items() if k.startswith("model.backbone.")}
    assert backbone.keys() == expected.keys()
    for name, (want_lr, want_wd) in expected.items():
        assert backbone[name][0] == pytest.approx(want_lr, rel=1e-12), name
        assert backbone[name][1] == want_wd, name
    # the head matches no keyword: the base rate
    assert {v for k, v in got.items() if k.startswith("model.head.")} == {(lr, wd)}


def test_block_keyword_is_the_block_modules() -> None:
    task = _ptv3_task(lr=0.01, lr_scales={"block": 0.1})
    in_blocks = {id(p) for m in task.modules() if isinstance(m, Block) for p in m.parameters()}
    lrs = _lr_of(task, task.optimizer_param_groups())
    params = dict(task.named_parameters())
    assert in_blocks and len(lrs) == len(params)
    for name, (lr, _) in lrs.items():
        assert lr == pytest.approx(0.001 if id(params[name]) in in_blocks else 0.01), name


def test_block_keyword_matches_subclasses_of_block() -> None:
    class RoPEBlock(Block):  # Utonia's blocks subclass PTv3's
        pass

    block = RoPEBlock(8, 1, 16)
    holder = nn.Module()
    holder.layer0 = block  # no "block" in the names: the class decides
    groups = param_groups(holder, 1.0, 0.0, lr_scales={"block": 0.1})
    assert len(groups) == 1 and groups[0]["lr"] == pytest.approx(0.1)
    assert len(groups[0]["params"]) == len(list(block.parameters()))


def test_keywords_match_names_as_well() -> None:
    task = _ptv3_task(lr=1.0, lr_scales={"head.": 3.0, "embedding": 0.5})
    lrs = _lr_of(task, task.optimizer_param_groups())
    for name, (lr, _) in lrs.items():
        want = 3.0 if name.startswith("model.head.") else 0.5 if ".embedding." in name else 1.0
        assert lr == want, name


def test_no_options_keep_one_group_as_before() -> None:
    task = _ptv3_task(lr=0.02, weight_decay=0.3)
    groups = task.optimizer_param_groups()
    assert len(groups) == 1 and "name" not in groups[0]
    assert groups[0]["lr"] == 0.02 and groups[0]["weight_decay"] == 0.3
    assert len(groups[0]["params"]) == len(list(task.parameters()))


@pytest.mark.parametrize(
    ("scales", "match"),
    [
        ({"block": -1.0}, "must be a number >= 0"),
        ({"block": {"scale": 0.1}}, "lr_scale, weight_decay"),
        ({"block": {"lr_scale": 0.1, "weight_decay": -1}}, "weight_decay must be >= 0"),
    ],
)
def test_bad_lr_scales_are_refused(scales: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _ptv3_task(lr_scales=scales).optimizer_param_groups()


# --- layer-wise decay ---------------------------------------------------------------------
def test_ptv3_layers_follow_the_forward_pass() -> None:
    task = _ptv3_task()
    ids, num_layers = layer_ids(task.model.backbone)
    # tiny PTv3: stem; enc stage 0 (1 block); pooling + enc stage 1 (1 block); unpooling +
    # decoder stage (1 block)
    assert num_layers == 4
    for name, i in ids.items():
        want = (
            0 if name.startswith("embedding.")
            else 1 if name.startswith("enc.0.")
            else 2 if name.startswith(("down.0.", "enc.1.0."))
            else 3 if name.startswith(("up.0.", "dec.0.0."))
            else None
        )  # fmt: skip
        assert i == want, name
    # PT-v3m1 base: 1 + 14 encoder + 8 decoder blocks
    from lightning_pc.models.ptv3 import PTv3Backbone

    assert layer_ids(PTv3Backbone())[1] == 23
    assert layer_ids(PTv3Backbone(enc_mode=True))[1] == 15


def test_layer_decay_gives_each_layer_its_power() -> None:
    decay = 0.5
    task = _ptv3_task(lr=1.0, layer_decay=decay)
    lrs = _lr_of(task, task.optimizer_param_groups())
    ids, num_layers = layer_ids(task.model.backbone)
    for name, (lr, _) in lrs.items():
        if name.startswith("model.head."):
            assert lr == 1.0
        else:
            i = ids[name[len("model.backbone.") :]]
            assert lr == pytest.approx(decay ** (num_layers - i)), name
    # deepest backbone layer decay^1, stem decay^L
    assert lrs["model.backbone.dec.0.0.norm1.weight"][0] == pytest.approx(decay)
    assert lrs["model.backbone.embedding.conv.weight"][0] == pytest.approx(decay**num_layers)


def test_layer_decay_multiplies_lr_scales() -> None:
    task = _ptv3_task(lr=1.0, layer_decay=0.5, lr_scales={"block": 0.1})
    lrs = _lr_of(task, task.optimizer_param_groups())
    assert lrs["model.backbone.enc.1.0.attn.qkv.weight"][0] == pytest.approx(0.1 * 0.5**2)
    assert lrs["model.backbone.down.0.proj.weight"][0] == pytest.approx(0.5**2)
    assert {lr for k, (lr, _) in lrs.items() if k.startswith("model.head.")} == {1.0}


def test_generic_layers_are_the_backbones_children_in_order() -> None:
    class Backbone(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Linear(3, 4)
            self.stages = nn.ModuleList([nn.Linear(4, 4), nn.Sequential(nn.Linear(4, 4))])
            self.norm = nn.LayerNorm(4)
            self.token = nn.Parameter(torch.zeros(4))

    ids, num_layers = layer_ids(Backbone())
    assert num_layers == 4
    assert ids == {
        "token": 0, "stem.weight": 0, "stem.bias": 0, "stages.0.weight": 1, "stages.0.bias": 1,
        "stages.1.0.weight": 2, "stages.1.0.bias": 2, "norm.weight": 3, "norm.bias": 3,
    }  # fmt: skip


def test_a_backbone_may_number_its_own_layers() -> None:
    class Backbone(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(2, 2), nn.Linear(2, 2)

        def layer_ids(self) -> dict[str, int]:
            return {"a.weight": 1, "a.bias": 1, "b.weight": 0, "b.bias": 0}

    net = PointNetwork(Backbone(), nn.Linear(2, 2))
    task = ClassificationTask(model=net, num_classes=2, lr=1.0, layer_decay=0.5)
    lrs = _lr_of(task, task.optimizer_param_groups())
    assert lrs["model.backbone.a.weight"][0] == 0.5
    assert lrs["model.backbone.b.weight"][0] == 0.25
    assert lrs["model.head.weight"][0] == 1.0


def test_layer_decay_needs_a_backbone() -> None:
    task = ClassificationTask(model=nn.Linear(3, 2), num_classes=2, layer_decay=0.9)
    with pytest.raises(ValueError, match="layer_decay needs a network with a backbone"):
        task.optimizer_param_groups()
    with pytest.raises(ValueError, match=r"layer_decay must be in \(0, 1\]"):
        _ptv3_task(layer_decay=1.5)


# --- schedules over real runs --------------------------------------------------------------
class LrRecorder(L.Callback):
    """Every group's learning rate (and AdamW beta1) before every optimiser step."""

    def __init__(self) -> None:
        self.lrs: list[list[float]] = []
        self.betas: list[list[float]] = []

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any
    ) -> None:
        self.lrs.append([g["lr"] for g in optimizer.param_groups])
        self.betas.append([g["betas"][0] for g in optimizer.param_groups if "betas" in g])


def _fit(
    task: L.LightningModule,
    tmp_path: Path,
    max_epochs: int,
    ckpt_path: str | None = None,
    extra: list[L.Callback] | None = None,
    **trainer: Any,
) -> LrRecorder:
    recorder = LrRecorder()
    data = SyntheticShapesDataModule(num_train=20, num_val=4, num_test=4, num_points=32,
                                     batch_size=4)  # fmt: skip
    L.Trainer(
        default_root_dir=tmp_path, max_epochs=max_epochs, accelerator="cpu", devices=1,
        logger=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, callbacks=[recorder, *(extra or [])], **trainer,
    ).fit(task, data, ckpt_path=ckpt_path)  # fmt: skip
    return recorder


def _flat(rows: list[list[float]]) -> list[float]:
    return [v for row in rows for v in row]


def _cls_task(**kwargs: Any) -> ClassificationTask:
    torch.manual_seed(0)
    return ClassificationTask(
        model="pointnet2_ssg", model_kwargs=tiny_kwargs("pointnet2_ssg"), num_classes=12, **kwargs
    )


def _torch_onecycle(max_lrs: list[float], total: int, **kwargs: Any) -> tuple[list, list]:
    """Learning rates and beta1 of torch's OneCycleLR before each of ``total`` steps."""
    params = [nn.Parameter(torch.zeros(1)) for _ in max_lrs]
    opt = torch.optim.AdamW([{"params": [p]} for p in params], lr=1.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=max_lrs, total_steps=total, **{**ONECYCLE_DEFAULTS, **kwargs}
    )
    lrs, betas = [], []
    for _ in range(total):
        lrs.append([g["lr"] for g in opt.param_groups])
        betas.append([g["betas"][0] for g in opt.param_groups])
        opt.step()
        sched.step()
    return lrs, betas


@pytest.mark.parametrize("accumulate", [1, 2])
def test_onecycle_steps_per_optimizer_step_as_torchs_curve(tmp_path: Path, accumulate: int) -> None:
    # 5 batches per epoch, 3 epochs: 15 steps, or ceil(5 / 2) * 3 = 9 with accumulation
    task = _cls_task(lr=0.006, weight_decay=0.05, lr_scales={"head": 0.1}, scheduler="onecycle")
    rec = _fit(task, tmp_path, 3, accumulate_grad_batches=accumulate)
    total = math.ceil(5 / accumulate) * 3
    assert len(rec.lrs) == total
    want_lrs, want_betas = _torch_onecycle([0.006, 0.0006], total)
    # group 0: the default; group 1: the head (first met after the backbone's parameters)
    assert _flat(rec.lrs) == pytest.approx(_flat(want_lrs), rel=1e-12)
    assert _flat(rec.betas) == pytest.approx(_flat(want_betas), rel=1e-12)
    # Pointcept's numbers: the last step at max / 10 / 1000 (so short a run has no warm-up
    # step: 5% of it is under one step)
    assert rec.lrs[-1] == pytest.approx([0.006 / 1e4, 0.0006 / 1e4], rel=1e-9)
    assert len({tuple(b) for b in rec.betas}) > 1  # beta1 cycles


class StopAfterFirstEpoch(L.Callback):
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.should_stop = True


def test_onecycle_resumes_where_it_stopped(tmp_path: Path) -> None:
    full = _fit(_cls_task(scheduler="onecycle", lr=0.01), tmp_path / "full", 2)
    assert len(full.lrs) == 10
    first = tmp_path / "first"
    ckpt = L.pytorch.callbacks.ModelCheckpoint(dirpath=first, save_last=True)
    stopped = _fit(
        _cls_task(scheduler="onecycle", lr=0.01), first, 2, extra=[ckpt, StopAfterFirstEpoch()]
    )
    assert len(stopped.lrs) == 5
    resumed = _fit(
        _cls_task(scheduler="onecycle", lr=0.01), first, 2, ckpt_path=str(first / "last.ckpt")
    )
    assert _flat(stopped.lrs + resumed.lrs) == pytest.approx(_flat(full.lrs), rel=1e-12)


def test_scheduler_kwargs_reach_onecycle(tmp_path: Path) -> None:
    kwargs = {"pct_start": 0.3, "div_factor": 25.0, "final_div_factor": 100.0,
              "cycle_momentum": False}  # fmt: skip
    task = _cls_task(lr=0.01, scheduler="onecycle", scheduler_kwargs=kwargs)
    rec = _fit(task, tmp_path, 2)
    want, _ = _torch_onecycle([0.01], 10, **kwargs)
    assert _flat(rec.lrs) == pytest.approx(_flat(want), rel=1e-12)
    assert rec.lrs[0] == pytest.approx([0.01 / 25])  # a warm-up from max / div_factor
    assert rec.betas == [[0.9]] * 10  # no momentum cycling: AdamW's default beta1


def test_poly_is_pointcepts_polylr(tmp_path: Path) -> None:
    rec = _fit(_cls_task(lr=0.1, optimizer="sgd", scheduler="poly"), tmp_path, 2)
    assert _flat(rec.lrs) == pytest.approx(
        [0.1 * (1 - s / 11) ** 0.9 for s in range(10)], rel=1e-12
    )


def test_cosine_with_groups_ends_each_at_its_share_of_min_lr(tmp_path: Path) -> None:
    task = _cls_task(lr=0.1, min_lr=0.001, lr_scales={"head": 0.1}, scheduler="cosine")
    rec = _fit(task, tmp_path, 3, limit_train_batches=1)
    cos = [0.001 + (0.1 - 0.001) * 0.5 * (1 + math.cos(math.pi * e / 3)) for e in range(3)]
    assert _flat(rec.lrs) == pytest.approx(_flat([[c, c / 10] for c in cos]), rel=1e-12)


def test_one_group_cosine_is_unchanged(tmp_path: Path) -> None:
    opt = torch.optim.SGD(_cls_task().optimizer_param_groups(), lr=0.1)
    config = build_scheduler(opt, "cosine", total_steps=float("inf"), max_epochs=3, min_lr=1e-3)
    assert config is not None and config["interval"] == "epoch"
    assert isinstance(config["scheduler"], torch.optim.lr_scheduler.CosineAnnealingLR)
    rec = _fit(_cls_task(lr=0.1, min_lr=0.001), tmp_path, 3, limit_train_batches=1)
    cos = [0.001 + (0.1 - 0.001) * 0.5 * (1 + math.cos(math.pi * e / 3)) for e in range(3)]
    assert _flat(rec.lrs) == pytest.approx(cos, rel=1e-12)


def test_onecycle_needs_the_run_length() -> None:
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match="needs the run's length"):
        build_scheduler(opt, "onecycle", total_steps=float("inf"))
    with pytest.raises(ValueError, match="'warmup' is not an argument of the onecycle"):
        build_scheduler(opt, "onecycle", total_steps=10, scheduler_kwargs={"warmup": 3})
    with pytest.raises(ValueError, match="unknown scheduler 'multistep'"):
        build_scheduler(opt, "multistep", total_steps=10)


def test_sgd_takes_nesterov() -> None:
    task = _cls_task(optimizer="sgd", lr=0.1, nesterov=True, scheduler="none")
    opt = task.configure_optimizers()
    assert isinstance(opt, torch.optim.SGD) and opt.param_groups[0]["nesterov"] is True


def test_param_groups_leave_out_frozen_parameters_unless_kept() -> None:
    net = PointNetwork(nn.Linear(2, 2), nn.Linear(2, 2)).freeze_backbone()
    holder = nn.Module()
    holder.model = net
    kept = param_groups(holder, 1.0, 0.0, keep_frozen=("model.backbone.",))
    assert sum(len(g["params"]) for g in kept) == 4
    assert sum(len(g["params"]) for g in param_groups(holder, 1.0, 0.0)) == 2


def test_step_decays_per_epoch_down_to_its_floor(tmp_path: Path) -> None:
    # the PointNet++ release: lr * 0.5 ** (epoch // 2) here, never under min_lr
    task = _cls_task(optimizer="adam", lr=0.1, min_lr=0.02, scheduler="step",
                     scheduler_kwargs={"step_size": 2, "gamma": 0.5})  # fmt: skip
    rec = _fit(task, tmp_path, 6, limit_train_batches=1)
    assert _flat(rec.lrs) == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])
    task = _cls_task(optimizer="adam", lr=0.1, min_lr=0.03, scheduler="step",
                     scheduler_kwargs={"step_size": 1, "gamma": 0.5})  # fmt: skip
    rec = _fit(task, tmp_path / "floor", 4, limit_train_batches=1)
    assert _flat(rec.lrs) == pytest.approx([0.1, 0.05, 0.03, 0.03])


def test_adam_is_plain_adam() -> None:
    opt = _cls_task(optimizer="adam", weight_decay=1e-4, scheduler="none").configure_optimizers()
    assert type(opt) is torch.optim.Adam and opt.param_groups[0]["weight_decay"] == 1e-4
