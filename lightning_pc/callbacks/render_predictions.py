"""``RenderPredictions``: pictures of predictions in every logger, and a confusion matrix."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from torchmetrics.classification import MulticlassConfusionMatrix

from lightning_pc.callbacks.image_logging import (
    log_image,
    log_point_cloud,
    log_sample_viewer,
    loggers_of,
)
from lightning_pc.data.palettes import resolve_palette
from lightning_pc.viz.figures import confusion_matrix_image, vstack
from lightning_pc.viz.predictions import is_scene, prediction_figure, scene_figure


def _split_predictions(pl_module: L.LightningModule, batch: Any) -> tuple[Tensor, Tensor]:
    """Predictions and targets aligned with the batch: ``[B]`` per cloud or ``[N]`` per point."""
    pred = pl_module.predict_step(batch, 0)
    y = batch.y.view(-1)
    if pred.numel() != y.numel():  # e.g. full-resolution predictions: use the batch's points
        pred = pl_module(batch).argmax(1)
    return pred.view(-1), y


class RenderPredictions(Callback):
    """Render ground truth beside prediction for fixed validation samples; confusion matrix at test.

    Every ``every_n_epochs`` validation epochs, ``num_samples`` validation samples (the same
    ones every time, evenly spaced through the validation set) are run through the model's
    ``predict_step`` and drawn: per-point colours for segmentation, the true and predicted
    class names for classification (:func:`~lightning_pc.viz.prediction_figure`); samples
    that are scenes (more than 2.5 units across: rooms, scans) are drawn from above and in
    perspective, ground truth, prediction and errors side by side
    (:func:`~lightning_pc.viz.predictions.scene_figure`). Points are shaded from their
    normals (estimated) so shapes read. The
    picture goes to every logger: TensorBoard ``add_image``, Weights & Biases
    ``log_image``, MLflow ``log_image``; a PNG under the logger's folder for CSV and others.
    With ``point_clouds=True`` each sample's ground truth and prediction also go to the
    loggers as interactive 3D clouds.

    At the end of ``test`` (with ``confusion_matrix=True``) a confusion matrix of the test
    set (per cloud, or per point for segmentation) is logged the same way under
    ``test/confusion_matrix``. It costs one extra ``predict_step`` per test batch; the matrix
    is a torchmetrics object, synchronised over every rank.

    Only global rank zero draws; collective calls (``trainer.log_dir``, the metric's
    ``compute``) are made on every rank before that. A failure while drawing or logging
    becomes one warning and switches the pictures off; training goes on.

    Args:
        num_samples: validation samples drawn.
        every_n_epochs: draw after every ``n``-th validation epoch (the sanity check is skipped).
        size: pixel size of one rendered panel.
        views: named views (``"iso"``, ``"front"``, ``"side"``, ``"top"``, ``"back"``) drawn side by side.
        point_size: point size in pixels (``None``: from the number of points).
        up_axis: the world axis drawn upwards.
        backend: ``"auto"`` (Open3D, else torch splatting), ``"open3d"`` or ``"torch"``.
        confusion_matrix: log a confusion matrix at the end of ``test``.
        max_points: points drawn per sample at most (a fixed random subset beyond that).
        point_clouds: also log each drawn sample's ground truth and prediction as interactive
            3D clouds (:func:`~lightning_pc.callbacks.image_logging.log_point_cloud`:
            TensorBoard mesh plugin, ``wandb.Object3D``, a labelled PLY artifact in MLflow)
            and, for CSV and other loggers, one self-contained HTML viewer per sample
            (:func:`~lightning_pc.callbacks.image_logging.log_sample_viewer`, replaced at
            each drawing).
    """

    def __init__(
        self,
        num_samples: int = 4,
        every_n_epochs: int = 1,
        size: int = 192,
        views: Sequence[str] = ("iso",),
        point_size: float | None = None,
        up_axis: Literal["x", "y", "z"] = "z",
        backend: Literal["auto", "open3d", "torch"] = "auto",
        confusion_matrix: bool = True,
        max_points: int = 4096,
        point_clouds: bool = True,
    ) -> None:
        super().__init__()
        if every_n_epochs < 1 or num_samples < 1:
            raise ValueError("every_n_epochs and num_samples must be at least 1")
        self.num_samples = num_samples
        self.every_n_epochs = every_n_epochs
        self.size = size
        self.views = tuple(views)
        self.point_size = point_size
        self.up_axis = up_axis
        self.backend = backend
        self.confusion_matrix = confusion_matrix
        self.max_points = max_points
        self.point_clouds = point_clouds
        self.disabled = False
        self.seconds = 0.0  # time spent drawing and logging on this rank
        self._confmat: MulticlassConfusionMatrix | None = None

    # --- helpers ------------------------------------------------------------------------
    def _fail(self, what: str, err: BaseException) -> None:
        self.disabled = True
        rank_zero_warn(
            f"RenderPredictions: {what} failed ({type(err).__name__}: {err}); no more pictures "
            "this run, training continues"
        )

    @staticmethod
    def _metadata(trainer: L.Trainer, pl_module: L.LightningModule) -> tuple[list[str], list[list[int]]]:
        datamodule = getattr(trainer, "datamodule", None)
        names = list(getattr(datamodule, "class_names", None) or [])
        if not names:
            names = [str(i) for i in range(int(pl_module.hparams.get("num_classes", 0)))]
        palette = resolve_palette(getattr(datamodule, "palette", None), len(names))
        return names, palette.tolist()  # the PLY writer's colours (one palette)

    def _render_kwargs(self) -> dict[str, Any]:
        return {"views": self.views, "point_size": self.point_size, "up_axis": self.up_axis, "backend": self.backend}

    def _samples(self, trainer: L.Trainer, pl_module: L.LightningModule) -> list[tuple[Tensor, Tensor, Tensor]]:
        loaders = trainer.val_dataloaders
        loader = loaders[0] if isinstance(loaders, (list, tuple)) else loaders
        if loader is None:
            raise RuntimeError("no validation dataloader to draw samples from")
        dataset = loader.dataset
        count = min(self.num_samples, len(dataset))
        indices = np.unique(np.linspace(0, len(dataset) - 1, count).round().astype(int))
        batch = loader.collate_fn([dataset[int(i)] for i in indices]).to(pl_module.device)
        with torch.no_grad():
            pred, y = _split_predictions(pl_module, batch)
        ptr = batch.ptr.cpu()
        pos, pred, y = batch.pos.cpu(), pred.cpu(), y.cpu()
        per_point = pred.numel() == pos.shape[0]
        gen = torch.Generator().manual_seed(0)
        out = []
        for b in range(len(indices)):
            lo, hi = int(ptr[b]), int(ptr[b + 1])
            keep = torch.arange(lo, hi)
            if keep.numel() > self.max_points:
                keep = keep[torch.randperm(keep.numel(), generator=gen)[: self.max_points]]
            if per_point:
                out.append((pos[keep], y[keep], pred[keep]))
            else:
                out.append((pos[keep], y[b], pred[b]))
        return out

    # --- validation: prediction renders -------------------------------------------------
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.disabled or trainer.sanity_checking:
            return
        if (trainer.current_epoch + 1) % self.every_n_epochs != 0:
            return
        log_dir = trainer.log_dir or trainer.default_root_dir  # collective: every rank
        if not trainer.is_global_zero:
            return
        start = time.perf_counter()
        try:
            names, palette = self._metadata(trainer, pl_module)
            samples = self._samples(trainer, pl_module)
            scenes = [s for s in samples if s[1].numel() > 1 and is_scene(s[0])]
            if scenes:  # rooms and scans: top-down and perspective, with an error view
                kwargs: dict[str, Any] = {"point_size": self.point_size, "backend": self.backend}
                figure = vstack(
                    [
                        scene_figure(pos, y, pred, names, palette, size=self.size,
                                     up_axis=self.up_axis, **kwargs)
                        for pos, y, pred in scenes
                    ]
                )
            else:
                figure = prediction_figure(
                    samples, names, palette, size=self.size, **self._render_kwargs()
                )
            log_image(loggers_of(trainer), "val/predictions", figure, trainer.global_step, log_dir)
            if self.point_clouds:
                pal = np.asarray(palette, dtype=np.uint8)
                loggers = loggers_of(trainer)
                for k, (pos, y, pred) in enumerate(samples):
                    for kind, lab in (("truth", y), ("prediction", pred)):
                        log_point_cloud(loggers, f"val/cloud_{k}/{kind}", pos.numpy(),
                                        lab.numpy(), pal, trainer.global_step)
                    log_sample_viewer(
                        loggers, f"val/sample_{k}", pos.numpy(),
                        [("ground truth", y.numpy()), ("prediction", pred.numpy())],
                        pal, trainer.global_step, log_dir, names,
                    )
        except Exception as err:  # noqa: BLE001 - a picture must never stop training
            self._fail("rendering validation predictions", err)
        finally:
            self.seconds += time.perf_counter() - start

    # --- test: confusion matrix ---------------------------------------------------------
    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._confmat = None
        if not self.confusion_matrix:
            return
        names, _ = self._metadata(trainer, pl_module)
        if len(names) >= 2:
            self._confmat = MulticlassConfusionMatrix(len(names)).to(pl_module.device)

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._confmat is None:
            return
        if self.disabled:
            return  # keep the metric: its compute() is still called on every rank
        try:
            pred, y = _split_predictions(pl_module, batch)
            valid = (y >= 0) & (y < self._confmat.num_classes)
            self._confmat.update(pred[valid], y[valid])
        except Exception as err:  # noqa: BLE001
            self._fail("collecting test predictions", err)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._confmat is None:
            return
        matrix = self._confmat.compute().cpu().numpy()  # collective: every rank
        self._confmat = None
        log_dir = trainer.log_dir or trainer.default_root_dir  # collective: every rank
        if not trainer.is_global_zero or self.disabled:
            return
        try:
            names, _ = self._metadata(trainer, pl_module)
            figure = confusion_matrix_image(matrix, names)
            log_image(loggers_of(trainer), "test/confusion_matrix", figure, trainer.global_step, log_dir)
        except Exception as err:  # noqa: BLE001 - a picture must never stop a run
            self._fail("drawing the confusion matrix", err)
