"""Multi-process DDP through the CLI (two gloo processes on CPU) and SyncBatchNorm coverage.

The DDP test runs ``python -m lightning_pc`` with ``--trainer.strategy=ddp`` in a
subprocess (Lightning re-launches ``python -m lightning_pc ...`` for rank 1), each with a
timeout so that a hang is a failure. The ModelNet test split has 5 clouds, which 2 ranks
cannot split evenly: a padded ``DistributedSampler`` would count one cloud twice.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from lightning_pc.cli import main
from lightning_pc.models import create_model, list_models
from tests.conftest import TINY_MODELS
from tests.test_cli import DATASET_CONFIGS, _dataset_args, make_fixtures

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "modelnet40_dgcnn.yaml"
TIMEOUT = 150


TRAINER = [
    "--trainer.max_epochs=1",
    "--trainer.limit_train_batches=2",
    "--trainer.log_every_n_steps=1",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--trainer.accelerator=cpu",
]


def _args(root: Path, cache: Path) -> list[str]:
    return [
        "--config",
        str(CONFIG),
        f"--data.init_args.root={root}",
        f"--data.init_args.cache_dir={cache}",
        "--data.init_args.num_workers=0",
        "--data.init_args.batch_size=2",
        "--data.init_args.num_points=32",
        f"--model.init_args.model_kwargs={json.dumps(TINY_MODELS['dgcnn'])}",
        *TRAINER,
    ]


DDP = ["--trainer.devices=2", "--trainer.strategy=ddp"]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    try:
        out = subprocess.run(
            [sys.executable, "-m", "lightning_pc", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            env=env,
        )
    except subprocess.TimeoutExpired as error:  # a DDP hang
        pytest.fail(f"lightning-pc {args[0]} hung for {TIMEOUT} s: {error.stderr!r}"[-3000:])
    assert out.returncode == 0, out.stderr[-4000:]
    return out


def _last_row(run_dir: Path, key: str) -> dict[str, float]:
    files = sorted(run_dir.glob("version_*/metrics.csv"), key=lambda p: int(p.parent.name[8:]))
    with files[-1].open() as f:
        rows = [r for r in csv.DictReader(f) if r.get(key)]
    return {k: float(v) for k, v in rows[-1].items() if v}


@pytest.mark.slow
def test_ddp_two_gloo_processes_through_the_cli(
    fixtures: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, cache = fixtures["modelnet40_ply_hdf5_2048"], tmp_path / "cache"
    common = _args(root, cache)

    # fit on 2 ranks: the cache is built once, the summary is printed once (rank zero), the
    # validation render is drawn once (rank zero; rank 1 neither renders nor hangs)
    render = [
        "--trainer.callbacks+=lightning_pc.callbacks.RenderPredictions",
        "--trainer.callbacks.size=64",
    ]
    fit = _run(["fit", *common, *DDP, *render], tmp_path)
    pngs = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.png"))
    assert len(pngs) == 1, pngs  # one validation epoch, one picture, one writer
    assert pngs[0].startswith("runs/modelnet40_dgcnn/version_0/images/val/predictions/"), pngs
    folders = [p for p in (cache / "modelnet").iterdir() if p.is_dir()]
    assert len(folders) == 1, folders
    builds = (cache / "modelnet" / "builds.log").read_text().splitlines()
    assert len(builds) == 1, builds
    assert fit.stdout.count("Training finished.") == 1
    command = shlex.split(re.search(r"^\s*(lightning-pc test .*)$", fit.stdout, re.M).group(1))
    best = Path(command[command.index("--ckpt_path") + 1])
    assert best.is_file() and best.name == "best.ckpt"

    # predict on 2 ranks with the PLY writer: every cloud once, written by both ranks
    out_dir = tmp_path / "pred"
    _run(
        [
            "predict",
            *common,
            *DDP,
            f"--ckpt_path={best}",
            "--trainer.callbacks+=lightning_pc.callbacks.prediction_writer.PLYPredictionWriter",
            f"--trainer.callbacks.output_dir={out_dir}",
        ],
        tmp_path,
    )
    files = sorted(out_dir.glob("*.ply"))
    # named after the source: the h5 file and the cloud's row in it
    assert [f.name for f in files] == [f"cloud_ply_data_test{k}.h5_{i}.ply" for k, i in
                                       [(0, 0), (0, 1), (0, 2), (0, 3), (0, 4)]]
    writers = {re.search(rb"comment rank (\d)", f.read_bytes()[:200]).group(1) for f in files}
    assert writers == {b"0", b"1"}  # the ranks saw different clouds, together all of them

    # test on 2 ranks == the printed command run in one process (same checkpoint and data)
    _run(["test", *common, *DDP, f"--ckpt_path={best}"], tmp_path)
    ddp = _last_row(tmp_path / "runs" / "modelnet40_dgcnn", "test/acc")
    monkeypatch.chdir(tmp_path)
    main([*command[1:], "--trainer.devices=1", "--trainer.strategy=auto"])
    single = _last_row(tmp_path / "runs" / "modelnet40_dgcnn", "test/acc")
    assert len(builds) == len((cache / "modelnet" / "builds.log").read_text().splitlines())
    keys = [k for k in single if k.startswith("test/")]
    assert {"test/acc", "test/macc", "test/loss", "test/acc_bed"} <= set(keys)
    for key in keys:
        assert ddp[key] == pytest.approx(single[key], rel=1e-6, abs=1e-6), (
            key
        )  # float32 sums in another order


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    # 10 train / 5 test ModelNet clouds: an odd test split, which 2 ranks cannot halve
    return make_fixtures(tmp_path_factory.mktemp("ddp_fixtures"), hdf5_per_file=5)


# every (task, network) pair that has a config; DGCNN classification is covered above
OTHER_CONFIGS = [p for p in DATASET_CONFIGS if p != CONFIG]
TEST_KEYS = {
    "ClassificationTask": {"test/acc", "test/macc", "test/loss"},
    "PartSegmentationTask": {"test/instance_miou", "test/class_miou", "test/loss"},
    "SemanticSegmentationTask": {"test/miou", "test/oa", "test/loss"},
}


@pytest.mark.slow
@pytest.mark.parametrize("config", OTHER_CONFIGS, ids=lambda p: p.stem)
def test_ddp_every_task_and_network(
    config: Path, fixtures: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fit and test on 2 gloo ranks; the test metrics equal one process on the same checkpoint.

    The fused CPU batch-norm kernels run whatever the (tiny) sizes, as in real training."""
    monkeypatch.setenv("LIGHTNING_PC_FUSED", "always")
    cache = tmp_path / "cache"
    common = [
        "--config",
        str(config),
        *_dataset_args(config, fixtures, cache),
        *TRAINER,
    ]
    fit = _run(["fit", *common, *DDP], tmp_path)
    assert fit.stdout.count("Training finished.") == 1
    builds = sorted(cache.rglob("builds.log"))
    assert builds and all(len(b.read_text().splitlines()) == 1 for b in builds), builds
    run_dir = tmp_path / "runs" / config.stem
    best = run_dir / "checkpoints" / "best.ckpt"
    assert best.is_file()

    _run(["test", *common, *DDP, f"--ckpt_path={best}"], tmp_path)
    task = yaml.safe_load(config.read_text())["model"]["class_path"].rsplit(".", 1)[-1]
    ddp = _last_row(run_dir, "test/loss")
    monkeypatch.chdir(tmp_path)
    main(["test", *common, "--trainer.devices=1", f"--ckpt_path={best}"])
    single = _last_row(run_dir, "test/loss")
    keys = [k for k in single if k.startswith("test/")]
    assert TEST_KEYS[task] <= set(keys), keys
    assert set(keys) == {k for k in ddp if k.startswith("test/")}
    for key in keys:
        assert ddp[key] == pytest.approx(single[key], rel=1e-5, abs=1e-6), key


@pytest.mark.parametrize("name", list_models())
def test_sync_batchnorm_converts_every_norm(name: str) -> None:
    kwargs = {"in_channels": 3} if "sem_seg" in name or "unet" in name else {}
    model = create_model(name, num_classes=8, **kwargs)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._NormBase)]
    if not norms:  # the Sonata family normalises with LayerNorm only: nothing to convert
        assert name.startswith(("sonata", "concerto", "utonia")), f"{name} has no norm layer"
        assert any(isinstance(m, nn.LayerNorm) for m in model.modules())
        return
    converted = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    left = [
        type(m).__name__
        for m in converted.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, nn.SyncBatchNorm)
    ]
    assert not left, f"{name}: {left} not converted"
    custom = [
        type(m).__name__
        for m in converted.modules()
        if "norm" in type(m).__name__.lower()
        and not isinstance(m, (nn.SyncBatchNorm, nn.LayerNorm))  # per-row: nothing to sync
        and not any(isinstance(c, nn.SyncBatchNorm) for c in m.children())
    ]
    assert not custom, f"{name}: norm layers outside torch.nn BatchNorm: {custom}"


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices")
def test_ddp_nccl_sync_batchnorm_through_the_cli(fixtures: dict[str, Path], tmp_path: Path) -> None:
    root, cache = fixtures["modelnet40_ply_hdf5_2048"], tmp_path / "cache"
    args = [a for a in _args(root, cache) if a != "--trainer.accelerator=cpu"]
    _run(
        ["fit", *args, *DDP, "--trainer.accelerator=gpu", "--trainer.sync_batchnorm=true"], tmp_path
    )
    assert (tmp_path / "runs" / "modelnet40_dgcnn" / "checkpoints" / "last.ckpt").is_file()
