"""SIGTERM (Kubernetes, spot instances, ``timeout``, SLURM) during a run.

Each case sends a real SIGTERM to a real ``lightning-pc`` process at a known point: a
callback here holds the process at a chosen batch until the signal has arrived, so the
stop happens after that batch whatever the machine's speed. The runs are tiny (synthetic
shapes, 3 batches per epoch, CPU).
"""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
import yaml

from lightning_pc.callbacks.checkpoint_io import checkpoint_problem
from lightning_pc.callbacks.preemption import EXIT_STATUS, Preemption, resume_command
from lightning_pc.cli import main

REPO = Path(__file__).resolve().parents[2]
TINY_SSG = dict(num_samples=[[8], [8]], sa_mlps=[[[8]], [[16]]], global_mlp=[16], head=[16, 16])
RECORDER = "tests.reliability.test_training_faults.LossRecorder"
WAIT = "tests.reliability.test_preemption.WaitForSigterm"


@pytest.fixture(autouse=True)
def _own_seed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PL_GLOBAL_SEED", "PL_SEED_WORKERS"):
        monkeypatch.delenv(name, raising=False)


class WaitForSigterm(L.Callback):
    """At batch ``batch`` of epoch ``epoch`` of ``stage`` (on global rank 0), writes
    ``marker`` and waits (up to 120 s) until the run's :class:`Preemption` has received
    SIGTERM; the stop then comes right after this batch."""

    def __init__(self, marker: str, batch: int, epoch: int = 0, stage: str = "train") -> None:
        self.marker, self.batch, self.epoch, self.stage = marker, batch, epoch, stage

    def _hold(self, trainer: L.Trainer, stage: str, batch_idx: int) -> None:
        if stage != self.stage or not trainer.is_global_zero:
            return
        if (trainer.current_epoch if stage == "train" else 0, batch_idx) != (
            self.epoch,
            self.batch,
        ):
            return
        preemption = next(c for c in trainer.callbacks if isinstance(c, Preemption))  # type: ignore[attr-defined]
        Path(self.marker).write_text("ready")
        deadline = time.monotonic() + 120
        while not preemption.received:
            if time.monotonic() > deadline:
                raise RuntimeError("no SIGTERM came")
            time.sleep(0.02)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, i: int
    ) -> None:
        self._hold(trainer, "train", i)

    def on_validation_batch_end(
        self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, i: int, d: int = 0
    ) -> None:
        if trainer.state.fn == "validate":
            self._hold(trainer, "validate", i)

    def on_predict_batch_end(
        self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, i: int, d: int = 0
    ) -> None:
        self._hold(trainer, "predict", i)


class StepLog(L.Callback):
    """Appends ``epoch batch`` of every training step to ``<folder>/steps_rank<R>.txt``."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, i: int
    ) -> None:
        with open(Path(self.folder) / f"steps_rank{trainer.global_rank}.txt", "a") as f:
            f.write(f"{trainer.current_epoch} {i}\n")


def _config(folder: Path, **data: Any) -> Path:
    """Three epochs of 21 synthetic clouds in batches of 8 (3 steps per epoch), written to
    ``folder/cfg/config.yaml`` (away from the run's own ``config.yaml``, which the CLI
    writes into the folder it runs in)."""
    config = {
        "seed_everything": 7,
        "trainer": {
            "max_epochs": 3,
            "accelerator": "cpu",
            "devices": 1,
            "logger": False,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "limit_val_batches": 2,
            "callbacks": [
                {
                    "class_path": "lightning_pc.callbacks.ModelCheckpoint",
                    "init_args": {
                        "monitor": "val/acc",
                        "mode": "max",
                        "dirpath": "checkpoints",
                        "filename": "best",
                        "save_last": True,
                    },
                }
            ],
        },
        "model": {
            "class_path": "lightning_pc.tasks.ClassificationTask",
            "init_args": {
                "model": "pointnet2_ssg",
                "model_kwargs": {**TINY_SSG, "dropout": 0.3},
                "lr": 0.003,
                "scheduler": "cosine",
            },
        },
        "data": {
            "class_path": "lightning_pc.data.SyntheticShapesDataModule",
            "init_args": {
                "num_train": 21,
                "num_val": 8,
                "num_test": 12,
                "num_points": 64,
                "batch_size": 8,
                "num_workers": 0,
                **data,
            },
        },
    }
    path = folder / "cfg" / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return path


def _env() -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}


def _cli(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lightning_pc", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=_env(),
        timeout=timeout,
    )


def _terminated(args: list[str], cwd: Path, marker: Path, timeout: float = 300) -> tuple[int, str]:
    """Runs ``lightning-pc args`` in ``cwd``, sends SIGTERM to it (the main process only,
    as ``timeout`` and Kubernetes do) once ``marker`` exists; returns its status and output."""
    log = cwd / "out.txt"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lightning_pc", *args],
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_env(),
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + timeout
            while not marker.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(
                        f"the run ended or hung before the marker: {log.read_text()[-3000:]}"
                    )
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=120)
            # every process of the run (DDP ranks included) ends by itself
            deadline = time.monotonic() + 60
            while True:
                try:
                    os.killpg(proc.pid, 0)
                except ProcessLookupError:
                    break
                if time.monotonic() > deadline:
                    pytest.fail(f"processes of the run outlived it: {log.read_text()[-3000:]}")
                time.sleep(0.1)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    return code, log.read_text()


def _resume_line(text: str) -> list[str]:
    """The printed resume command, as arguments of ``python -m lightning_pc``."""
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("Resume it (from "))
    args = shlex.split(lines[at + 1])
    assert args[0] == "lightning-pc"
    return args[1:]


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], dict[str, torch.Tensor]]:
    """The uninterrupted run: its step log and final weights."""
    work = tmp_path_factory.mktemp("straight")
    config = _config(work)
    out = _cli(
        [
            "fit",
            "--config",
            str(config),
            f"--trainer.callbacks+={RECORDER}",
            f"--trainer.callbacks.path={work / 'losses.txt'}",
        ],
        work,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    state = torch.load(work / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["epoch"] == 2 and state["global_step"] == 9
    return (work / "losses.txt").read_text().splitlines(), state["state_dict"]


@pytest.mark.parametrize(
    ("batch", "done", "where", "workers"),
    [
        (1, 2, "epoch 1, after batch 2 of 3", 0),
        (2, 3, "the end of epoch 1", 0),
        (0, 1, "epoch 1, after batch 1 of 3", 2),
    ],
    ids=["mid-epoch", "last-batch", "mid-epoch-2-workers"],
)
def test_sigterm_during_fit_saves_resumes_and_matches_the_uninterrupted_run(
    batch: int,
    done: int,
    where: str,
    workers: int,
    straight: tuple[list[str], dict[str, torch.Tensor]],
    tmp_path: Path,
) -> None:
    """The uninterrupted run loads in-process; with 2 workers (persistent, each drawing
    its indices ahead) the samples and their augmentations are the same, from (seed,
    epoch, index)."""
    config = _config(tmp_path, num_workers=workers)
    marker = tmp_path / "marker"
    losses = tmp_path / "losses.txt"
    common = [
        "fit",
        "--config",
        str(config),
        f"--trainer.callbacks+={RECORDER}",
        f"--trainer.callbacks.path={losses}",
    ]
    hold = [
        f"--trainer.callbacks+={WAIT}",
        f"--trainer.callbacks.marker={marker}",
        "--trainer.callbacks.epoch=1",
        f"--trainer.callbacks.batch={batch}",
    ]
    code, text = _terminated([*common, *hold], tmp_path, marker)

    # a non-zero status, where it stopped, and the command that resumes it
    assert code == EXIT_STATUS, text[-3000:]
    assert "Received SIGTERM" in text
    assert f"Training stopped by SIGTERM at {where} (global step {3 + done})" in text, text[-3000:]
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert "checkpoints/last.ckpt\n" in text
    resume = _resume_line(text)
    assert resume[-2:] == ["--ckpt_path", "last"] and resume[:-2] == [*common, *hold]

    # the checkpoint: whole, at the step the run stopped after, with the place in the epoch
    assert checkpoint_problem(last) is None
    state = torch.load(last, weights_only=True)
    # Lightning counts a closed epoch as done
    assert (state["epoch"], state["global_step"]) == (1 if done < 3 else 2, 3 + done)
    position = state["callbacks"]["Preemption"]["position"]
    if done < 3:
        assert position["epoch"] == 1 and position["batches"] == done
        assert position["world_size"] == 1 and len(position["rng"]) == 1
    else:
        assert position is None  # the epoch was over: nothing to skip
    assert not [p for p in last.parent.iterdir() if p.name.endswith(".tmp")]
    assert len(losses.read_text().splitlines()) == 3 + done  # the steps done were kept

    # the printed command (as it is: the held batch is not run again) resumes from that
    # step and ends where the uninterrupted run did
    out = _cli(resume, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    state = torch.load(last, weights_only=True)
    assert (state["epoch"], state["global_step"]) == (2, 9)
    steps, weights = straight
    assert losses.read_text().splitlines() == steps  # every step once, with the same loss
    for key, value in weights.items():
        assert torch.equal(value, state["state_dict"][key]), key


def test_a_second_sigterm_while_saving_leaves_a_whole_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """In-process: the first SIGTERM comes from the run itself after a step, the second in
    the middle of writing the checkpoint file."""
    monkeypatch.chdir(tmp_path)
    config = _config(tmp_path)
    real_save = torch.save
    seconds: list[int] = []

    def save_with_a_signal_inside(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        if not isinstance(obj, dict) or not (obj.get("callbacks") or {}).get("Preemption"):
            real_save(obj, f, *args, **kwargs)
            return
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        data = buffer.getvalue()
        f.write(data[: len(data) // 2])
        os.kill(os.getpid(), signal.SIGTERM)  # the handler runs during the sleep
        time.sleep(0.2)
        seconds.append(1)
        f.write(data[len(data) // 2 :])

    monkeypatch.setattr(torch, "save", save_with_a_signal_inside)
    with pytest.raises(SystemExit) as stop:
        main(
            [
                "fit",
                "--config",
                str(config),
                "--trainer.callbacks+=tests.reliability.test_preemption.SigtermSelf",
                "--trainer.callbacks.epoch=1",
                "--trainer.callbacks.batch=0",
            ]
        )
    assert stop.value.code == EXIT_STATUS
    assert seconds == [1]
    err = capfd.readouterr().err
    assert "Received SIGTERM again: already stopping" in err
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert checkpoint_problem(last) is None
    state = torch.load(last, weights_only=True)
    assert (state["epoch"], state["global_step"]) == (1, 4)
    assert state["callbacks"]["Preemption"]["position"]["batches"] == 1
    assert sorted(p.name for p in last.parent.iterdir()) == ["best.ckpt", "last.ckpt"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers given back


class SigtermSelf(L.Callback):
    """Sends SIGTERM to this process after batch ``batch`` of epoch ``epoch``."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, i: int
    ) -> None:
        if (trainer.current_epoch, i) == (self.epoch, self.batch):
            os.kill(os.getpid(), signal.SIGTERM)


@pytest.mark.slow
def test_ddp_ranks_stop_after_the_same_step_and_rank_0_saves(tmp_path: Path) -> None:
    """Two gloo processes; SIGTERM to the main process only (rank 0): both ranks stop
    after the same step, one checkpoint is written, every process exits."""
    config = _config(tmp_path)
    marker = tmp_path / "marker"
    args = [
        "fit",
        "--config",
        str(config),
        "--trainer.strategy=ddp",
        "--trainer.devices=2",
        "--ddp_timeout=120",
        f"--trainer.callbacks+={WAIT}",
        f"--trainer.callbacks.marker={marker}",
        "--trainer.callbacks.epoch=1",
        "--trainer.callbacks.batch=0",
        "--trainer.callbacks+=tests.reliability.test_preemption.StepLog",
        f"--trainer.callbacks.folder={tmp_path}",
    ]
    code, text = _terminated(args, tmp_path, marker)
    assert code == EXIT_STATUS, text[-3000:]
    # 11 clouds per rank in batches of 8: 2 steps per epoch; both stopped after epoch 1's first
    for rank in (0, 1):
        steps = (tmp_path / f"steps_rank{rank}.txt").read_text().splitlines()
        assert steps == ["0 0", "0 1", "1 0"], (rank, steps)
    assert text.count("Training stopped by SIGTERM at epoch 1, after batch 1 of 2") == 1, text[
        -3000:
    ]
    assert "Traceback" not in text, text[-3000:]
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert (state["epoch"], state["global_step"]) == (1, 3)
    position = state["callbacks"]["Preemption"]["position"]
    assert position["world_size"] == 2 and len(position["rng"]) == 2
    assert not torch.equal(position["rng"][0]["torch"], position["rng"][1]["torch"])
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "best.ckpt",
        "last.ckpt",
    ]


def test_sigterm_during_predict_keeps_whole_files_and_names_the_missing_clouds(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path)
    marker = tmp_path / "marker"
    out_dir = tmp_path / "predictions"
    args = [
        "predict",
        "--config",
        str(config),
        "--trainer.callbacks+=lightning_pc.callbacks.PLYPredictionWriter",
        f"--trainer.callbacks.output_dir={out_dir}",
        "--trainer.callbacks.binary=false",
        f"--trainer.callbacks+={WAIT}",
        f"--trainer.callbacks.marker={marker}",
        "--trainer.callbacks.stage=predict",
        "--trainer.callbacks.batch=0",
        "--data.init_args.batch_size=4",
    ]
    code, text = _terminated(args, tmp_path, marker)
    assert code == EXIT_STATUS, text[-3000:]
    written = sorted(out_dir.rglob("*"))
    assert [p.name for p in written] == [f"cloud_{i:06d}.ply" for i in range(4)], written
    for path in written:  # whole files: the header's count of rows, all there
        lines = path.read_text().splitlines()
        header = lines.index("end_header")
        count = int(next(x for x in lines if x.startswith("element vertex")).split()[-1])
        assert count == 64 and len(lines) == header + 1 + count
    assert "predict stopped by SIGTERM after 1 batches" in text, text[-3000:]
    missing = ", ".join(f"sample {i}" for i in range(4, 12))
    assert f"PLYPredictionWriter: 8 without output: {missing}" in text, text[-3000:]


def test_sigterm_during_validate_stops_with_status_143(tmp_path: Path) -> None:
    config = _config(tmp_path)
    marker = tmp_path / "marker"
    args = [
        "validate",
        "--config",
        str(config),
        f"--trainer.callbacks+={WAIT}",
        f"--trainer.callbacks.marker={marker}",
        "--trainer.callbacks.stage=validate",
        "--trainer.callbacks.batch=0",
        "--trainer.limit_val_batches=3",
        "--data.init_args.num_val=24",
    ]
    code, text = _terminated(args, tmp_path, marker)
    assert code == EXIT_STATUS, text[-3000:]
    assert "validate stopped by SIGTERM after 1 batches" in text, text[-3000:]
    assert "val/acc" not in text  # no metrics of a partial pass


def test_resume_command_replaces_the_checkpoint_option() -> None:
    argv = [
        "fit",
        "--config",
        "a b.yaml",
        "--ckpt_path",
        "x.ckpt",
        "--ckpt_path=y",
        "--trainer.max_epochs=3",
    ]
    assert resume_command(argv) == (
        "lightning-pc fit --config 'a b.yaml' --trainer.max_epochs=3 --ckpt_path last"
    )
