"""ScanNet v2: raw release and Pointcept layout, 20 and 200 classes, defects named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_pc.data import ScanNetDataModule
from lightning_pc.data.errors import DataFormatError
from tests.data import load_fixture

FX = load_fixture("scannet")


@pytest.fixture
def release(tmp_path: Path) -> Path:
    return FX.make_release(tmp_path / "scannet")


def _module(root: Path, cache: Path, **kwargs) -> ScanNetDataModule:
    kwargs.setdefault("voxel_size", None)
    dm = ScanNetDataModule(str(root), cache_dir=str(cache), num_workers=0, **kwargs)
    dm.prepare_data()
    dm.setup("fit")
    return dm


@pytest.mark.parametrize("benchmark", ["scannet20", "scannet200"])
def test_raw_and_pointcept_layouts_give_the_same_labels(
    release: Path, tmp_path: Path, benchmark: str
) -> None:
    raw = _module(release / "raw", tmp_path / "c1", benchmark=benchmark)
    pc = _module(release / "pointcept", tmp_path / "c2", benchmark=benchmark)
    assert raw.num_classes == pc.num_classes == (20 if benchmark == "scannet20" else 200)
    assert len(raw.datasets["train"]) == 2 and len(raw.datasets["val"]) == 1
    assert len(raw.datasets["predict"]) == 1  # the unlabelled test scene
    assert getattr(raw.datasets["predict"][0], "y", None) is None
    scene = release / "raw" / "scans" / "scene0002_00"
    segs = np.asarray(json.loads(
        (scene / "scene0002_00_vh_clean_2.0.010000.segs.json").read_text())["segIndices"])
    column = 0 if benchmark == "scannet20" else 1
    expected = FX.expected_labels(segs)[:, column]
    for dm in (raw, pc):
        sample = dm.datasets["val"][0]
        np.testing.assert_array_equal(sample.y.numpy(), expected)
        assert sample.x.shape == (240, 3) and 0 <= sample.x.min() and sample.x.max() <= 1
    torch.testing.assert_close(raw.datasets["val"][0].pos, pc.datasets["val"][0].pos)
    torch.testing.assert_close(raw.datasets["val"][0].x, pc.datasets["val"][0].x)
    assert (expected == -1).any() and raw.ignore_index == -1
    if benchmark == "scannet200":
        assert raw.class_names[:3] == ["wall", "chair", "floor"]  # names from the tsv


def test_switching_benchmark_reuses_the_cache(release: Path, tmp_path: Path) -> None:
    _module(release / "raw", tmp_path / "c", benchmark="scannet20")
    _module(release / "raw", tmp_path / "c", benchmark="scannet200")
    assert len(list((tmp_path / "c").rglob("meta.json"))) == 1


def test_defects_are_named(release: Path, tmp_path: Path) -> None:
    raw = release / "raw"
    scene = raw / "scans" / "scene0001_00"
    segs = scene / "scene0001_00_vh_clean_2.0.010000.segs.json"
    data = json.loads(segs.read_text())
    data["segIndices"] = data["segIndices"][:-3]
    segs.write_text(json.dumps(data))
    with pytest.raises(DataFormatError, match="segIndices has 237 entries.*240 vertices"):
        _module(raw, tmp_path / "c")
    data["segIndices"] += [3, 3, 3]
    segs.write_text(json.dumps(data))
    (raw / "scannetv2_val.txt").write_text("scene0002_00\nscene0099_00\n")
    with pytest.raises(DataFormatError, match=r"scannetv2_val.txt, line 2: scene 'scene0099_00'"):
        _module(raw, tmp_path / "c")
    (raw / "scannetv2_val.txt").write_text("scene0002_00\n")
    agg = scene / "scene0001_00.aggregation.json"
    agg.write_text('{"segGroups": [')
    with pytest.raises(DataFormatError, match="aggregation.json, line 1: not valid JSON"):
        _module(raw, tmp_path / "c")
    assert not any(p.name == "meta.json" for p in (tmp_path / "c").rglob("*"))


def test_pointcept_label_out_of_range(release: Path, tmp_path: Path) -> None:
    path = release / "pointcept" / "train" / "scene0000_00" / "segment20.npy"
    labels = np.load(path)
    labels[7] = 20
    np.save(path, labels)
    with pytest.raises(DataFormatError, match=r"segment20.npy: label 20 at index 7"):
        _module(release / "pointcept", tmp_path / "c")
