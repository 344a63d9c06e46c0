"""Pictures composed with PIL: titled panels side by side, a confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from lightning_pc.viz.palettes import font


def titled(image: np.ndarray | Image.Image, title: str, *, font_size: int = 13,
           color: tuple[int, int, int] = (0, 0, 0)) -> Image.Image:
    """``image`` with text above it (white band; one line per line of ``title``)."""
    img = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    lines = title.splitlines() or [""]
    band = len(lines) * (font_size + 4) + 4
    out = Image.new("RGB", (img.width, img.height + band), (255, 255, 255))
    out.paste(img.convert("RGB"), (0, band))
    draw = ImageDraw.Draw(out)
    for k, line in enumerate(lines):
        draw.text((4, 3 + k * (font_size + 4)), line, fill=color, font=font(font_size))
    return out


def hstack(images: Sequence[Image.Image], *, gap: int = 4) -> Image.Image:
    """Images side by side on white, top-aligned."""
    width = sum(i.width for i in images) + gap * max(len(images) - 1, 0)
    out = Image.new("RGB", (max(width, 1), max((i.height for i in images), default=1)), (255, 255, 255))
    x = 0
    for img in images:
        out.paste(img, (x, 0))
        x += img.width + gap
    return out


def vstack(images: Sequence[Image.Image], *, gap: int = 4) -> Image.Image:
    """Images one below the other on white, left-aligned."""
    height = sum(i.height for i in images) + gap * max(len(images) - 1, 0)
    out = Image.new("RGB", (max((i.width for i in images), default=1), max(height, 1)), (255, 255, 255))
    y = 0
    for img in images:
        out.paste(img, (0, y))
        y += img.height + gap
    return out


def confusion_matrix_image(
    matrix: np.ndarray,
    class_names: Sequence[str] | None = None,
    *,
    normalize: bool = True,
    cell: int | None = None,
    title: str = "confusion matrix (rows: true, columns: predicted)",
) -> Image.Image:
    """A confusion matrix as a picture: rows are true classes, columns predictions.

    Cells are shaded white to dark blue by the row-normalised rate; with up to 20 classes
    each cell also shows its count.

    Args:
        matrix: ``[C, C]`` counts, ``matrix[t, p]`` = samples (or points) of class ``t``
            predicted as ``p``.
        class_names: row and column labels (default: indices).
        normalize: shade by the fraction of each row instead of the raw count.
        cell: cell size in pixels (default: from the number of classes).
        title: the line above the matrix.
    """
    m = np.asarray(matrix, dtype=np.float64)
    c = m.shape[0]
    names = [str(n) for n in (class_names if class_names is not None else range(c))]
    rate = m / np.maximum(m.sum(1, keepdims=True), 1) if normalize else m / max(m.max(), 1)
    cell = cell or max(8, min(36, 640 // max(c, 1)))
    fs = max(8, min(12, cell - 2))
    fnt = font(fs)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_w = max((int(probe.textlength(n, font=fnt)) for n in names), default=0) + 8
    top = fs + 12 + label_w
    img = Image.new("RGB", (label_w + c * cell + 8, top + c * cell + 8), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    draw.text((4, 2), title, fill=(0, 0, 0), font=font(12))
    # Column labels, rotated: draw on a strip then rotate it.
    strip = Image.new("RGB", (label_w, c * cell), (255, 255, 255))
    sdraw = ImageDraw.Draw(strip)
    for j, name in enumerate(names):
        sdraw.text((label_w - 4 - int(probe.textlength(name, font=fnt)), j * cell + (cell - fs) // 2), name, fill=(0, 0, 0), font=fnt)
    img.paste(strip.rotate(90, expand=True), (label_w, fs + 10))
    for i in range(c):
        draw.text((label_w - 4 - int(probe.textlength(names[i], font=fnt)), top + i * cell + (cell - fs) // 2), names[i], fill=(0, 0, 0), font=fnt)
        for j in range(c):
            r = float(rate[i, j])
            shade = (int(255 - 225 * r), int(255 - 170 * r), int(255 - 60 * r))
            x, y = label_w + j * cell, top + i * cell
            draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=shade, outline=(220, 220, 220))
            if c <= 20 and m[i, j] > 0:
                text = str(int(m[i, j]))
                tw = probe.textlength(text, font=fnt)
                draw.text((x + (cell - tw) / 2, y + (cell - fs) / 2), text, fill=(255, 255, 255) if r > 0.5 else (0, 0, 0), font=fnt)
    return img
