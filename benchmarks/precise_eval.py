"""Voxelised against precise whole-scene evaluation, on a briefly trained tiny network.

    python benchmarks/precise_eval.py                 # 6 rooms, 30 epochs, CPU
    python benchmarks/precise_eval.py --epochs 5 --density 150   # quicker

Writes synthetic rooms in S3DIS's raw format (``Area_<a>/<room>/Annotations/<class>_<n>.txt``,
``x y z r g b``): floor, ceiling and walls, a column, tables (top and legs), chairs (seat
and back), a board on a wall and clutter boxes on the floor, surface-sampled at
``--density`` points per square metre with 5 mm noise and a colour per class (plus noise).
Areas 1-4 train, Area 5 tests. A narrow PointNet++ (SSG) is trained on the data module's
crops (``--block`` m, ``--num-points`` points), then ``Trainer.test`` runs once per row with a
:class:`~lightning_pc.callbacks.PreciseSceneEvaluation` setting; the voxelised
``test/miou`` comes from the same runs (it does not depend on the callback).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import print_table  # noqa: E402
from lightning_pc.callbacks import PreciseSceneEvaluation  # noqa: E402
from lightning_pc.data import S3DISDataModule  # noqa: E402
from lightning_pc.tasks import SemanticSegmentationTask  # noqa: E402

COLOURS = {
    "ceiling": (200, 200, 190),
    "floor": (120, 100, 80),
    "wall": (180, 180, 170),
    "column": (170, 170, 175),
    "table": (140, 90, 50),
    "chair": (60, 60, 140),
    "board": (235, 235, 235),
    "clutter": (100, 140, 90),
}


def _box(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray, density: float) -> np.ndarray:
    """Points on the surface of an axis-aligned box (all six faces)."""
    size = hi - lo
    faces = []
    for axis in range(3):
        a, b = [i for i in range(3) if i != axis]
        area = size[a] * size[b]
        for side in (lo[axis], hi[axis]):
            n = rng.poisson(area * density)
            p = rng.uniform(lo, hi, (n, 3))
            p[:, axis] = side
            faces.append(p)
    return np.concatenate(faces)


def _plane(rng: np.random.Generator, lo, hi, density: float) -> np.ndarray:
    """Points on a flat rectangle from ``lo`` to ``hi`` (one coordinate equal)."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    size = np.sort(hi - lo)[1:]
    n = rng.poisson(size[0] * size[1] * density)
    return rng.uniform(lo, hi, (n, 3))


def make_room(rng: np.random.Generator, folder: Path, density: float) -> int:
    """One room's annotation files; returns its number of points."""
    w, d, h = rng.uniform(5, 8), rng.uniform(4, 6), 3.0
    parts: dict[str, list[np.ndarray]] = {c: [] for c in COLOURS}
    parts["floor"].append(_plane(rng, [0, 0, 0], [w, d, 0], density))
    parts["ceiling"].append(_plane(rng, [0, 0, h], [w, d, h], density))
    for lo, hi in (([0, 0, 0], [w, 0, h]), ([0, d, 0], [w, d, h])):
        parts["wall"].append(_plane(rng, lo, hi, density))
    for lo, hi in (([0, 0, 0], [0, d, h]), ([w, 0, 0], [w, d, h])):
        parts["wall"].append(_plane(rng, lo, hi, density))
    cx = rng.uniform(0.3, w - 0.7)
    parts["column"].append(
        _box(rng, np.array([cx, 0.0, 0.0]), np.array([cx + 0.4, 0.4, h]), density)
    )
    y0 = rng.uniform(1.0, d - 2.5)
    parts["board"].append(_plane(rng, [0.02, y0, 0.9], [0.02, y0 + 1.5, 2.0], density))
    for _ in range(rng.integers(1, 3)):
        tx, ty = rng.uniform(1.0, w - 2.0), rng.uniform(1.0, d - 1.5)
        parts["table"].append(
            _box(rng, np.array([tx, ty, 0.72]), np.array([tx + 1.2, ty + 0.7, 0.76]), density)
        )
        for lx, ly in ((tx, ty), (tx + 1.15, ty), (tx, ty + 0.65), (tx + 1.15, ty + 0.65)):
            parts["table"].append(
                _box(rng, np.array([lx, ly, 0.0]), np.array([lx + 0.05, ly + 0.05, 0.72]), density)
            )
        for cx in (tx + 0.1, tx + 0.65):  # two chairs along the table's side
            seat = np.array([cx, ty - 0.55, 0.42])
            parts["chair"].append(_box(rng, seat, seat + [0.45, 0.45, 0.04], density))
            parts["chair"].append(
                _box(rng, seat + [0, -0.02, 0], seat + [0.45, 0.02, 0.45], density)
            )
    for _ in range(rng.integers(2, 5)):
        x0, y0 = rng.uniform(0.3, w - 0.8), rng.uniform(0.3, d - 0.8)
        size = rng.uniform(0.2, 0.5, 3)
        parts["clutter"].append(
            _box(rng, np.array([x0, y0, 0.0]), np.array([x0, y0, 0.0]) + size, density)
        )
    ann = folder / "Annotations"
    ann.mkdir(parents=True)
    total = 0
    for cls, chunks in parts.items():
        for k, pts in enumerate(chunks):
            pts = pts + rng.normal(0, 0.005, pts.shape)
            rgb = np.clip(rng.normal(COLOURS[cls], 12, pts.shape), 0, 255).round()
            rows = np.hstack([pts, rgb])
            np.savetxt(ann / f"{cls}_{k + 1}.txt", rows, fmt="%.4f %.4f %.4f %d %d %d")
            total += len(rows)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--density", type=float, default=250.0, help="points per m^2")
    parser.add_argument("--train-rooms", type=int, default=4)
    parser.add_argument("--test-rooms", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--voxel", type=float, default=0.08)
    parser.add_argument("--block", type=float, default=2.0, help="training crop side (m)")
    parser.add_argument("--crops", type=int, default=8, help="training crops per room and epoch")
    parser.add_argument("--num-points", type=int, default=4096, help="points per training crop")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "Stanford3dDataset_v1.2_Aligned_Version"
        points = 0
        for r in range(args.train_rooms + args.test_rooms):
            area = 5 if r >= args.train_rooms else 1 + r % 4
            points += make_room(rng, root / f"Area_{area}" / f"office_{r}", args.density)
        print(f"{args.train_rooms} + {args.test_rooms} rooms, {points} points")
        L.seed_everything(0)
        dm = S3DISDataModule(
            str(root),
            num_points=args.num_points,
            block_size=args.block,
            voxel_size=args.voxel,
            crops_per_room=args.crops,
            batch_size=4,
            num_workers=0,
            cache_dir=str(Path(tmp) / "cache"),
        )
        task = SemanticSegmentationTask(
            model="pointnet2_ssg_sem_seg",
            model_kwargs={
                "ratios": [0.25, 0.25],
                "radii": [[0.2], [0.5]],
                "num_samples": [[16], [16]],
                "sa_mlps": [[[32]], [[64]]],
                "global_mlp": [],
                "fp_mlps": [[64], [32]],
                "head": [32],
            },
            num_classes=dm.num_classes,
            lr=0.01,
        )
        quiet = {
            "accelerator": "cpu",
            "devices": 1,
            "logger": False,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "enable_checkpointing": False,
        }
        start = time.perf_counter()
        L.Trainer(max_epochs=args.epochs, limit_val_batches=0, **quiet).fit(task, datamodule=dm)
        print(f"trained {args.epochs} epochs in {time.perf_counter() - start:.0f} s")
        settings = [
            ("whole rooms, 1 grid pass", dict(block_size=None, voxel_passes=1)),
            ("whole rooms, every point seen", dict(block_size=None)),
            ("blocks of --block (stride half), every point seen", dict(block_size="auto")),
            (
                "blocks, every point seen, 4 rotations",
                dict(block_size="auto", tta=[{}, {"rotate": 90}, {"rotate": 180}, {"rotate": 270}]),
            ),
        ]
        rows = []
        voxelised = None
        for name, kw in settings:
            callback = PreciseSceneEvaluation(**kw)  # type: ignore[arg-type]
            trainer = L.Trainer(callbacks=[callback], **quiet)
            start = time.perf_counter()
            trainer.test(task, datamodule=dm, verbose=False)
            seconds = time.perf_counter() - start
            m = {k: float(v) for k, v in trainer.callback_metrics.items()}
            if voxelised is None:
                voxelised = m
                rows.append(
                    ["voxelised (test/miou: one pass, voxel label copied)", f"{m['test/miou']:.4f}",
                     f"{m['test/oa']:.4f}", "-"]
                )  # fmt: skip
            rows.append(
                [name, f"{m['test/miou_precise']:.4f}", f"{m['test/oa_precise']:.4f}",
                 f"{seconds:.1f}"]
            )  # fmt: skip
            print(" | ".join(rows[-1]), flush=True)
        print_table(["evaluation", "mIoU", "OA", "test s"], rows)


if __name__ == "__main__":
    main()
