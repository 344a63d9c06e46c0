"""``prediction_figure``: ground truth beside prediction for a few samples, as one picture."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from lightning_pc.viz.figures import hstack, vstack
from lightning_pc.viz.palettes import font, legend
from lightning_pc.viz.render import render

_IGNORED = (170, 170, 170)


def _colorize(labels: Tensor, palette: np.ndarray) -> np.ndarray:
    lab = labels.detach().cpu().long().numpy()
    out = np.tile(np.asarray(_IGNORED, dtype=np.uint8), (lab.shape[0], 1))
    ok = (lab >= 0) & (lab < len(palette))
    out[ok] = palette[lab[ok]]
    return out


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
