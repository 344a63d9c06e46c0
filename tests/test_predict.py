"""Whole-scan prediction: lazy fragments, votes back onto every point, files per scan."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import open3d as o3d
import pytest
import torch

from lightning_pc.callbacks.prediction_writer import ScenePredictionWriter
from lightning_pc.cli import main
from lightning_pc.data import PredictScenesDataModule
from lightning_pc.data.datasets.scenes import SceneFragments
from lightning_pc.data.errors import DataFormatError, MissingDataError
from lightning_pc.data.io import read_ply_vertices, read_scan
from lightning_pc.tasks import SemanticSegmentationTask
from tests.conftest import TINY_MODELS
from tests.data import load_fixture


def room(n: int = 3000, seed: int = 0, offset: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """A 7 m x 5 m floor and a wall, with colours; points in arbitrary order."""
    rng = np.random.default_rng(seed)
    floor = np.c_[rng.uniform(0, 7, n), rng.uniform(0, 5, n), rng.normal(0, 0.01, n)]
    wall = np.c_[rng.uniform(0, 7, n // 2), rng.normal(5, 0.01, n // 2), rng.uniform(0, 3, n // 2)]
    pos = np.concatenate([floor, wall]) + offset
    rgb = np.concatenate([np.tile([0.8, 0.2, 0.1], (n, 1)), np.tile([0.1, 0.3, 0.9], (n // 2, 1))])
    order = rng.permutation(len(pos))
    return pos[order], rgb[order]


def write_scan(path: Path, pos: np.ndarray, rgb: np.ndarray) -> Path:
    suffix = path.suffix.lower()
    if suffix in (".ply", ".pcd"):
        cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pos))
        cloud.colors = o3d.utility.Vector3dVector(rgb)
        o3d.io.write_point_cloud(str(path), cloud, write_ascii=suffix == ".pcd")
    elif suffix == ".npy":
        np.save(path, np.c_[pos, rgb].astype(np.float32))
    elif suffix == ".txt":
        np.savetxt(path, np.c_[pos, rgb], fmt="%.5f")
    elif suffix in (".las", ".laz"):
        import laspy

        las = laspy.create(point_format=3, file_version="1.2")
        las.header.offsets = pos.min(0)
        las.header.scales = [0.001] * 3
        las.x, las.y, las.z = pos[:, 0], pos[:, 1], pos[:, 2]
        colour = np.round(rgb * 65535).astype(np.uint16)
        las.red, las.green, las.blue = colour.T
        las.classification = np.ones(len(pos), dtype=np.uint8)
        las.write(path, do_compress=suffix == ".laz")
    return path


def test_fragments_cover_every_point_and_count_exactly(tmp_path: Path) -> None:
    pos, rgb = room(2000)
    path = write_scan(tmp_path / "room.npy", pos, rgb)
    fragments = SceneFragments([path], ["rgb"], block_size=2.0, stride=1.0, voxel_size=0.1)
    frags = list(fragments)
    assert len(frags) == int(frags[0].num_fragments)
    assert len(frags) > 1
    covered = np.zeros(len(pos), dtype=int)
    for f in frags:
        rows = f.source_rows.numpy()
        covered[rows] += 1
        # every covered point maps to a kept point of its own voxel
        assert f.inverse_index.max() < f.pos.size(0)
        kept_pos = f.pos[f.inverse_index].numpy()
        # one shift per fragment; a point and its voxel's representative differ by < 0.1
        shift = kept_pos - pos[rows]
        assert (shift.max(0) - shift.min(0)).max() < 0.2
        assert f.x.shape == (f.pos.size(0), 3)
        assert 0 <= f.pos[:, 2].min() < 0.1 and f.pos[:, :2].abs().max() <= 1.0 + 1e-5
    assert covered.min() >= 1  # no point lost
    assert covered.max() <= 4  # block 2, stride 1: at most 2 x 2 blocks per point


def test_fragments_shard_scans_over_ranks(tmp_path: Path) -> None:
    files = []
    for k in range(3):
        pos, rgb = room(300, seed=k)
        files.append(write_scan(tmp_path / f"s{k}.npy", pos, rgb))
    seen = []
    for rank in range(2):
        fragments = SceneFragments(files, (), block_size=3.0, stride=3.0)
        fragments.rank, fragments.world_size = rank, 2
        seen.append({int(f.idx) for f in fragments})
    assert seen == [{0, 2}, {1}]


def test_one_point_and_collinear_scans(tmp_path: Path) -> None:
    one = tmp_path / "one.txt"
    one.write_text("1 2 3\n")
    line = tmp_path / "line.txt"
    line.write_text("".join(f"{i * 0.5} 0 0\n" for i in range(40)))  # 20 m along x, flat
    for path, n in ((one, 1), (line, 40)):
        frags = list(SceneFragments([path], (), block_size=3.0, stride=1.5))
        rows = np.concatenate([f.source_rows.numpy() for f in frags])
        assert set(rows.tolist()) == set(range(n))
        assert len(frags) == int(frags[0].num_fragments)


def test_kitti_bin_scan_with_intensity(tmp_path: Path) -> None:
    pos, _ = room(500)
    scan = np.c_[pos, np.linspace(0, 1, len(pos))].astype("<f4")
    path = tmp_path / "000000.bin"
    scan.tofile(path)
    frags = list(SceneFragments([path], ["intensity"], block_size=4.0, stride=2.0, voxel_size=None))
    got = np.zeros(len(pos), dtype=np.float32)
    for f in frags:
        got[f.source_rows.numpy()] = f.x[f.inverse_index, 0].numpy()
    np.testing.assert_allclose(got, scan[:, 3])


def test_missing_feature_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "xyz_only.txt"
    path.write_text("0 0 0\n1 1 1\n")
    with pytest.raises(DataFormatError, match="xyz_only.txt.*'rgb'"):
        list(SceneFragments([path], ["rgb"]))
    with pytest.raises(MissingDataError):
        PredictScenesDataModule(str(tmp_path / "nothing_here"), num_classes=2)


def _task(num_classes: int = 3) -> SemanticSegmentationTask:
    torch.manual_seed(0)
    return SemanticSegmentationTask(
        model="sparse_unet",
        model_kwargs=TINY_MODELS["sparse_unet"],
        num_classes=num_classes,
        in_channels=3,
    )


@pytest.mark.parametrize("suffix", [".ply", ".pcd", ".las", ".laz", ".npy", ".txt"])
def test_predict_writes_every_point_in_every_format(tmp_path: Path, suffix: str) -> None:
    offset = 500_000.0 if suffix in (".las", ".laz") else 0.0  # georeferenced coordinates
    pos, rgb = room(1500, offset=offset)
    scans = tmp_path / "scans"
    scans.mkdir()
    path = write_scan(scans / f"my scan{suffix}", pos, rgb)
    before = path.read_bytes()
    out = tmp_path / "out"
    dm = PredictScenesDataModule(
        str(path),
        class_names=["floor", "wall", "other"],
        features=["rgb"],
        block_size=3.0,
        stride=1.5,
        voxel_size=0.1,
        output_dir=str(out),
        batch_size=3,
    )
    writer = ScenePredictionWriter()
    trainer = L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        callbacks=[writer],
        enable_progress_bar=False,
    )
    trainer.predict(_task(), datamodule=dm)
    assert path.read_bytes() == before  # the user's file is untouched
    assert trainer.predict_loop.predictions == []  # votes are not also kept by the trainer
    ply = read_ply_vertices(out / "my scan.ply")
    assert ply is not None
    source = read_scan(path)["pos"]
    # original coordinates, in the original order (float64: a LAS offset of 500 km survives)
    np.testing.assert_allclose(ply["pos"], source, atol=0.01 if offset else 1e-5)
    raw = (out / "my scan.ply").read_bytes()
    header = raw[: raw.index(b"end_header")].decode()
    assert "property double x" in header and "property int label" in header
    n = len(source)
    dtype = np.dtype(
        [
            ("x", "<f8"),
            ("y", "<f8"),
            ("z", "<f8"),
            ("r", "u1"),
            ("g", "u1"),
            ("b", "u1"),
            ("label", "<i4"),
        ]
    )
    labels = np.frombuffer(raw, dtype, count=n, offset=raw.index(b"end_header\n") + 11)["label"]
    assert labels.min() >= 0 and labels.max() < 3
    counts = (out / "my scan.counts.csv").read_text().splitlines()
    assert counts[0] == "class,name,points,fraction"
    assert sum(int(line.split(",")[2]) for line in counts[1:]) == n
    assert [line.split(",")[1] for line in counts[1:]] == ["floor", "wall", "other"]
    if suffix in (".las", ".laz"):
        import laspy

        las = laspy.read(out / f"my scan{suffix}")
        np.testing.assert_array_equal(np.asarray(las.classification), labels)
        np.testing.assert_allclose(np.asarray(las.x), source[:, 0], atol=1e-6)


def test_votes_equal_a_direct_prediction_when_one_fragment_holds_the_scan(tmp_path: Path) -> None:
    pos, rgb = room(800)
    path = write_scan(tmp_path / "scan.npy", pos, rgb)
    dm = PredictScenesDataModule(
        str(path),
        num_classes=3,
        features=["rgb"],
        block_size=10.0,
        stride=10.0,
        voxel_size=0.1,
        output_dir=str(tmp_path / "out"),
    )
    task = _task().eval()
    trainer = L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        callbacks=[ScenePredictionWriter()],
    )
    trainer.predict(task, datamodule=dm)
    ply = read_ply_vertices(tmp_path / "out" / "scan.ply")
    raw = (tmp_path / "out" / "scan.ply").read_bytes()
    dtype = np.dtype(
        [
            ("x", "<f8"),
            ("y", "<f8"),
            ("z", "<f8"),
            ("r", "u1"),
            ("g", "u1"),
            ("b", "u1"),
            ("label", "<i4"),
        ]
    )
    written = np.frombuffer(raw, dtype, offset=raw.index(b"end_header\n") + 11)["label"]
    # the one fragment, run directly through the model: its voxel predictions, projected back
    frag = next(iter(SceneFragments([path], ["rgb"], 10.0, 10.0, 0.1)))
    from lightning_pc.data.collate import collate

    batch = collate([frag])
    with torch.no_grad():
        direct = task(batch).argmax(1)[batch.inverse_index]
    expected = np.empty(len(pos), dtype=np.int64)
    expected[frag.source_rows.numpy()] = direct.numpy()
    np.testing.assert_array_equal(written, expected)
    assert ply is not None and len(ply["pos"]) == len(pos)


def test_scene_writer_takes_each_scan_from_the_batch_source(tmp_path: Path) -> None:
    # the writer names and re-reads scans from the batches' ``source`` (the batch schema),
    # not from the data module's fragments: a data module with only ``root`` and the
    # metadata is enough, and a batch without ``source`` is refused
    from types import SimpleNamespace

    from lightning_pc.data.collate import collate

    scans = tmp_path / "scans"
    (scans / "floor2").mkdir(parents=True)
    paths = [
        write_scan(scans / "a.npy", *room(300)),
        write_scan(scans / "floor2" / "b.npy", *room(200, 1)),
    ]
    fragments = SceneFragments(paths, ["rgb"], 10.0, 10.0, 0.2)
    frags = list(fragments)
    assert [f.source for f in frags] == [str(p) for p in paths]
    batch = collate(frags)
    assert batch.source == [str(p) for p in paths]
    module = SimpleNamespace(
        root=str(scans), num_classes=3, class_names=["a", "b", "c"], palette=None, output_dir=None
    )
    trainer = SimpleNamespace(datamodule=module, global_rank=0)
    writer = ScenePredictionWriter(str(tmp_path / "out"))
    probs = torch.softmax(torch.randn(batch.inverse_index.numel(), 3), 1)
    writer.write_on_batch_end(trainer, None, probs, None, batch, 0, 0)  # type: ignore[arg-type]
    written = sorted(p.relative_to(tmp_path / "out").as_posix() for p in writer.written)
    assert written == ["a.counts.csv", "a.ply", "floor2/b.counts.csv", "floor2/b.ply"]
    assert len(read_ply_vertices(tmp_path / "out" / "floor2" / "b.ply")["pos"]) == 300
    del batch.source
    with pytest.raises(ValueError, match="PredictScenesDataModule"):
        writer.write_on_batch_end(trainer, None, probs, None, batch, 0, 0)  # type: ignore[arg-type]


def test_cli_predict_on_a_folder_with_classes_from_the_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    task = _task(num_classes=5)
    trainer = L.Trainer(accelerator="cpu", logger=False, max_steps=0)
    trainer.strategy.connect(task)
    ckpt = tmp_path / "model.ckpt"
    trainer.save_checkpoint(ckpt)
    saved = torch.load(ckpt, weights_only=True)  # as `lightning-pc fit` saves it
    saved["hyper_parameters"]["_class_path"] = "lightning_pc.tasks.SemanticSegmentationTask"
    torch.save(saved, ckpt)
    scans = tmp_path / "scans"
    (scans / "site_a").mkdir(parents=True)
    for k, name in enumerate(["site_a/scan.ply", "b.npy"]):
        pos, rgb = room(600, seed=k)
        write_scan(scans / name, pos, rgb)
    (scans / "notes.md").write_text("not a scan")
    main(
        [
            "predict",
            "--model=SemanticSegmentationTask",  # its arguments come from the checkpoint
            "--data=PredictScenesDataModule",
            f"--data.init_args.root={scans}",
            "--data.init_args.features=[rgb]",
            "--data.init_args.output_dir=preds",
            f"--ckpt_path={ckpt}",
            "--trainer.accelerator=cpu",
            "--trainer.logger=false",
        ]
    )
    out = tmp_path / "preds"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "b.counts.csv",
        "b.ply",
        "site_a",
        "site_a/scan.counts.csv",
        "site_a/scan.ply",
    ]
    rows = (out / "b.counts.csv").read_text().splitlines()
    assert len(rows) == 1 + 5  # 5 classes, from the checkpoint


def test_classification_csv_and_ply_names_follow_the_source_files(tmp_path: Path) -> None:
    from lightning_pc.callbacks import PLYPredictionWriter, PredictionCSVWriter
    from lightning_pc.data import PointCloudFolderDataModule
    from lightning_pc.tasks import ClassificationTask

    root = load_fixture("folder").make_folder(tmp_path / "clouds")
    dm = PointCloudFolderDataModule(
        str(root),
        num_points=64,
        points_per_mesh=200,
        batch_size=3,
        num_workers=0,
        cache_dir=str(tmp_path / "cache"),
    )
    tiny = {"sa_mlps": [[[8, 16]], [[16, 32]]], "global_mlp": [32, 32], "head": [16]}
    task = ClassificationTask(model_kwargs=tiny, num_classes=dm.num_classes)
    csv_writer = PredictionCSVWriter(str(tmp_path / "out"))
    ply_writer = PLYPredictionWriter(str(tmp_path / "out"), prefix="")
    trainer = L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        callbacks=[csv_writer, ply_writer],
    )
    trainer.predict(task, datamodule=dm)
    names = dm.datasets["test"].names
    lines = (tmp_path / "out" / "predictions.csv").read_text().splitlines()
    assert lines[0] == "file,class,name," + ",".join(f"p_{c}" for c in dm.class_names)
    assert sorted(line.split(",")[0] for line in lines[1:]) == sorted(names)
    for line in lines[1:]:
        fields = line.split(",")
        probs = np.asarray([float(v) for v in fields[3:]])
        assert probs.sum() == pytest.approx(1.0, abs=1e-4)
        assert int(fields[1]) == int(probs.argmax()) and fields[2] == dm.class_names[int(fields[1])]
    plys = sorted(
        p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.ply")
    )
    assert plys == sorted(str(Path(n).with_suffix(".ply")) for n in names)


def hostile_scan() -> np.ndarray:
    """Two dense clusters 40 m apart (nothing between), a duplicated point, a 1 km outlier."""
    rng = np.random.default_rng(3)
    a = rng.normal([0, 0, 0], 0.3, (1500, 3))  # dense: thousands of points per m^3
    b = rng.uniform([40, 0, 0], [44, 2, 3], (800, 3))
    dup = np.repeat([[1.0, 1.0, 1.0]], 50, 0)
    far = np.array([[1000.0, -700.0, 50.0]])
    pos = np.concatenate([a, b, dup, far])
    return pos[rng.permutation(len(pos))]


@pytest.mark.parametrize(
    "crop, points, axes",
    [
        ("block", None, [0, 1, 2]),
        ("block", None, [1, 0, 2]),  # long in y: blocks are swept along y
        ("sphere", None, [0, 1, 2]),
        ("sphere", 200, [1, 0, 2]),
        ("sphere", 1, [0, 1, 2]),
    ],
)
def test_every_point_gets_a_fragment_on_hostile_layouts(
    tmp_path: Path, crop: str, points: int | None, axes: list[int]
) -> None:
    pos = hostile_scan()[:, axes]
    path = tmp_path / "hostile.npy"
    np.save(path, pos.astype(np.float32))
    fragments = SceneFragments(
        [path], (), block_size=2.0, stride=1.0, voxel_size=0.05, crop=crop, sphere_points=points
    )
    frags = list(fragments)
    assert all(int(f.num_fragments) == len(frags) for f in frags)  # the writer counts on it
    covered = np.zeros(len(pos), dtype=int)
    for f in frags:
        rows = f.source_rows.numpy()
        assert len(rows) and (np.diff(rows) > 0).all()
        covered[rows] += 1
        if points is not None:
            assert len(rows) <= points
        if crop == "sphere":  # a ball of diameter 2 (local x-y around the centre)
            assert np.abs(f.pos[:, :2].numpy()).max() <= 1.0 + 1e-4
    assert covered.min() >= 1  # every point, the outlier and the duplicates included
    if points == 1:
        assert len(frags) == len(pos)  # one point each: a sphere per point


def test_sphere_points_keeps_the_nearest(tmp_path: Path) -> None:
    pos = hostile_scan()
    path = tmp_path / "s.npy"
    np.save(path, pos.astype(np.float32))
    full = list(SceneFragments([path], (), 2.0, 1.0, None, crop="sphere"))
    capped = list(SceneFragments([path], (), 2.0, 1.0, None, crop="sphere", sphere_points=50))
    first, small = full[0], capped[0]
    # the same first centre; the capped sphere holds its 50 points nearest the centre
    assert set(small.source_rows.tolist()) <= set(first.source_rows.tolist())
    assert len(small.source_rows) == min(50, len(first.source_rows))
    with pytest.raises(ValueError, match="sqrt"):
        SceneFragments([path], (), block_size=1.0, stride=1.0, crop="sphere")
    with pytest.raises(ValueError, match="sphere_points"):
        SceneFragments([path], (), crop="block", sphere_points=10)


def _ply_labels(path: Path) -> np.ndarray:
    raw = path.read_bytes()
    dtype = np.dtype(
        [("x", "<f8"), ("y", "<f8"), ("z", "<f8"), ("r", "u1"), ("g", "u1"), ("b", "u1"),
         ("label", "<i4")]
    )  # fmt: skip
    return np.frombuffer(raw, dtype, offset=raw.index(b"end_header\n") + 11)["label"]


class _TempFileSpy(L.Callback):
    """Records the vote files present after every batch."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.seen = folder, []

    def on_predict_batch_end(self, *args: object) -> None:
        self.seen.append(sorted(p.name for p in self.folder.rglob("*.tmp")))


def test_votes_of_large_scans_go_to_a_memory_mapped_file_removed_afterwards(
    tmp_path: Path,
) -> None:
    pos, rgb = room(1500)
    path = write_scan(tmp_path / "scan.las", pos + 1000.0, rgb)
    results = {}
    for limit in (1 << 30, 0):  # votes in memory, then in a file
        out = tmp_path / f"out{limit}"
        dm = PredictScenesDataModule(
            str(path), num_classes=3, features=["rgb"], block_size=3.0, stride=1.5,
            voxel_size=0.1, output_dir=str(out), batch_size=2, batch_points=1,
        )  # fmt: skip
        spy = _TempFileSpy(out)
        writer = ScenePredictionWriter(max_vote_memory=limit)
        trainer = L.Trainer(
            accelerator="cpu", logger=False, enable_progress_bar=False, callbacks=[writer, spy]
        )
        trainer.predict(_task().eval(), datamodule=dm)
        results[limit] = _ply_labels(out / "scan.ply")
        assert sorted(p.name for p in out.iterdir()) == ["scan.counts.csv", "scan.las", "scan.ply"]
        if limit == 0:
            # while fragments arrive, the votes are a file next to the outputs
            assert ["scan.votes.tmp"] in spy.seen[:-1]
            assert spy.seen[-1] == []  # the last batch wrote the scan and removed it
        else:
            assert all(names == [] for names in spy.seen)
    np.testing.assert_array_equal(results[0], results[1 << 30])


class _FailingTask(SemanticSegmentationTask):
    def predict_step(self, batch: object, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        if batch_idx == 2:
            raise RuntimeError("boom")
        return super().predict_step(batch, batch_idx, dataloader_idx)


def test_a_failed_predict_leaves_no_vote_file_and_no_output(tmp_path: Path) -> None:
    pos, rgb = room(1500)
    path = write_scan(tmp_path / "scan.npy", pos, rgb)
    out = tmp_path / "out"
    dm = PredictScenesDataModule(
        str(path), num_classes=3, features=["rgb"], block_size=3.0, stride=1.5,
        voxel_size=0.1, output_dir=str(out), batch_size=2, batch_points=1,
    )  # fmt: skip
    torch.manual_seed(0)
    task = _FailingTask(
        model="sparse_unet", model_kwargs=TINY_MODELS["sparse_unet"], num_classes=3, in_channels=3
    )
    spy = _TempFileSpy(out)
    trainer = L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        callbacks=[ScenePredictionWriter(max_vote_memory=0), spy],
    )
    with pytest.raises(RuntimeError, match="boom"):
        trainer.predict(task, datamodule=dm)
    assert ["scan.votes.tmp"] in spy.seen
    assert list(out.rglob("*")) == []


def test_large_las_labels_convert_the_copy_chunk_by_chunk(tmp_path: Path) -> None:
    import laspy

    from lightning_pc.callbacks.prediction_writer import write_las_labels

    pos, rgb = room(700, offset=300_000.0)
    source = write_scan(tmp_path / "in.laz", pos, rgb)
    before = source.read_bytes()
    labels = (np.arange(len(pos)) % 40).astype(np.uint8)  # codes above 31: format 3 cannot
    target = tmp_path / "out.laz"
    write_las_labels(source, target, labels, chunk=333)
    las = laspy.read(target)
    assert las.header.point_format.id == 7  # colours kept
    np.testing.assert_array_equal(np.asarray(las.classification), labels)
    np.testing.assert_allclose(np.asarray(las.x), laspy.read(source).x)
    np.testing.assert_array_equal(np.asarray(las.red), laspy.read(source).red)
    assert source.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.laz", "out.laz"]


@pytest.mark.parametrize("suffix", [".npy", ".bin", ".ply", ".las", ".laz", ".pcd", ".txt"])
def test_scan_chunks_read_what_read_scan_reads(tmp_path: Path, suffix: str) -> None:
    from lightning_pc.data.io import ScanChunks

    pos, rgb = room(900)
    if suffix == ".bin":
        path = tmp_path / "s.bin"
        np.c_[pos, rgb[:, 0]].astype("<f4").tofile(path)
    else:
        path = write_scan(tmp_path / f"s{suffix}", pos, rgb)
    whole = read_scan(path)
    reader = ScanChunks(path, chunk=250)
    parts = list(reader)
    assert [len(p["pos"]) for p in parts][:-1] == [250] * (len(parts) - 1)
    assert reader.num_points == len(whole["pos"])
    got = np.concatenate([p["pos"] for p in parts])
    np.testing.assert_allclose(got, whole["pos"], rtol=0, atol=1e-6)
    if "rgb" in whole:
        raw = np.concatenate([p["rgb"] for p in parts])
        rgb01 = raw / reader.rgb_divisor(float(raw.max()))
        np.testing.assert_allclose(rgb01, whole["rgb"], atol=1e-6)
    kinds = {".npy": "npy", ".bin": "bin", ".ply": "ply", ".txt": "text", ".pcd": "pcd"}
    assert reader._kind == kinds.get(
        suffix, "las" if suffix in (".las", ".laz") else "whole"
    )  # big-file formats are memory-mapped or chunked, never read whole


def test_scan_chunks_name_the_row_of_a_nan_and_a_truncated_ply(tmp_path: Path) -> None:
    from lightning_pc.data.io import ScanChunks

    pos, rgb = room(600)
    arr = np.c_[pos, rgb].astype(np.float32)
    arr[555, 1] = np.nan
    np.save(tmp_path / "nan.npy", arr)
    with pytest.raises(DataFormatError, match=r"nan.npy.*row 555 "):
        list(ScanChunks(tmp_path / "nan.npy", chunk=100))
    ply = write_scan(tmp_path / "cut.ply", pos, rgb)
    ply.write_bytes(ply.read_bytes()[:-40])
    with pytest.raises(DataFormatError, match="cut.ply.*truncated"):
        ScanChunks(ply)


def test_predict_with_sphere_crops_labels_every_point(tmp_path: Path) -> None:
    pos, rgb = room(600, offset=250_000.0)
    path = write_scan(tmp_path / "site.laz", pos, rgb)
    out = tmp_path / "out"
    dm = PredictScenesDataModule(
        str(path), num_classes=3, features=["rgb"], block_size=4.0, stride=2.3,
        voxel_size=0.1, crop="sphere", sphere_points=400, output_dir=str(out), batch_size=8,
    )  # fmt: skip
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False,
        callbacks=[ScenePredictionWriter(max_vote_memory=0)],
    )  # fmt: skip
    trainer.predict(_task().eval(), datamodule=dm)  # raises if a point got no vote
    import laspy

    labels = _ply_labels(out / "site.ply")
    assert len(labels) == len(pos) and labels.min() >= 0 and labels.max() < 3
    np.testing.assert_array_equal(np.asarray(laspy.read(out / "site.laz").classification), labels)
    assert sorted(p.name for p in out.iterdir()) == ["site.counts.csv", "site.laz", "site.ply"]


class _TwoVoters(L.LightningModule):
    """The first fragment votes (0.6, 0.4) for its points, every later one (0.45, 0.55)."""

    def __init__(self) -> None:
        super().__init__()
        self.fragments = 0

    def predict_step(self, batch: object, batch_idx: int) -> torch.Tensor:
        frag = batch.batch[batch.inverse_index]  # type: ignore[attr-defined]
        out = torch.empty(len(frag), 2)
        for f in range(int(frag.max()) + 1):
            first = self.fragments == 0
            out[frag == f] = torch.tensor([0.6, 0.4] if first else [0.45, 0.55])
            self.fragments += 1
        return out.half()


@pytest.mark.parametrize("limit", [1 << 30, 0])
def test_overlapping_fragments_sum_their_votes(tmp_path: Path, limit: int) -> None:
    path = tmp_path / "line.txt"
    xs = np.r_[0.0, 0.033 + 0.1 * np.arange(59)]  # 0 to 5.833 m, none on a block edge
    path.write_text("".join(f"{x:.3f} 0 0\n" for x in xs))
    dm = PredictScenesDataModule(
        str(path), num_classes=2, block_size=4.0, stride=2.0, voxel_size=None,
        output_dir=str(tmp_path / "out"), batch_size=1,
    )  # fmt: skip
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False,
        callbacks=[ScenePredictionWriter(max_vote_memory=limit)],
    )  # fmt: skip
    trainer.predict(_TwoVoters(), datamodule=dm)
    labels = _ply_labels(tmp_path / "out" / "line.ply")
    # blocks [0, 4] and [2, 6] in x (the last reaches 5.833): where both vote, 0.6 + 0.45 beats 0.4 + 0.55
    np.testing.assert_array_equal(labels, np.where(xs <= 4.0, 0, 1))
