"""Send one picture to every logger of a trainer, each in its own way."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from lightning.pytorch.loggers import Logger, MLFlowLogger, TensorBoardLogger, WandbLogger
from PIL import Image


def _png_dir(logger: Logger | None, fallback: str) -> str:
    log_dir = getattr(logger, "log_dir", None) if logger is not None else None
    return str(log_dir) if isinstance(log_dir, (str, os.PathLike)) else fallback


def log_image(
    loggers: list[Logger], tag: str, image: Image.Image, step: int, fallback_dir: str
) -> list[str]:
    """Log ``image`` through each logger; call on global rank zero only.

    TensorBoard gets ``add_image`` (HWC), Weights & Biases ``log_image``, MLflow an
    artifact through ``MlflowClient.log_image``; every other logger (CSV, ...) and a trainer
    without loggers get a PNG file ``<log_dir>/images/<tag>/step_<step>.png``, where
    ``log_dir`` is the logger's own ``log_dir`` if it has one, else ``fallback_dir``
    (``trainer.log_dir``, which must have been read on every rank beforehand).

    Args:
        loggers: ``trainer.loggers``.
        tag: the image's name, e.g. ``"val/predictions"``.
        image: the picture.
        step: the global step (or epoch) to file it under.
        fallback_dir: folder for PNG files of loggers without a ``log_dir``.

    Returns:
        The PNG files written.
    """
    array = np.asarray(image.convert("RGB"))  # [H, W, 3] uint8
    png_dirs: list[str] = []
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(tag, array, global_step=step, dataformats="HWC")
        elif isinstance(logger, WandbLogger):
            logger.log_image(key=tag, images=[image], step=step)
        elif isinstance(logger, MLFlowLogger):
            name = tag.replace("/", "_")
            logger.experiment.log_image(logger.run_id, image, f"images/{name}/step_{step:06d}.png")
        else:
            png_dirs.append(_png_dir(logger, fallback_dir))
    if not loggers:
        png_dirs.append(fallback_dir)
    written = []
    for folder in dict.fromkeys(png_dirs):  # each folder once, in order
        path = os.path.join(folder, "images", *tag.split("/"), f"step_{step:06d}.png")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        image.save(path)
        written.append(path)
    return written


def loggers_of(trainer: Any) -> list[Logger]:
    """``trainer.loggers`` (a list, possibly empty)."""
    return list(getattr(trainer, "loggers", []) or [])
