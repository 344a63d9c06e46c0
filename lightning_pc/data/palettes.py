"""Colour palettes for class/part labels (RGB 0-255, one entry per class)."""

from __future__ import annotations

import colorsys

# PointNet's indoor3d colours for the 13 S3DIS classes, in class order.
S3DIS_PALETTE: list[list[int]] = [
    [0, 255, 0],
    [0, 0, 255],
    [0, 255, 255],
    [255, 255, 0],
    [255, 0, 255],
    [100, 100, 255],
    [200, 200, 100],
    [170, 120, 200],
    [255, 0, 0],
    [200, 100, 100],
    [10, 200, 100],
    [200, 200, 200],
    [50, 50, 50],
]


def make_palette(num_classes: int) -> list[list[int]]:
    """``num_classes`` distinct colours: hues spaced by the golden ratio, two brightness levels.

    Args:
        num_classes: number of colours.

    Returns:
        ``num_classes`` lists ``[r, g, b]`` of ints in 0-255, the same on every call.
    """
    out = []
    for i in range(num_classes):
        hue = (i * 0.618033988749895) % 1.0
        value = 0.95 if i % 2 == 0 else 0.7
        r, g, b = colorsys.hsv_to_rgb(hue, 0.75, value)
        out.append([round(r * 255), round(g * 255), round(b * 255)])
    return out
