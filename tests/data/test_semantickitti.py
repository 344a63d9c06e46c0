"""SemanticKITTI: the release layout, the official learning map, defects named by file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_pc.data import SemanticKITTIDataModule
from lightning_pc.data.datasets.semantickitti import CLASS_NAMES, LEARNING_MAP, read_labels
from lightning_pc.data.errors import DataFormatError, MissingDataError
from tests.data import load_fixture


@pytest.fixture
def release(tmp_path: Path) -> Path:
    return load_fixture("semantickitti").make_release(tmp_path / "kitti")


def _module(root: Path, cache: Path, **kwargs) -> SemanticKITTIDataModule:
    dm = SemanticKITTIDataModule(str(root), cache_dir=str(cache), num_workers=0, **kwargs)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def test_learning_map_is_the_official_19_classes() -> None:
    assert len(CLASS_NAMES) == 19
    assert sorted(set(LEARNING_MAP.values())) == list(range(20))
    # moving objects fold into their static class; lane marking is road
    assert LEARNING_MAP[252] == LEARNING_MAP[10] == 1
    assert LEARNING_MAP[60] == LEARNING_MAP[40] == 9
    assert CLASS_NAMES[LEARNING_MAP[40] - 1] == "road"
    assert CLASS_NAMES[LEARNING_MAP[81] - 1] == "traffic-sign"


def test_splits_labels_and_ignore(release: Path, tmp_path: Path) -> None:
    dm = _module(release, tmp_path / "cache", voxel_size=None, num_points=None)
    assert dm.num_classes == 19
    assert len(dm.datasets["train"]) == 2 and len(dm.datasets["val"]) == 2
    assert len(dm.datasets["predict"]) == 1  # sequence 11: no labels
    raw_root = release / "dataset" / "sequences" / "08"
    raw = np.fromfile(raw_root / "labels" / "000000.label", dtype="<u4")
    points = np.fromfile(raw_root / "velodyne" / "000000.bin", dtype="<f4").reshape(-1, 4)
    sample = dm.datasets["val"][0]  # no eval transforms without a voxel size
    torch.testing.assert_close(sample.pos, torch.from_numpy(points[:, :3]))
    torch.testing.assert_close(sample.x, torch.from_numpy(points[:, 3:]))
    y = sample.y.numpy()
    semantic = raw & 0xFFFF
    assert (y[semantic == 40] == CLASS_NAMES.index("road")).all()
    assert (y[semantic == 44] == CLASS_NAMES.index("parking")).all()
    car = CLASS_NAMES.index("car")
    assert (y[(semantic == 10) | (semantic == 252)] == car).all()  # instance bits dropped
    assert (y[(semantic == 0) | (semantic == 1)] == dm.ignore_index).all()
    assert dm.ignore_index == -1
    unlabelled = dm.datasets["predict"][0]
    assert getattr(unlabelled, "y", None) is None


def test_eval_projects_back_to_every_point(release: Path, tmp_path: Path) -> None:
    dm = _module(release, tmp_path / "cache", voxel_size=0.5)
    sample = dm.datasets["val"][0]
    n = sample.y_full.numel()
    assert sample.inverse_index.numel() == n and sample.pos.size(0) < n
    # a perfect voxel prediction, projected back, gives each point its voxel's label
    assert (sample.y[sample.inverse_index] == sample.y_full).float().mean() > 0.9


@pytest.mark.parametrize(
    ("defect", "message"),
    [
        ("truncated_bin", r"000001\.bin: \d+ bytes is not a whole number of points"),
        ("short_labels", r"000001\.label: holds \d+ labels, the scan has \d+ points"),
        ("unknown_id", r"000001\.label: semantic id 77 of point 5 is not in the SemanticKITTI"),
        ("missing_label", r"000001\.label"),
    ],
)
def test_defects_are_named(release: Path, tmp_path: Path, defect: str, message: str) -> None:
    seq = release / "dataset" / "sequences" / "00"
    bin_file, label = seq / "velodyne" / "000001.bin", seq / "labels" / "000001.label"
    if defect == "truncated_bin":
        bin_file.write_bytes(bin_file.read_bytes()[:-6])
    elif defect == "short_labels":
        label.write_bytes(label.read_bytes()[:-4])
    elif defect == "unknown_id":
        values = np.fromfile(label, dtype="<u4")
        values[5] = 77 | (3 << 16)
        values.tofile(label)
    else:
        label.unlink()
    error = MissingDataError if defect == "missing_label" else DataFormatError
    with pytest.raises(error, match=message):
        _module(release, tmp_path / "cache")
    assert not any(p.name == "meta.json" for p in (tmp_path / "cache").rglob("*"))


def test_missing_release_says_what_it_expected(tmp_path: Path) -> None:
    with pytest.raises(MissingDataError, match="velodyne"):
        SemanticKITTIDataModule(str(tmp_path), cache_dir=str(tmp_path / "c")).prepare_data()


def test_read_labels_counts(tmp_path: Path) -> None:
    path = tmp_path / "x.label"
    np.array([40, 10 | (5 << 16), 0], dtype="<u4").tofile(path)
    assert read_labels(path, 3).tolist() == [8, 0, -1]
