"""Class palettes that stay distinguishable for many classes, and a legend image.

:func:`class_palette` picks colours greedily so that each new colour is as far as possible,
in CIELAB, from every colour already chosen and from the white and black backgrounds
(Glasbey et al.'s idea, 2007). With 50 classes the closest two colours are still about
26 Delta-E apart (:func:`~lightning_pc.data.palettes.make_palette`'s golden-ratio hues: 1.6).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) coordinates of ``[..., 3]`` sRGB colours in 0-255."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array(
        [[0.4124564, 0.3575761, 0.1804375],
         [0.2126729, 0.7151522, 0.0721750],
         [0.0193339, 0.1191920, 0.9503041]]
    )
    xyz = lin @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack(
        [116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1
    )


@lru_cache(maxsize=16)
def _greedy(num_classes: int) -> tuple[tuple[int, int, int], ...]:
    levels = np.arange(0, 256, 17)
    grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(-1, 3)
    lab = srgb_to_lab(grid)
    ok = (lab[:, 0] > 30) & (lab[:, 0] < 88)  # visible on white and on black
    grid, lab = grid[ok], lab[ok]
    fixed = srgb_to_lab(np.array([[255, 255, 255], [0, 0, 0]]))
    nearest = np.min(np.linalg.norm(lab[:, None] - fixed[None], axis=-1), 1)
    chosen: list[int] = []
    for _ in range(num_classes):
        i = int(np.argmax(nearest))
        chosen.append(i)
        nearest = np.minimum(nearest, np.linalg.norm(lab - lab[i], axis=-1))
    return tuple(tuple(int(t) for t in grid[i]) for i in chosen)  # type: ignore[misc]


def class_palette(num_classes: int) -> list[list[int]]:
    """``num_classes`` RGB colours (0-255), distinguishable up to about 50 classes.

    Args:
        num_classes: number of classes.

    Returns:
        A list of ``[r, g, b]``, the same on every call.
    """
    return [list(c) for c in _greedy(num_classes)]


def min_color_distance(palette: Sequence[Sequence[int]]) -> float:
    """Smallest CIELAB distance (Delta E 1976) between two colours of a palette."""
    lab = srgb_to_lab(np.asarray(palette))
    d = np.linalg.norm(lab[:, None] - lab[None], axis=-1)
    d[np.diag_indices(len(lab))] = np.inf
    return float(d.min())


def font(size: int = 12) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """PIL's bundled font at ``size`` pixels (falls back to the bitmap font)."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def legend(
    class_names: Sequence[str],
    palette: Sequence[Sequence[int]],
    *,
    max_height: int = 256,
    font_size: int = 11,
    background: tuple[int, int, int] = (255, 255, 255),
) -> Image.Image:
    """A legend image: one colour swatch and name per class, in columns of ``max_height``.

    Args:
        class_names: the names, in class order.
        palette: one ``[r, g, b]`` per class.
        max_height: column height in pixels (more classes add columns).
        font_size: text size in pixels.
        background: the background colour.
    """
    fnt = font(font_size)
    row = font_size + 4
    per_col = max(1, (max_height - 4) // row)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_w = max((int(probe.textlength(str(n), font=fnt)) for n in class_names), default=0)
    col_w = row + 4 + text_w + 10
    cols = max(1, -(-len(class_names) // per_col))
    rows = min(len(class_names), per_col)
    img = Image.new("RGB", (cols * col_w + 4, rows * row + 4), background)
    draw = ImageDraw.Draw(img)
    for k, name in enumerate(class_names):
        x, y = 4 + (k // per_col) * col_w, 2 + (k % per_col) * row
        color = tuple(int(c) for c in palette[k])
        draw.rectangle([x, y + 2, x + row - 4, y + row - 2], fill=color, outline=(60, 60, 60))  # type: ignore[arg-type]
        draw.text((x + row, y + 1), str(name), fill=(0, 0, 0), font=fnt)
    return img
