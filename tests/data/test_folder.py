"""PointCloudFolderDataModule: every file type, meshes sampled, bad files named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_pc.data import DataFormatError, MissingDataError, PointCloudFolderDataModule
from tests.data import load_fixture

fx = load_fixture("folder")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fx.make_folder(tmp_path_factory.mktemp("folder") / "clouds")


def test_all_file_types(folder: Path, tmp_path: Path) -> None:
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}
    dm = PointCloudFolderDataModule(
        str(folder),
        num_points=None,
        points_per_mesh=100,
        batch_size=4,
        num_workers=0,
        cache_dir=str(tmp_path),
    )
    assert dm.class_names == ["box", "sphere"] and dm.num_classes == 2  # before prepare_data
    dm.prepare_data()
    dm.setup("fit")
    train = dm.datasets["train"]
    names = train.names
    assert names[:4] == ["train/box/a.ply", "train/box/b.pcd", "train/box/c.xyz", "train/box/d.pts"]
    assert len(train) == 20 and len(dm.datasets["val"]) == 12  # val falls back to test
    counts = {n: train.store.num_points(i) for i, n in enumerate(names)}
    for mesh in ("mesh.obj", "mesh.stl", "mesh.ply", "mesh.off"):
        assert counts[f"train/box/{mesh}"] == 100  # sampled on the faces
    raw = np.loadtxt(folder / "train/box/d.pts", skiprows=1)[:, :3]
    np.testing.assert_allclose(
        train.store.points(names.index("train/box/d.pts"), "pos"), raw, atol=1e-5
    )
    assert len({counts[n] for n in names if "mesh" not in n}) > 1  # variable sizes
    sphere_mesh = train.store.points(names.index("train/sphere/mesh.obj"), "pos")
    assert np.linalg.norm(sphere_mesh, axis=1).max() <= 1 + 1e-5
    batch = next(iter(dm.train_dataloader()))
    assert batch.ptr[-1] == batch.pos.size(0) and batch.y.shape == (4,)
    assert before == {
        p: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()
    }


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(MissingDataError, match="train/<class>/<file>") as info:
        PointCloudFolderDataModule(str(tmp_path / "none"))
    assert str(tmp_path / "none" / "train") in str(info.value)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.xyz", "1 2 3\n4 5 6\n7 8 nine\n", "bad.xyz, line 3: non-numeric field 'nine'"),
        ("bad.txt", "1 2 3\n4 5\n", "bad.txt, line 2: expected 3 columns, found 2"),
        ("bad.pts", "", "bad.pts: file is empty"),
        (
            "bad.ply",
            "ply\nformat ascii 1.0\nelement vertex 9\nproperty float x\nend_header\n1\n",
            "bad.ply, line 7: truncated: header declares 9 vertices, found 1",
        ),
        ("bad.off", "OFF\n3 1 0\n0 0 0\n", "bad.off, line 3: truncated"),
    ],
)
def test_bad_files(tmp_path: Path, name: str, content: str, message: str) -> None:
    root = tmp_path / "clouds"
    (root / "train" / "a").mkdir(parents=True)
    np.savetxt(root / "train" / "a" / "good.xyz", np.ones((5, 3)))
    (root / "train" / "a" / name).write_text(content)
    cache = tmp_path / "cache"
    dm = PointCloudFolderDataModule(str(root), cache_dir=str(cache), num_workers=0)
    with pytest.raises(DataFormatError, match=message):
        dm.prepare_data()
    assert not any(p.name == "meta.json" or p.name.startswith(".tmp") for p in cache.rglob("*"))


def test_rgb_and_normal_features(tmp_path: Path) -> None:
    import open3d as o3d

    root = tmp_path / "scans"
    rng = np.random.default_rng(0)
    colours = {"red": [1.0, 0.0, 0.0], "blue": [0.0, 0.0, 1.0]}
    for cls, colour in colours.items():
        d = root / "train" / cls
        d.mkdir(parents=True)
        pts = rng.normal(size=(30, 3))
        cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts))
        cloud.colors = o3d.utility.Vector3dVector(np.tile(colour, (30, 1)))
        cloud.normals = o3d.utility.Vector3dVector(pts / np.linalg.norm(pts, axis=1, keepdims=True))
        o3d.io.write_point_cloud(str(d / "scan.ply"), cloud)
        o3d.io.write_point_cloud(str(d / "scan.pcd"), cloud)
    dm = PointCloudFolderDataModule(
        str(root),
        features=["normal", "rgb"],
        num_points=None,
        cache_dir=str(tmp_path / "c"),
        num_workers=0,
        train_transforms=[
            {"class_path": "RandomRotate", "init_args": {"axis": "so3"}},
        ],
    )
    dm.prepare_data()
    dm.setup("fit")
    ds = dm.datasets["train"]
    for i, name in enumerate(ds.names):
        sample = ds[i]
        assert sample.x.shape == (30, 6)  # rgb first, then normals
        expected = torch.tensor(colours[name.split("/")[1]]).expand(30, 3)
        assert torch.allclose(sample.x[:, :3], expected)
        n = sample.x[:, 3:]
        assert torch.allclose(n.norm(dim=1), torch.ones(30), atol=1e-4)
        # normals were rotated with the points: still radial
        radial = torch.nn.functional.normalize(sample.pos, dim=1)  # rotation about the origin
        assert torch.allclose((radial * n).sum(1), torch.ones(30), atol=1e-3)
    box = o3d.geometry.TriangleMesh.create_box()
    o3d.io.write_triangle_mesh(str(root / "train" / "red" / "box.obj"), box)
    with pytest.raises(DataFormatError, match="box.obj: has no 'rgb'"):
        PointCloudFolderDataModule(
            str(root), features=["rgb"], cache_dir=str(tmp_path / "c2"), num_workers=0
        ).prepare_data()
    with pytest.raises(ValueError, match="unknown features"):
        PointCloudFolderDataModule(str(root), features=["intensity"])


def test_las_classification_codes_as_point_labels(tmp_path: Path) -> None:
    codes = load_fixture("folder", "make_las_fixture.py").make_las_folder(tmp_path / "lidar")
    with pytest.warns(UserWarning, match="skipped 1 files that are not LAS"):
        dm = PointCloudFolderDataModule(
            str(tmp_path / "lidar"), point_labels=True, num_points=None, batch_size=2,
            num_workers=0, cache_dir=str(tmp_path / "cache"),
        )  # fmt: skip
        dm.prepare_data()
    # the codes the train files use, in code order, with their ASPRS names
    assert dm.class_names == ["ground", "high_vegetation", "building", "low_point_noise"]
    assert dm.ignore_index == -1
    dm.setup("fit")
    dm.setup("test")
    index = {2: 0, 5: 1, 6: 2, 7: 3}
    for split in ("train", "test"):
        ds = dm.datasets[split]
        for i, name in enumerate(ds.names):
            expected = np.array([index.get(int(c), -1) for c in codes[name]])
            got = ds[i].y.numpy()
            np.testing.assert_array_equal(got, expected)  # every point, in file order
    assert sorted(dm.datasets["train"].names) == ["train/north/tile_b.laz", "train/tile_a.las"]
    assert (dm.datasets["test"][0].y == -1).sum() > 0  # water (9) is not a train class
    batch = next(iter(dm.train_dataloader()))
    assert batch.y.shape == (batch.pos.size(0),) and batch.y.max() <= 3


def test_chosen_label_codes_and_unclassified_files(tmp_path: Path) -> None:
    import laspy

    codes = load_fixture("folder", "make_las_fixture.py").make_las_folder(tmp_path / "lidar")
    with pytest.warns(UserWarning):
        dm = PointCloudFolderDataModule(
            str(tmp_path / "lidar"), point_labels=True, label_codes=[6, 2], num_points=None,
            num_workers=0, cache_dir=str(tmp_path / "cache"),
        )  # fmt: skip
        dm.prepare_data()
    dm.setup("fit")
    assert dm.class_names == ["building", "ground"]
    ds = dm.datasets["train"]
    i = ds.names.index("train/tile_a.las")
    expected = np.select([codes["train/tile_a.las"] == 6, codes["train/tile_a.las"] == 2], [0, 1], -1)
    np.testing.assert_array_equal(ds[i].y.numpy(), expected)
    # a LAS file whose points were never classified (all 0) is refused by name
    blank = laspy.create(point_format=3, file_version="1.2")
    blank.x, blank.y, blank.z = np.arange(5.0), np.zeros(5), np.zeros(5)
    blank.write(tmp_path / "lidar" / "train" / "blank.las")
    with pytest.warns(UserWarning):
        dm = PointCloudFolderDataModule(
            str(tmp_path / "lidar"), point_labels=True, label_codes=[6, 2], num_workers=0,
            cache_dir=str(tmp_path / "cache2"),
        )  # fmt: skip
        with pytest.raises(DataFormatError, match="blank.las.*no classification codes"):
            dm.prepare_data()
    with pytest.raises(ValueError, match="point_labels"):
        PointCloudFolderDataModule(str(tmp_path / "lidar"), label_codes=[2])
