"""A legend image for class colours; the colours themselves are
:mod:`lightning_pc.data.palettes`' (one palette for PLY files, pictures and 3D views)."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

from lightning_pc.data.palettes import class_palette, min_color_distance, srgb_to_lab

__all__ = ["class_palette", "font", "legend", "min_color_distance", "srgb_to_lab"]


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
