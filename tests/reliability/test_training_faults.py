"""Fault injection for training: one-cloud batches, NaN, damaged checkpoints, resumption, DDP.

Every case runs on fixtures written here in real file formats (XYZ text, ``.npy``) or on
the synthetic data module, asserts the user's files are unchanged (hashes before and
after), and asserts that nothing wrong is served: no NaN weights, no half-written
checkpoint, no silently shortened epoch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
import yaml
from torch import nn

from lightning_pc.callbacks import DamagedCheckpointError, ModelCheckpoint, SafeCheckpointIO
from lightning_pc.callbacks.checkpoint_io import atomic_torch_save, checkpoint_problem
from lightning_pc.cli import DDP_TIMEOUT_ENV, PointCloudCLI, _collective_timeout_message, main
from lightning_pc.data import PointCloudFolderDataModule, SyntheticShapesDataModule
from lightning_pc.data.transforms import Transform
from lightning_pc.models import create_model
from lightning_pc.tasks import ClassificationTask, PartSegmentationTask
from lightning_pc.tasks.guards import NonFiniteError
from tests.conftest import tiny_kwargs
from tests.models.shapes import make_batch

# the one tiny-model table (tests/conftest.py), with two hidden head layers where a test
# reads the head's first norm
TINY: dict[str, dict[str, Any]] = {
    name: tiny_kwargs(name)
    for name in (
        "pointnet2_ssg",
        "pointnet2_msg",
        "dgcnn",
        "sparse_resnet",
        "pointnet2_ssg_part_seg",
        "dgcnn_part_seg",
        "pointnet2_ssg_sem_seg",
        "dgcnn_sem_seg",
        "sparse_unet",
    )
}
for _name in ("pointnet2_ssg", "pointnet2_msg", "dgcnn"):
    TINY[_name]["head"] = [16, 16]
PER_CLOUD = {"pointnet2_ssg", "pointnet2_msg", "dgcnn", "sparse_resnet"}


@pytest.fixture(autouse=True)
def _own_seed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """``seed_everything`` (the CLI runs here call it) sets these for the whole process:
    start each test without them and give the process back its own afterwards."""
    for name in ("PL_GLOBAL_SEED", "PL_SEED_WORKERS"):
        monkeypatch.delenv(name, raising=False)


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


@pytest.mark.parametrize(
    "name", ["pointnet2_ssg", "pointnet2_msg", "dgcnn", "sparse_resnet", "dgcnn_part_seg"]
)
def test_fit_whose_last_batch_holds_one_cloud(name: str, tmp_path: Path) -> None:
    """Five training clouds in batches of four: the second batch is one cloud (the issue's
    25 clouds in batches of 4 end the same way); the epoch ends, with every cloud used."""
    torch.manual_seed(0)
    part = name.endswith("part_seg")
    data = SyntheticShapesDataModule(
        num_train=5,
        num_val=3,
        num_test=1,
        num_points=64,
        batch_size=4,
        train_transforms=[],
        task="part_segmentation" if part else "classification",
    )
    task: L.LightningModule
    if part:
        task = PartSegmentationTask(
            model=name,
            model_kwargs={**TINY[name], "num_categories": 12},
            num_classes=data.num_classes,
            part_offsets=data.part_offsets,
            lr=1e-2,
        )
    else:
        task = ClassificationTask(model=name, model_kwargs=TINY[name], num_classes=12, lr=1e-2)
    counter = CloudCounter()
    trainer = _trainer(tmp_path, max_epochs=2, callbacks=[counter])
    trainer.fit(task, data)
    assert counter.sizes == [4, 1, 4, 1]
    assert trainer.global_step == 4
    assert all(torch.isfinite(p).all() for p in task.parameters())
    assert torch.isfinite(torch.tensor(float(trainer.callback_metrics["val/loss"])))


# --- non-finite inputs and losses -------------------------------------------------------------
def write_scan_folder(root: Path, outlier: tuple[str, float] | None = None) -> Path:
    """A user's folder of XYZ scans, ``root/{train,test}/{box,sphere}/scan_<k>.xyz``.

    ``outlier=(relative path, value)`` writes that file with one coordinate set to
    ``value`` (finite, so the reader and the cache accept it): ``3e38`` overflows float32
    to ``inf`` under a 1.2x scaling augmentation; ``1e20`` stays finite but its square
    overflows inside the network.
    """
    rng = np.random.default_rng(0)
    for split, count in (("train", 3), ("test", 2)):
        for cls in ("box", "sphere"):
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(count):
                pts = rng.normal(size=(48, 3))
                if cls == "sphere":
                    pts /= np.linalg.norm(pts, axis=1, keepdims=True)
                else:
                    pts = np.clip(pts, -1, 1)
                name = f"{split}/{cls}/scan_{k}.xyz"
                if outlier is not None and name == outlier[0]:
                    pts[5, 1] = outlier[1]
                np.savetxt(root / name, pts, fmt="%.6g")
    return root


class Poison(Transform):
    """A test transform: NaN on one point of the clouds of shape class ``category``."""

    def __init__(self, category: int) -> None:
        self.category = category

    def forward(self, data: Any, generator: torch.Generator | None) -> Any:
        shape_class = data.category if "category" in data else data.y  # part seg / classif.
        if int(shape_class.view(-1)[0]) == self.category:
            data.pos = data.pos.clone()
            data.pos[3, 0] = float("nan")
        return data


def _folder_data(root: Path, cache: Path, **kwargs: Any) -> PointCloudFolderDataModule:
    args: dict[str, Any] = dict(
        root=str(root),
        num_points=None,
        batch_size=4,
        num_workers=0,
        cache_dir=str(cache),
        train_transforms=[{"class_path": "RandomScale", "init_args": {"low": 1.2, "high": 1.5}}],
        eval_transforms=[],
    )
    args.update(kwargs)
    return PointCloudFolderDataModule(**args)


class StepWatch(L.Callback):
    """Records, per training step, the sample indices and whether parameters and buffers changed."""

    def __init__(self) -> None:
        self.steps: list[tuple[list[int], bool]] = []

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: Any, batch: Any, i: int) -> None:
        self._before = [t.detach().clone() for t in pl_module.state_dict().values()]
        self._idx = batch.idx.tolist()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, i: int
    ) -> None:
        after = list(pl_module.state_dict().values())
        same = all(torch.equal(a, b) for a, b in zip(self._before, after))
        self.steps.append((self._idx, not same))


@pytest.mark.parametrize("name", ["dgcnn", "pointnet2_ssg"])
def test_nan_input_stops_training_naming_the_file(name: str, tmp_path: Path) -> None:
    """The issue's DGCNN trained to NaN and exited 0, PointNet++ raised naming nothing."""
    root = write_scan_folder(tmp_path / "scans", ("train/sphere/scan_1.xyz", 3e38))
    before = tree_hashes(root)
    task = ClassificationTask(model=name, model_kwargs=TINY[name], num_classes=2)
    watch = StepWatch()
    trainer = _trainer(tmp_path, max_epochs=2, callbacks=[watch])
    with pytest.raises(NonFiniteError) as error:
        trainer.fit(task, _folder_data(root, tmp_path / "cache"))
    message = str(error.value)
    assert str(root / "train" / "sphere" / "scan_1.xyz") in message
    assert "batch.pos" in message and "train batch" in message
    assert "scan_0" not in message  # only the offending cloud is named
    # nothing trained on it: every step before the bad batch was a finite update
    assert all(torch.isfinite(p).all() for p in task.state_dict().values())
    assert tree_hashes(root) == before


def test_nan_input_skipped_when_asked(tmp_path: Path) -> None:
    root = write_scan_folder(tmp_path / "scans", ("train/box/scan_2.xyz", 3e38))
    before = tree_hashes(root)
    data = _folder_data(root, tmp_path / "cache")
    task = ClassificationTask(
        model="dgcnn", model_kwargs=TINY["dgcnn"], num_classes=2, nonfinite="skip"
    )
    watch = StepWatch()
    trainer = _trainer(tmp_path, max_epochs=2, callbacks=[watch])
    with pytest.warns(UserWarning, match=r"(?s)skipped: .*train/box/scan_2\.xyz"):
        trainer.fit(task, data)
    bad = data.datasets["train"].names.index("train/box/scan_2.xyz")
    # 6 clouds in batches of 4 and 2, two epochs; the bad cloud's batch left the weights and
    # the batch-norm statistics exactly as they were, the others trained
    assert len(watch.steps) == 4
    for indices, changed in watch.steps:
        assert changed == (bad not in indices), (indices, changed)
    assert all(torch.isfinite(p).all() for p in task.state_dict().values())
    assert tree_hashes(root) == before


def test_nonfinite_loss_from_finite_input_names_the_batch(tmp_path: Path) -> None:
    """A coordinate of 1e20 is finite, but DGCNN's kNN distances overflow: NaN loss."""
    root = write_scan_folder(tmp_path / "scans", ("train/box/scan_0.xyz", 1e20))
    before = tree_hashes(root)
    data = _folder_data(root, tmp_path / "cache", train_transforms=[])
    task = ClassificationTask(model="dgcnn", model_kwargs=TINY["dgcnn"], num_classes=2)
    with pytest.raises(NonFiniteError, match="non-finite training loss") as error:
        _trainer(tmp_path, max_epochs=1).fit(task, data)
    assert str(root / "train" / "box" / "scan_0.xyz") in str(error.value)
    assert all(torch.isfinite(p).all() for p in task.state_dict().values())
    assert tree_hashes(root) == before


def test_nan_in_validation_and_predict_raises_even_when_skipping(tmp_path: Path) -> None:
    """Evaluation never leaves a cloud out silently: it raises, naming the file."""
    root = write_scan_folder(tmp_path / "scans", ("test/box/scan_1.xyz", 3e38))
    before = tree_hashes(root)
    scale = [{"class_path": "RandomScale", "init_args": {"low": 1.2, "high": 1.5}}]
    data = _folder_data(root, tmp_path / "cache", eval_transforms=scale)
    task = ClassificationTask(
        model="dgcnn", model_kwargs=TINY["dgcnn"], num_classes=2, nonfinite="skip"
    )
    trainer = _trainer(tmp_path, max_epochs=1)
    with pytest.raises(NonFiniteError, match=r"(?s)val batch .*test/box/scan_1\.xyz"):
        trainer.fit(task, data)
    with pytest.raises(NonFiniteError, match=r"(?s)predict batch .*test/box/scan_1\.xyz"):
        _trainer(tmp_path).predict(task, data)
    assert tree_hashes(root) == before


@pytest.mark.parametrize("nonfinite", ["raise", "skip"])
def test_part_segmentation_guard(nonfinite: str, tmp_path: Path) -> None:
    """Part segmentation (per-point outputs) on the synthetic shapes: a generated sample has
    no file, and the message says which sample it is."""
    data = SyntheticShapesDataModule(
        num_train=6,
        num_val=2,
        num_test=1,
        num_points=48,
        task="part_segmentation",
        batch_size=3,
        train_transforms=[Poison(category=2)],
    )
    task = PartSegmentationTask(
        model="dgcnn_part_seg",
        model_kwargs={**TINY["dgcnn_part_seg"], "num_categories": 12},
        num_classes=data.num_classes,
        part_offsets=data.part_offsets,
        nonfinite=nonfinite,  # type: ignore[arg-type]
    )
    trainer = _trainer(tmp_path, max_epochs=1)
    if nonfinite == "raise":
        with pytest.raises(NonFiniteError, match=r"sample 2 of SyntheticShapes \(no source file\)"):
            trainer.fit(task, data)
    else:
        with pytest.warns(UserWarning, match=r"sample 2 of SyntheticShapes"):
            trainer.fit(task, data)
        assert trainer.global_step == 2
    assert all(torch.isfinite(p).all() for p in task.state_dict().values())


def test_nonfinite_argument_is_checked() -> None:
    with pytest.raises(ValueError, match="nonfinite"):
        ClassificationTask(model_kwargs=TINY["pointnet2_ssg"], nonfinite="ignore")  # type: ignore[arg-type]


# --- kills, restarts and checkpoints ----------------------------------------------------------
class LossRecorder(L.Callback):
    """Appends ``epoch batch coordinate-sum loss`` of every training step to ``path``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, i: int
    ) -> None:
        with open(self.path, "a") as f:
            data = float(batch.pos.double().sum())
            f.write(f"{trainer.current_epoch} {i} {data!r} {float(outputs['loss'])!r}\n")


class Crash(L.Callback):
    """Stops the process's training at (``epoch``, ``batch``) as a kill would: no checkpoint."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: Any, batch: Any, i: int) -> None:
        if (trainer.current_epoch, i) == (self.epoch, self.batch):
            raise SystemExit(137)


def _resume_config(tmp_path: Path, workers: int) -> Path:
    config = {
        "seed_everything": 7,
        "trainer": {
            "max_epochs": 3,
            "accelerator": "cpu",
            "devices": 1,
            "logger": False,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "limit_val_batches": 2,
            "callbacks": [
                {
                    "class_path": "lightning_pc.callbacks.ModelCheckpoint",
                    "init_args": {
                        "monitor": "val/acc",
                        "mode": "max",
                        "dirpath": "checkpoints",
                        "filename": "best",
                        "save_last": True,
                    },
                }
            ],
        },
        "model": {
            "class_path": "lightning_pc.tasks.ClassificationTask",
            "init_args": {
                "model": "pointnet2_ssg",
                "model_kwargs": {**TINY["pointnet2_ssg"], "dropout": 0.3},
                "lr": 0.003,
                "scheduler": "cosine",
            },
        },
        "data": {
            "class_path": "lightning_pc.data.SyntheticShapesDataModule",
            "init_args": {
                "num_train": 21,
                "num_val": 8,
                "num_test": 4,
                "num_points": 64,
                "batch_size": 8,
                "num_workers": workers,
            },
        },
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize(
    ("workers", "fused"),
    [(0, "auto"), (2, "auto"), (0, "always")],
    ids=["in-process", "2-workers", "fused-kernels"],
)
def test_resume_after_a_kill_continues_exactly(
    workers: int, fused: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue: after kill -9 and ``fit --ckpt_path last`` the step losses and the final
    accuracy differed from the uninterrupted run. Dropout and the random first centre of
    farthest point sampling draw from the global generator, which the resumed process
    started afresh; the tasks now re-seed it at every epoch from (seed, epoch, rank). With
    DataLoader workers, Lightning also built the resumed loader's iterator before telling
    the sampler the epoch, and the workers replayed epoch 0's order. The fused CPU kernels
    (forced on, as the tiny network is under their size threshold) sum in a fixed order."""
    monkeypatch.setenv("LIGHTNING_PC_FUSED", fused)
    config = _resume_config(tmp_path, workers)
    runs: dict[str, tuple[list[str], dict[str, torch.Tensor]]] = {}
    for name in ("straight", "killed"):
        work = tmp_path / name
        work.mkdir()
        monkeypatch.chdir(work)
        log = work / "losses.txt"
        common = [
            "--config",
            str(config),
            "--trainer.callbacks+=tests.reliability.test_training_faults.LossRecorder",
            f"--trainer.callbacks.path={log}",
        ]
        if name == "straight":
            main(["fit", *common])
        else:
            crash = [
                "--trainer.callbacks+=tests.reliability.test_training_faults.Crash",
                "--trainer.callbacks.epoch=2",
                "--trainer.callbacks.batch=1",
            ]
            with pytest.raises(SystemExit):
                main(["fit", *common, *crash])
            assert torch.load(work / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 1
            main(["fit", *common, "--ckpt_path=last"])
        state = torch.load(work / "checkpoints" / "last.ckpt", weights_only=True)
        assert state["epoch"] == 2 and state["global_step"] == 9
        runs[name] = (log.read_text().splitlines(), state["state_dict"])
    straight, killed = runs["straight"], runs["killed"]
    # the killed run logged epoch 2's first step twice (before the kill and after the resume)
    resumed = killed[0][:6] + killed[0][7:]
    assert killed[0][6] == straight[0][6]
    assert resumed == straight[0]
    for key, value in straight[1].items():
        assert torch.equal(value, killed[1][key]), key


def _quick_fit(work: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two epochs of the tiny resume config in ``work``; returns the checkpoint folder."""
    work.mkdir(exist_ok=True)
    monkeypatch.chdir(work)
    config = _resume_config(work, 0)
    main(["fit", "--config", str(config), "--trainer.max_epochs=2"])
    return work / "checkpoints"


@pytest.mark.parametrize("damage", ["truncated", "overwritten", "empty"])
def test_resume_from_a_damaged_last_checkpoint_names_it_and_the_others(
    damage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _quick_fit(tmp_path / "run", monkeypatch)
    last, best = folder / "last.ckpt", folder / "best.ckpt"
    raw = last.read_bytes()
    if damage == "truncated":  # a copy or a save cut short
        last.write_bytes(raw[: len(raw) // 2])
    elif damage == "overwritten":  # same size, a block of zeros in the middle
        middle = len(raw) // 2
        last.write_bytes(raw[:middle] + bytes(512) + raw[middle + 512 :])
    else:
        last.write_bytes(b"")
    before = tree_hashes(folder)
    config = str(tmp_path / "run" / "config.yaml")
    for ckpt in ("last", str(last)):
        with pytest.raises(DamagedCheckpointError) as error:
            main(["fit", "--config", config, "--trainer.max_epochs=3", f"--ckpt_path={ckpt}"])
        message = str(error.value)
        assert f"checkpoint {last} " in message
        assert str(best) in message and "epoch " in message and "global step " in message
        assert f"--ckpt_path {best}" in message
    assert tree_hashes(folder) == before  # the damaged file and the others left as they were
    # the offered checkpoint resumes; Lightning writes the new last beside the damaged one
    main(["fit", "--config", config, "--trainer.max_epochs=3", f"--ckpt_path={best}"])
    assert torch.load(folder / "last-v1.ckpt", weights_only=True)["epoch"] == 2
    assert tree_hashes(folder)["last.ckpt"] == before["last.ckpt"]


def test_a_good_checkpoint_with_bad_content_keeps_its_own_error(tmp_path: Path) -> None:
    """Only damage becomes DamagedCheckpointError: a whole archive's error passes through."""
    path = tmp_path / "other.ckpt"
    torch.save({"state": nn.Linear(2, 2)}, path)  # a pickled module: refused by weights_only
    with pytest.raises(Exception) as error:
        SafeCheckpointIO().load_checkpoint(path, weights_only=True)
    assert not isinstance(error.value, DamagedCheckpointError)


_KILL_DURING_SAVE = """
import os, signal, sys, torch
from lightning_pc.callbacks.checkpoint_io import atomic_torch_save

class KillWhilePickled:
    def __reduce__(self):
        os.kill(os.getpid(), signal.SIGKILL)

path = sys.argv[1]
atomic_torch_save({"step": 1, "w": torch.arange(1000.0)}, path)
atomic_torch_save({"step": 2, "w": torch.zeros(1000), "x": KillWhilePickled()}, path)
"""


def test_kill_9_while_saving_leaves_the_previous_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    out = subprocess.run(
        [sys.executable, "-c", _KILL_DURING_SAVE, str(path)], capture_output=True, timeout=120
    )
    assert out.returncode == -signal.SIGKILL, out.stderr[-2000:]
    state = torch.load(path, weights_only=True)
    assert state["step"] == 1 and torch.equal(state["w"], torch.arange(1000.0))
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p != path)
    assert len(leftovers) == 1 and leftovers[0].startswith(".last.ckpt.")  # the killed write
    # the next save replaces the checkpoint and clears the killed process's temporary file
    atomic_torch_save({"step": 3}, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]
    assert torch.load(path, weights_only=True)["step"] == 3


def test_failed_save_leaves_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk mid-write (the write raises after part of the file): nothing changes."""
    io = SafeCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"epoch": 4}, path)
    before = tree_hashes(tmp_path)

    def full_disk(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        f.write(b"PK\x03\x04 partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="No space"):
        io.save_checkpoint({"epoch": 5}, path)
    assert tree_hashes(tmp_path) == before  # same file, no temporary left


def test_last_checkpoint_is_the_latest_epoch(tmp_path: Path) -> None:
    """Lightning >= 2.6 rewrites last.ckpt only when the monitored metric improves."""
    from lightning.pytorch.callbacks import ModelCheckpoint as LightningModelCheckpoint

    epochs = {}
    for cls in (ModelCheckpoint, LightningModelCheckpoint):
        folder = tmp_path / cls.__module__
        data = SyntheticShapesDataModule(
            num_train=8, num_val=4, num_test=1, num_points=48, batch_size=4
        )
        task = ClassificationTask(model_kwargs=TINY["pointnet2_ssg"], num_classes=12, lr=0.0)
        # the monitored value never improves after epoch 0, whatever the numerics do (val/acc
        # with lr 0 still moved with the batch-norm running statistics on some thread counts)
        checkpoint = cls(
            monitor="epoch", mode="min", dirpath=folder, filename="best", save_last=True
        )
        _trainer(tmp_path, max_epochs=3, enable_checkpointing=True, callbacks=[checkpoint]).fit(
            task, data
        )
        epochs[cls] = torch.load(folder / "last.ckpt", weights_only=True)["epoch"]
    assert epochs[ModelCheckpoint] == 2
    assert epochs[LightningModelCheckpoint] == 0  # the behaviour this class replaces


# --- DDP: a stopped rank ------------------------------------------------------------------------
def test_ddp_timeout_setting_reaches_the_strategy(monkeypatch: pytest.MonkeyPatch) -> None:
    config = str(Path(__file__).resolve().parents[2] / "configs" / "quickstart.yaml")
    ddp = ["--trainer.accelerator=cpu", "--trainer.strategy=ddp", "--trainer.devices=2"]
    cli = PointCloudCLI(args=["--config", config, *ddp, "--ddp_timeout=42"], run=False)
    assert cli.trainer.strategy._timeout == timedelta(seconds=42)
    assert isinstance(cli.trainer.strategy.checkpoint_io, SafeCheckpointIO)
    monkeypatch.setenv(DDP_TIMEOUT_ENV, "17.5")
    cli = PointCloudCLI(args=["--config", config, *ddp], run=False)
    assert cli.trainer.strategy._timeout == timedelta(seconds=17.5)
    monkeypatch.setenv(DDP_TIMEOUT_ENV, "soon")
    with pytest.raises(ValueError, match=DDP_TIMEOUT_ENV):
        PointCloudCLI(args=["--config", config, *ddp], run=False)


def test_collective_timeout_gets_a_clear_message() -> None:
    gloo = torch.distributed.DistBackendError(
        "[gloo/transport/tcp/unbound_buffer.cc:81] Timed out waiting 20000ms for recv operation to complete"
    )
    message = _collective_timeout_message(gloo)
    assert message is not None
    assert (
        "another rank stopped" in message
        and "--ddp_timeout" in message
        and DDP_TIMEOUT_ENV in message
    )
    assert _collective_timeout_message(RuntimeError("Expected more than 1 value")) is None


def _subprocess_env(**extra: str) -> dict[str, str]:
    """The environment of a CLI subprocess that imports callbacks from this module by name:
    the repository goes on its ``PYTHONPATH``."""
    root = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    return {**os.environ, **extra, "PYTHONPATH": path}


class Stall(L.Callback):
    """Rank ``rank`` stops responding (sleeps) at training batch ``batch``, as a stopped or
    stuck process does."""

    def __init__(self, rank: int = 1, batch: int = 1) -> None:
        self.rank, self.batch = rank, batch

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: Any, batch: Any, i: int) -> None:
        if trainer.global_rank == self.rank and i == self.batch:
            time.sleep(3600)


@pytest.mark.slow
def test_a_stalled_ddp_rank_stops_the_others_with_a_clear_message(tmp_path: Path) -> None:
    """Two gloo processes; rank 1 stalls; rank 0 gives up after --ddp_timeout seconds (the
    timeout also bounds the start-up rendezvous, hence 40 s) and says what happened."""
    config = _resume_config(tmp_path, 0)
    args = [
        sys.executable,
        "-m",
        "lightning_pc",
        "fit",
        "--config",
        str(config),
        "--trainer.strategy=ddp",
        "--trainer.devices=2",
        "--ddp_timeout=40",
        "--trainer.callbacks+=tests.reliability.test_training_faults.Stall",
    ]
    log = tmp_path / "out.txt"
    env = _subprocess_env(PYTHONWARNINGS="ignore")
    with log.open("w") as out:
        proc = subprocess.Popen(
            args,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        try:
            code = proc.wait(timeout=300)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # rank 1 still sleeps
    text = log.read_text()
    assert code != 0, text[-3000:]
    assert "DDPTimeoutError" in text and "gave up waiting for the other ranks" in text, text[-3000:]
    assert "--ddp_timeout" in text
    # nothing half-written: the checkpoint folder holds only whole checkpoints, if any
    for ckpt in (tmp_path / "checkpoints").glob("*"):
        assert ckpt.suffix == ".ckpt" and checkpoint_problem(ckpt) is None


class SameWeightsOnEveryRank(L.Callback):
    """Fails the run unless every rank ends with bit-identical parameters."""

    def on_train_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        flat = torch.cat([p.detach().double().view(-1) for p in pl_module.parameters()])
        sums = trainer.strategy.all_gather(torch.stack([flat.sum(), (flat * flat).sum()]))
        if not bool((sums == sums[0]).all()):
            raise RuntimeError(f"the ranks' weights differ: {sums.tolist()}")


@pytest.mark.slow
def test_ddp_ranks_agree_on_skipping_a_nan_batch(tmp_path: Path) -> None:
    """Two gloo processes, ``nonfinite: skip``: only one rank's shard holds the poisoned
    sample, both ranks skip that step together (a lone skip would hang the other rank in
    the gradient all-reduce), the run finishes and its weights are finite."""
    config = _resume_config(tmp_path, 0)
    poison = json.dumps(
        [
            {
                "class_path": "tests.reliability.test_training_faults.Poison",
                "init_args": {"category": 11},
            }
        ]
    )
    args = [
        sys.executable,
        "-m",
        "lightning_pc",
        "fit",
        "--config",
        str(config),
        "--trainer.strategy=ddp",
        "--trainer.devices=2",
        "--trainer.max_epochs=1",
        "--ddp_timeout=120",
        "--model.init_args.nonfinite=skip",
        "--trainer.callbacks+=tests.reliability.test_training_faults.SameWeightsOnEveryRank",
        f"--data.init_args.train_transforms={poison}",
    ]
    env = _subprocess_env(PYTHONWARNINGS="default")
    out = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    # sample 11 is the only one of class 11 in 21: one rank warns, both skip
    assert text.count("skipped: non-finite values") == 1, text[-3000:]
    assert "sample 11 of SyntheticShapes" in text
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["global_step"] == 2  # 11 clouds per rank in batches of 8: two steps, in step
    assert all(torch.isfinite(v.float()).all() for v in state["state_dict"].values())
