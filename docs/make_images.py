"""Regenerate the pictures in ``docs/images/`` (run from the repository root).

Usage: ``python docs/make_images.py [OUT_DIR]`` (default ``docs/images``).

Each picture is drawn by the same functions the :class:`~lightning_pc.callbacks.RenderPredictions`
callback uses. The clouds are procedural (the synthetic shapes of
:mod:`lightning_pc.data.datasets.synthetic`, and a furnished room built here with the 13
S3DIS classes) so the script needs no download. The "prediction" panels are NOT the output
of a trained model: they are the ground truth with a deterministic share of labels
replaced (whole parts for part segmentation, one object and a boundary band for the room),
so the pictures show what a prediction and its errors look like; the captions say so.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from lightning_pc.data.datasets.synthetic import CLASS_NAMES, make_shape
from lightning_pc.data.palettes import S3DIS_PALETTE
from lightning_pc.viz import class_palette, prediction_figure, titled
from lightning_pc.viz.predictions import scene_figure

S3DIS_CLASSES = (
    "ceiling floor wall beam column window door table chair sofa bookcase board clutter".split()
)
NOTE = "prediction panels: illustrative relabelling, not a trained model"


def _box(rng: np.random.Generator, n: int, lo: tuple[float, ...], hi: tuple[float, ...]) -> np.ndarray:
    """``n`` points on the surface of the axis-aligned box ``lo``-``hi``."""
    lo_a, hi_a = np.asarray(lo, float), np.asarray(hi, float)
    size = hi_a - lo_a
    areas = np.array([size[1] * size[2]] * 2 + [size[0] * size[2]] * 2 + [size[0] * size[1]] * 2)
    face = rng.choice(6, size=n, p=areas / areas.sum())
    p = lo_a + rng.random((n, 3)) * size
    axis = face // 2
    p[np.arange(n), axis] = np.where(face % 2 == 0, lo_a[axis], hi_a[axis])
    return p


def _plane(rng: np.random.Generator, n: int, lo: tuple[float, ...], hi: tuple[float, ...]) -> np.ndarray:
    return np.asarray(lo) + rng.random((n, 3)) * (np.asarray(hi) - np.asarray(lo))


def room(seed: int = 0, density: float = 900.0) -> tuple[np.ndarray, np.ndarray]:
    """A 6 m x 4.5 m x 3 m office: walls, floor, ceiling, a door, a window, a board, a table
    with chairs, a bookcase, a sofa, a column, a beam and clutter. Returns ``(pos, label)``."""
    rng = np.random.default_rng(seed)
    c = {n: i for i, n in enumerate(S3DIS_CLASSES)}
    parts: list[tuple[np.ndarray, int]] = []

    def add(points: np.ndarray, name: str) -> None:
        parts.append((points, c[name]))

    def area_n(lo: tuple[float, ...], hi: tuple[float, ...]) -> int:
        s = sorted(np.abs(np.asarray(hi) - np.asarray(lo)))
        return max(int(density * (s[1] * s[2] + 0.2 * s[0])), 30)

    w, d, h = 6.0, 4.5, 3.0
    add(_plane(rng, area_n((0, 0, 0), (w, d, 0)), (0, 0, 0), (w, d, 0)), "floor")
    add(_plane(rng, area_n((0, 0, h), (w, d, h)), (0, 0, h), (w, d, h)), "ceiling")
    for lo, hi in [((0, 0, 0), (w, 0, h)), ((0, d, 0), (w, d, h)), ((0, 0, 0), (0, d, h)),
                   ((w, 0, 0), (w, d, h))]:
        add(_plane(rng, area_n(lo, hi), lo, hi), "wall")
    add(_plane(rng, 700, (4.3, d - 0.02, 0), (5.2, d - 0.02, 2.1)), "door")
    add(_plane(rng, 900, (w - 0.02, 1.0, 1.0), (w - 0.02, 3.0, 2.2)), "window")
    add(_plane(rng, 800, (1.0, 0.02, 1.0), (3.2, 0.02, 2.1)), "board")
    add(_box(rng, 900, (0, 0, h - 0.35), (w, 0.3, h)), "beam")
    add(_box(rng, 700, (w - 0.4, d - 0.4, 0), (w, d, h)), "column")
    add(_box(rng, 1400, (2.0, 1.6, 0.72), (3.8, 2.6, 0.78)), "table")
    for x, y in [(2.1, 1.6), (2.1, 2.6), (3.7, 2.6)]:
        add(_box(rng, 160, (x - 0.08, y - 0.08, 0), (x, y, 0.72)), "table")
    for x, y, back in [(2.4, 1.1, -1), (3.3, 1.1, -1), (2.4, 3.1, 1), (3.3, 3.1, 1)]:
        add(_box(rng, 300, (x - 0.22, y - 0.22, 0.42), (x + 0.22, y + 0.22, 0.47)), "chair")
        yb = y + back * 0.22
        add(_box(rng, 250, (x - 0.22, yb - 0.03, 0.47), (x + 0.22, yb + 0.03, 0.95)), "chair")
        add(_box(rng, 120, (x - 0.03, y - 0.03, 0), (x + 0.03, y + 0.03, 0.42)), "chair")
    add(_box(rng, 2200, (0.02, 2.6, 0), (0.45, 4.2, 2.0)), "bookcase")
    add(_box(rng, 1500, (0.6, d - 0.95, 0), (2.4, d - 0.05, 0.75)), "sofa")
    add(_box(rng, 300, (4.8, 0.4, 0), (5.4, 0.9, 0.5)), "clutter")
    add(_box(rng, 200, (2.6, 2.0, 0.78), (2.9, 2.2, 0.9)), "clutter")
    pos = np.concatenate([p for p, _ in parts]) + rng.normal(0, 0.006, (sum(len(p) for p, _ in parts), 3))
    label = np.concatenate([np.full(len(p), k) for p, k in parts])
    return pos.astype(np.float32), label.astype(np.int64)


def _relabel_scene(pos: np.ndarray, label: np.ndarray) -> np.ndarray:
    """The room's labels with typical mistakes: the sofa read as chairs, the board as wall,
    and wall points next to the floor read as floor."""
    c = {n: i for i, n in enumerate(S3DIS_CLASSES)}
    pred = label.copy()
    pred[label == c["sofa"]] = c["chair"]
    board = np.flatnonzero(label == c["board"])
    pred[board[pos[board, 0] > 2.5]] = c["wall"]
    pred[(label == c["wall"]) & (pos[:, 2] < 0.12)] = c["floor"]
    return pred


def main(out: str = "docs/images") -> list[Path]:
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    torch.manual_seed(0)

    # classification: six synthetic shapes, one mistaken
    names = list(CLASS_NAMES)
    pal = class_palette(len(names))
    samples = []
    for k, (cls, wrong) in enumerate([(7, None), (8, None), (9, None), (10, 8), (4, None), (11, None)]):
        pos, _ = make_shape(cls, 2048, np.random.default_rng(k + 1))
        pred = wrong if wrong is not None else cls
        samples.append((torch.as_tensor(pos, dtype=torch.float32), torch.tensor(cls), torch.tensor(pred)))
    fig = titled(prediction_figure(samples, names, pal, size=200, per_row=3), "classification: " + NOTE)
    written.append(folder / "classification.png")
    fig.save(written[-1], optimize=True)

    # part segmentation: a chair and a lamp, with parts confused
    seg = []
    for k, (cls, swap) in enumerate([(8, (1, 2)), (9, (0, 1))]):
        pos, part = make_shape(cls, 2500, np.random.default_rng(20 + k))
        part_t = torch.as_tensor(part)
        pred = part_t.clone()
        a, b = int(part_t.min()) + swap[0], int(part_t.min()) + swap[1]
        chosen = torch.nonzero(part_t == a).view(-1)
        pred[chosen[: len(chosen) // 2]] = b
        seg.append((torch.as_tensor(pos, dtype=torch.float32), part_t, pred))
    num_parts = int(max(int(s[1].max()) for s in seg)) + 1
    part_names = [f"part {i}" for i in range(num_parts)]
    fig = titled(prediction_figure(seg, part_names, class_palette(num_parts), size=240),
                 "part segmentation: " + NOTE)
    written.append(folder / "part_segmentation.png")
    fig.save(written[-1], optimize=True)

    # semantic segmentation: a room
    pos, label = room()
    pred = _relabel_scene(pos, label)
    fig = scene_figure(torch.from_numpy(pos), torch.from_numpy(label), torch.from_numpy(pred),
                       S3DIS_CLASSES, S3DIS_PALETTE, size=200,
                       title="semantic segmentation (S3DIS classes and colours): " + NOTE)
    written.append(folder / "semantic_segmentation.png")
    fig.save(written[-1], optimize=True)
    for path in written:  # an adaptive 256-colour palette keeps each file small
        from PIL import Image

        Image.open(path).convert("RGB").quantize(256, dither=Image.Dither.NONE).save(path, optimize=True)
    return written


if __name__ == "__main__":
    for path in main(*sys.argv[1:2]):
        print(path, f"{path.stat().st_size / 1024:.0f} KB")
