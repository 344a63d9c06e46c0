"""S3DIS: raw release with its defects, crops for training, whole rooms mapped back, hdf5."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from lightning_pc.callbacks.prediction_writer import PLYPredictionWriter
from lightning_pc.data import DataFormatError, MissingDataError, S3DISDataModule, collate
from lightning_pc.data.datasets.s3dis import CLASS_NAMES
from lightning_pc.tasks import SemanticSegmentationTask
from lightning_pc.tasks.guards import describe_clouds
from tests.conftest import TINY_MODELS
from tests.data import load_fixture

fx = load_fixture("s3dis")


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p): (p.read_bytes(), p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    return fx.make_raw(tmp_path / "Stanford3dDataset_v1.2_Aligned_Version")


def make_dm(root: Path, cache: Path, **kw) -> S3DISDataModule:
    kw = {"num_workers": 0, "cache_dir": str(cache), **kw}
    dm = S3DISDataModule(str(root), **kw)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def test_raw_release_with_defects(raw: Path, tmp_path: Path) -> None:
    before = snapshot(raw)
    dm = make_dm(tmp_path, tmp_path / "c", voxel_size=None, num_points=None, crops_per_room=2)
    assert snapshot(raw) == before  # NUL byte etc. survived in memory only
    assert dm.num_classes == 13 and dm.palette[0] == [0, 255, 0]
    test = dm.datasets["test"]
    assert [test.store.names[i] for i in test.indices] == ["Area_5/hallway_6", "Area_5/office_36"]
    # every point of every annotation file, duplicate skipped, stairs -> clutter
    office = test[1]
    assert office.pos.size(0) == 4 * 60 + 30 + 20
    lo, hi = office.pos.min(0).values, office.pos.max(0).values
    assert (
        torch.allclose((lo + hi)[:2], torch.zeros(2), atol=1e-5) and lo[2].abs() < 1e-6
    )  # centred
    counts = torch.bincount(office.y, minlength=13)
    assert counts[CLASS_NAMES.index("clutter")] == 30
    assert counts[CLASS_NAMES.index("wall")] == 60 + 20
    # the NUL line parsed as its six numbers
    hallway = test.store.points(test.indices[0], "rgb")
    line = (
        (raw / "Area_5/hallway_6/Annotations/ceiling_1.txt")
        .read_bytes()
        .splitlines()[fx.NUL_LINE - 1]
    )
    r, g, b = (int(v) for v in line.replace(b"\x00", b" ").split()[3:])
    assert any((row == [r, g, b]).all() for row in hallway)
    assert office.x.shape == (office.pos.size(0), 3) and 0 <= office.x.min() and office.x.max() <= 1
    assert len(dm.datasets["train"]) == 2 * 2  # two training rooms, two crops each


def test_crops_within_block(raw: Path, tmp_path: Path) -> None:
    dm = make_dm(
        tmp_path,
        tmp_path / "c",
        voxel_size=None,
        num_points=None,
        block_size=2.0,
        train_transforms=[],
    )
    crop = dm.datasets["train"][0]
    extent = crop.pos.max(0).values - crop.pos.min(0).values
    assert (extent[:2] <= 2.0 + 1e-5).all() and crop.pos.size(0) < 300
    assert crop.pos[:, 2].min() == 0  # floor at z = 0
    assert crop.y.shape == (crop.pos.size(0),)


def test_whole_rooms_with_a_sphere_crop_and_mix3d(raw: Path, tmp_path: Path) -> None:
    # Pointcept's recipe: whole rooms (block_size None), crops_per_room passes per epoch, the
    # transforms crop; Mix3D merges the training batch's clouds in pairs, never evaluation's
    dm = make_dm(
        tmp_path,
        tmp_path / "c",
        block_size=None,
        crops_per_room=3,
        batch_size=4,
        mix_prob=1.0,
        train_transforms=[{"class_path": "SphereCrop", "init_args": {"point_max": 100}}],
    )
    train, test = dm.datasets["train"], dm.datasets["test"]
    assert len(train) == 2 * 3
    rooms = train.indices
    whole = [train.store.num_points(r) for r in rooms]
    assert all(n > 100 for n in whole)
    sample = train[4]  # the second room, its second pass
    assert sample.pos.size(0) == 100 and sample.room.item() == rooms[1]
    lo, hi = sample.pos.min(0).values, sample.pos.max(0).values
    assert hi[2] - lo[2] <= 3.0 + 1e-5  # a room of the fixture is 6 x 4 x 3 m
    dm_plain = make_dm(tmp_path, tmp_path / "c", block_size=None, train_transforms=[])
    room = dm_plain.datasets["train"][0]
    assert room.pos.size(0) == whole[0]  # all of it, centred as for evaluation
    assert torch.allclose(room.pos, test.__class__.raw_sample(train, 0, torch.Generator()).pos)
    batch = next(iter(dm.train_dataloader()))
    assert batch.num_graphs == 2 and batch.pos.size(0) == 4 * 100  # 4 crops in 2 mixed scenes
    assert next(iter(dm.val_dataloader())).num_graphs == 1
    with pytest.raises(ValueError, match="mix_prob"):
        S3DISDataModule(str(raw), mix_prob=1.5)


def test_default_pipeline_and_projection_to_every_point(raw: Path, tmp_path: Path) -> None:
    dm = make_dm(
        tmp_path, tmp_path / "c", voxel_size=0.5, num_points=50, batch_size=2, eval_batch_size=2
    )
    batch = next(iter(dm.train_dataloader()))
    assert batch.ptr.numel() == 3 and batch.x.shape[1] == 3
    assert (batch.ptr.diff() <= 50).all()
    rooms = next(iter(dm.val_dataloader()))
    test = dm.datasets["test"]
    n_full = [test.store.num_points(i) for i in test.indices]
    assert rooms.inverse_index.numel() == sum(n_full) == rooms.y_full.numel()
    assert rooms.pos.size(0) < sum(n_full)  # voxelised
    # a perfect voxel prediction, projected back, reproduces the labels of voxel representatives
    pred_full = rooms.y[rooms.inverse_index]
    assert pred_full.numel() == sum(n_full)
    offsets = [0, n_full[0], sum(n_full)]
    second = rooms.inverse_index[offsets[1] :]
    assert (second >= rooms.ptr[1]).all() and (second < rooms.ptr[2]).all()  # offset per room
    assert torch.equal(rooms.y_full[: offsets[1]], test.labels(0))


def test_hdf5_blocks(tmp_path: Path) -> None:
    fx.make_hdf5(tmp_path / "indoor3d_sem_seg_hdf5_data")
    dm = make_dm(tmp_path, tmp_path / "c", test_area=5)
    assert len(dm.datasets["train"]) == 5 and len(dm.datasets["test"]) == 2
    block = dm.datasets["train"][0]
    assert block.pos.shape == (32, 3) and block.x.shape == (32, 6) and block.y.dtype == torch.int64
    dm6 = make_dm(tmp_path, tmp_path / "c", test_area=6)
    assert len(dm6.datasets["test"]) == 2 and len(dm6.datasets["train"]) == 5


def test_unknown_class_and_bad_values(raw: Path, tmp_path: Path) -> None:
    ann = raw / "Area_1" / "office_1" / "Annotations"
    (ann / "robot_1.txt").write_text("1 2 3 4 5 6\n")
    with pytest.raises(
        DataFormatError, match="robot_1.txt: not an annotation file of a known class"
    ):
        make_dm(tmp_path, tmp_path / "c")
    (ann / "robot_1.txt").unlink()
    lines = (ann / "floor_1.txt").read_text().splitlines()
    lines[4] = "1 2 3 4 5 nan"
    (ann / "floor_1.txt").write_text("\n".join(lines))
    with pytest.raises(DataFormatError, match="floor_1.txt, line 5: non-finite value 'nan'"):
        make_dm(tmp_path, tmp_path / "c")
    lines[4] = "1 2 3 4 5 600"
    (ann / "floor_1.txt").write_text("\n".join(lines))
    with pytest.raises(DataFormatError, match="floor_1.txt: colour .* not 0-255"):
        make_dm(tmp_path, tmp_path / "c")
    assert not any(
        p.name == "meta.json" or p.name.startswith(".tmp") for p in (tmp_path / "c").rglob("*")
    )


def test_missing(tmp_path: Path) -> None:
    with pytest.raises(MissingDataError, match="Annotations") as info:
        S3DISDataModule(str(tmp_path / "x"), cache_dir=str(tmp_path / "c")).prepare_data()
    assert str(tmp_path / "x") in str(info.value)
    with pytest.raises(ValueError, match="test_area"):
        S3DISDataModule(str(tmp_path), test_area=7)


def test_room_labels_are_a_permutation_of_raw(raw: Path, tmp_path: Path) -> None:
    dm = make_dm(tmp_path, tmp_path / "c", voxel_size=None)
    test = dm.datasets["test"]
    pos = test.store.points(test.indices[1], "pos")
    raw_rows = np.concatenate(
        [np.loadtxt(f) for f in sorted((raw / "Area_5/office_36/Annotations").glob("*_[0-9].txt"))]
    )
    assert np.allclose(np.sort(pos[:, 0]), np.sort(raw_rows[:, 0]), atol=1e-4)
    assert (np.diff(pos[:, 0]) >= 0).all()  # stored sorted by x for fast crops


def test_names_are_the_split_rooms_not_the_cache_rows(raw: Path, tmp_path: Path) -> None:
    """The cache holds every area's rooms; a split's ``names[i]`` is the room of its sample
    ``i`` (guards, prediction writers and the precise evaluation name rooms by it)."""
    dm = make_dm(tmp_path, tmp_path / "c", voxel_size=None, num_points=None, crops_per_room=2)
    test, train = dm.datasets["test"], dm.datasets["train"]
    assert test.store.names[:2] == ["Area_1/office_1", "Area_2/hallway_1"]  # other areas first
    assert test.names == ["Area_5/hallway_6", "Area_5/office_36"]
    assert train.names == ["Area_1/office_1"] * 2 + ["Area_2/hallway_1"] * 2
    for i, name in enumerate(test.names):  # the sample's own room, by its point count
        assert test[i].pos.size(0) == test.store.num_points(test.store.names.index(name))

    batch = collate([test[1]])
    assert describe_clouds(batch, [0], test, tmp_path) == (
        f"  sample 1: {tmp_path / 'Area_5/office_36'}"
    )


def test_predicted_rooms_are_written_under_their_own_names(raw: Path, tmp_path: Path) -> None:
    pytest.importorskip("open3d")
    dm = make_dm(tmp_path, tmp_path / "c", voxel_size=0.5, num_points=50, eval_batch_size=1)
    torch.manual_seed(0)
    task = SemanticSegmentationTask(
        model_kwargs=TINY_MODELS["pointnet2_ssg_sem_seg"], num_classes=dm.num_classes
    )
    out = tmp_path / "pred"
    trainer = L.Trainer(
        callbacks=[PLYPredictionWriter(str(out))],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.predict(task, datamodule=dm)
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.ply"))
    assert written == ["Area_5/cloud_hallway_6.ply", "Area_5/cloud_office_36.ply"]
    test = dm.datasets["test"]
    for i, name in enumerate(test.names):  # each file holds its own room's cloud
        ply = out / "Area_5" / f"cloud_{name.split('/')[1]}.ply"
        header = ply.read_bytes()[:400].decode("latin-1")
        assert int(header.split("element vertex ")[1].split()[0]) == test[i].pos.size(0)
    assert test[0].pos.size(0) != test[1].pos.size(0)
