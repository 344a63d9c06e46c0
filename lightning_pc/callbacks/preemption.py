"""A run stopped by SIGTERM keeps its work and says so.

Kubernetes, spot instances, ``timeout``, SLURM and most schedulers stop a job with SIGTERM
(then SIGKILL a little later). Lightning's own handling stops training at the next step
but saves nothing and exits with status 0, so the epoch's steps are lost and the scheduler
is told the run succeeded. With :class:`Preemption` (``lightning-pc`` installs it):

- ``fit`` finishes the step it is in (and the validation it is in, if any); under DDP the
  ranks agree on the stop at a step boundary (one scalar all-reduce per training step), so
  every rank stops after the same step. The run then saves a full checkpoint (rank 0 writes
  it, atomically with :class:`~lightning_pc.callbacks.checkpoint_io.SafeCheckpointIO`) as
  the ``last`` checkpoint of the first ``ModelCheckpoint`` (else
  ``<default_root_dir>/checkpoints/preempted.ckpt``), prints where it stopped and the
  command that resumes it, and exits with status 143 (128 + SIGTERM, what a shell reports
  for a process killed by SIGTERM).
- The checkpoint holds the position inside the epoch: the batches done and every rank's
  random generators (torch, CUDA, numpy, Python). ``fit --ckpt_path last`` skips the
  batches done (the training order is a function of seed and epoch, see
  :class:`~lightning_pc.data.sampler.EpochSampler`) and restores the generators before the
  next step, so it reaches the weights of an uninterrupted run.
- ``validate``, ``test`` and ``predict`` stop after the batch they are in and exit with
  status 143; evaluation metrics of a partial pass are not reported, and prediction
  writers, whose files are all written to a temporary name and renamed, list the clouds
  they have not written.

A second SIGTERM while stopping or saving changes nothing (the checkpoint is written
whole); SIGKILL stops the process at once, and an atomic save still leaves the previous
checkpoint whole.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import shlex
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, cast

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch.utils.data import DataLoader, DistributedSampler, Sampler, SequentialSampler

from lightning_pc.callbacks.checkpoint_io import SafeCheckpointIO

#: exit status of a run stopped by SIGTERM (128 + 15, as a shell reports a SIGTERM kill)
EXIT_STATUS = 128 + int(signal.SIGTERM)

#: clouds named in a prediction writer's list of missing outputs at most
MAX_LISTED = 20


def _rng_state() -> dict[str, Any]:
    """This process's random generators, as plain types and tensors (``weights_only`` loads)."""
    np_state = cast(tuple[Any, ...], np.random.get_state())
    py_state = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [
            str(np_state[0]),
            torch.from_numpy(np.asarray(np_state[1]).astype(np.int64)),
            int(np_state[2]),
            int(np_state[3]),
            float(np_state[4]),
        ],
        "python": [int(py_state[0]), [int(v) for v in py_state[1]], py_state[2]],
        "cuda": [],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`_rng_state` returned."""
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, np.asarray(keys).astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _distributed(trainer: L.Trainer) -> bool:
    return (
        trainer.world_size > 1
        and torch.distributed.is_available()
        and torch.distributed.is_initialized()
    )


class _SkipFirst(Sampler):
    """``sampler`` without its first ``count`` indices, for one pass (a run resumed
    mid-epoch); later passes are the sampler's own. The length stays the sampler's: the
    loop counts the skipped batches as done."""

    def __init__(self, sampler: Any, count: int) -> None:
        self.sampler, self.count = sampler, count

    def __iter__(self) -> Iterator[Any]:
        count, self.count = self.count, 0
        indices = iter(self.sampler)
        for _ in itertools.islice(indices, count):
            pass
        yield from indices

    def __len__(self) -> int:
        return len(self.sampler)


def _replayable(sampler: Any) -> bool:
    """Whether ``sampler`` yields the same order again in a new process: a
    ``DistributedSampler`` (order from seed and epoch, as ``EpochSampler``) or a
    ``SequentialSampler``."""
    return isinstance(sampler, (DistributedSampler, SequentialSampler))


def resume_command(argv: Sequence[str], ckpt_path: str = "last") -> str:
    """``lightning-pc <argv>`` with ``--ckpt_path ckpt_path`` instead of any given one."""
    args: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--ckpt_path":
            skip = True
            continue
        if arg.startswith("--ckpt_path="):
            continue
        args.append(str(arg))
    return shlex.join(["lightning-pc", *args, "--ckpt_path", ckpt_path])


class Preemption(Callback):
    """Stop cleanly on SIGTERM: save a checkpoint that resumes exactly, say how to resume,
    exit with status 143 (see the module docstring).

    ``lightning-pc`` adds it to every run. With the ``Trainer`` API pass
    ``Trainer(callbacks=[Preemption()])``; it takes over Lightning's SIGTERM handling for
    the trainer it is attached to, and installs
    :class:`~lightning_pc.callbacks.checkpoint_io.SafeCheckpointIO` in place of Lightning's
    default ``CheckpointIO``.

    Args:
        resume_argv: the command-line arguments of this run (the CLI sets them), used to
            print the command that resumes it.
    """

    def __init__(self, resume_argv: Sequence[str] | None = None) -> None:
        self.resume_argv = None if resume_argv is None else [str(a) for a in resume_argv]
        self.received = False  # a SIGTERM reached this process
        self.stopping = False  # the ranks agreed to stop (fit)
        self.saved_path: str | None = None
        self._trainer: L.Trainer | None = None
        self._saving: dict[str, Any] | None = None
        self._resume: dict[str, Any] | None = None
        self._restore_rng: dict[str, Any] | None = None
        self._stderr: int | None = None  # a copy of fd 2 for the signal handler

    @property
    def state_key(self) -> str:
        return "Preemption"

    # --- the signal --------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Put :meth:`_on_sigterm` in place of Lightning's SIGTERM notifier (Lightning
        installs its handlers just before the run and restores the previous ones after it)."""
        self._trainer = trainer
        self.received = self.stopping = False
        self.saved_path = None
        if self._stderr is None:
            # the handler writes here: code that silences fd 2 for a while (the Open3D
            # renderer) must not swallow the notice
            with contextlib.suppress(OSError, ValueError, AttributeError):
                self._stderr = os.dup(sys.stderr.fileno())
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # Lightning's default
            # the stop's checkpoint must never be half-written (a second signal, a full disk)
            trainer.strategy.checkpoint_io = SafeCheckpointIO()
        connector = getattr(trainer, "_signal_connector", None)
        if connector is not None and hasattr(connector, "_sigterm_notifier_fn"):
            connector._sigterm_notifier_fn = self._on_sigterm
        else:  # another Lightning: install it directly (main thread only)
            rank_zero_warn(
                "Preemption: Lightning's signal connector not found; handling SIGTERM directly"
            )
            if _main_thread():
                signal.signal(signal.SIGTERM, self._on_sigterm)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self._stderr is not None:
            with contextlib.suppress(OSError):
                os.close(self._stderr)
            self._stderr = None
        connector = getattr(trainer, "_signal_connector", None)
        if (
            connector is not None
            and connector.__dict__.get("_sigterm_notifier_fn") == self._on_sigterm
        ):
            del connector._sigterm_notifier_fn

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        """Only records the signal (and passes it to the DDP processes this one started):
        the loops stop at the next step boundary."""
        trainer = self._trainer
        first = not self.received
        self.received = True
        rank = trainer.global_rank if trainer is not None else 0
        prefix = f"[rank {rank}] " if trainer is not None and trainer.world_size > 1 else ""
        if first:
            what = "finishing the current step, then saving a checkpoint and stopping"
            if trainer is not None and trainer.state.fn != TrainerFn.FITTING:
                what = "stopping after the current batch"
            _say(f"{prefix}Received SIGTERM: {what}.\n", self._stderr)
            launcher = getattr(getattr(trainer, "strategy", None), "launcher", None)
            if launcher is not None and hasattr(launcher, "kill"):
                launcher.kill(signum)  # the DDP processes this one started
        else:
            _say(
                f"{prefix}Received SIGTERM again: already stopping (SIGKILL stops at once).\n",
                self._stderr,
            )
        if trainer is not None and trainer.state.fn in (TrainerFn.VALIDATING, TrainerFn.TESTING):
            # Lightning's evaluation loop stops after the batch it is in
            trainer._signal_connector.received_sigterm = True

    # --- fit: agree on the stop at a step boundary ---------------------------------------
    def _agree(self, trainer: L.Trainer) -> bool:
        """Whether any rank received SIGTERM (a collective under DDP: every rank calls it at
        the same points)."""
        if self.stopping:
            return True
        flag = self.received
        if _distributed(trainer):
            tensor = torch.tensor([1 if flag else 0], device=trainer.strategy.root_device)
            torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MAX)
            flag = bool(tensor.item())
        return flag

    def _stop_fit(self, trainer: L.Trainer) -> None:
        """Tell Lightning's loops to stop after this step (they raise ``SIGTERMException``,
        which :meth:`on_exception` turns into a checkpoint and status 143)."""
        self.stopping = True
        if _last_step_of_run(trainer):
            return  # the run ends with this step anyway: let it finish normally
        trainer._signal_connector.received_sigterm = True

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if not self.stopping and self._agree(trainer):
            self._stop_fit(trainer)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # validation inside fit runs to its end: a checkpoint in the middle of it would
        # lose the epoch's validation metrics
        if trainer.state.fn == TrainerFn.FITTING:
            trainer._signal_connector.received_sigterm = False

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn != TrainerFn.FITTING or trainer.sanity_checking:
            return
        if self.stopping or self._agree(trainer):
            self._stop_fit(trainer)

    # --- resuming ---------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return dict(self._saving) if self._saving is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        position = state_dict.get("position")
        self._resume = dict(position) if position else None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Resuming from a preemption checkpoint: skip the epoch's batches already done."""
        position, self._resume = self._resume, None
        if position is None:
            return
        epoch, done = int(position["epoch"]), int(position["batches"])
        progress = trainer.fit_loop.epoch_loop.batch_progress.current
        if trainer.current_epoch != epoch or progress.ready != done:
            rank_zero_warn(
                f"the checkpoint was saved at epoch {epoch} after {done} batches, but the "
                f"run resumes at epoch {trainer.current_epoch} after {progress.ready}: the "
                "batches already done are not skipped"
            )
            return
        exact = self._skip_batches(trainer, done)
        states = position.get("rng") or []
        if position.get("world_size") != trainer.world_size:
            exact = False
            rank_zero_warn(
                f"the checkpoint was saved by {position.get('world_size')} processes and the "
                f"run resumes with {trainer.world_size}: the rest of epoch {epoch} does not "
                "repeat the interrupted run's"
            )
        elif trainer.global_rank < len(states):
            self._restore_rng = states[trainer.global_rank]
        if exact:
            from lightning.pytorch.utilities.rank_zero import rank_zero_info

            rank_zero_info(
                f"Resuming inside epoch {epoch}: {done} batches were done before the stop "
                "and are skipped"
            )

    def _skip_batches(self, trainer: L.Trainer, done: int) -> bool:
        """Make the training loader start after its first ``done`` batches (each rank's own)
        and restart its iterator; ``False`` when the order cannot be replayed exactly."""
        exact = True
        loaders = trainer.train_dataloader
        flat = (
            list(loaders.values())
            if isinstance(loaders, dict)
            else (list(loaders) if isinstance(loaders, (list, tuple)) else [loaders])
        )
        for loader in flat:
            batch_sampler = getattr(loader, "batch_sampler", None)
            sampler = getattr(batch_sampler, "sampler", None)
            if (
                not isinstance(loader, DataLoader)
                or not isinstance(batch_sampler, torch.utils.data.BatchSampler)
                or sampler is None
            ):
                rank_zero_warn(
                    f"cannot skip the batches already done in a {type(loader).__name__} "
                    "without a sampler: the resumed epoch starts its data again"
                )
                return False
            if not _replayable(sampler):
                exact = False
                rank_zero_warn(
                    f"the training loader's {type(sampler).__name__} draws a new order in every "
                    "process: the rest of the resumed epoch is not the interrupted run's"
                )
            batch_sampler.sampler = _SkipFirst(sampler, done * batch_sampler.batch_size)
        fetcher = getattr(trainer.fit_loop, "_data_fetcher", None)
        if fetcher is not None:
            iter(fetcher)  # the loop created its iterator before the sampler changed
        return exact

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        state, self._restore_rng = self._restore_rng, None
        if state is not None:
            _set_rng_state(state)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.stopping and trainer.is_global_zero:
            _print("\nSIGTERM arrived during the last step: the run finished all the same.")

    # --- stopping ---------------------------------------------------------------------
    def on_predict_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        # Lightning's predict loop does not look at SIGTERM: stop after this batch
        last = getattr(trainer.predict_loop.batch_progress, "is_last_batch", False)
        if self.received and not last:
            raise SIGTERMException(EXIT_STATUS)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if not isinstance(exception, SIGTERMException):
            return
        if exception.code in (None, 0):
            exception.code = EXIT_STATUS
        fn = trainer.state.fn
        if fn == TrainerFn.FITTING:
            self._save_and_report(trainer)
        elif fn == TrainerFn.PREDICTING:
            self._report_predict(trainer)
        elif fn in (TrainerFn.VALIDATING, TrainerFn.TESTING) and trainer.is_global_zero:
            loop = trainer.validate_loop if fn == TrainerFn.VALIDATING else trainer.test_loop
            done = _processed(loop.batch_progress.current)
            _print(
                f"\n{fn.value} stopped by SIGTERM after {done} batches: its metrics were not "
                "computed (they need every batch); run it again to get them."
            )

    def _save_and_report(self, trainer: L.Trainer) -> None:
        """Save the checkpoint (every rank takes part; rank 0 writes) and print the summary."""
        epoch_loop = trainer.fit_loop.epoch_loop
        done = int(epoch_loop.batch_progress.current.completed)
        total = trainer.num_training_batches
        mid_epoch = 0 < done < total
        rng = _rng_state()
        if _distributed(trainer):
            states: list[Any] = [None] * trainer.world_size
            torch.distributed.all_gather_object(states, rng)
        else:
            states = [rng]
        position = None
        if mid_epoch:
            position = {
                "epoch": int(trainer.current_epoch),
                "batches": done,
                "world_size": int(trainer.world_size),
                "rng": states,
            }
        path, by_name = self._checkpoint_path(trainer)
        self._saving = {"position": position}
        try:
            trainer.save_checkpoint(path)
        finally:
            self._saving = None
        self.saved_path = path
        if not trainer.is_global_zero:
            return
        # after the last batch the loop stops once the epoch is closed (validation, epoch
        # end hooks): the epoch counter has moved on to the next one
        where = (
            f"epoch {trainer.current_epoch}, after batch {done} of {total}"
            if mid_epoch
            else f"the end of epoch {max(trainer.current_epoch - 1, 0)}"
        )
        lines = [
            "",
            f"Training stopped by SIGTERM at {where} (global step {trainer.global_step}).",
            f"  checkpoint: {path}",
        ]
        ckpt = "last" if by_name else path
        if self.resume_argv is not None:
            lines.append(f"Resume it (from {os.getcwd()}) with:")
            lines.append("  " + resume_command(self.resume_argv, ckpt))
        else:
            lines.append(f'Resume it with trainer.fit(..., ckpt_path="{path}").')
        _print("\n".join(lines))

    def _checkpoint_path(self, trainer: L.Trainer) -> tuple[str, bool]:
        """Where the stop is saved, and whether ``--ckpt_path last`` finds it: the ``last``
        name of the first ``ModelCheckpoint`` (its version counter applies), else
        ``<default_root_dir>/checkpoints/preempted.ckpt``."""
        callback = next(
            (c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint)), None
        )
        if callback is None or callback.dirpath is None:
            folder = Path(trainer.default_root_dir) / "checkpoints"
            return str(folder / "preempted.ckpt"), False
        candidates = callback._monitor_candidates(trainer)
        name = callback.CHECKPOINT_NAME_LAST
        path = callback.format_checkpoint_name(candidates, name)
        if callback._enable_version_counter:
            version = callback.STARTING_VERSION
            while callback.file_exists(path, trainer) and path != callback.last_model_path:
                path = callback.format_checkpoint_name(candidates, name, ver=version)
                version += 1
        if callback.save_last:
            callback.last_model_path = path  # part of the state saved
        return path, True

    def _report_predict(self, trainer: L.Trainer) -> None:
        """Each prediction writer's clouds without output (on every rank: its own)."""
        from lightning.pytorch.callbacks import BasePredictionWriter

        prefix = f"[rank {trainer.global_rank}] " if trainer.world_size > 1 else ""
        done = _processed(trainer.predict_loop.batch_progress.current)
        lines = [f"\n{prefix}predict stopped by SIGTERM after {done} batches."]
        for callback in trainer.callbacks:  # type: ignore[attr-defined]
            if not isinstance(callback, BasePredictionWriter):
                continue
            report = getattr(callback, "missing_outputs", None)
            if report is None:
                lines.append(f"  {type(callback).__name__}: cannot say which outputs are missing")
                continue
            missing = list(report(trainer))
            name = type(callback).__name__
            if not missing:
                lines.append(f"  {name}: every output of this process was written")
                continue
            shown = ", ".join(missing[:MAX_LISTED])
            more = f" and {len(missing) - MAX_LISTED} more" if len(missing) > MAX_LISTED else ""
            lines.append(f"  {name}: {len(missing)} without output: {shown}{more}")
        lines.append(
            "Files written are complete (each is renamed into place when whole); run predict "
            "again for the missing ones."
        )
        _print("\n".join(lines))

    @classmethod
    def install(cls, trainer: L.Trainer, resume_argv: Sequence[str] | None) -> Preemption:
        """The trainer's :class:`Preemption` (added before its checkpoint callbacks if it has
        none), with ``resume_argv`` set."""
        callbacks = trainer.callbacks  # type: ignore[attr-defined]
        found = next((c for c in callbacks if isinstance(c, cls)), None)
        if found is None:
            from lightning.pytorch.callbacks import Checkpoint

            found = cls()
            index = next(
                (i for i, c in enumerate(callbacks) if isinstance(c, Checkpoint)), len(callbacks)
            )
            callbacks.insert(index, found)
        if found.resume_argv is None and resume_argv is not None:
            found.resume_argv = [str(a) for a in resume_argv]
        return found


def _last_step_of_run(trainer: L.Trainer) -> bool:
    """Whether the step just done ends the whole fit (the last batch of the last epoch, or
    ``max_steps``)."""
    if (
        trainer.max_steps is not None
        and trainer.max_steps >= 0
        and trainer.global_step >= trainer.max_steps
    ):
        return True
    epoch_loop = trainer.fit_loop.epoch_loop
    last_batch = epoch_loop.batch_progress.current.ready >= trainer.num_training_batches
    max_epochs = trainer.max_epochs
    return bool(
        last_batch
        and max_epochs is not None
        and max_epochs >= 0
        and trainer.current_epoch + 1 >= max_epochs
    )


def _processed(tracker: Any) -> int:
    """Batches a loop has run its step on (its hooks may still be running)."""
    return int(getattr(tracker, "processed", tracker.completed))


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _say(text: str, fd: int | None = None) -> None:
    """Write from a signal handler: one ``os.write`` to ``fd`` (default: stderr's), no
    buffered stream (which may be in the middle of a write the handler interrupted)."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        os.write(sys.stderr.fileno() if fd is None else fd, text.encode())


def _print(text: str) -> None:
    print(text, flush=True)
