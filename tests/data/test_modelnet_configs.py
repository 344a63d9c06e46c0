"""The shipped ModelNet configs on ModelNet10 in the layout of the shared ``modelnet10_1024``
(PointNet's hdf5 layout, z up), and the one-line error when the class count disagrees."""

from __future__ import annotations

from pathlib import Path

import pytest

from lightning_pc.cli import TRACEBACK_ENV, main
from lightning_pc.data import DataFormatError, ModelNetDataModule
from tests.data import load_fixture

fx = load_fixture("modelnet")
CONFIGS = Path(__file__).resolve().parents[2] / "configs"
MODELNET_CONFIGS = sorted(p.name for p in CONFIGS.glob("modelnet*_*.yaml"))
POINT_CONFIGS = [n for n in MODELNET_CONFIGS if "dgcnn" in n or "pointnet2" in n]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # the configs' runs/ folders
    monkeypatch.setenv("LIGHTNING_PC_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(TRACEBACK_ENV, raising=False)


def test_modelnet10_configs_exist_for_both_networks() -> None:
    assert {"modelnet10_pointnet2_ssg.yaml", "modelnet10_dgcnn.yaml"} <= set(MODELNET_CONFIGS)


@pytest.mark.parametrize("config", POINT_CONFIGS)
def test_config_trains_on_modelnet10_hdf5_with_root_and_class_count_changed(
    config: str, tmp_path: Path
) -> None:
    root = fx.make_hdf5_modelnet10(tmp_path / "modelnet10_1024")
    main(
        [
            "fit",
            "--config",
            str(CONFIGS / config),
            f"--data.init_args.root={root}",
            "--data.init_args.num_classes=10",
            "--data.init_args.num_workers=0",
            "--trainer.fast_dev_run=2",
        ]
    )


@pytest.mark.parametrize("config", POINT_CONFIGS)
def test_configs_name_the_three_layouts(config: str) -> None:
    text = (CONFIGS / config).read_text()
    # modelnet10 configs document the layouts and the up axis of each release
    if config.startswith("modelnet10"):
        for word in ("hdf5", "resampled", "OFF", "shape_names.txt"):
            assert word in text, word


def test_modelnet10_pointnet2_rotates_about_z(tmp_path: Path) -> None:
    # the shared modelnet10_1024 and the raw meshes are z-up: a rotation about y tips them over
    import yaml

    cfg = yaml.safe_load((CONFIGS / "modelnet10_pointnet2_ssg.yaml").read_text())
    rotations = [
        t for t in cfg["data"]["init_args"]["train_transforms"] if t["class_path"] == "RandomRotate"
    ]
    assert [r["init_args"]["axis"] for r in rotations] == ["z"]


def _one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if not line.startswith("(set ")]
    assert len(lines) == 1, err
    return lines[0]


def test_class_count_disagreeing_with_shape_names_is_one_line(tmp_path: Path) -> None:
    root = fx.make_hdf5_modelnet10(tmp_path / "modelnet10_1024")
    with pytest.raises(DataFormatError) as info:
        ModelNetDataModule(str(root), 40).prepare_data()
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(root / "shape_names.txt") + ": lists 10 classes")
    assert "num_classes is 40" in message


def test_class_count_error_through_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = fx.make_hdf5_modelnet10(tmp_path / "modelnet10_1024")
    config = str(CONFIGS / "modelnet40_pointnet2_ssg.yaml")  # 40 classes; only root changed
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", config, f"--data.init_args.root={root}"])
    assert exit_info.value.code == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(f"error: {root / 'shape_names.txt'}: lists 10 classes")
    assert "num_classes is 40" in line and "Traceback" not in line


def test_label_beyond_the_class_list_names_file_and_counts(tmp_path: Path) -> None:
    import h5py

    root = fx.make_hdf5_modelnet10(tmp_path / "modelnet10_1024")
    with h5py.File(root / "ply_data_train0.h5", "r+") as f:
        f["label"][3, 0] = 12
    with pytest.raises(DataFormatError) as info:
        ModelNetDataModule(str(root), 10).prepare_data()
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(root / "ply_data_train0.h5"))
    assert "label 12 of row 3" in message and "lists 10 classes" in message


def test_class_list_of_another_count_is_refused_for_modelnet10(tmp_path: Path) -> None:
    root = fx.make_hdf5_modelnet10(tmp_path / "modelnet10_1024")
    names = (root / "shape_names.txt").read_text().split() + ["lamp", "xbox"]
    (root / "shape_names.txt").write_text("\n".join(names) + "\n")
    with pytest.raises(
        DataFormatError, match=r"shape_names.txt: lists 12 classes, but num_classes is 10"
    ):
        ModelNetDataModule(str(root), 10).prepare_data()


def test_resampled_and_raw_modelnet10_with_40_classes(tmp_path: Path) -> None:
    resampled = fx.make_resampled(tmp_path / "mn10")
    with pytest.raises(DataFormatError) as info:
        ModelNetDataModule(str(resampled), 40).prepare_data()
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(resampled / "modelnet10_shape_names.txt") + ": lists 10 classes")
    assert "num_classes is 40" in message
    raw = fx.make_raw(tmp_path / "ModelNet10", fx.MODELNET10)
    with pytest.raises(DataFormatError) as info:
        ModelNetDataModule(str(raw), 40).prepare_data()
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(raw) + ": holds 10 class folders")
    assert "num_classes is 40" in message


def test_modelnet10_hdf5_fixture_reads_as_the_shared_layout(tmp_path: Path) -> None:
    root = fx.make_hdf5_modelnet10(tmp_path / "modelnet10_1024", points=16)
    dm = ModelNetDataModule(str(root), 10, num_points=16, num_workers=0)
    dm.prepare_data()
    dm.setup("fit")
    assert len(dm.datasets["train"]) == 20 and len(dm.datasets["test"]) == 10
    assert dm.datasets["test"].samples["label"].tolist() == list(range(10))
