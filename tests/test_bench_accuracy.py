"""benchmarks/accuracy.py: the twin sees exactly our training data, and its bookkeeping."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
import yaml

from lightning_pc.data import ModelNetDataModule
from lightning_pc.data.sampler import EpochSampler
from tests.data import load_fixture

REPO = Path(__file__).resolve().parents[1]
fx = load_fixture("modelnet")


def _bench():
    spec = importlib.util.spec_from_file_location(
        "bench_accuracy", REPO / "benchmarks" / "accuracy.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_accuracy"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("config", ["modelnet10_pointnet2_ssg.yaml", "modelnet10_dgcnn.yaml"])
@pytest.mark.parametrize("points", [32, 48])  # all points / a random subset of 32 (2,048-style)
def test_twin_gets_our_samples_order_and_augmentations(
    config: str, points: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = _bench()
    monkeypatch.setenv("LIGHTNING_PC_CACHE", str(tmp_path / "cache"))
    root = fx.make_hdf5_modelnet10(tmp_path / "modelnet10_1024", points=points)
    init = yaml.safe_load((REPO / "configs" / config).read_text())["data"]["init_args"]
    init.update(root=str(root), num_workers=0, num_points=32)
    dm = ModelNetDataModule(**init)
    dm.prepare_data()
    dm.setup("fit")
    ours = dm.datasets["train"]
    twin = bench.ArraysDataset(
        *bench.read_hdf5(root, "train"), dm.train_transform(), dm.num_points, True
    )
    sampler = EpochSampler(ours, seed=7)
    sampler.set_epoch(3)
    items = list(sampler)
    twin_sampler = EpochSampler(twin, seed=7)
    twin_sampler.set_epoch(3)
    assert list(twin_sampler) == items  # same order and per-sample seeds
    for item in items:
        a, b = ours[item], twin[item]
        assert torch.equal(a.pos, b.pos) and int(a.y) == int(b.y)
    # a different epoch draws different augmentations (the check above is not vacuous)
    other = EpochSampler(twin, seed=7)
    other.set_epoch(4)
    index, seed = items[0]
    other_seed = dict(other)[index]
    assert not torch.equal(twin[(index, seed)].pos, twin[(index, other_seed)].pos)
    test = bench.ArraysDataset(*bench.read_hdf5(root, "test"), dm.eval_transform(), 32, False)
    for i in range(len(test)):
        assert torch.equal(test[i].pos, dm.datasets["test"][i].pos)


def test_subset_passes_sampler_seeds_through() -> None:
    bench = _bench()
    base = list(range(100, 110))

    class Echo:
        def __len__(self) -> int:
            return len(base)

        def __getitem__(self, item):
            return item

    idx = bench.subset_indices(10, 4)
    assert idx == bench.subset_indices(10, 4) and len(idx) == 4 and idx == sorted(idx)
    assert bench.subset_indices(10, None) is None and bench.subset_indices(10, 20) is None
    sub = bench.Subset(Echo(), idx)
    assert len(sub) == 4 and sub[(1, 99)] == (idx[1], 99) and sub[2] == idx[2]


def test_class_accuracy() -> None:
    bench = _bench()
    oa, macc = bench.class_accuracy([0, 0, 1, 2], [0, 1, 1, 2], 4)
    assert oa == pytest.approx(0.75)
    assert macc == pytest.approx((1 + 0.5 + 1) / 3)  # classes without samples are left out


def test_report_pairs_seeds_and_times_thresholds(capsys: pytest.CaptureFixture[str]) -> None:
    """Per epoch, the mean ± std over seeds, the paired difference ours - twin per seed, and
    the cumulative minutes at the first epoch reaching each accuracy."""
    import argparse

    bench = _bench()

    def curve(oas: list[float]) -> list[dict[str, float]]:
        return [{"oa": oa, "macc": oa - 0.01, "seconds": 60.0} for oa in oas]

    runs = {
        0: {
            "ours": curve([0.70, 0.86]),
            "twin": curve([0.60, 0.80]),
            "ours:params": 5,
            "twin:params": 5,
        },
        1: {
            "ours": curve([0.62, 0.91]),
            "twin": curve([0.66, 0.84]),
            "ours:params": 5,
            "twin:params": 5,
        },
    }
    args = argparse.Namespace(impls=["ours", "twin"], epochs=2)
    bench.report(args, "pointnet2_ssg", runs)
    out = capsys.readouterr().out
    assert "| 1 | 66.0 ± 5.7 |" in out  # ours OA, epoch 1, over two seeds
    assert "| 1 | +10.0 -4.0 | +3.0 ± 9.9 |" in out  # paired difference
    assert "| 2 | +6.0 +7.0 | +6.5 ± 0.7 |" in out
    assert "| 85% | 2.0, 2.0 | -, - |" in out
    assert "| 90% | -, 2.0 | -, - |" in out
