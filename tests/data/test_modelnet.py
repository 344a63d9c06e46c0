"""ModelNet: the three layouts, the OFF quirks, bad files, and untouched raw files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_pc.data import DataFormatError, MissingDataError, ModelNetDataModule
from lightning_pc.data.datasets.modelnet import MODELNET10_CLASSES, MODELNET40_CLASSES
from tests.data import load_fixture

fx = load_fixture("modelnet")


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p): (p.read_bytes(), p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def run(dm: ModelNetDataModule) -> ModelNetDataModule:
    dm.prepare_data()
    dm.setup("fit")
    return dm


def test_raw_layout_quirks_and_sampling(tmp_path: Path) -> None:
    root = fx.make_raw(tmp_path / "ModelNet10", fx.MODELNET10)
    before = snapshot(root)
    dm = run(
        ModelNetDataModule(
            str(root),
            10,
            num_points=256,
            points_per_shape=512,
            batch_size=4,
            num_workers=0,
            cache_dir=str(tmp_path / "c"),
        )
    )
    assert snapshot(root) == before  # raw files untouched
    train, test = dm.datasets["train"], dm.datasets["test"]
    assert len(train) == 20 and len(test) == 10 and dm.datasets["val"] is test
    assert train.names[0] == "bathtub/train/bathtub_0001.off"
    # class index = position in the sorted class list
    labels = train.samples["label"]
    assert [MODELNET10_CLASSES[i] for i in labels] == [n.split("/")[0] for n in train.names]
    full = train.store.points(0, "pos")
    assert full.shape == (512, 3)
    assert np.linalg.norm(full, axis=1).max() <= 1.0 + 1e-5  # normalised from ~300 units
    batch = next(iter(dm.train_dataloader()))
    assert batch.pos.shape == (4 * 256, 3) and batch.y.shape == (4,)


def test_raw_points_lie_on_the_faces(tmp_path: Path) -> None:
    root = fx.make_raw(tmp_path / "ModelNet10", fx.MODELNET10)
    dm = run(
        ModelNetDataModule(
            str(root), 10, points_per_shape=600, num_workers=0, cache_dir=str(tmp_path / "c")
        )
    )
    store = dm.datasets["train"].store
    # the box (fixture file 0001): every point is on one of its 6 faces
    pts = store.points(0, "pos")
    lo, hi = pts.min(0), pts.max(0)
    on_face = (np.isclose(pts, lo, atol=1e-4) | np.isclose(pts, hi, atol=1e-4)).any(1)
    assert on_face.all()
    # the pentagonal prism (0002, polygons fan-triangulated): both caps are sampled
    idx = store.names.index("bed/train/bed_0002.off")
    z = store.points(idx, "pos")[:, 2]
    assert (np.isclose(z, z.min(), atol=1e-4)).sum() > 20 and (
        np.isclose(z, z.max(), atol=1e-4)
    ).sum() > 20


def test_modelnet40_raw_and_subset_10(tmp_path: Path) -> None:
    root = fx.make_raw(tmp_path / "ModelNet40", fx.MODELNET40, (1, 1))
    dm = run(
        ModelNetDataModule(
            str(tmp_path),
            40,
            points_per_shape=64,
            num_points=32,
            num_workers=0,
            cache_dir=str(tmp_path / "c"),
        )
    )
    assert dm.num_classes == 40 and len(dm.datasets["train"]) == 40
    dm10 = run(
        ModelNetDataModule(
            str(root),
            10,
            points_per_shape=64,
            num_points=32,
            num_workers=0,
            cache_dir=str(tmp_path / "c"),
        )
    )
    labels = dm10.datasets["train"].samples["label"].tolist()
    assert labels == list(range(10))


def test_resampled_layout(tmp_path: Path) -> None:
    root = fx.make_resampled(tmp_path / "mn10")
    dm = run(
        ModelNetDataModule(
            str(root),
            10,
            num_points=32,
            use_normals=True,
            num_workers=0,
            cache_dir=str(tmp_path / "c"),
        )
    )
    ds = dm.datasets["train"]
    assert len(ds) == 20 and len(dm.datasets["test"]) == 10
    raw = np.loadtxt(root / ds.names[0], delimiter=",", dtype=np.float32)
    sample = dm.datasets["test"][0]
    test_raw = np.loadtxt(root / dm.datasets["test"].names[0], delimiter=",", dtype=np.float32)
    np.testing.assert_allclose(sample.pos.numpy(), test_raw[:32, :3])  # eval: the first points
    np.testing.assert_allclose(sample.x.numpy(), test_raw[:32, 3:])  # normals in x
    assert raw.shape == (64, 6) and ds[0].x.shape == (32, 3)


def test_resampled_40_listing(tmp_path: Path) -> None:
    root = fx.make_resampled(tmp_path / "mn40", fx.MODELNET40, 8, "modelnet40")
    dm = run(ModelNetDataModule(str(root), 40, num_workers=0, cache_dir=str(tmp_path / "c")))
    assert len(dm.datasets["train"]) == 80
    dm10 = run(ModelNetDataModule(str(root), 10, num_workers=0, cache_dir=str(tmp_path / "c")))
    assert sorted(set(dm10.datasets["train"].samples["label"].tolist())) == list(range(10))


def test_hdf5_layout(tmp_path: Path) -> None:
    root = fx.make_hdf5(tmp_path / "modelnet40_ply_hdf5_2048")
    dm = run(
        ModelNetDataModule(
            str(tmp_path),
            40,
            num_points=16,
            batch_size=3,
            num_workers=0,
            cache_dir=str(tmp_path / "c"),
        )
    )
    ds = dm.datasets["train"]
    assert len(ds) == 12 and len(dm.datasets["test"]) == 6
    assert ds.names[0] == "ply_data_train0.h5:0"
    assert MODELNET40_CLASSES[int(ds.samples["label"][1])] == "chair"
    dm10 = run(ModelNetDataModule(str(root), 10, num_workers=0, cache_dir=str(tmp_path / "c")))
    names = [MODELNET10_CLASSES[i] for i in dm10.datasets["test"].samples["label"]]
    assert names == ["bed", "chair", "sofa", "desk"]  # airplane and xbox are not ModelNet10
    with pytest.raises(ValueError, match="no normals"):
        run(ModelNetDataModule(str(root), 40, use_normals=True, cache_dir=str(tmp_path / "c")))


def test_missing_data_names_layout_and_path(tmp_path: Path) -> None:
    with pytest.raises(MissingDataError, match="modelnet40_normal_resampled") as info:
        ModelNetDataModule(str(tmp_path / "nowhere"), cache_dir=str(tmp_path / "c")).prepare_data()
    assert str(tmp_path / "nowhere") in str(info.value)


def _no_cache_left(cache: Path) -> bool:
    return not any(p.name == "meta.json" or p.name.startswith(".tmp") for p in cache.rglob("*"))


@pytest.mark.parametrize(
    ("target", "content", "message"),
    [
        ("bed/train/bed_0002.off", "OFF\n3 1 0\n0 0 0\n1 0 0\n", "bed_0002.off.*truncated"),
        (
            "bed/train/bed_0002.off",
            "OFF\n3 1 0\n0 0 0\n1 0 x\n0 1 0\n3 0 1 2",
            "bed_0002.off, line 4: non-numeric vertex",
        ),
        ("bed/train/bed_0002.off", "", "bed_0002.off: file is empty"),
        (
            "bed/train/bed_0002.off",
            "OFF\n3 1 0\n0 0 0\n1 0 nan\n0 1 0\n3 0 1 2",
            "bed_0002.off, line 4: non-finite vertex",
        ),
    ],
)
def test_bad_off_files(tmp_path: Path, target: str, content: str, message: str) -> None:
    root = fx.make_raw(tmp_path / "ModelNet10", fx.MODELNET10)
    (root / target).write_text(content)
    before = snapshot(root)
    cache = tmp_path / "c"
    with pytest.raises(DataFormatError, match=message):
        ModelNetDataModule(str(root), 10, points_per_shape=32, cache_dir=str(cache)).prepare_data()
    assert _no_cache_left(cache) and snapshot(root) == before


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("1,2,3,4,5,6\n1,2,3,4,5\n", "line 2: expected 6 columns, found 5"),
        ("1,2,3,4,5,6\n1,2,3,4,5,abc\n", "line 2: non-numeric field 'abc'"),
        ("1,2,3,4,5,6\n1,2,3,nan,5,6\n", "line 2: non-finite value 'nan'"),
        ("", "file is empty"),
    ],
)
def test_bad_resampled_files(tmp_path: Path, content: str, message: str) -> None:
    root = fx.make_resampled(tmp_path / "mn10")
    bad = root / "chair" / "chair_0005.txt"
    bad.write_text(content)
    cache = tmp_path / "c"
    with pytest.raises(DataFormatError, match=f"chair_0005.txt.*{message}"):
        ModelNetDataModule(str(root), 10, cache_dir=str(cache), num_workers=0).prepare_data()
    assert _no_cache_left(cache)


def test_bad_listing_and_label_out_of_range(tmp_path: Path) -> None:
    import h5py

    root = fx.make_resampled(tmp_path / "mn10")
    with open(root / "modelnet10_train.txt", "a") as f:
        f.write("spaceship_0001\n")
    with pytest.raises(
        DataFormatError, match="modelnet10_train.txt, line 21: unknown class 'spaceship'"
    ):
        ModelNetDataModule(str(root), 10, cache_dir=str(tmp_path / "c")).prepare_data()
    h5 = fx.make_hdf5(tmp_path / "h5")
    with h5py.File(h5 / "ply_data_test0.h5", "r+") as f:
        f["label"][2, 0] = 77
    with pytest.raises(DataFormatError, match="ply_data_test0.h5: label 77 of row 2 out of range"):
        ModelNetDataModule(str(h5), 40, cache_dir=str(tmp_path / "c2")).prepare_data()
    assert _no_cache_left(tmp_path / "c2")


def test_changed_parameter_builds_new_cache(tmp_path: Path) -> None:
    root = fx.make_raw(tmp_path / "ModelNet10", fx.MODELNET10)
    cache = tmp_path / "c"
    a = ModelNetDataModule(str(root), 10, points_per_shape=32, cache_dir=str(cache))
    a.prepare_data()
    b = ModelNetDataModule(str(root), 10, points_per_shape=48, cache_dir=str(cache))
    with pytest.raises(FileNotFoundError, match="prepare_data"):
        b.setup("fit")  # setup only reads, and never serves the 32-point cache
    b.prepare_data()
    b.setup("fit")
    assert b.datasets["train"].store.num_points(0) == 48
    assert len(list((cache / "modelnet").glob("*/meta.json"))) == 2
    assert torch.is_tensor(b.datasets["train"][0].pos)
