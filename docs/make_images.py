"""Regenerate the pictures in ``docs/images/`` from briefly trained models (run from the
repository root, on CPU).

Usage: ``python docs/make_images.py [OUT_DIR]`` (default ``docs/images``).

Each task is trained here for a short, fixed number of steps on procedural data, so the
script needs no download, then the trained model predicts on held-out samples, and the
pictures are drawn by the functions the :class:`~lightning_pc.callbacks.RenderPredictions`
callback uses, in the colours of the PLY writer
(:func:`~lightning_pc.data.palettes.resolve_palette`):

- classification: PointNet++ (SSG) on the synthetic shapes
  (:class:`~lightning_pc.data.SyntheticShapesDataModule`), drawn at 1024 points;
- part segmentation: PointNet++ (SSG) part segmentation on the synthetic shapes' parts;
- semantic segmentation: PointNet++ (SSG) semantic segmentation on furnished rooms built
  here with the 13 S3DIS classes (:func:`room`: the size and the furniture's places vary with
  the seed), trained on random 2048-point subsets of 32 rooms and drawn on an unseen room,
  every point predicted (the room's points split into 2048-point subsets).

The titles give each model's training steps and its accuracy on the held-out samples; the
script prints the seconds each training took.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader
from torch_geometric.data import Data

from lightning_pc.data import SyntheticShapesDataModule, collate
from lightning_pc.data.palettes import S3DIS_PALETTE, resolve_palette
from lightning_pc.tasks import ClassificationTask, PartSegmentationTask, SemanticSegmentationTask
from lightning_pc.viz import prediction_figure, titled
from lightning_pc.viz.predictions import scene_figure

S3DIS_CLASSES = (
    "ceiling floor wall beam column window door table chair sofa bookcase board clutter".split()
)

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
    """An office of about 6 m x 4.5 m x 3 m: walls, floor, ceiling, a door, a window, a board,
    a table with chairs, a bookcase, a sofa, a column, a beam and clutter. The room's size and
    the furniture's places vary with ``seed``. Returns ``(pos, label)``."""
    rng = np.random.default_rng(seed)
    layout = np.random.default_rng(seed + 10_000)
    sx, sy = layout.uniform(0.85, 1.15, 2)  # room size
    tx, ty = layout.uniform(-0.5, 0.5, 2)  # table group shift
    fx, by = layout.uniform(-0.4, 0.4, 2)  # sofa and bookcase shifts
    c = {n: i for i, n in enumerate(S3DIS_CLASSES)}
    parts: list[tuple[np.ndarray, int]] = []

    def add(points: np.ndarray, name: str) -> None:
        parts.append((points, c[name]))

    def area_n(lo: tuple[float, ...], hi: tuple[float, ...]) -> int:
        s = sorted(np.abs(np.asarray(hi) - np.asarray(lo)))
        return max(int(density * (s[1] * s[2] + 0.2 * s[0])), 30)

    w, d, h = 6.0 * sx, 4.5 * sy, 3.0
    add(_plane(rng, area_n((0, 0, 0), (w, d, 0)), (0, 0, 0), (w, d, 0)), "floor")
    add(_plane(rng, area_n((0, 0, h), (w, d, h)), (0, 0, h), (w, d, h)), "ceiling")
    for lo, hi in [((0, 0, 0), (w, 0, h)), ((0, d, 0), (w, d, h)), ((0, 0, 0), (0, d, h)),
                   ((w, 0, 0), (w, d, h))]:
        add(_plane(rng, area_n(lo, hi), lo, hi), "wall")
    add(_plane(rng, 700, (w - 1.7, d - 0.02, 0), (w - 0.8, d - 0.02, 2.1)), "door")
    add(_plane(rng, 900, (w - 0.02, 1.0, 1.0), (w - 0.02, 3.0, 2.2)), "window")
    add(_plane(rng, 800, (1.0, 0.02, 1.0), (3.2, 0.02, 2.1)), "board")
    add(_box(rng, 900, (0, 0, h - 0.35), (w, 0.3, h)), "beam")
    add(_box(rng, 700, (w - 0.4, d - 0.4, 0), (w, d, h)), "column")
    add(_box(rng, 1400, (2.0 + tx, 1.6 + ty, 0.72), (3.8 + tx, 2.6 + ty, 0.78)), "table")
    for x, y in [(2.1 + tx, 1.6 + ty), (2.1 + tx, 2.6 + ty), (3.7 + tx, 2.6 + ty)]:
        add(_box(rng, 160, (x - 0.08, y - 0.08, 0), (x, y, 0.72)), "table")
    for x, y, back in [(2.4, 1.1, -1), (3.3, 1.1, -1), (2.4, 3.1, 1), (3.3, 3.1, 1)]:
        x, y = x + tx, y + ty
        add(_box(rng, 300, (x - 0.22, y - 0.22, 0.42), (x + 0.22, y + 0.22, 0.47)), "chair")
        yb = y + back * 0.22
        add(_box(rng, 250, (x - 0.22, yb - 0.03, 0.47), (x + 0.22, yb + 0.03, 0.95)), "chair")
        add(_box(rng, 120, (x - 0.03, y - 0.03, 0), (x + 0.03, y + 0.03, 0.42)), "chair")
    add(_box(rng, 2200, (0.02, 2.3 * sy + by, 0), (0.45, 3.9 * sy + by, 2.0)), "bookcase")
    add(_box(rng, 1500, (0.6 + fx, d - 0.95, 0), (2.4 + fx, d - 0.05, 0.75)), "sofa")
    add(_box(rng, 300, (w - 1.2, 0.4, 0), (w - 0.6, 0.9, 0.5)), "clutter")
    add(_box(rng, 200, (2.6 + tx, 2.0 + ty, 0.78), (2.9 + tx, 2.2 + ty, 0.9)), "clutter")
    pos = np.concatenate([p for p, _ in parts]) + rng.normal(0, 0.006, (sum(len(p) for p, _ in parts), 3))
    label = np.concatenate([np.full(len(p), k) for p, k in parts])
    return pos.astype(np.float32), label.astype(np.int64)




def _fit(task: L.LightningModule, steps: int, **loaders: object) -> float:
    """Train ``task`` for ``steps`` optimiser steps on CPU; returns the seconds it took."""
    trainer = L.Trainer(
        max_steps=steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
        num_sanity_val_steps=0,
    )
    start = time.perf_counter()
    trainer.fit(task, **loaders)  # type: ignore[arg-type]
    seconds = time.perf_counter() - start
    print(f"{type(task).__name__}: {steps} steps in {seconds:.0f} s", flush=True)
    return seconds


@torch.no_grad()
def _predict(task: L.LightningModule, clouds: list[Data], batch_size: int = 8) -> list[torch.Tensor]:
    """``predict_step`` of the evaluation-mode ``task`` on each cloud, one result per cloud."""
    task.eval()
    out: list[torch.Tensor] = []
    for k in range(0, len(clouds), batch_size):
        group = clouds[k : k + batch_size]
        pred = task.predict_step(collate(group), 0)
        if pred.dim() == 2:  # classification: probabilities per cloud
            out += list(pred.argmax(1))
        else:  # segmentation: a label per point, in batch order
            out += list(pred.split([int(c.pos.shape[0]) for c in group]))
    return out


def classification(folder: Path) -> Path:
    torch.manual_seed(0)
    dm = SyntheticShapesDataModule(num_train=480, num_val=120, num_points=1024, batch_size=8)
    task = ClassificationTask(
        num_classes=dm.num_classes, lr=0.003,
        model_kwargs={"sa_mlps": [[[32, 32, 64]], [[64, 64, 128]]], "global_mlp": [128, 256],
                      "head": [128], "dropout": 0.3},
    )
    steps = 150
    _fit(task, steps, datamodule=dm)
    held_out = SyntheticShapesDataModule(num_val=120, num_points=1024, seed=1)
    held_out.setup("validate")
    val = [held_out.datasets["val"][i] for i in range(len(held_out.datasets["val"]))]
    preds = _predict(task, val)
    acc = float(np.mean([int(p) == int(c.y) for p, c in zip(preds, val)]))
    names = list(dm.class_names)
    palette = resolve_palette(dm.palette, len(names))
    shown = []  # the first held-out sample of six classes, right or wrong
    for cls in ("table", "chair", "lamp", "mug", "dumbbell", "torus"):
        i = next(i for i, c in enumerate(val) if names[int(c.y)] == cls)
        shown.append((val[i].pos, val[i].y, preds[i]))
    fig = prediction_figure(shown, names, palette, size=200, per_row=3)
    title = (f"classification: PointNet++ SSG trained {steps} steps on synthetic shapes\n"
             f"held-out accuracy {acc:.1%} ({len(val)} shapes); the first of six classes")
    path = folder / "classification.png"
    titled(fig, title).save(path)
    return path


def part_segmentation(folder: Path) -> Path:
    torch.manual_seed(0)
    dm = SyntheticShapesDataModule(num_train=480, num_val=60, num_points=512, batch_size=8,
                                   task="part_segmentation")
    task = PartSegmentationTask(
        num_classes=dm.num_classes, part_offsets=dm.part_offsets, lr=0.003,
        model_kwargs={"num_categories": len(dm.category_names),
                      "sa_mlps": [[[32, 32, 64]], [[64, 64, 128]]], "global_mlp": [128, 256],
                      "fp_mlps": [[128, 128], [128, 64], [64, 64]], "head": [64],
                      "num_samples": [[32], [32]], "dropout": 0.3},
    )
    steps = 80
    _fit(task, steps, datamodule=dm)
    held_out = SyntheticShapesDataModule(num_val=60, num_points=512, seed=1,
                                         task="part_segmentation")
    held_out.setup("validate")
    val = [held_out.datasets["val"][i] for i in range(len(held_out.datasets["val"]))]
    preds = _predict(task, val)
    acc = float(np.mean([float((p == c.y).float().mean()) for p, c in zip(preds, val)]))
    categories = [dm.category_names[int(c.category)] for c in val]
    shown = [(val[i].pos, val[i].y, preds[i])
             for i in (categories.index("chair"), categories.index("lamp"))]
    palette = resolve_palette(dm.palette, dm.num_classes)
    fig = prediction_figure(shown, dm.class_names, palette, size=240)
    title = (f"part segmentation: PointNet++ SSG trained {steps} steps on synthetic shapes\n"
             f"held-out point accuracy {acc:.1%} ({len(val)} shapes); the first chair and lamp")
    path = folder / "part_segmentation.png"
    titled(fig, title).save(path)
    return path


def _room_cloud(pos: np.ndarray, label: np.ndarray) -> Data:
    """A room's points with their position in the room as features (height above the floor
    tells floor, table and ceiling apart)."""
    p = torch.from_numpy(pos)
    return Data(pos=p, x=p - p.min(0).values, y=torch.from_numpy(label))


#: points of a room the network sees at once, in training and in prediction
CROP = 2048


class _RoomCrops(torch.utils.data.Dataset):
    """Random ``CROP``-point subsets of the training rooms, a fresh one at every draw."""

    def __init__(self, rooms: list[tuple[np.ndarray, np.ndarray]], num_points: int = CROP):
        self.rooms, self.num_points = rooms, num_points

    def __len__(self) -> int:
        return len(self.rooms)

    def __getitem__(self, i: int) -> Data:
        pos, label = self.rooms[i]
        keep = torch.randperm(len(pos))[: self.num_points].numpy()
        return _room_cloud(pos[keep], label[keep])


def semantic_segmentation(folder: Path) -> Path:
    torch.manual_seed(0)
    rooms = [room(seed, density=500.0) for seed in range(1, 33)]
    loader = DataLoader(_RoomCrops(rooms), batch_size=2, shuffle=True, collate_fn=collate)
    task = SemanticSegmentationTask(
        num_classes=len(S3DIS_CLASSES), in_channels=3, lr=0.003,
        model_kwargs={"ratios": [0.25, 0.25, 0.25], "radii": [[0.3], [0.6], [1.2]],
                      "num_samples": [[16], [16], [16]],
                      "sa_mlps": [[[32, 32]], [[64, 64]], [[128, 128]]], "global_mlp": [],
                      "fp_mlps": [[128, 128], [128, 64], [64, 64]], "head": [64],
                      "dropout": 0.1},
    )
    steps = 150
    _fit(task, steps, train_dataloaders=loader)
    pos, label = room(seed=0)  # not among the training rooms
    order = torch.randperm(len(pos), generator=torch.Generator().manual_seed(0)).numpy()
    chunks = np.array_split(order, max(1, len(pos) // CROP))
    pred = np.empty(len(pos), dtype=np.int64)
    for idx, chunk_pred in zip(chunks, _predict(task, [_room_cloud(pos[c], label[c]) for c in chunks])):
        pred[idx] = chunk_pred.numpy()
    acc = float((pred == label).mean())
    palette = resolve_palette(S3DIS_PALETTE, len(S3DIS_CLASSES))
    title = (f"semantic segmentation: PointNet++ SSG trained {steps} steps on 32 synthetic rooms "
             f"(S3DIS classes and colours)\nan unseen room, every point predicted: accuracy "
             f"{acc:.1%}")
    fig = scene_figure(torch.from_numpy(pos), torch.from_numpy(label), torch.from_numpy(pred),
                       S3DIS_CLASSES, palette, size=200, title=title)
    path = folder / "semantic_segmentation.png"
    fig.save(path)
    return path


def main(out: str = "docs/images", only: str = "") -> list[Path]:
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for make in (classification, part_segmentation, semantic_segmentation):
        if only and only not in make.__name__:
            continue
        start = time.perf_counter()
        written.append(make(folder))
        print(f"{written[-1]}: {time.perf_counter() - start:.0f} s", flush=True)
    for path in written:  # an adaptive 256-colour palette keeps each file small
        from PIL import Image

        Image.open(path).convert("RGB").quantize(256, dither=Image.Dither.NONE).save(path, optimize=True)
    return written


if __name__ == "__main__":
    for path in main(*sys.argv[1:3]):
        print(path, f"{path.stat().st_size / 1024:.0f} KB")
