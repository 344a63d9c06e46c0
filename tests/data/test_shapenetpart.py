"""ShapeNetPart: global category/part ids (also for subsets), normals, bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lightning_pc.data import DataFormatError, MissingDataError, ShapeNetPartDataModule
from lightning_pc.data.datasets.shapenetpart import CATEGORY_NAMES, PART_OFFSETS
from tests.data import load_fixture

fx = load_fixture("shapenetpart")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return fx.make_shapenetpart(tmp_path / "snp")


def test_all_categories(root: Path, tmp_path: Path) -> None:
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    dm = ShapeNetPartDataModule(
        str(root),
        num_points=50,
        use_normals=True,
        batch_size=4,
        num_workers=0,
        cache_dir=str(tmp_path / "c"),
    )
    assert dm.num_classes == 50 and dm.num_categories == 16 and len(dm.palette) == 50
    dm.prepare_data()
    dm.setup("fit")
    train = dm.datasets["train"]
    assert len(train) == 9 and len(dm.datasets["val"]) == 3 and len(dm.datasets["test"]) == 6
    batch = next(iter(dm.train_dataloader()))
    assert batch.category.shape == (4,) and batch.x.shape == (200, 3)
    assert batch.y.shape == (200,) and batch.pos.shape == (200, 3)
    cat = batch.category[batch.batch]
    lo, hi = np.array(PART_OFFSETS)[cat], np.array(PART_OFFSETS)[cat + 1]
    assert ((batch.y.numpy() >= lo) & (batch.y.numpy() < hi)).all()
    # values match the raw file, labels parsed from floats
    name = train.names[0]
    raw = np.loadtxt(root / f"{name}.txt")
    assert train.store.points(0, "part").tolist() == raw[:, 6].astype(int).tolist()
    assert before == {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_subset_keeps_global_category(root: Path, tmp_path: Path) -> None:
    dm = ShapeNetPartDataModule(
        str(root),
        categories=["Chair"],
        num_points=None,
        num_workers=0,
        cache_dir=str(tmp_path / "c"),
    )
    dm.prepare_data()
    dm.setup("test")
    test = dm.datasets["test"]
    assert len(test) == 2
    sample = test[0]
    assert sample.category.tolist() == [CATEGORY_NAMES.index("Chair")] == [4]
    assert sample.y.min() >= 12 and sample.y.max() < 16
    assert sample.pos.size(0) == test.store.num_points(0)  # variable counts kept
    with pytest.raises(ValueError, match="unknown ShapeNetPart categories"):
        ShapeNetPartDataModule(str(root), categories=["Spaceship"])


def test_missing(tmp_path: Path) -> None:
    with pytest.raises(MissingDataError, match="shuffled_"):
        ShapeNetPartDataModule(str(tmp_path), cache_dir=str(tmp_path / "c")).prepare_data()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "0.1 0.2 0.3 0 0 1 13.000000",
            "line 3: part label 13 out of range \\[0, 4\\) for Airplane",
        ),
        ("0.1 0.2 0.3 0 0 1", "line 3: expected 7 columns, found 6"),
        ("0.1 0.2 zero 0 0 1 1", "line 3: non-numeric field 'zero'"),
    ],
)
def test_bad_shape_file(root: Path, tmp_path: Path, line: str, message: str) -> None:
    shape = sorted((root / "02691156").glob("*.txt"))[0]
    lines = shape.read_text().splitlines()
    lines[2] = line
    shape.write_text("\n".join(lines) + "\n")
    cache = tmp_path / "c"
    with pytest.raises(DataFormatError, match=f"{shape.name}, {message}"):
        ShapeNetPartDataModule(str(root), cache_dir=str(cache), num_workers=0).prepare_data()
    assert not any(p.name == "meta.json" or p.name.startswith(".tmp") for p in cache.rglob("*"))
