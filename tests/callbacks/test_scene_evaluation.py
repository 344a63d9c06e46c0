"""Precise evaluation of whole scenes (fragments, TTA, votes on every original point)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
from torch import Tensor, nn

from lightning_pc.callbacks import PreciseSceneEvaluation
from lightning_pc.callbacks.scene_evaluation import scene_arrays, scene_passes, view_matrix
from lightning_pc.data import S3DISDataModule, ScanNetDataModule, SemanticKITTIDataModule
from lightning_pc.tasks import SemanticSegmentationTask
from tests.data import load_fixture


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("scene_eval")
    return {
        "s3dis": load_fixture("s3dis").make_raw(base / "Stanford3dDataset_v1.2_Aligned_Version"),
        "scannet": load_fixture("scannet").make_release(base / "scannet") / "raw",
        "semantickitti": load_fixture("semantickitti").make_release(base / "semantickitti"),
        "cache": base / "cache",
    }


def _datamodule(kind: str, roots: dict[str, Path], **kw: Any) -> L.LightningDataModule:
    common = {"num_workers": 0, "cache_dir": str(roots["cache"]), **kw}
    cls = {
        "s3dis": S3DISDataModule,
        "scannet": ScanNetDataModule,
        "semantickitti": SemanticKITTIDataModule,
    }[kind]
    return cls(str(roots[kind]), **common)


class Oracle(nn.Module):
    """Logits that put all the mass on each input point's own label (``batch.y``)."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, batch: Any) -> Tensor:
        y = batch.y.view(-1)
        logits = torch.zeros(y.numel(), self.num_classes)
        ok = (y >= 0) & (y < self.num_classes)
        logits[ok, y[ok]] = 20.0
        return logits + self.dummy


class Constant(nn.Module):
    """Logits favouring one class everywhere."""

    def __init__(self, num_classes: int, cls: int) -> None:
        super().__init__()
        self.num_classes, self.cls = num_classes, cls
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, batch: Any) -> Tensor:
        logits = torch.zeros(batch.pos.size(0), self.num_classes)
        logits[:, self.cls] = 5.0
        return logits + self.dummy


class Height(nn.Module):
    """Logits that depend on the coordinates (not rotation invariant): class by x sign."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, batch: Any) -> Tensor:
        pos = batch.pos
        logits = torch.zeros(pos.size(0), self.num_classes)
        logits[:, 0] = 3 * pos[:, 0]
        logits[:, 1] = pos[:, 1] + pos[:, 2]
        return logits + self.dummy


def _test(
    dm: L.LightningDataModule, net: nn.Module, callback: PreciseSceneEvaluation | None
) -> dict[str, float]:
    task = SemanticSegmentationTask(
        model=net, num_classes=dm.num_classes, ignore_index=getattr(dm, "ignore_index", -100)
    )
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        callbacks=[callback] if callback is not None else [],
    )
    trainer.test(task, datamodule=dm, verbose=False)
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


def _labels(dm: L.LightningDataModule) -> np.ndarray:
    dataset = dm.datasets["test"]
    return np.concatenate([scene_arrays(dataset, k)[2] for k in range(len(dataset))])


# --- the votes reach every point ------------------------------------------------------------
def _hostile_scene(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Uniform points, a dense cluster, exact duplicates and a far outlier."""
    pos = np.concatenate(
        [
            rng.uniform(0, 5, (300, 3)),
            rng.normal(2.0, 0.01, (100, 3)),  # 100 points in a few voxels
            np.repeat([[1.0, 1.0, 1.0]], 20, 0),  # duplicates
            [[40.0, -30.0, 7.0]],  # an outlier far from the rest
        ]
    ).astype(np.float32)
    return pos, rng.integers(0, 5, len(pos))


@pytest.mark.parametrize("block_size", [None, 1.0, 2.5])
@pytest.mark.parametrize("voxel_passes", [None, 1, 3])
def test_every_point_gets_a_vote(block_size: float | None, voxel_passes: int | None) -> None:
    rng = np.random.default_rng(0)
    pos, y = _hostile_scene(rng)
    direct = np.zeros(len(pos), dtype=np.int64)
    spread = np.zeros(len(pos), dtype=np.int64)
    views = [{}, {"rotate": 90, "flip": "x", "scale": 1.1}]
    for p in scene_passes(pos, None, y, block_size, None, 0.1, views, voxel_passes):
        np.add.at(direct, p.rows.numpy(), 1)
        np.add.at(spread, p.spread_rows.numpy(), 1)
        # a point takes its voxel's votes only when no pass (of this fragment and view) keeps it
        assert not np.intersect1d(p.rows.numpy(), p.spread_rows.numpy()).size
        assert torch.equal(p.data.y, torch.from_numpy(y[p.rows.numpy()]))  # labels follow rows
        # one point per voxel per pass (voxels of 0.1 in the viewed, scaled frame)
        cells = torch.floor((p.data.pos - p.data.pos.min(0).values) / 0.1).long()
        assert len(torch.unique(cells, dim=0)) == p.data.num_nodes
    assert ((direct + spread) > 0).all()
    if voxel_passes is None:  # every point is itself one the network sees
        assert (direct > 0).all() and not spread.any()
    else:  # the 100 clustered points cannot all be kept in 1 or 3 passes
        assert spread.any()


def test_a_crowded_voxel_warns_and_a_cap_bounds_the_passes() -> None:
    pos = np.concatenate([np.zeros((100, 3)), np.random.default_rng(2).uniform(0, 3, (50, 3))])
    y = np.arange(150) % 3
    with pytest.warns(UserWarning, match="voxel_passes"):
        assert len(list(scene_passes(pos, None, y, None, None, 0.1))) == 100
    assert len(list(scene_passes(pos, None, y, None, None, 0.1, voxel_passes=8))) == 8


def test_no_voxel_grid_one_pass_of_every_point() -> None:
    pos, y = _hostile_scene(np.random.default_rng(1))
    passes = list(scene_passes(pos, None, y, None, None, None))
    assert len(passes) == 1 and torch.equal(passes[0].rows, torch.arange(len(pos)))
    torch.testing.assert_close(passes[0].data.pos, torch.from_numpy(pos))  # whole scene: as given
    assert list(scene_passes(pos[:0], None, y[:0], 1.0, None, 0.1)) == []


def test_views_rotate_flip_scale() -> None:
    p = np.array([[1.0, 2.0, 3.0]])
    assert np.allclose(p @ view_matrix({"rotate": 90}).T, [[-2.0, 1.0, 3.0]])
    assert np.allclose(p @ view_matrix({"flip": "x"}).T, [[-1.0, 2.0, 3.0]])
    assert np.allclose(p @ view_matrix({"flip": "xy", "scale": 2.0}).T, [[-2.0, -4.0, 6.0]])
    assert np.array_equal(view_matrix({}), np.eye(3))
    for bad in ({"rotate": float("nan")}, {"scale": 0.0}, {"flip": "z"}, {"rotation": 90}):
        with pytest.raises(ValueError):
            view_matrix(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="splits"):
        PreciseSceneEvaluation(splits=["train"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="scale"):
        PreciseSceneEvaluation(tta=[{"scale": -1.0}])


# --- metrics on the real-format fixtures ----------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "kw"),
    [
        ("s3dis", {"voxel_size": 0.5}),  # coarse voxels: many hold several labels
        ("scannet", {"voxel_size": 0.3}),
        ("semantickitti", {"voxel_size": 1.0}),
    ],
)
def test_oracle_scores_one(kind: str, kw: dict[str, Any], roots: dict[str, Path]) -> None:
    """An oracle gets IoU 1 on every original point; the voxelised metric cannot (a voxel's
    other points take its kept point's label)."""
    dm = _datamodule(kind, roots, **kw)
    callback = PreciseSceneEvaluation(tta=[{}, {"rotate": 90}], voxel_passes=None)
    metrics = _test(dm, Oracle(dm.num_classes), callback)
    assert metrics["test/miou_precise"] == pytest.approx(1.0)
    assert metrics["test/oa_precise"] == pytest.approx(1.0)
    assert metrics["test/miou"] < 1.0  # mixed voxels
    present = np.unique(_labels(dm))
    present = present[(present >= 0) & (present < dm.num_classes)]
    names = dm.class_names
    for c in present:
        assert metrics[f"test/iou_precise_{names[c]}"] == pytest.approx(1.0)


@pytest.mark.parametrize("kind", ["s3dis", "scannet", "semantickitti"])
def test_constant_prediction_hand_computed(kind: str, roots: dict[str, Path]) -> None:
    """Class 1 everywhere: IoU_1 = (points labelled 1) / (labelled points), 0 for the other
    classes present; the mean over the classes in the labels or the predictions. Points
    labelled ``ignore_index`` count nowhere."""
    dm = _datamodule(kind, roots, voxel_size=0.3)
    metrics = _test(dm, Constant(dm.num_classes, 1), PreciseSceneEvaluation(block_size=1.0))
    y = _labels(dm)
    labelled = y[(y >= 0) & (y < dm.num_classes)]
    if kind != "s3dis":
        assert len(labelled) < len(y)  # the fixture has ignored points
    classes = set(np.unique(labelled).tolist()) | {1}
    iou_1 = np.mean(labelled == 1)
    assert metrics["test/miou_precise"] == pytest.approx(iou_1 / len(classes), abs=1e-6)
    assert metrics["test/oa_precise"] == pytest.approx(iou_1, abs=1e-6)
    assert metrics[f"test/iou_precise_{dm.class_names[1]}"] == pytest.approx(iou_1, abs=1e-6)


def test_identity_views_equal_no_tta(roots: dict[str, Path]) -> None:
    dm = _datamodule("s3dis", roots, voxel_size=0.3)
    net = Height(dm.num_classes)
    plain = _test(dm, net, PreciseSceneEvaluation(block_size=2.0))
    same = _test(
        dm, net, PreciseSceneEvaluation(block_size=2.0, tta=[{}, {"rotate": 0}, {"scale": 1.0}])
    )
    turned = _test(dm, net, PreciseSceneEvaluation(block_size=2.0, tta=[{"rotate": 180}]))
    precise = {k: v for k, v in plain.items() if "precise" in k}
    assert precise and all(same[k] == pytest.approx(v, abs=1e-7) for k, v in precise.items())
    # the views are applied: a half turn changes what this coordinate-reading network says
    assert any(turned[k] != pytest.approx(v, abs=1e-6) for k, v in precise.items())


def test_validation_off_by_default_and_on_when_asked(roots: dict[str, Path]) -> None:
    dm = _datamodule("scannet", roots, voxel_size=0.3)
    task = SemanticSegmentationTask(
        model=Oracle(dm.num_classes), num_classes=dm.num_classes, ignore_index=dm.ignore_index
    )
    for splits, expected in ((None, False), (["val", "test"], True)):
        trainer = L.Trainer(
            accelerator="cpu",
            devices=1,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            enable_checkpointing=False,
            callbacks=[PreciseSceneEvaluation(splits=splits)],
        )
        trainer.validate(task, datamodule=dm, verbose=False)
        assert ("val/miou_precise" in trainer.callback_metrics) == expected
        if expected:
            assert float(trainer.callback_metrics["val/miou_precise"]) == pytest.approx(1.0)


def test_a_scene_without_votes_is_an_error_naming_it(
    roots: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A point left without a vote (here: the last pass of every scene dropped) stops the
    evaluation with the scene's source, instead of scoring it as class 0."""
    from lightning_pc.callbacks import scene_evaluation

    original = scene_evaluation.scene_passes

    def lossy(*args: Any, **kw: Any) -> Any:
        passes = list(original(*args, **kw))
        last = passes[-1]
        keep = last.rows[:-1]
        return iter(
            [
                *passes[:-1],
                last._replace(rows=keep, data=last.data.subgraph(torch.arange(keep.numel()))),
            ]
        )

    monkeypatch.setattr(scene_evaluation, "scene_passes", lossy)
    dm = _datamodule("s3dis", roots, voxel_size=None)
    with pytest.raises(RuntimeError, match=r"1 points of scene 0 \('Area_5/hallway_6'\)"):
        _test(dm, Oracle(dm.num_classes), PreciseSceneEvaluation(block_size=None, voxel_size=None))


# --- DDP: the scenes split across 2 gloo processes give the numbers of 1 ------------------
SCRIPT = """
import json, sys
import lightning as L
from lightning_pc.callbacks import PreciseSceneEvaluation
from lightning_pc.data import S3DISDataModule, ScanNetDataModule
from lightning_pc.tasks import SemanticSegmentationTask
s3dis, scannet, cache, out, devices = sys.argv[1:5] + [int(sys.argv[5])]
if sys.argv[6:] == ["fail"]:  # the second S3DIS test room is unreadable (rank 1's under DDP)
    from lightning_pc.data.datasets.s3dis import S3DISRooms
    read = S3DISRooms.raw_sample
    def broken(self, index, generator):
        if index == 1:
            raise OSError("room 1 is unreadable")
        return read(self, index, generator)
    S3DISRooms.raw_sample = broken
TINY = dict(ratios=[0.5, 0.5], radii=[[0.5], [1.0]], num_samples=[[8], [8]],
            sa_mlps=[[[8]], [[16]]], global_mlp=[], fp_mlps=[[16], [16]], head=[16])
result = {}
# S3DIS: 2 test rooms, one per rank; ScanNet: 1 val scene, rank 1 has none
for name, cls, root in (("s3dis", S3DISDataModule, s3dis), ("scannet", ScanNetDataModule, scannet)):
    L.seed_everything(0)
    dm = cls(root, cache_dir=cache, num_workers=0, voxel_size=0.3)
    task = SemanticSegmentationTask(model="pointnet2_ssg_sem_seg", model_kwargs=TINY,
                                    num_classes=dm.num_classes,
                                    ignore_index=getattr(dm, "ignore_index", -100))
    callback = PreciseSceneEvaluation(block_size=2.0, tta=[{}, {"rotate": 90, "flip": "x"}])
    trainer = L.Trainer(accelerator="cpu", devices=devices,
                        strategy="ddp" if devices > 1 else "auto", logger=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False, callbacks=[callback])
    trainer.test(task, datamodule=dm, verbose=False)
    result[name] = {k: float(v) for k, v in trainer.callback_metrics.items()}
    result[name + "_scenes"] = callback.evaluated["test"]
with open(f"{out}.{trainer.global_rank}", "w") as f:
    json.dump(result, f)
"""


@pytest.mark.slow
def test_ddp_two_processes_equal_one(roots: dict[str, Path], tmp_path: Path) -> None:
    """Each scene is evaluated by exactly one rank; the summed confusion matrices give the
    numbers of one process (metric values identical on both ranks)."""
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    runs = {}
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    for devices in (1, 2):
        out = tmp_path / f"metrics_{devices}"
        args = [script, roots["s3dis"], roots["scannet"], roots["cache"], out, devices]
        done = subprocess.run(
            [sys.executable, *map(str, args)],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        runs[devices] = [json.loads(Path(f"{out}.{r}").read_text()) for r in range(devices)]
    (one,) = runs[1]
    for name, scenes in (("s3dis", [0, 1]), ("scannet", [0])):
        assert one[name + "_scenes"] == scenes
        assert sorted(r[name + "_scenes"] for r in runs[2]) == sorted(
            [[0], [1]] if name == "s3dis" else [[], [0]]
        )  # no scene twice, none left out
        keys = [k for k in one[name] if "precise" in k]
        assert {"test/miou_precise", "test/oa_precise"} <= set(keys)
        for rank in runs[2]:
            assert set(keys) == {k for k in rank[name] if "precise" in k}
            for key in keys:
                assert rank[name][key] == pytest.approx(one[name][key], abs=1e-6), (name, key)


@pytest.mark.slow
def test_ddp_an_error_on_one_rank_stops_both(roots: dict[str, Path], tmp_path: Path) -> None:
    """Rank 1's scene fails to read: both ranks stop with an error (rank 0 would otherwise
    wait for rank 1 in the metrics' sum until the process group times out)."""
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    args = [script, roots["s3dis"], roots["scannet"], roots["cache"], tmp_path / "m", 2, "fail"]
    try:
        done = subprocess.run(
            [sys.executable, *map(str, args)],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
            cwd=tmp_path,
        )
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"DDP hung after one rank's error: {error.stderr!r}"[-3000:])
    assert done.returncode != 0
    assert "room 1 is unreadable" in done.stderr
