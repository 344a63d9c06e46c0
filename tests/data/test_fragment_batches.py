"""Whole-scan prediction packs small fragments into batches by point count: the batches are
those of the fragments one by one (bit for bit), their number is known before the first,
the votes do not change, and a block size that does not fit the scan is reported."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from torch import nn

from lightning_pc.callbacks.prediction_writer import ScenePredictionWriter
from lightning_pc.data import PredictScenesDataModule
from lightning_pc.data.collate import collate
from lightning_pc.data.datasets.fragment_batches import FragmentBatches, pack_bounds
from lightning_pc.data.datasets.scenes import SceneFragments
from lightning_pc.models.registry import _REGISTRY, list_models, register_model
from lightning_pc.tasks import SemanticSegmentationTask


class Pointwise(nn.Module):
    """One linear layer per point: its output for a point depends on that point alone."""

    def __init__(self, num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        self.linear = nn.Linear(3 + in_channels, num_classes)

    def forward(self, data) -> torch.Tensor:  # noqa: ANN001
        return self.linear(torch.cat([data.pos, data.x], 1))


@pytest.fixture(autouse=True)
def packing_pointwise() -> Iterator[None]:
    """``packing_pointwise`` in the model registry for this module's tests only (the
    registry's contract tests walk every registered name)."""
    registered = "packing_pointwise" not in list_models()
    if registered:
        register_model("packing_pointwise")(Pointwise)
    yield
    if registered:
        _REGISTRY.pop("packing_pointwise", None)


def sparse_scan(
    path: Path, n: int = 3000, seed: int = 0, extent: tuple[float, float] = (120.0, 56.0)
) -> Path:
    """Points spread thinly: most blocks of 1 hold one or two points."""
    rng = np.random.default_rng(seed)
    pos = np.c_[rng.uniform(0, extent[0], n), rng.uniform(0, extent[1], n), rng.uniform(0, 20, n)]
    rgb = rng.uniform(0, 1, (n, 3))
    np.save(path, np.c_[pos, rgb].astype(np.float32))
    return path


def dense_scan(path: Path, n: int = 4000, seed: int = 1) -> Path:
    rng = np.random.default_rng(seed)
    pos = np.c_[rng.uniform(0, 7, n), rng.uniform(0, 5, n), rng.uniform(0, 3, n)]
    np.save(path, np.c_[pos, rng.uniform(0, 1, (n, 3))].astype(np.float32))
    return path


def assert_same_batch(got, want) -> None:  # noqa: ANN001
    assert sorted(got.keys()) == sorted(want.keys())
    assert "source" in want.keys()  # the scan file, one per fragment (the batch schema)
    for key in want.keys():
        a, b = got[key], want[key]
        if isinstance(b, list):
            assert a == b, key
            continue
        assert a.dtype == b.dtype, key
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=key)
    torch.testing.assert_close(got.ptr, want.ptr, rtol=0, atol=0)
    assert got.num_graphs == want.num_graphs


@pytest.mark.parametrize(
    ("crop", "block_size", "stride", "voxel"),
    [
        ("block", 1.0, 0.5, None),
        ("block", 2.0, 1.0, 0.3),
        ("block", 1.5, 1.5, 0.5),
        ("sphere", 3.0, 1.5, 0.4),
    ],
)
@pytest.mark.parametrize("layout", ["sparse", "dense", "corridor"])
def test_packed_batches_are_the_fragments_collated(
    tmp_path: Path, crop: str, block_size: float, stride: float, voxel: float | None, layout: str
) -> None:
    path = tmp_path / "scan.npy"
    if layout == "sparse":
        sparse_scan(path, 600)
    elif layout == "dense":
        dense_scan(path, 3000)
    else:  # longer in y: the blocks are swept along y
        rng = np.random.default_rng(3)
        pos = np.c_[rng.uniform(0, 3, 800), rng.uniform(0, 40, 800), rng.uniform(0, 2, 800)]
        np.save(path, np.c_[pos + [5e4, 1e4, 0], rng.uniform(0, 1, (800, 3))].astype(np.float32))
    frags = SceneFragments([path], ["rgb"], block_size, stride, voxel, crop)
    one_by_one = list(frags)
    packed = FragmentBatches(frags, batch_size=3, batch_points=40)
    batches = [packed[b] for b in range(len(packed))]
    assert sum(b.num_graphs for b in batches) == len(one_by_one)
    at = 0
    for batch in batches:
        assert_same_batch(batch, collate(one_by_one[at : at + batch.num_graphs]))
        at += batch.num_graphs


def test_pack_bounds_take_at_least_batch_size_and_fill_the_budget() -> None:
    counts = np.array([1, 1, 1, 1, 1, 50, 50, 50, 2, 2, 100])
    bounds = pack_bounds(counts, batch_size=2, batch_points=10)
    assert bounds.tolist() == [0, 5, 7, 9, 11]
    assert pack_bounds(np.zeros(0, np.int64), 2, 10).tolist() == [0]
    # never fewer than batch_size fragments a batch (dense scans: batches as before)
    assert np.diff(pack_bounds(np.full(10, 1000), 4, 10)).tolist() == [4, 4, 2]


class KeepVotes(ScenePredictionWriter):
    """The writer, keeping a copy of each scan's summed votes (float16) as it finishes."""

    def __init__(self) -> None:
        super().__init__()
        self.votes: dict[str, np.ndarray] = {}

    def _finish(self, trainer, scan, votes) -> None:  # noqa: ANN001
        self.votes[Path(trainer.datamodule.fragments.files[scan]).stem] = votes.array.copy()
        super()._finish(trainer, scan, votes)


def predict(root: Path, out: Path, **kwargs) -> KeepVotes:  # noqa: ANN003
    torch.manual_seed(0)
    task = SemanticSegmentationTask(model="packing_pointwise", num_classes=5, in_channels=3)
    dm = PredictScenesDataModule(
        str(root), num_classes=5, features=["rgb"], output_dir=str(out), **kwargs
    )
    writer = KeepVotes()
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, callbacks=[writer],
        enable_model_summary=False,
    )  # fmt: skip
    trainer.predict(task, datamodule=dm)
    return writer


@pytest.mark.parametrize("crop", ["block", "sphere"])
def test_packing_leaves_every_vote_unchanged(tmp_path: Path, crop: str) -> None:
    """Fragments packed by point count vs one fragment a batch: the same summed class
    probabilities on every point (float16, bit for bit: overlapping fragments' votes are
    added in the same order) and the same files, on a sparse scan and a dense one."""
    root = tmp_path / "scans"
    root.mkdir()
    sparse_scan(root / "sparse.npy", 300, extent=(30.0, 14.0))
    dense_scan(root / "dense.npy", 1500)
    common = dict(block_size=1.0, voxel_size=0.05, crop=crop)
    one = predict(root, tmp_path / "one", batch_size=1, batch_points=1, **common)
    packed = predict(root, tmp_path / "packed", batch_size=2, batch_points=4096, **common)
    assert sorted(one.votes) == sorted(packed.votes) == ["dense", "sparse"]
    for name in ("sparse", "dense"):
        np.testing.assert_array_equal(one.votes[name], packed.votes[name])
        labels = one.votes[name].argmax(1)
        assert len(np.unique(labels)) > 1  # the test can tell labels apart
        assert (one.votes[name].sum(1) > 1.5).any()  # overlapping fragments were summed
        for suffix in (".ply", ".counts.csv"):
            written = (tmp_path / "one" / f"{name}{suffix}").read_bytes()
            assert written == (tmp_path / "packed" / f"{name}{suffix}").read_bytes()


DDP_SCRIPT = """
import json, sys
from pathlib import Path
import lightning as L
import torch
from torch import nn
from lightning_pc.callbacks.prediction_writer import ScenePredictionWriter
from lightning_pc.data import PredictScenesDataModule
from lightning_pc.models.registry import register_model
from lightning_pc.tasks import SemanticSegmentationTask


@register_model("ddp_pointwise")
class Pointwise(nn.Module):
    def __init__(self, num_classes, in_channels=3):
        super().__init__()
        self.linear = nn.Linear(3 + in_channels, num_classes)

    def forward(self, data):
        return self.linear(torch.cat([data.pos, data.x], 1))


root, out, devices = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.manual_seed(0)
task = SemanticSegmentationTask(model="ddp_pointwise", num_classes=4, in_channels=3)
dm = PredictScenesDataModule(root, num_classes=4, features=["rgb"], output_dir=out,
                             block_size=1.0, voxel_size=0.05, batch_size=2, batch_points=64)
writer = ScenePredictionWriter()
strategy = "ddp" if devices > 1 else "auto"
trainer = L.Trainer(accelerator="cpu", devices=devices, strategy=strategy, logger=False,
                    enable_progress_bar=False, callbacks=[writer], enable_model_summary=False)
trainer.predict(task, datamodule=dm, return_predictions=False)
loader = trainer.predict_dataloaders
record = {"rank": trainer.global_rank, "batches": len(loader),
          "written": sorted(Path(p).name for p in writer.written)}
Path(out, f"rank{trainer.global_rank}.json").write_text(json.dumps(record))
"""


def test_ddp_ranks_predict_their_own_scans_in_packed_batches(tmp_path: Path) -> None:
    """Two gloo ranks on CPU: each plans and predicts its own scans (scan k on rank k mod 2,
    whole), its loader's length is its own number of batches, and the files equal those
    of one process."""
    import json
    import subprocess
    import sys

    root = tmp_path / "scans"
    root.mkdir()
    for k in range(3):
        sparse_scan(root / f"s{k}.npy", 150 + 50 * k, seed=k, extent=(10.0, 6.0))
    script = tmp_path / "ddp_predict.py"
    script.write_text(DDP_SCRIPT)
    for devices, out in ((2, tmp_path / "ddp"), (1, tmp_path / "one")):
        done = subprocess.run(
            [sys.executable, str(script), str(root), str(out), str(devices)],
            capture_output=True, text=True, timeout=240, cwd=tmp_path,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / "ddp" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["written"] == sorted(
        f"s{k}{s}" for k in (0, 2) for s in (".ply", ".counts.csv")
    )
    assert ranks[1]["written"] == ["s1.counts.csv", "s1.ply"]
    single = json.loads((tmp_path / "one" / "rank0.json").read_text())
    assert ranks[0]["batches"] + ranks[1]["batches"] == single["batches"]
    for k in range(3):
        for suffix in (".ply", ".counts.csv"):
            name = f"s{k}{suffix}"
            assert (tmp_path / "ddp" / name).read_bytes() == (tmp_path / "one" / name).read_bytes()


def test_progress_total_and_no_warning_a_user_cannot_act_on(tmp_path: Path) -> None:
    """The loader's length is the number of batches predict runs (known before the first);
    Lightning says nothing about batch indices or an IterableDataset's length; the one
    warning is ours, once, naming the scan and its numbers."""
    sparse_scan(tmp_path / "aerial.npy", 400, extent=(40.0, 20.0))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.manual_seed(0)
        task = SemanticSegmentationTask(model="packing_pointwise", num_classes=3, in_channels=3)
        dm = PredictScenesDataModule(
            str(tmp_path / "aerial.npy"), num_classes=3, features=["rgb"], block_size=1.0,
            output_dir=str(tmp_path / "out"), batch_size=4,
        )  # fmt: skip
        assert dm.fragments.stride == 0.5  # half the block: no "need stride <= block_size"
        trainer = L.Trainer(
            accelerator="cpu", logger=False, callbacks=[ScenePredictionWriter()],
            enable_model_summary=False,
        )  # fmt: skip
        trainer.predict(task, datamodule=dm)
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if "batch indices" in m or "IterableDataset" in m], messages
    ours = [m for m in messages if "fewer points than a training crop" in m]
    assert len(ours) == 1, messages
    ((k, fragments, covered, points),) = dm.batches.stats
    assert points == 400 and f"400 points in {fragments:,} fragments" in ours[0]
    assert f"{covered / fragments:,.1f} points a fragment" in ours[0]
    total = len(trainer.predict_dataloaders)
    assert total == trainer.predict_loop.batch_progress.total.completed
    # packed: 4 x 4096 points a batch hold every fragment of this sparse scan
    assert total == 1 and fragments > 1000
    assert (tmp_path / "out" / "aerial.ply").is_file()


def test_a_fitting_block_size_does_not_warn(tmp_path: Path) -> None:
    dense_scan(tmp_path / "room.npy", 3000)
    dm = PredictScenesDataModule(
        str(tmp_path / "room.npy"), num_classes=3, block_size=2.0, crop_points=200
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dm.predict_dataloader()
    assert all(covered / fragments >= 200 / 8 for _, fragments, covered, _ in dm.batches.stats)


def test_loader_workers_cut_whole_scans_and_change_nothing(tmp_path: Path) -> None:
    """Two loader workers: the batches are dealt so that each worker cuts whole scans
    (scan s of this rank to worker s mod 2), every batch comes once, and the files equal
    those of no workers."""
    from lightning_pc.data.modules.predict import _RankBatches

    root = tmp_path / "scans"
    root.mkdir()
    for k in range(3):
        sparse_scan(root / f"s{k}.npy", 200 + 100 * k, seed=k, extent=(12.0, 6.0))
    common = dict(block_size=1.0, voxel_size=0.05, batch_size=2, batch_points=64)
    one = predict(root, tmp_path / "w0", **common)
    two = predict(root, tmp_path / "w2", num_workers=2, **common)
    for k in range(3):
        np.testing.assert_array_equal(one.votes[f"s{k}"], two.votes[f"s{k}"])
        for suffix in (".ply", ".counts.csv"):
            a = (tmp_path / "w0" / f"s{k}{suffix}").read_bytes()
            assert a == (tmp_path / "w2" / f"s{k}{suffix}").read_bytes()
    dm = PredictScenesDataModule(str(root), 5, features=["rgb"], num_workers=2, **common)
    loader = dm.predict_dataloader()
    assert loader.num_workers == 2
    order = list(_RankBatches(dm.batches, 2))
    assert sorted(order) == list(range(len(dm.batches)))
    scans = dm.batches.scan_of_batches()[order]
    first = scans[0::2][: int((scans == 1).sum())]  # worker 1's share runs out first
    assert set(scans[1::2][: int((scans == 1).sum())].tolist()) == {1}
    assert set(first.tolist()) <= {0, 2}


def test_missing_outputs_are_the_scans_of_this_rank(tmp_path: Path) -> None:
    """With packed batches a rank predicts scans k = rank mod world_size, whatever the
    number of loader workers: the writer's list of scans not written yet says so."""
    from types import SimpleNamespace

    root = tmp_path / "scans"
    root.mkdir()
    for k in range(4):
        sparse_scan(root / f"s{k}.npy", 50, seed=k, extent=(4.0, 4.0))
    dm = PredictScenesDataModule(str(root), 3, block_size=1.0, num_workers=2)
    dm.fragments.rank, dm.fragments.world_size = 1, 2
    loader = dm.predict_dataloader()
    assert dm.batches.scans() == [1, 3] and loader.num_workers == 2
    trainer = SimpleNamespace(predict_dataloaders=loader, world_size=2, global_rank=1)
    writer = ScenePredictionWriter()
    missing = writer.missing_outputs(trainer)  # type: ignore[arg-type]
    assert missing == [str((root / f"s{k}.npy").resolve()) for k in (1, 3)]
