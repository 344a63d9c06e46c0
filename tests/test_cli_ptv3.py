"""Point Transformer V3 through the CLI: bf16-mixed training and test on the S3DIS fixture.

Plain fit runs of ``configs/s3dis_ptv3.yaml`` and ``configs/modelnet40_ptv3.yaml`` are in
``tests/test_cli.py`` (every config), two-process DDP in ``tests/test_ddp_cli.py`` (every
config); this file adds what is particular to PTv3: the mixed-precision step Pointcept
trains with.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lightning_pc.cli import main
from tests.test_cli import LIMITS, REPO, _column, _dataset_args, _metrics, make_fixtures


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_fixtures(tmp_path_factory.mktemp("fixtures"))


def test_s3dis_ptv3_bf16_mixed_fit_then_test(
    fixtures: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = REPO / "configs" / "s3dis_ptv3.yaml"
    monkeypatch.chdir(tmp_path)
    args = [
        "--config",
        str(config),
        *LIMITS,
        *_dataset_args(config, fixtures, tmp_path / "cache"),
        "--trainer.precision=bf16-mixed",
    ]
    main(["fit", *args])
    run_dir = tmp_path / "runs" / "s3dis_ptv3"
    rows = _metrics(run_dir)
    loss = _column(rows, "train/loss")
    assert loss and all(v == v and v < 1e4 for v in loss)  # finite
    miou = _column(rows, "val/miou")
    assert len(miou) == 1 and 0.0 <= miou[0] <= 1.0
    best = run_dir / "checkpoints" / "best.ckpt"
    assert best.is_file()
    main(["test", *args, f"--ckpt_path={best}"])
    assert _column(_metrics(run_dir), "test/miou")
