"""Real loggers, not stand-ins: one tiny epoch through the CLI, then each logger's own storage
is read back for the prediction images and the 3D clouds of RenderPredictions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from lightning_pc.cli import main

REPO = Path(__file__).resolve().parents[2]
TINY_NET = {"sa_mlps": [[[8]], [[16]]], "global_mlp": [16], "head": [16], "dropout": 0.0}
ARGS = [
    "--trainer.max_epochs=1",
    "--trainer.limit_train_batches=1",
    "--trainer.limit_val_batches=1",
    "--trainer.enable_progress_bar=false",
    "--data.init_args.num_train=4",
    "--data.init_args.num_val=2",
    "--data.init_args.num_test=2",
    "--data.init_args.num_points=64",
    "--data.init_args.batch_size=2",
    f"--model.init_args.model_kwargs={json.dumps(TINY_NET)}",
]


def _fit(tmp_path: Path, logger: dict) -> None:
    extra = {
        "trainer": {
            "default_root_dir": str(tmp_path / "run"),
            "logger": logger,
            "callbacks": [
                {"class_path": "lightning_pc.callbacks.ModelCheckpoint",
                 "init_args": {"dirpath": str(tmp_path / "run" / "checkpoints"), "save_last": True}},
                {"class_path": "lightning_pc.callbacks.RenderPredictions",
                 "init_args": {"num_samples": 2, "every_n_epochs": 1, "size": 48, "backend": "torch",
                               "confusion_matrix": False}},
            ],
        }
    }
    (tmp_path / "loggers.yaml").write_text(yaml.safe_dump(extra))
    main(["fit", "--config", str(REPO / "configs" / "quickstart.yaml"),
          "--config", str(tmp_path / "loggers.yaml"), *ARGS])


@pytest.mark.slow
def test_wandb_offline_receives_images_and_object3d(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("wandb")  # in the dev extra
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.chdir(tmp_path)
    _fit(tmp_path, {"class_path": "lightning.pytorch.loggers.WandbLogger",
                    "init_args": {"save_dir": str(tmp_path), "project": "lpc-test", "offline": True}})
    import wandb

    wandb.finish()  # the run's files are complete once it is finished
    runs = sorted(tmp_path.rglob("offline-run-*"))
    assert runs, [str(p) for p in tmp_path.rglob("*") if "wandb" in str(p)][:30]
    media = runs[-1] / "files" / "media"
    images = list((media / "images").rglob("*.png"))
    clouds = list((media / "object3D").rglob("*.json"))
    assert images and len(clouds) == 4  # 2 samples x (truth, prediction)
    points = np.asarray(json.loads(clouds[0].read_text()))
    assert points.shape == (64, 6) and points[:, 3:].max() <= 255 and np.ptp(points[:, :3]) > 0


@pytest.mark.slow
def test_mlflow_file_store_receives_images_and_ply(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mlflow")  # in the dev extra
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.chdir(tmp_path)
    uri = (tmp_path / "mlruns").as_uri()
    _fit(tmp_path, {"class_path": "lightning.pytorch.loggers.MLFlowLogger",
                    "init_args": {"experiment_name": "lpc-test", "tracking_uri": uri}})
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("lpc-test")
    (run,) = client.search_runs([exp.experiment_id])
    # the run's config sits beside its own checkpoints (the save folder's one is shared)
    saved = yaml.safe_load((tmp_path / "run" / "checkpoints" / "config.yaml").read_text())
    assert saved["trainer"]["logger"]["class_path"].endswith("MLFlowLogger")
    assert saved["trainer"]["max_epochs"] == 1
    run_id = run.info.run_id
    images = [a.path for a in client.list_artifacts(run_id, "images/val_predictions")]
    clouds = [a.path for a in client.list_artifacts(run_id, "clouds")]
    assert any(p.endswith(".png") for p in images)
    assert len(clouds) == 4 and all(p.endswith(".ply") for p in clouds)
    local = client.download_artifacts(run_id, clouds[0], str(tmp_path / "dl"))
    from lightning_pc.data.io import read_ply_vertices

    vertices = read_ply_vertices(local)
    assert vertices is not None and len(next(iter(vertices.values()))) == 64


@pytest.mark.slow
def test_tensorboard_receives_images_and_meshes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.chdir(tmp_path)
    _fit(tmp_path, {"class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                    "init_args": {"save_dir": str(tmp_path / "tb"), "name": ""}})
    (events,) = list((tmp_path / "tb").rglob("events.out.tfevents.*"))
    acc = EventAccumulator(str(events.parent), size_guidance={"tensors": 0, "images": 0})
    acc.Reload()
    assert "val/predictions" in acc.Tags()["images"]
    mesh_tags = [t for t in acc.Tags()["tensors"] if t.startswith("val/cloud_")]
    assert any("truth" in t for t in mesh_tags) and any("prediction" in t for t in mesh_tags)


def test_csv_logger_gets_html_viewers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _fit(tmp_path, {"class_path": "lightning.pytorch.loggers.CSVLogger",
                    "init_args": {"save_dir": str(tmp_path / "csv"), "name": ""}})
    pages = sorted((tmp_path / "csv").rglob("clouds/val/sample_*.html"))
    assert [p.name for p in pages] == ["sample_0.html", "sample_1.html"]
    text = pages[0].read_text()
    assert text.count('"hoverinfo":"text"') == 2  # two 3D panels: truth and prediction
    assert "<script src=" not in text  # plotly.js embedded: opens offline
    assert "ground truth" in text and "prediction" in text
