"""Send one picture to every logger of a trainer, each in its own way."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from lightning.pytorch.loggers import Logger, MLFlowLogger, TensorBoardLogger, WandbLogger
from PIL import Image

from lightning_pc.data.palettes import label_colors


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


def _label_colors(labels: np.ndarray, palette: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(labels [n], colours [n, 3] uint8)``: one label is repeated; unknown labels grey
    (:func:`~lightning_pc.data.palettes.label_colors`, as in PLY files and pictures)."""
    lab = np.broadcast_to(np.asarray(labels, dtype=np.int64).reshape(-1), (n,)).copy()
    return lab, label_colors(lab, palette)


def write_html_viewer(
    path: str,
    pos: np.ndarray,
    layers: list[tuple[str, np.ndarray]],
    palette: np.ndarray,
    class_names: list[str] | None = None,
    title: str = "",
) -> str:
    """A self-contained interactive 3D viewer of one cloud (plotly; opens offline).

    One 3D panel per layer (e.g. ground truth and prediction) side by side, points coloured
    by class, the class name shown on hover. plotly.js is embedded in the file (about 5 MB),
    so it needs no network. Written to ``path.tmp`` then renamed.

    Args:
        path: the ``.html`` file.
        pos: ``[N, 3]`` coordinates.
        layers: ``(title, labels [N] or one label)`` per panel.
        palette: ``[C, 3]`` colours (0-255).
        class_names: names in class order.
        title: the page's title.

    Returns:
        ``path``.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    p = np.asarray(pos, dtype=np.float32).reshape(-1, 3)
    names = class_names or []
    fig = make_subplots(
        rows=1, cols=max(len(layers), 1), specs=[[{"type": "scene"}] * max(len(layers), 1)],
        subplot_titles=[t for t, _ in layers],
    )
    for col, (_, labels) in enumerate(layers, start=1):
        lab, rgb = _label_colors(labels, palette, p.shape[0])
        text = [names[k] if 0 <= k < len(names) else str(k) for k in lab.tolist()]
        fig.add_trace(
            go.Scatter3d(x=p[:, 0], y=p[:, 1], z=p[:, 2], mode="markers", text=text,
                         hoverinfo="text", showlegend=False,
                         marker={"size": 2, "color": [f"rgb({r},{g},{b})" for r, g, b in rgb]}),
            row=1, col=col,
        )
    fig.update_scenes(aspectmode="data")
    fig.update_layout(title=title, margin={"l": 0, "r": 0, "t": 50, "b": 0})
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    fig.write_html(tmp, include_plotlyjs=True, full_html=True)
    os.replace(tmp, path)
    return path


def log_sample_viewer(
    loggers: list[Logger],
    name: str,
    pos: np.ndarray,
    layers: list[tuple[str, np.ndarray]],
    palette: np.ndarray,
    step: int,
    fallback_dir: str,
    class_names: list[str] | None = None,
) -> list[str]:
    """An HTML viewer (:func:`write_html_viewer`) for loggers without 3D support.

    For CSV and other loggers (not TensorBoard, Weights & Biases or MLflow), and a trainer
    without loggers, writes ``<log_dir>/clouds/<name>.html``, replaced at each call (one
    viewer per sample, of the latest step: each file embeds plotly.js). Call on global rank
    zero only.

    Returns:
        The files written.
    """
    folders = [
        _png_dir(lg, fallback_dir)
        for lg in loggers
        if not isinstance(lg, (TensorBoardLogger, WandbLogger, MLFlowLogger))
    ]
    if not loggers:
        folders.append(fallback_dir)
    return [
        write_html_viewer(os.path.join(folder, "clouds", *name.split("/")) + ".html", pos,
                          layers, palette, class_names, title=f"{name}, step {step}")
        for folder in dict.fromkeys(folders)
    ]


def log_point_cloud(
    loggers: list[Logger],
    tag: str,
    pos: np.ndarray,
    labels: np.ndarray,
    palette: np.ndarray,
    step: int,
) -> list[str]:
    """Log one labelled cloud as an interactive 3D object, each logger in its own way.

    TensorBoard: the mesh plugin (``add_mesh`` with per-point colours, no faces); Weights &
    Biases: ``wandb.Object3D`` of ``x y z r g b`` rows; MLflow: the labelled PLY (the
    prediction writer's format) as an artifact under ``clouds/``; other loggers get nothing
    here (see :func:`log_sample_viewer`). Call on global rank zero only.

    Args:
        loggers: ``trainer.loggers``.
        tag: e.g. ``"val/cloud_0/prediction"``.
        pos: ``[N, 3]`` coordinates.
        labels: ``[N]`` class per point (one class for the whole cloud is repeated).
        palette: ``[C, 3]`` colours (0-255); labels outside it are drawn grey.
        step: the global step.

    Returns:
        The MLflow artifact paths written.
    """
    from lightning_pc.callbacks.prediction_writer import write_ply

    p = np.asarray(pos, dtype=np.float32).reshape(-1, 3)
    lab, rgb = _label_colors(labels, palette, p.shape[0])
    name = tag.replace("/", "_")
    written: list[str] = []
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            import torch

            logger.experiment.add_mesh(
                tag, vertices=torch.from_numpy(p)[None], colors=torch.from_numpy(rgb)[None],
                global_step=step,
            )
        elif isinstance(logger, WandbLogger):
            import wandb

            logger.experiment.log(
                {tag: wandb.Object3D(np.hstack([p, rgb.astype(np.float32)])), "trainer/global_step": step}
            )
        elif isinstance(logger, MLFlowLogger):
            import tempfile

            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, f"{name}_step_{step:06d}.ply")
                write_ply(path, p, lab, rgb, comments=[f"lightning_pc {tag} step {step}"])
                logger.experiment.log_artifact(logger.run_id, path, artifact_path="clouds")
            written.append(f"clouds/{os.path.basename(path)}")
    return written
