"""The tasks' guard against non-finite values: which clouds, and which files they came from.

One NaN point after augmentation turns a whole batch's batch-norm statistics, then the loss,
the gradients and every weight into NaN, and the run goes on "successfully". The tasks
check each batch's inputs before the forward pass and the loss after it; these helpers find
the offending clouds and name their sources, through the ``idx`` that
:class:`~lightning_pc.data.datasets.base.PointDataset` puts on every sample and the
dataset's ``names`` (raw files relative to the data module's ``root``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

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
