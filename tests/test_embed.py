"""``lightning-pc embed``: per-point features of whole scans, their PCA picture, and the
zero-filled input channels of scans that lack them."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from lightning_pc.cli import main as cli_main
from lightning_pc.data import input_channels
from lightning_pc.data.datasets.scenes import load_scan
from lightning_pc.embed import (
    InputAdapter,
    PCAColors,
    embed_scans,
    pca_colors,
    plan_inputs,
)
from lightning_pc.models import create_model
from lightning_pc.nn.point import Point
from tests.conftest import tiny_kwargs
from tests.data import load_fixture
from tests.test_predict import room, write_scan

CPU = {"accelerator": "cpu", "enable_progress_bar": False}


class Pointwise(nn.Module):
    """A backbone whose features depend on each point's own inputs alone."""

    def __init__(self, in_channels: int = 3, out_channels: int = 5) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(in_channels, out_channels)

    def forward(self, point: Point) -> Point:
        assert point.x is not None
        return point.with_features(torch.tanh(self.lin(point.x)))


def _scans(tmp_path: Path) -> Path:
    scans = tmp_path / "scans"
    scans.mkdir()
    pos, rgb = room(900, seed=1)
    write_scan(scans / "room.ply", pos, rgb)
    write_scan(scans / "tile.las", pos + 500.0, rgb)
    return scans


def test_features_have_one_row_per_point_of_ply_and_las_scans(tmp_path: Path) -> None:
    scans = _scans(tmp_path)
    net = create_model("sparse_unet", num_classes=3, in_channels=3, **tiny_kwargs("sparse_unet"))
    out = tmp_path / "out"
    writer = embed_scans(
        scans, net, ["rgb"], out, voxel_size=0.1, dtype="float32", image_size=64,
        trainer_kwargs=CPU,
    )  # fmt: skip
    index = json.loads((out / "index.json").read_text())
    assert index["format"] == "lightning_pc embeddings 1"
    assert index["inputs"] == ["rgb"] and index["zero_filled"] == []
    assert [Path(e["source"]).name for e in index["scans"]] == ["room.ply", "tile.las"]
    width = net.backbone.out_channels
    for entry in index["scans"]:
        n = len(load_scan(entry["source"], ())[0])
        feats = np.load(out / entry["features"])
        assert feats.shape == (n, width) == (entry["points"], entry["channels"])
        assert feats.dtype == np.float32 and np.isfinite(feats).all()
        assert feats.std(0).max() > 0  # not a constant
        with Image.open(out / entry["pca_png"]) as image:
            assert image.size == (2 * 64, 64)  # two views
        assert (out / entry["pca_ply"]).stat().st_size > 0
    assert not list(out.rglob("*.tmp"))
    assert len(writer.entries) == 2


def test_fragments_give_the_features_of_one_pass_for_a_pointwise_network(tmp_path: Path) -> None:
    scans = _scans(tmp_path)
    backbone = Pointwise()
    runs = {}
    for name, block, memory in (("one", 1e4, 512 << 20), ("fragments", 2.0, 0)):
        # memory 0: the sums go to a memory-mapped file
        embed_scans(
            scans, backbone, ["rgb"], tmp_path / name, block_size=block, stride=block / 2,
            voxel_size=None, dtype="float32", pca=False, max_sum_memory=memory,
            trainer_kwargs=CPU,
        )  # fmt: skip
        runs[name] = {s: np.load(tmp_path / name / f"{s}.features.npy") for s in ("room", "tile")}
        assert not list((tmp_path / name).rglob("*.tmp"))
    for scan, path in (("room", scans / "room.ply"), ("tile", scans / "tile.las")):
        _, rgb, _ = load_scan(path, ["rgb"])
        with torch.no_grad():
            direct = backbone(Point(torch.zeros(len(rgb), 3), torch.from_numpy(rgb))).x.numpy()
        np.testing.assert_allclose(runs["one"][scan], direct, atol=1e-6)
        np.testing.assert_allclose(runs["fragments"][scan], direct, atol=1e-6)


def test_pca_colours_are_deterministic_in_range_and_follow_the_main_axis() -> None:
    rng = np.random.default_rng(0)
    t, u, v = rng.normal(size=(3, 5000))
    t[0] = 300.0  # an outlier along the main axis: robust scaling keeps the others spread
    rotation = np.linalg.qr(rng.normal(size=(7, 7)))[0]
    feats = np.c_[10 * t, 3 * u, 1 * v, 0.1 * rng.normal(size=(5000, 4))] @ rotation
    a, b = pca_colors(feats), pca_colors(feats.copy())
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32 and a.shape == (5000, 3)
    assert a.min() >= 0 and a.max() <= 1
    assert (a[1:].std(0) > 0.15).all()
    for k, axis in enumerate((t, u, v)):
        assert abs(np.corrcoef(a[1:, k], axis[1:])[0, 1]) > 0.95
    # the sign is fixed by the largest loading, not by chance: refits agree on a subsample
    fit = PCAColors(max_rows=1000).fit(feats)
    np.testing.assert_array_equal(fit(feats[:10]), PCAColors(max_rows=1000).fit(feats)(feats[:10]))
    flat = pca_colors(np.ones((10, 2)))  # no spread, fewer than 3 channels
    np.testing.assert_array_equal(flat, np.full((10, 3), 0.5, dtype=np.float32))


def test_lidar_without_colour_or_normals_warns_once_naming_the_zero_filled_channels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(input_channels, "_WARNED", set())
    codes = load_fixture("folder", "make_las_fixture.py").make_las_folder(tmp_path / "las")
    assert codes
    tile = tmp_path / "las" / "train" / "north" / "tile_b.laz"  # point format 1: no colours
    inputs = ["coord", "color", "normal", "intensity"]
    with pytest.warns(UserWarning) as record:
        read, missing = plan_inputs([tile], inputs)
    text = "\n".join(str(w.message) for w in record)
    assert read == ["intensity"] and sorted(missing) == ["normal", "rgb"]
    assert "rgb (3 channels: red green blue)" in text and "normal (3 channels: nx ny nz)" in text
    assert "tile_b.laz" in text and "intensity (" not in text
    # the adapter: coordinates, zeros for colour and normals, intensity as read
    pos, feats, _ = load_scan(tile, read)
    adapter = InputAdapter(inputs, read)
    x = adapter(Point(torch.from_numpy(pos), torch.from_numpy(feats))).x
    assert x is not None and x.shape == (len(pos), 10)
    np.testing.assert_array_equal(x[:, :3].numpy(), pos)
    assert (x[:, 3:9] == 0).all() and x[:, 9].max() > 0
    assert adapter.zero_filled == ["rgb", "normal"]

    # a whole run warns once, and the index records the zero-filled channels
    out = tmp_path / "out"
    monkeypatch.setattr(input_channels, "_WARNED", set())
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        embed_scans(
            tile, Pointwise(in_channels=10), inputs, out, block_size=50.0, voxel_size=None,
            pca=False, trainer_kwargs=CPU,
        )  # fmt: skip
    assert sum("zero-filled" in str(w.message) for w in seen) == 1
    with warnings.catch_warnings(record=True) as again:  # the same run again: said already
        warnings.simplefilter("always")
        plan_inputs([tile], inputs)
    assert not [w for w in again if "zero-filled" in str(w.message)]
    index = json.loads((out / "index.json").read_text())
    assert index["zero_filled"] == ["rgb", "normal"]
    assert np.load(out / index["scans"][0]["features"]).shape == (200, 5)


def _save_task_checkpoint(path: Path) -> nn.Module:
    """A checkpoint as ``lightning-pc fit`` writes it (hyperparameters and state dict)."""
    from lightning_pc.tasks import SemanticSegmentationTask

    torch.manual_seed(1)
    task = SemanticSegmentationTask(
        model="sparse_unet", model_kwargs=tiny_kwargs("sparse_unet"), num_classes=3, in_channels=3
    )
    torch.save({"hyper_parameters": dict(task.hparams), "state_dict": task.state_dict()}, path)
    return task.model


def test_cli_embed_from_a_task_checkpoint_equals_the_python_api(tmp_path: Path) -> None:
    scans = _scans(tmp_path)
    ckpt = tmp_path / "task.ckpt"
    network = _save_task_checkpoint(ckpt)
    out = tmp_path / "cli"
    with pytest.raises(SystemExit) as done:
        cli_main(
            ["embed", str(scans / "room.ply"), "--ckpt_path", str(ckpt), "--output_dir", str(out),
             "--voxel_size", "0.1", "--accelerator", "cpu", "--no_pca", "--dtype", "float32"]
        )  # fmt: skip
    assert done.value.code == 0
    cli = np.load(out / "room.features.npy")
    embed_scans(
        scans / "room.ply", network, ["rgb"], tmp_path / "api", voxel_size=0.1,
        dtype="float32", pca=False, trainer_kwargs=CPU,
    )  # fmt: skip
    np.testing.assert_allclose(cli, np.load(tmp_path / "api" / "room.features.npy"), atol=1e-5)
    index = json.loads((out / "index.json").read_text())
    assert index["network"] == "sparse_unet" and index["inputs"] == ["rgb"]


def test_cli_embed_errors_name_the_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    scans = _scans(tmp_path)
    bad = tmp_path / "broken.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit) as done:
        cli_main(["embed", str(scans), "--ckpt_path", str(bad), "--output_dir", str(tmp_path)])
    assert done.value.code == 2
    assert str(bad) in capsys.readouterr().err
    with pytest.raises(SystemExit) as done:
        cli_main(["embed", str(tmp_path / "nowhere"), "--model", "sparse_unet"])
    assert done.value.code == 2
    assert "nowhere" in capsys.readouterr().err


class _FailsOnSecondBatch(Pointwise):
    calls = 0

    def forward(self, point: Point) -> Point:
        type(self).calls += 1
        if type(self).calls == 2:
            raise RuntimeError("boom")
        return super().forward(point)


def test_a_failed_run_leaves_no_partial_file(tmp_path: Path) -> None:
    scans = _scans(tmp_path)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="boom"):
        embed_scans(
            scans / "room.ply", _FailsOnSecondBatch(), ["rgb"], out, block_size=2.0,
            voxel_size=None, batch_size=1, batch_points=1, max_sum_memory=0, trainer_kwargs=CPU,
        )  # fmt: skip
    left = sorted(p.name for p in out.rglob("*")) if out.exists() else []
    assert left == []


@pytest.mark.parametrize("ascii_ply", [False, True])
def test_normals_of_a_ply_scan_are_read_not_zero_filled(tmp_path: Path, ascii_ply: bool) -> None:
    import open3d as o3d

    rng = np.random.default_rng(0)
    pos = rng.uniform(0, 2, (300, 3))
    normals = rng.normal(size=(300, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pos))
    cloud.normals = o3d.utility.Vector3dVector(normals)
    path = tmp_path / "normals.ply"
    o3d.io.write_point_cloud(str(path), cloud, write_ascii=ascii_ply)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is zero-filled
        read, missing = plan_inputs([path], ["coord", "normal"])
    assert read == ["normal"] and missing == {}
    _, feats, _ = load_scan(path, read)
    np.testing.assert_allclose(feats, normals, atol=1e-6)


def test_cli_embed_with_weights_for_a_registered_network(tmp_path: Path) -> None:
    scans = _scans(tmp_path)
    torch.manual_seed(3)
    kwargs = tiny_kwargs("sparse_unet")
    network = create_model("sparse_unet", num_classes=2, in_channels=3, **kwargs)
    weights = tmp_path / "backbone.pth"
    torch.save(network.backbone.state_dict(), weights)  # the backbone's keys alone
    out = tmp_path / "cli"
    with pytest.raises(SystemExit) as done:
        cli_main(
            ["embed", str(scans / "tile.las"), "--model", "sparse_unet",
             "--model_kwargs", json.dumps(kwargs), "--weights", str(weights),
             "--output_dir", str(out), "--voxel_size", "0.1", "--accelerator", "cpu",
             "--no_pca", "--dtype", "float32"]
        )  # fmt: skip
    assert done.value.code == 0
    embed_scans(
        scans / "tile.las", network, ["rgb"], tmp_path / "api", voxel_size=0.1,
        dtype="float32", pca=False, trainer_kwargs=CPU,
    )  # fmt: skip
    np.testing.assert_allclose(
        np.load(out / "tile.features.npy"), np.load(tmp_path / "api" / "tile.features.npy"),
        atol=1e-5,
    )  # fmt: skip


def test_zero_fill_transform_lays_out_x_as_the_network_reads_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from torch_geometric.data import Data

    from lightning_pc.data.input_channels import ZeroFillChannels
    from lightning_pc.data.transforms import build_transforms

    monkeypatch.setattr(input_channels, "_WARNED", set())
    spec = {
        "class_path": "lightning_pc.data.input_channels.ZeroFillChannels",
        "init_args": {"inputs": ["color", "normal"], "read": ["rgb"], "source": "ScanNet"},
    }
    with pytest.warns(UserWarning, match=r"normal \(3 channels: nx ny nz\).*ScanNet"):
        transform = build_transforms([spec])
    assert transform is not None
    rgb = torch.rand(7, 3)
    out = transform(Data(pos=torch.rand(7, 3), x=rgb.clone()))
    assert out.x.shape == (7, 6)
    assert torch.equal(out.x[:, :3], rgb) and (out.x[:, 3:] == 0).all()
    # no x at all (LiDAR through the folder data module): zeros of the full width
    lidar = ZeroFillChannels(["rgb", "normal"], [], source="my tiles")
    assert lidar(Data(pos=torch.rand(5, 3))).x.shape == (5, 6)
    with pytest.raises(ValueError, match="expected x with the 3 columns"):
        transform(Data(pos=torch.rand(4, 3), x=torch.rand(4, 6)))


def test_voxel_size_defaults_to_the_cards_grid_in_scan_units() -> None:
    """Without ``--voxel_size`` the fragments are grid-sampled at the card's grid (over its
    coordinate scale: Utonia voxelises coordinates halved at 1 cm, i.e. 2 cm of the scan);
    an explicit value wins, and a network without a card keeps 0.04."""
    from lightning_pc.embed import _parser, _voxel_size
    from lightning_pc.models.pretrained import find_pretrained

    for name in ("sonata_base", "utonia_base"):
        card = find_pretrained(name)
        assert card is not None
        args = _parser().parse_args(["scans", "--model", name, "--pretrained", "true"])
        expected = card.inputs.grid_size / card.inputs.coord_scale
        assert _voxel_size(args) == pytest.approx(expected)
    assert _voxel_size(_parser().parse_args(["s", "--model", "utonia_base"])) == pytest.approx(0.02)
    args = _parser().parse_args(["s", "--model", "sonata_base", "--voxel_size", "0.1"])
    assert _voxel_size(args) == 0.1
    assert _voxel_size(_parser().parse_args(["s", "--model", "pointnet2_ssg"])) == 0.04
