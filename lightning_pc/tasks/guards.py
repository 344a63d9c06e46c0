"""The tasks' guard against non-finite values: which clouds, and which files they came from.

One NaN point after augmentation turns a whole batch's batch-norm statistics, then the loss,
the gradients and every weight into NaN, and the run goes on "successfully". The base task
holds a :class:`NonFiniteGuard`, which checks each batch's inputs before the forward pass
and the training loss after it; the helpers below find the offending clouds and name their
sources, through the ``idx`` that :class:`~lightning_pc.data.datasets.base.PointDataset`
puts on every sample and the dataset's ``names`` (raw files relative to the data module's
``root``).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    import lightning as L

NonFinite = Literal["raise", "skip"]

#: clouds named in one message at most
MAX_NAMED = 8


class NonFiniteError(RuntimeError):
    """A batch holds non-finite inputs, or gave a non-finite loss."""


def nonfinite_clouds(values: Tensor, batch: Any) -> list[int]:
    """Positions in the batch of the clouds with a non-finite value.

    Args:
        values: per-point ``[N, ...]`` (rows aligned with ``batch.pos``) or per-cloud
            ``[B, ...]`` values.
        batch: the packed batch (``batch``, ``ptr`` / ``num_graphs``).

    Returns:
        Sorted cloud positions (empty when every value is finite).
    """
    if values.numel() == 0:
        return []
    bad = ~torch.isfinite(values.detach().reshape(values.size(0), -1)).all(1)  # [rows]
    if not bool(bad.any()):
        return []
    pos = getattr(batch, "pos", None)
    cloud_of = getattr(batch, "batch", None)
    if pos is not None and cloud_of is not None and values.size(0) == pos.size(0):
        return sorted({int(c) for c in cloud_of[bad].tolist()})
    return [int(c) for c in bad.nonzero().view(-1).tolist()]


def describe_clouds(
    batch: Any, clouds: list[int], dataset: Any = None, root: str | Path | None = None
) -> str:
    """One line per cloud: its sample index and source file, as far as they are known.

    Args:
        batch: the packed batch; ``batch.idx [B]`` gives each cloud's sample index.
        clouds: positions of the clouds in the batch.
        dataset: the dataset the batch came from; its ``names`` (if any) are the source
            files of the samples, relative to ``root``.
        root: the data module's root folder.

    Returns:
        Indented lines (at most :data:`MAX_NAMED`, then a count of the rest).
    """
    idx = getattr(batch, "idx", None)
    names = getattr(dataset, "names", None)
    lines = []
    for c in clouds[:MAX_NAMED]:
        if idx is None or c >= idx.numel():
            lines.append(f"  cloud {c} of the batch (the dataset gives no sample index `idx`)")
            continue
        i = int(idx.view(-1)[c])
        if names is not None and 0 <= i < len(names):
            source = str(Path(root) / names[i]) if root is not None else str(names[i])
            lines.append(f"  sample {i}: {source}")
        else:
            kind = type(dataset).__name__ if dataset is not None else "the dataset"
            lines.append(f"  sample {i} of {kind} (no source file)")
    if len(clouds) > MAX_NAMED:
        lines.append(f"  ... and {len(clouds) - MAX_NAMED} more clouds")
    return "\n".join(lines)


def _split_dataset(task: L.LightningModule, split: str) -> Any:
    """The dataset behind the trainer's ``split`` loader (``None`` when unknown)."""
    trainer = task._trainer
    if trainer is None:
        return None
    name = {
        "train": "train_dataloader",
        "val": "val_dataloaders",
        "test": "test_dataloaders",
        "predict": "predict_dataloaders",
    }[split]
    try:
        loader = getattr(trainer, name, None)
    except Exception:  # noqa: BLE001 (a loader that cannot be inspected names nothing)
        return None
    if isinstance(loader, list | tuple):
        loader = loader[0] if loader else None
    return getattr(loader, "dataset", None)


def _any_rank(task: L.LightningModule, flag: bool) -> bool:
    """Whether ``flag`` holds on any rank (a collective under DDP: call it on every rank)."""
    trainer = task._trainer
    if trainer is None or trainer.world_size <= 1:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=task.device)
    return bool(trainer.strategy.reduce(value, reduce_op="sum").item() > 0)


def _describe(task: L.LightningModule, batch: Any, clouds: list[int], split: str) -> str:
    trainer = task._trainer
    datamodule = getattr(trainer, "datamodule", None) if trainer is not None else None
    return describe_clouds(
        batch, clouds, _split_dataset(task, split), getattr(datamodule, "root", None)
    )


def _message(task: L.LightningModule, what: str, split: str, batch_idx: int, detail: str) -> str:
    where = f"{split} batch {batch_idx}"
    if task._trainer is not None:
        where += f" (epoch {task.current_epoch}, global step {task.global_step})"
    return (
        f"{what} in {where}, from:\n{detail}\n"
        "Fix or remove the file, or check the transforms (an augmentation can turn a "
        "degenerate cloud into NaN)."
    )


_SKIP_HINT = "\nTo skip such training batches instead, set the task's `nonfinite: skip`."


class NonFiniteGuard:
    """The check of every batch for NaN or infinite values, and the skipping of bad ones.

    A task calls :meth:`check_inputs` on every training, validation, test and predict batch
    before the forward pass, and :meth:`snapshot` then :meth:`check_loss` around a training
    forward pass; from its ``on_after_backward`` and ``on_before_optimizer_step`` hooks it
    calls :meth:`after_backward` and :meth:`before_optimizer_step`.

    A bad batch raises :class:`NonFiniteError` naming the source file of each offending
    cloud; with ``mode="skip"`` a bad training batch is skipped instead (no optimiser step,
    the network's buffers such as batch-norm statistics left as they were) with a warning
    naming them. Under DDP the ranks agree on every skip (one scalar all-reduce per training
    step), so they stay in step. Evaluation and prediction always raise: their results would
    otherwise silently leave out clouds.

    Args:
        mode: ``"raise"`` or ``"skip"`` (the task's ``nonfinite`` argument).
        check_features: also check ``batch.x`` (when the network reads features).
    """

    def __init__(self, mode: NonFinite = "raise", check_features: bool = False) -> None:
        if mode not in ("raise", "skip"):
            raise ValueError(f"nonfinite must be 'raise' or 'skip', got {mode!r}")
        self.mode = mode
        self.check_features = check_features
        self._saved: tuple[nn.Module, list[Tensor]] | None = None
        self._skip_optimizer_step = False
        self._restore_buffers = False

    def check_inputs(self, task: L.LightningModule, batch: Any, split: str, batch_idx: int) -> bool:
        """Whether the batch's ``pos`` (and ``x``, with ``check_features``) are finite.

        A non-finite batch raises :class:`NonFiniteError` naming the clouds' sources, except
        a training batch with ``mode="skip"``: then a warning names them, the bad values are
        zeroed (the forward pass still runs: DDP needs every rank's backward) and this
        returns ``False`` (skip the batch). Under DDP a training batch is skipped (or
        raises) on every rank when it is bad on any.

        Args:
            task: the task (its trainer names the files and joins the ranks).
            batch: the packed batch.
            split: ``"train"``, ``"val"``, ``"test"`` or ``"predict"``.
            batch_idx: index of the batch in the epoch.
        """
        fields = {"pos": batch.pos}
        x = getattr(batch, "x", None)
        if x is not None and self.check_features:
            fields["x"] = x
        bad = {name: nonfinite_clouds(value, batch) for name, value in fields.items()}
        bad = {name: clouds for name, clouds in bad.items() if clouds}
        local = bool(bad)
        found = _any_rank(task, local) if split == "train" else local
        if not found:
            return True
        if local:
            clouds = sorted({c for cs in bad.values() for c in cs})
            fields_named = " and ".join(f"batch.{name}" for name in bad)
            message = _message(
                task,
                f"non-finite values (NaN or inf) in {fields_named}",
                split,
                batch_idx,
                _describe(task, batch, clouds, split),
            )
        else:
            message = (
                f"another rank found non-finite values in its part of {split} batch "
                f"{batch_idx}; its message names the files"
            )
        if split == "train" and self.mode == "skip":
            if local:
                warnings.warn(f"skipped: {message}", UserWarning, stacklevel=2)
                for name in bad:
                    batch[name] = torch.nan_to_num(batch[name], nan=0.0, posinf=0.0, neginf=0.0)
            return False
        raise NonFiniteError(message + _SKIP_HINT)

    def check_loss(
        self, task: L.LightningModule, loss: Tensor, outputs: Tensor, batch: Any, batch_idx: int
    ) -> bool:
        """Whether a training loss is finite (on every rank, under DDP).

        A non-finite loss raises :class:`NonFiniteError` naming the clouds whose outputs
        are non-finite (all of the batch's if none is); with ``mode="skip"`` it warns and
        returns ``False``. Either way the network's buffers get back their values from
        before the batch (those kept by :meth:`snapshot`).

        Args:
            task: the task (its trainer names the files and joins the ranks).
            loss: the training loss.
            outputs: the network's output (per cloud ``[B, C]`` or per point ``[N, C]``).
            batch: the packed batch.
            batch_idx: index of the batch in the epoch.
        """
        local = not bool(torch.isfinite(loss.detach()).all())
        if not _any_rank(task, local):
            return True
        if local:
            clouds = nonfinite_clouds(outputs, batch) or list(range(batch.num_graphs))
            message = _message(
                task,
                f"non-finite training loss ({float(loss.detach())})",
                "train",
                batch_idx,
                _describe(task, batch, clouds, "train"),
            )
        else:
            message = (
                f"another rank got a non-finite loss on its part of train batch {batch_idx}; "
                "its message names the files"
            )
        if self.mode == "skip":
            if local:
                warnings.warn(f"skipped: {message}", UserWarning, stacklevel=2)
            return False
        self._put_back_buffers()  # the model in memory stays as before the batch
        raise NonFiniteError(message + _SKIP_HINT)

    def snapshot(self, model: nn.Module) -> None:
        """Keep the network's buffers (batch-norm statistics: a few kB), to undo the update
        of a batch that turns out bad."""
        self._saved = (model, [b.detach().clone() for b in model.buffers()])

    def _put_back_buffers(self) -> None:
        if self._saved is not None:
            model, values = self._saved
            with torch.no_grad():
                for buffer, value in zip(model.buffers(), values):
                    buffer.copy_(value)

    def skip(self, loss: Tensor) -> Tensor:
        """What ``training_step`` returns for a skipped batch: ``loss * 0``.

        Lightning refuses a ``None`` step under DDP, and every rank must run its backward
        pass (the gradient all-reduce) anyway; the step is skipped after it instead:
        :meth:`before_optimizer_step` drops every gradient, and torch's optimisers leave
        parameters without a gradient untouched (no update, no momentum, no weight decay).
        :meth:`after_backward` gives the network's buffers back their values from before
        the batch. With ``accumulate_grad_batches > 1`` the whole accumulation window is
        skipped.
        """
        self._skip_optimizer_step = True
        self._restore_buffers = True
        return loss * 0.0

    def after_backward(self) -> None:
        """Gives the network's buffers back their values from before a skipped batch (after
        the backward pass, which may still read them)."""
        if self._restore_buffers:
            self._put_back_buffers()
        self._restore_buffers = False

    def before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Drops the gradients of a skipped batch (see :meth:`skip`)."""
        if self._skip_optimizer_step:
            for group in optimizer.param_groups:
                for param in group["params"]:
                    param.grad = None
            self._skip_optimizer_step = False
