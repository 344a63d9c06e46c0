"""``prediction_figure``: ground truth beside prediction for a few samples, as one picture."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from lightning_pc.data.palettes import UNLABELLED_COLOR, label_colors
from lightning_pc.viz.figures import hstack, titled, vstack
from lightning_pc.viz.palettes import font, legend
from lightning_pc.viz.render import render

_IGNORED = UNLABELLED_COLOR


def _colorize(labels: Tensor, palette: np.ndarray) -> np.ndarray:
    return label_colors(labels.detach().cpu().long().numpy(), palette)


def _caption(image: np.ndarray, lines: Sequence[tuple[str, tuple[int, int, int]]], fs: int = 12) -> Image.Image:
    band = len(lines) * (fs + 4) + 6
    img = Image.fromarray(image)
    out = Image.new("RGB", (img.width, img.height + band), (255, 255, 255))
    out.paste(img, (0, band))
    draw = ImageDraw.Draw(out)
    for k, (text, color) in enumerate(lines):
        draw.text((4, 3 + k * (fs + 4)), text, fill=color, font=font(fs))
    return out


def prediction_figure(
    samples: Sequence[tuple[Tensor, Tensor, Tensor]],
    class_names: Sequence[str],
    palette: Sequence[Sequence[int]],
    *,
    size: int = 192,
    per_row: int = 4,
    **render_kwargs: Any,
) -> Image.Image:
    """Ground truth beside prediction for each sample.

    Segmentation samples (per-point labels) give two panels coloured by class, "ground
    truth" and "prediction" (with the sample's point accuracy), and the figure ends with a
    legend of the classes that appear. Classification samples (one label per cloud) give one
    panel per sample coloured by the predicted class, captioned with the true and the
    predicted class names (green when right, red when wrong).

    Args:
        samples: ``(pos [N, 3], target, pred)`` per sample; ``target`` and ``pred`` are
            ``[N]`` per-point labels or scalars (``[]`` or ``[1]``).
        class_names: names in class order.
        palette: ``[r, g, b]`` (0-255) per class.
        size: width and height of one rendered panel in pixels.
        per_row: classification panels per row.
        **render_kwargs: passed to :func:`~lightning_pc.viz.render.render` (``views``,
            ``point_size``, ``up_axis``, ``backend``...).

    Returns:
        An RGB ``PIL.Image``.
    """
    pal = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    names = list(class_names)

    def name(k: int) -> str:
        return names[k] if 0 <= k < len(names) else str(k)

    rows: list[Image.Image] = []
    cls_panels: list[Image.Image] = []
    seen: set[int] = set()
    for pos, target, pred in samples:
        pos = torch.as_tensor(pos)
        target, pred = torch.as_tensor(target).view(-1), torch.as_tensor(pred).view(-1)
        if target.numel() == pos.shape[0] and pos.shape[0] > 1:  # per-point labels
            seen.update(int(t) for t in torch.unique(target) if 0 <= int(t) < len(pal))
            seen.update(int(t) for t in torch.unique(pred) if 0 <= int(t) < len(pal))
            valid = (target >= 0) & (target < len(pal))
            acc = float((pred[valid] == target[valid]).float().mean()) if bool(valid.any()) else float("nan")
            gt_img = render(pos, _colorize(target, pal), width=size, height=size, **render_kwargs)
            pr_img = render(pos, _colorize(pred, pal), width=size, height=size, **render_kwargs)
            rows.append(
                hstack(
                    [
                        _caption(gt_img, [("ground truth", (0, 0, 0))]),
                        _caption(pr_img, [(f"prediction (point acc {acc:.0%})", (0, 0, 0))]),
                    ]
                )
            )
        else:
            t, p = int(target[0]), int(pred[0])
            colors = pal[p] if 0 <= p < len(pal) else np.asarray(_IGNORED, np.uint8)
            img = render(pos, colors, width=size, height=size, **render_kwargs)
            verdict = (0, 130, 0) if t == p else (200, 0, 0)
            cls_panels.append(_caption(img, [(f"true: {name(t)}", (0, 0, 0)), (f"pred: {name(p)}", verdict)]))
    for k in range(0, len(cls_panels), per_row):
        rows.append(hstack(cls_panels[k : k + per_row]))
    figure = vstack(rows) if rows else Image.new("RGB", (size, size), (255, 255, 255))
    if seen:
        order = sorted(seen)
        key = legend([name(k) for k in order], [pal[k].tolist() for k in order], max_height=figure.height)
        figure = hstack([figure, key])
    return figure


#: The perspective view of a scene: three-quarter, from higher up than an object's, so the
#: near walls hide less of the room.
SCENE_VIEW = (-55.0, 55.0)

#: Colours of the error view: right points in light grey, wrong points in red.
RIGHT_COLOR = (205, 205, 205)
WRONG_COLOR = (220, 30, 30)


def is_scene(pos: Tensor | np.ndarray, extent: float = 2.5) -> bool:
    """Whether a cloud looks like a scene (a room, a scan) rather than one object.

    Object datasets are normalised to the unit sphere; a cloud whose bounding box is more
    than ``extent`` units across in any axis (metres for S3DIS, ScanNet, LiDAR) is a scene.
    """
    p = torch.as_tensor(pos).detach().float().reshape(-1, 3)
    p = p[torch.isfinite(p).all(1)]
    if p.shape[0] < 2:
        return False
    return bool(float((p.max(0).values - p.min(0).values).max()) > extent)


def _drop_ceiling(pos: Tensor, up: int, keep: float) -> Tensor:
    """Mask of the points below ``keep`` of the height range (the ceiling hides the room)."""
    h = pos[:, up]
    lo, hi = float(h.min()), float(h.max())
    return h <= lo + keep * (hi - lo)


def scene_figure(
    pos: Tensor,
    target: Tensor,
    pred: Tensor,
    class_names: Sequence[str],
    palette: Sequence[Sequence[int]],
    *,
    size: int = 256,
    cut_height: float = 0.8,
    up_axis: Literal["x", "y", "z"] = "z",
    title: str | None = None,
    **render_kwargs: Any,
) -> Image.Image:
    """A scene (room, scan) as ground truth, prediction and errors, from above and in perspective.

    Two rows: a top-down orthographic view and a three-quarter perspective view; three
    columns: ground truth, prediction (with the point accuracy), and the error view (points
    predicted right in light grey, wrong ones in red). The points above ``cut_height`` of the
    height range (the ceiling) are left out so the room can be seen. A legend of the classes
    present ends the figure. Points whose target is outside the classes (ignored) are drawn
    grey in the ground truth and not counted as errors.

    Args:
        pos: ``[N, 3]`` coordinates.
        target: ``[N]`` true classes.
        pred: ``[N]`` predicted classes.
        class_names: names in class order.
        palette: ``[r, g, b]`` (0-255) per class, e.g. the PLY writer's palette.
        size: height of one panel in pixels (panels are 4:3).
        cut_height: share of the height range kept (1.0: keep the ceiling).
        up_axis: the world axis drawn upwards.
        title: a line above the figure.
        **render_kwargs: passed to :func:`~lightning_pc.viz.render.render`.
    """
    pos = torch.as_tensor(pos).detach().float().cpu()
    target = torch.as_tensor(target).detach().view(-1).cpu()
    pred = torch.as_tensor(pred).detach().view(-1).cpu()
    if not (pos.shape[0] == target.numel() == pred.numel()):
        raise ValueError(
            f"scene_figure: pos has {pos.shape[0]} points, target {target.numel()} labels and "
            f"pred {pred.numel()}; they must match"
        )
    pal = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    names = list(class_names)
    up = "xyz".index(up_axis)
    keep = _drop_ceiling(pos, up, cut_height) if pos.shape[0] else torch.zeros(0, dtype=torch.bool)
    p, t, q = pos[keep], target[keep], pred[keep]
    valid = (t >= 0) & (t < len(pal))
    wrong = valid & (q != t)
    acc = 1.0 - float(wrong.sum()) / max(int(valid.sum()), 1)
    errors = np.tile(np.asarray(RIGHT_COLOR, np.uint8), (p.shape[0], 1))
    errors[wrong.numpy()] = WRONG_COLOR
    width = size * 4 // 3
    layers = [
        ("ground truth", _colorize(t, pal)),
        (f"prediction (point acc {acc:.1%})", _colorize(q, pal)),
        (f"errors: {int(wrong.sum())} of {int(valid.sum())} points wrong", errors),
    ]
    rows = []
    for view, projection in (("top", "orthographic"), (SCENE_VIEW, "perspective")):
        panels = [
            _caption(
                render(p, colors, views=(view,), width=width, height=size, projection=projection,  # type: ignore[arg-type]
                       up_axis=up_axis, **render_kwargs),
                [(f"{label}, {'from above' if view == 'top' else 'perspective'}", (0, 0, 0))],
            )
            for label, colors in layers
        ]
        rows.append(hstack(panels))
    figure = vstack(rows)
    present = sorted({int(k) for k in torch.unique(torch.cat([t[valid], q[(q >= 0) & (q < len(pal))]]))})
    if present:
        key = legend([names[k] if k < len(names) else str(k) for k in present],
                     [pal[k].tolist() for k in present], max_height=figure.height)
        figure = hstack([figure, key])
    if title:
        figure = titled(figure, title)
    return figure
