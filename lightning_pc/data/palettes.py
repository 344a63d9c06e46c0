"""Class colours: the one palette that PLY predictions, rendered pictures and the loggers' 3D
views share.

:func:`class_palette` picks colours greedily so that each new colour is as far as possible,
in CIELAB, from every colour already chosen and from the white and black backgrounds
(Glasbey et al.'s idea, 2007). With 50 classes the closest two colours are still about
26 Delta-E apart. Its first ``k`` colours do not depend on the number of classes asked for.

:func:`resolve_palette` is what every output calls with the data module's ``palette``: the
data module's colours when they are enough and distinguishable, else :func:`class_palette`;
:func:`label_colors` colours labels with it (unlabelled points grey).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

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

#: A palette whose closest two colours are nearer than this (Delta E 1976) is replaced by
#: :func:`class_palette` (two classes would look the same).
MIN_DELTA_E = 15.0

#: Colour of points without a class (negative or out-of-range labels, e.g. ``ignore_index``).
UNLABELLED_COLOR = (170, 170, 170)


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
        A list of ``[r, g, b]``, the same on every call; ``class_palette(n)[:k]`` is
        ``class_palette(k)``.
    """
    return [list(c) for c in _greedy(max(int(num_classes), 0))]


#: The former name of :func:`class_palette` (the same colours).
make_palette = class_palette


def min_color_distance(palette: Sequence[Sequence[int]] | np.ndarray) -> float:
    """Smallest CIELAB distance (Delta E 1976) between two colours of a palette (``inf``
    for fewer than two colours)."""
    if len(palette) < 2:
        return float("inf")
    lab = srgb_to_lab(np.asarray(palette))
    d = np.linalg.norm(lab[:, None] - lab[None], axis=-1)
    d[np.diag_indices(len(lab))] = np.inf
    return float(d.min())


def resolve_palette(palette: Sequence[Sequence[int]] | None, num_classes: int) -> np.ndarray:
    """The colours of classes ``0 .. num_classes - 1`` in every output: PLY predictions,
    rendered pictures and the loggers' 3D views.

    The given palette (a data module's ``palette``) is used when it has a colour for every
    class and no two of those colours are nearer than :data:`MIN_DELTA_E`; otherwise
    (none, too short, or two classes that would look alike) :func:`class_palette` is, with
    a warning for the last case.

    Args:
        palette: ``[r, g, b]`` (0-255) per class, or ``None``.
        num_classes: the number of classes to colour.

    Returns:
        ``[num_classes, 3]`` ``uint8`` colours.
    """
    n = max(int(num_classes), 1)
    if palette is not None and len(palette) >= n:
        given = np.asarray(palette, dtype=np.int64).reshape(-1, 3)[:n]
        if given.min() < 0 or given.max() > 255:
            raise ValueError(f"palette colours must be 0-255 RGB, got {given.tolist()}")
        closest = min_color_distance(given)
        if closest >= MIN_DELTA_E:
            return given.astype(np.uint8)
        warnings.warn(
            f"the palette's closest colours are {closest:.1f} Delta-E apart (two classes would "
            f"look alike): class_palette({n}) colours PLY files, pictures and 3D views instead",
            UserWarning,
            stacklevel=2,
        )
    return np.asarray(class_palette(n), dtype=np.uint8).reshape(-1, 3)


def label_colors(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """``[N, 3]`` ``uint8`` colours of ``labels [N]`` from a resolved ``palette``; labels
    outside it (``ignore_index``, unlabelled) get :data:`UNLABELLED_COLOR`."""
    lab = np.asarray(labels, dtype=np.int64).reshape(-1)
    pal = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    out = np.tile(np.asarray(UNLABELLED_COLOR, dtype=np.uint8), (lab.shape[0], 1))
    ok = (lab >= 0) & (lab < len(pal))
    out[ok] = pal[lab[ok]]
    return out
