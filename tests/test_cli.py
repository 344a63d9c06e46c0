"""The ``lightning-pc`` CLI: every config parses and runs end to end on the fixtures.

Runs happen in-process with the working directory in ``tmp_path``: the configs' relative
``runs/...`` folders (logger, checkpoints) land there. Models are shrunk and point counts
cut on the command line so that the whole file runs in well under a minute on 2 cores.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
import yaml

from lightning_pc.cli import main
from lightning_pc.tasks import ClassificationTask
from tests.conftest import TINY_MODELS
from tests.data import load_fixture

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))

LIMITS = [
    "--trainer.limit_train_batches=1",
    "--trainer.limit_val_batches=1",
    "--trainer.limit_test_batches=1",
    "--trainer.limit_predict_batches=1",
    "--trainer.max_epochs=1",
    "--trainer.log_every_n_steps=1",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--trainer.accelerator=cpu",
    "--trainer.devices=1",
]

QUICK_DATA = [
    "--data.init_args.num_train=8",
    "--data.init_args.num_val=4",
    "--data.init_args.num_test=4",
    "--data.init_args.num_points=64",
    "--data.init_args.batch_size=4",
]


def make_fixtures(root: Path, hdf5_per_file: int | None = None) -> dict[str, Path]:
    """Every dataset's fixture under ``root``, keyed by the start of its folder name."""
    modelnet, shapenet = load_fixture("modelnet"), load_fixture("shapenetpart")
    s3dis = load_fixture("s3dis")
    hdf5 = {} if hdf5_per_file is None else {"per_file": hdf5_per_file}
    return {
        "modelnet40_normal_resampled": modelnet.make_resampled(
            root / "modelnet40_normal_resampled", modelnet.MODELNET40, 32, "modelnet40"
        ),
        "modelnet40_ply_hdf5_2048": modelnet.make_hdf5(
            root / "modelnet40_ply_hdf5_2048", 64 if hdf5 else 32, **hdf5
        ),
        "modelnet10_1024": modelnet.make_hdf5_modelnet10(root / "modelnet10_1024"),
        "shapenetcore": shapenet.make_shapenetpart(root / "shapenetpart"),
        "Stanford3dDataset": s3dis.make_raw(root / "Stanford3dDataset_v1.2_Aligned_Version"),
        "semantickitti": load_fixture("semantickitti").make_release(root / "semantickitti"),
        "scannet": load_fixture("scannet").make_release(root / "scannet") / "raw",
        "las_tiles": _las_tiles(root / "las_tiles"),
    }


def _las_tiles(root: Path) -> Path:
    """The LiDAR folder fixture (LAS/LAZ tiles with classification codes) at ``root``."""
    load_fixture("folder", "make_las_fixture.py").make_las_folder(root)
    return root


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_fixtures(tmp_path_factory.mktemp("fixtures"))


def _config(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def _metrics(run_dir: Path) -> list[dict[str, str]]:
    files = sorted(run_dir.glob("version_*/metrics.csv"))
    assert files, f"no metrics.csv under {run_dir}"
    with files[-1].open() as f:
        return list(csv.DictReader(f))


def _column(rows: list[dict[str, str]], key: str) -> list[float]:
    return [float(r[key]) for r in rows if r.get(key)]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_config_prints(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(config), "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    source = _config(config)
    assert printed["model"]["class_path"] == source["model"]["class_path"]
    assert printed["data"]["class_path"] == source["data"]["class_path"]
    for key in ("root", "num_points"):
        if key in source["data"]["init_args"]:
            assert printed["data"]["init_args"][key] == source["data"]["init_args"][key]


def test_every_dataset_model_pair_has_a_config(tiny_models: dict[str, dict[str, Any]]) -> None:
    names = {p.stem for p in CONFIGS}
    assert {
        "quickstart",
        "modelnet40_pointnet2_ssg",
        "modelnet40_pointnet2_msg",
        "modelnet40_dgcnn",
        "shapenetpart_pointnet2",
        "shapenetpart_dgcnn",
        "s3dis_pointnet2",
        "modelnet40_sparse_resnet",
        "s3dis_sparse_unet",
    } <= names
    for config in DATASET_CONFIGS:
        model = _config(config)["model"]["init_args"]["model"]
        assert model in tiny_models or config.stem == "quickstart", f"no tiny override for {model}"


def _dataset_args(config: Path, fixtures: dict[str, Path], cache: Path) -> list[str]:
    source = _config(config)
    data = source["data"]["init_args"]
    root_name = Path(data["root"]).name
    root = next(path for key, path in fixtures.items() if root_name.startswith(key))
    model = source["model"]["init_args"]["model"]
    args = [
        f"--data.init_args.root={root}",
        f"--data.init_args.cache_dir={cache}",
        "--data.init_args.num_workers=0",
        "--data.init_args.batch_size=2",
        f"--model.init_args.model_kwargs={json.dumps(TINY_MODELS[model])}",
    ]
    if source["model"]["init_args"].get("pretrained"):  # no download: the tiny shape
        args.append("--model.init_args.pretrained=false")
    if "crops_per_room" in data:
        args += ["--data.init_args.num_points=64", "--data.init_args.crops_per_room=1"]
    else:
        args.append("--data.init_args.num_points=32")
    return args


#: configs that label scans with a pretrained card (predict only; tests/test_predict_cards.py)
PREDICT_CONFIGS = [p for p in CONFIGS if p.stem.startswith("predict_")]
DATASET_CONFIGS = [p for p in CONFIGS if p.stem != "quickstart" and p not in PREDICT_CONFIGS]
MONITORED = {"ClassificationTask": "val/acc", "PartSegmentationTask": "val/instance_miou"}


@pytest.mark.parametrize("config", DATASET_CONFIGS, ids=lambda p: p.stem)
def test_dataset_config_runs_end_to_end(
    config: Path, fixtures: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    main(["fit", "--config", str(config), *LIMITS, *_dataset_args(config, fixtures, tmp_path)])
    run_dir = tmp_path / "runs" / config.stem
    rows = _metrics(run_dir)
    task = _config(config)["model"]["class_path"].rsplit(".", 1)[-1]
    monitored = MONITORED.get(task, "val/miou")
    values = _column(rows, monitored)
    assert len(values) == 1 and 0.0 <= values[0] <= 1.0
    assert _column(rows, "train/loss")
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
    if task == "SemanticSegmentationTask":
        assert any(key.startswith("val/iou_") for key in rows[0])


def test_quickstart_fit_test_predict_and_resume(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tiny_models: dict[str, dict[str, Any]],
) -> None:
    monkeypatch.chdir(tmp_path)
    config = str(REPO / "configs" / "quickstart.yaml")
    tiny = [f"--model.init_args.model_kwargs={json.dumps(tiny_models['pointnet2_ssg'])}"]
    common = ["--config", config, *LIMITS, *QUICK_DATA, *tiny]
    main(["fit", *common])
    run_dir = tmp_path / "runs" / "quickstart"
    last = run_dir / "checkpoints" / "last.ckpt"
    first = torch.load(last, weights_only=True)
    assert first["epoch"] == 0 and first["global_step"] == 1
    rows = _metrics(run_dir)
    assert _column(rows, "val/acc") and _column(rows, "val/macc")
    assert any(key.startswith("val/acc_") for key in rows[0])  # per-class accuracy by name

    # resume twice: each run continues after the last finished epoch instead of restarting
    for epochs in (2, 3):
        main(["fit", *common, f"--trainer.max_epochs={epochs}", "--ckpt_path=last"])
        assert torch.load(last, weights_only=True)["global_step"] == epochs
        resumed = _metrics(run_dir)  # the newest logger version: this run's rows only
        assert {int(r["epoch"]) for r in resumed} == {epochs - 1}

    for subcommand in ("validate", "test", "predict"):
        main([subcommand, *common, f"--ckpt_path={last}"])
    test_rows = _metrics(run_dir)
    assert _column(test_rows, "test/acc")

    # weights_only round trip, outside the CLI
    task = ClassificationTask.load_from_checkpoint(last, weights_only=True)
    assert task.hparams["num_classes"] == 12
    state = torch.load(last, weights_only=True)["state_dict"]
    for key, value in task.state_dict().items():
        torch.testing.assert_close(value, state[key])


def test_validate_without_checkpoint_warns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_models: dict[str, dict[str, Any]]
) -> None:
    monkeypatch.chdir(tmp_path)
    config = str(REPO / "configs" / "quickstart.yaml")
    tiny = [f"--model.init_args.model_kwargs={json.dumps(tiny_models['pointnet2_ssg'])}"]
    with pytest.warns(UserWarning, match="initial weights"):
        main(["validate", "--config", config, *LIMITS, *QUICK_DATA, *tiny])


def test_python_dash_m_entry_point() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "lightning_pc", "fit", "--help"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    assert "--model" in out.stdout and "--data" in out.stdout


def test_batch_limits_keep_ints_as_batch_counts(capsys: pytest.CaptureFixture[str]) -> None:
    config = str(REPO / "configs" / "quickstart.yaml")
    with pytest.raises(SystemExit):
        main(
            [
                "fit",
                "--config",
                config,
                "--trainer.limit_train_batches=1",
                "--trainer.limit_val_batches=0.25",
                "--trainer.limit_test_batches=1.0",
                "--print_config",
            ]
        )
    trainer = yaml.safe_load(capsys.readouterr().out)["trainer"]
    assert trainer["limit_train_batches"] == 1 and isinstance(trainer["limit_train_batches"], int)
    assert trainer["limit_val_batches"] == 0.25
    assert isinstance(trainer["limit_test_batches"], float)  # 1.0 still means 100 %


class TrainBatchRecorder(L.Callback):
    """Appends ``epoch step cloud-index label coordinate-sum`` of every training cloud to ``path``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        ptr = batch.ptr.tolist()
        with open(self.path, "a") as f:
            for i in range(len(ptr) - 1):
                total = float(batch.pos[ptr[i] : ptr[i + 1]].double().sum())
                f.write(f"{trainer.current_epoch} {batch_idx} {i} {int(batch.y[i])} {total:.6f}\n")


def _recorded(path: Path) -> dict[int, list[str]]:
    epochs: dict[int, list[str]] = {}
    for line in path.read_text().splitlines():
        epoch, rest = line.split(" ", 1)
        epochs.setdefault(int(epoch), []).append(rest)
    return epochs


def test_resume_from_last_continues_the_training_data_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_models: dict[str, dict[str, Any]]
) -> None:
    """``fit --ckpt_path last`` after epoch 1 sees the same epoch-2 batches as an uninterrupted run."""
    config = str(REPO / "configs" / "quickstart.yaml")
    tiny = [f"--model.init_args.model_kwargs={json.dumps(tiny_models['pointnet2_ssg'])}"]
    limits = [
        a for a in LIMITS if not a.startswith(("--trainer.limit_train", "--trainer.max_epochs"))
    ]
    data = [a for a in QUICK_DATA if "num_train" not in a] + ["--data.init_args.num_train=12"]
    runs = {}
    for name, epochs in (("straight", [2]), ("resumed", [1, 2])):
        work = tmp_path / name
        work.mkdir()
        monkeypatch.chdir(work)
        log = work / "batches.txt"
        recorder = [
            "--trainer.callbacks+=tests.test_cli.TrainBatchRecorder",
            f"--trainer.callbacks.path={log}",
        ]
        common = [
            "--config",
            config,
            *limits,
            *data,
            *tiny,
            "--trainer.limit_train_batches=3",
            *recorder,
        ]
        for i, max_epochs in enumerate(epochs):
            resume = ["--ckpt_path=last"] if i else []
            main(["fit", *common, f"--trainer.max_epochs={max_epochs}", *resume])
        runs[name] = _recorded(log)
    straight, resumed = runs["straight"], runs["resumed"]
    assert sorted(straight) == sorted(resumed) == [0, 1]
    assert len(straight[1]) == 12  # 3 batches of 4 clouds
    assert straight[0] == resumed[0]
    assert straight[0] != straight[1]  # the order (or the augmentation) changes between epochs
    assert resumed[1] != straight[0], "the resumed run replays the first epoch"
    assert straight[1] == resumed[1]
