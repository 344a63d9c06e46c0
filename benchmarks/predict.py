"""Whole-scan prediction: points per second and peak resident memory on synthetic scenes.

    python benchmarks/predict.py                                  # 1M and 5M points, CPU
    python benchmarks/predict.py --points 5000000 --models sparse_unet --workers 1 2
    python benchmarks/predict.py --tiny        # narrow networks: measures the pipeline

Each row runs in a fresh subprocess: it writes a synthetic scan (``.npy``: x y z r g b,
rooms of 500k surface points laid side by side, so density stays fixed and the area grows
with the point count), then runs ``Trainer.predict`` with
:class:`~lightning_pc.data.PredictScenesDataModule` and
:class:`~lightning_pc.callbacks.ScenePredictionWriter` (fragments of ``--block`` m every
``--stride`` m, voxelised at ``--voxel``; the results written as PLY and counts). Networks
have random weights (speed and memory do not depend on them). Reported: scan points per
second of the whole predict call (reading, fragmenting, network, voting, writing), the
peak resident set size of the main process and of the largest loader worker (glibc
``ru_maxrss``), and the main process's resident size before predict (the scan and the
network already loaded).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TINY = {
    "pointnet2_ssg_sem_seg": dict(
        ratios=[0.25, 0.25],
        radii=[[0.1], [0.2]],
        num_samples=[[16], [16]],
        sa_mlps=[[[16]], [[32]]],
        global_mlp=[],
        fp_mlps=[[32], [32]],
        head=[32],
    ),
    "sparse_unet": dict(voxel_size=0.04, stem_channels=16, channels=[16, 32, 32, 32], layers=[1] * 4),
}
FULL = {"pointnet2_ssg_sem_seg": {}, "sparse_unet": {"voxel_size": 0.04}}


def write_scene(path: Path, n: int, seed: int = 0) -> None:
    import numpy as np

    sys.path.insert(0, str(Path(__file__).parent))
    from common import scene

    per = 500_000
    rooms = max(1, math.ceil(n / per))
    side = math.ceil(math.sqrt(rooms))
    parts = []
    for k in range(rooms):
        m = min(per, n - k * per)
        pos = scene(m, seed + k).numpy().astype(np.float32)
        pos[:, 0] += (k % side) * 7.0
        pos[:, 1] += (k // side) * 6.0
        parts.append(pos)
    pos = np.concatenate(parts)
    rgb = np.random.default_rng(seed).integers(0, 256, (len(pos), 3)).astype(np.float32)
    np.save(path, np.c_[pos, rgb])


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def child(args: argparse.Namespace) -> None:
    import lightning as L
    import torch

    from lightning_pc.callbacks import ScenePredictionWriter
    from lightning_pc.data import PredictScenesDataModule
    from lightning_pc.tasks import SemanticSegmentationTask

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        scan = Path(tmp) / "scene.npy"
        write_scene(scan, args.points)
        kwargs = (TINY if args.tiny else FULL)[args.model]
        task = SemanticSegmentationTask(
            model=args.model, model_kwargs=kwargs, num_classes=13, in_channels=3
        ).eval()
        dm = PredictScenesDataModule(
            str(scan), num_classes=13, features=["rgb"], block_size=args.block,
            stride=args.stride, voxel_size=args.voxel, output_dir=str(Path(tmp) / "out"),
            batch_size=args.batch_size, num_workers=args.workers,
        )  # fmt: skip
        trainer = L.Trainer(
            accelerator="cpu", logger=False, enable_progress_bar=False,
            callbacks=[ScenePredictionWriter()], enable_model_summary=False,
        )  # fmt: skip
        before = rss_kib()
        start = time.perf_counter()
        trainer.predict(task, datamodule=dm)
        seconds = time.perf_counter() - start
        assert (Path(tmp) / "out" / "scene.ply").is_file()
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss if args.workers else 0
    print(json.dumps({
        "points_per_s": args.points / seconds, "seconds": seconds,
        "rss_before_mib": before / 1024, "peak_main_mib": own / 1024,
        "peak_worker_mib": workers / 1024,
    }))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument("--models", nargs="+", default=list(FULL), choices=list(FULL))
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--block", type=float, default=3.0)
    parser.add_argument("--stride", type=float, default=1.5)
    parser.add_argument("--voxel", type=float, default=0.04)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tiny", action="store_true", help="narrow networks (pipeline cost)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.points, args.workers = args.points[0], args.workers[0]
        child(args)
        return
    print("| model | points | workers | points/s | seconds | RSS before (MiB) "
          "| peak main (MiB) | peak worker (MiB) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for model in args.models:
        for n in args.points:
            for workers in args.workers:
                cmd = [
                    sys.executable, __file__, "--child", "--model", model, "--points", str(n),
                    "--workers", str(workers), "--block", str(args.block),
                    "--stride", str(args.stride), "--voxel", str(args.voxel),
                    "--batch_size", str(args.batch_size), "--threads", str(args.threads),
                ] + (["--tiny"] if args.tiny else [])  # fmt: skip
                out = subprocess.run(cmd, capture_output=True, text=True)
                if out.returncode:
                    print(f"| {model} | {n} | {workers} | failed: {out.stderr.strip()[-200:]} |")
                    continue
                r = json.loads(out.stdout.strip().splitlines()[-1])
                print(
                    f"| {model} | {n:,} | {workers} | {r['points_per_s']:,.0f} | "
                    f"{r['seconds']:.1f} | {r['rss_before_mib']:.0f} | "
                    f"{r['peak_main_mib']:.0f} | {r['peak_worker_mib']:.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
