"""Whole-scan prediction packs small fragments into batches by point count: the batches are
those of the fragments one by one (bit for bit), their number is known before the first,
the votes do not change, and a block size that does not fit the scan is reported."""

from __future__ import annotations

import warnings
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from torch import nn

from lightning_pc.callbacks.prediction_writer import ScenePredictionWriter
from lightning_pc.data import PredictScenesDataModule
from lightning_pc.data.collate import collate
from lightning_pc.data.datasets.scenes import (
    FragmentBatches,
    SceneFragments,
    pack_bounds,
)
from lightning_pc.data.io import read_ply_vertices
from lightning_pc.models.registry import list_models, register_model
from lightning_pc.tasks import SemanticSegmentationTask


class Pointwise(nn.Module):
    """One linear layer per point: its output for a point depends on that point alone."""

    def __init__(self, num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        self.linear = nn.Linear(3 + in_channels, num_classes)

    def forward(self, data) -> torch.Tensor:  # noqa: ANN001
        return self.linear(torch.cat([data.pos, data.x], 1))


if "packing_pointwise" not in list_models():
    register_model("packing_pointwise")(Pointwise)


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
    for key in want.keys():
        a, b = got[key], want[key]
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
