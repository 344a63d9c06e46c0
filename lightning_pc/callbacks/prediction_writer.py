"""PLYPredictionWriter: one PLY file per predicted cloud, labels as a property and as colours."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch import Tensor

from lightning_pc.data.palettes import make_palette


def write_ply(
    path: str | Path,
    pos: np.ndarray,
    labels: np.ndarray,
    colors: np.ndarray,
    binary: bool = True,
    comments: Sequence[str] = (),
) -> None:
    """Write points with ``x y z`` (float), ``red green blue`` (uchar) and ``label`` (int).

    Args:
        path: output file (written to ``path.tmp`` first, then renamed into place).
        pos: ``[N, 3]`` coordinates.
        labels: ``[N]`` integer labels.
        colors: ``[N, 3]`` colours, 0-255.
        binary: ``binary_little_endian`` (else ``ascii``).
        comments: header comment lines.
    """
    path = Path(path)
    n = len(pos)
    vertex = np.empty(
        n,
        dtype=[
            ("x", "<f4"),
            ("y", "<f4"),
            ("z", "<f4"),
            ("red", "u1"),
            ("green", "u1"),
            ("blue", "u1"),
            ("label", "<i4"),
        ],
    )
    xyz = np.asarray(pos, dtype=np.float32).reshape(n, 3)
    vertex["x"], vertex["y"], vertex["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    rgb = np.asarray(colors, dtype=np.uint8)
    vertex["red"], vertex["green"], vertex["blue"] = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    vertex["label"] = np.asarray(labels, dtype=np.int32)
    header = ["ply", f"format {'binary_little_endian' if binary else 'ascii'} 1.0"]
    header += [f"comment {c}" for c in comments]
    header += [f"element vertex {n}"]
    header += [f"property float {a}" for a in "xyz"]
    header += [f"property uchar {c}" for c in ("red", "green", "blue")]
    header += ["property int label", "end_header"]
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        if binary:
            f.write(vertex.tobytes())
        else:
            for row in vertex.tolist():
                f.write((" ".join(map(repr, row)) + "\n").encode("ascii"))
    os.replace(tmp, path)


def split_prediction(prediction: Tensor, batch: Any) -> list[tuple[Tensor, Tensor]]:
    """Per cloud of ``batch``: its points ``[n_i, 3]`` and their labels ``[n_i]``.

    ``prediction`` may hold one label per cloud (``[B]``, given to each of its points), one
    per point of the batch (``[N]``), or one per original point when the batch carries
    ``inverse_index`` (``[N_full]``, as :class:`~lightning_pc.tasks.SemanticSegmentationTask`
    returns): the labels then go back onto the kept points (each kept point is its own
    voxel's representative, so ``pred_full[inverse_index == k]`` all equal ``pred[k]``).

    Args:
        prediction: the output of ``predict_step``.
        batch: the packed batch it was computed on.

    Returns:
        ``(pos, labels)`` for each cloud, on the CPU.
    """
    pos = batch.pos.detach().cpu()
    pred = prediction.detach().cpu().view(-1).long()
    ptr = batch.ptr.cpu()
    num_clouds, num_points = ptr.numel() - 1, pos.size(0)
    inverse = getattr(batch, "inverse_index", None)
    if pred.numel() == num_points:
        per_point = pred
    elif pred.numel() == num_clouds:
        per_point = pred.repeat_interleave(ptr.diff())
    elif inverse is not None and pred.numel() == inverse.numel():
        per_point = torch.full((num_points,), -1, dtype=torch.long)
        per_point[inverse.detach().cpu().view(-1)] = pred
    else:
        raise ValueError(
            f"cannot match {pred.numel()} predictions to {num_clouds} clouds of {num_points} points"
        )
    return [(pos[ptr[i] : ptr[i + 1]], per_point[ptr[i] : ptr[i + 1]]) for i in range(num_clouds)]


class PLYPredictionWriter(BasePredictionWriter):
    """Write each predicted cloud to ``output_dir/<prefix><index>.ply``.

    Every point gets ``x y z``, its label as a ``label`` int property and the label's colour
    as ``red green blue`` (the data module's ``palette``; a generated palette without one).
    Per-cloud predictions (classification) colour the whole cloud. ``index`` is the
    cloud's index in the predict dataset, so under DDP each rank writes its own clouds
    (Lightning's predict sampler does not repeat samples) and no file is written twice;
    the header records the rank that wrote it (``comment rank R``). Nothing here is
    collective.

    Example (YAML)::

        trainer:
          callbacks:
            - class_path: lightning_pc.callbacks.prediction_writer.PLYPredictionWriter
              init_args: {output_dir: runs/quickstart/predictions}

    Args:
        output_dir: folder of the PLY files (created if missing).
        binary: write ``binary_little_endian`` PLY (else ``ascii``).
        prefix: file-name prefix.
    """

    def __init__(
        self,
        output_dir: str = "predictions",
        binary: bool = True,
        prefix: str = "cloud_",
    ) -> None:
        super().__init__("batch")
        self.output_dir = Path(output_dir)
        self.binary = binary
        self.prefix = prefix

    def _palette(self, trainer: L.Trainer, labels: Tensor) -> np.ndarray:
        palette = getattr(getattr(trainer, "datamodule", None), "palette", None)
        if palette is None:
            palette = make_palette(int(labels.max()) + 1 if labels.numel() else 1)
        return np.asarray(palette, dtype=np.uint8).reshape(-1, 3)

    def write_on_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        """Write the clouds of one predicted batch."""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        clouds = split_prediction(prediction, batch)
        if batch_indices is None or len(batch_indices) != len(clouds):
            names = [f"rank{trainer.global_rank}_batch{batch_idx}_{i}" for i in range(len(clouds))]
        else:
            names = [f"{int(i):06d}" for i in batch_indices]
        if dataloader_idx:
            names = [f"dl{dataloader_idx}_{name}" for name in names]
        for name, (pos, labels) in zip(names, clouds):
            palette = self._palette(trainer, labels)
            if labels.numel() and int(labels.max()) >= len(palette):
                palette = np.asarray(make_palette(int(labels.max()) + 1), dtype=np.uint8)
            colors = np.zeros((labels.numel(), 3), dtype=np.uint8)
            known = labels >= 0
            colors[known.numpy()] = palette[labels[known].numpy()]
            write_ply(
                self.output_dir / f"{self.prefix}{name}.ply",
                pos.numpy(),
                labels.numpy(),
                colors,
                binary=self.binary,
                comments=[f"rank {trainer.global_rank}", "lightning_pc predictions"],
            )
