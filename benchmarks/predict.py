"""Whole-scan prediction: points per second and peak memory on synthetic scenes.

    python benchmarks/predict.py                         # 5M points, 3 networks, 1 and 2 workers
    python benchmarks/predict.py --points 1000000 20000000 --models pointwise --workers 0
    python benchmarks/predict.py --full                  # the registry's default widths

The synthetic scan (``.npy`` float32: x y z r g b) is written once per size, outside the
measured processes: ``--layout dense`` (the default), rooms of 500k surface points laid
side by side, so density stays fixed and the area grows with the point count; ``--layout
sparse``, an aerial-like scan, points spread uniformly over 1200 x 560 units at 110,000
points (the extent grows with the square root of the point count, so density stays fixed:
with ``--block 1`` most fragments hold one or two points).

    python benchmarks/predict.py --layout sparse --points 110000 --block 1 --models pointwise --workers 0 Each row then runs in a fresh subprocess:
``Trainer.predict`` with :class:`~lightning_pc.data.PredictScenesDataModule` and
:class:`~lightning_pc.callbacks.ScenePredictionWriter` (fragments of ``--block`` m every
``--stride`` m, voxelised at ``--voxel``; results written as PLY and counts). Networks have
random weights (speed and memory do not depend on them) and, unless ``--full``, small
widths (``SMALL``): on a CPU the network dominates the time, and the pipeline the memory.
``pointwise`` is one linear layer per point: it measures the pipeline alone (reading,
fragmenting, voting, writing).

Reported: scan points per second of the whole predict call and its ratio to the first row;
the peak over the run of the summed proportional set size (PSS: shared pages split between
the processes sharing them) of the main process and its loader workers, in all and its
anonymous part (heap: what cannot be paged back to a file; the vote file and the read-only
mapped scan are file-backed and reclaimable), and both per scan point above the main
process's PSS just before predict (torch and the network loaded); and each process's
``ru_maxrss``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

SMALL: dict[str, dict[str, Any]] = {
    "pointnet2_ssg_sem_seg": dict(
        ratios=[0.25, 0.25],
        radii=[[0.1], [0.2]],
        num_samples=[[16], [16]],
        sa_mlps=[[[16]], [[32]]],
        global_mlp=[],
        fp_mlps=[[32], [32]],
        head=[32],
    ),
    "sparse_unet": dict(
        voxel_size=0.04, stem_channels=16, channels=[16, 32, 32, 32], layers=[1] * 4
    ),
    "ptv3": dict(
        grid_size=0.04,
        stride=[2, 2],
        enc_depths=[1, 1, 1],
        enc_channels=[16, 32, 64],
        enc_num_head=[1, 2, 4],
        enc_patch_size=[128] * 3,
        dec_depths=[1, 1],
        dec_channels=[16, 32],
        dec_num_head=[1, 2],
        dec_patch_size=[128] * 2,
    ),  # fmt: skip
    "pointwise": {},
}
FULL: dict[str, dict[str, Any]] = {
    "pointnet2_ssg_sem_seg": {},
    "sparse_unet": {"voxel_size": 0.04},
    "ptv3": {"grid_size": 0.04},
    "pointwise": {},
}
MODELS = ["pointnet2_ssg_sem_seg", "sparse_unet", "ptv3"]


def write_scene(path: Path, n: int, seed: int = 0) -> None:
    """A synthetic scan of ``n`` points, written room by room into a memory-mapped NPY."""
    import numpy as np

    sys.path.insert(0, str(Path(__file__).parent))
    from common import scene

    per = 500_000
    rooms = max(1, math.ceil(n / per))
    side = math.ceil(math.sqrt(rooms))
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, 6))
    rng = np.random.default_rng(seed)
    for k in range(rooms):
        m = min(per, n - k * per)
        pos = scene(m, seed + k).numpy().astype(np.float32)
        pos[:, 0] += (k % side) * 7.0
        pos[:, 1] += (k // side) * 6.0
        rows = slice(k * per, k * per + m)
        out[rows, :3] = pos
        out[rows, 3:] = rng.integers(0, 256, (m, 3))
    out.flush()
    del out


def write_sparse(path: Path, n: int, seed: int = 0) -> None:
    """An aerial-like scan of ``n`` points: 110,000 points per 1200 x 560 units, uniform."""
    import numpy as np

    scale = math.sqrt(n / 110_000)
    rng = np.random.default_rng(seed)
    pos = np.c_[
        rng.uniform(0, 1200 * scale, n), rng.uniform(0, 560 * scale, n), rng.uniform(0, 30, n)
    ]
    rgb = rng.integers(0, 256, (n, 3))
    np.save(path, np.c_[pos, rgb].astype(np.float32))


def pss_kib(pid: int) -> tuple[int, int]:
    """``(Pss, Pss_Anon)`` of a process in KiB (0, 0 when it is gone)."""
    total = anon = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    total = int(line.split()[1])
                elif line.startswith("Pss_Anon:"):
                    anon = int(line.split()[1])
    except OSError:
        pass
    return total, anon


class Sampler(threading.Thread):
    """Peak of the summed PSS (all, anonymous) of this process and its children."""

    def __init__(self, every: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.every, self.peak, self.peak_anon = every, 0, 0
        self.stop = threading.Event()

    def run(self) -> None:
        import psutil

        me = psutil.Process()
        while not self.stop.is_set():
            pids = [me.pid] + [c.pid for c in me.children(recursive=True)]
            both = [pss_kib(pid) for pid in pids]
            self.peak = max(self.peak, sum(t for t, _ in both))
            self.peak_anon = max(self.peak_anon, sum(a for _, a in both))
            time.sleep(self.every)


def child(args: argparse.Namespace) -> None:
    import lightning as L
    import torch
    from torch import nn

    from lightning_pc.callbacks import ScenePredictionWriter
    from lightning_pc.data import PredictScenesDataModule
    from lightning_pc.models.registry import list_models, register_model
    from lightning_pc.tasks import SemanticSegmentationTask

    class Pointwise(nn.Module):
        """One linear layer on x y z and the features of every point."""

        def __init__(self, num_classes: int, in_channels: int = 3) -> None:
            super().__init__()
            self.linear = nn.Linear(3 + in_channels, num_classes)

        def forward(self, data: Any) -> torch.Tensor:
            return self.linear(torch.cat([data.pos, data.x], 1))

    if "pointwise" not in list_models():
        register_model("pointwise")(Pointwise)
    torch.set_num_threads(args.threads)
    kwargs = (FULL if args.full else SMALL)[args.model]
    task = SemanticSegmentationTask(
        model=args.model, model_kwargs=kwargs, num_classes=13, in_channels=3
    ).eval()
    extra = {"crop": args.crop} if args.crop != "block" else {}
    with tempfile.TemporaryDirectory(dir=args.tmp) as out:
        if args.stride is not None:  # else the data module's default (block / 2)
            extra["stride"] = args.stride
        if args.batch_points is not None:
            extra["batch_points"] = args.batch_points
        dm = PredictScenesDataModule(
            args.scan, num_classes=13, features=["rgb"], block_size=args.block,
            voxel_size=args.voxel, output_dir=out,
            batch_size=args.batch_size, num_workers=args.workers, **extra,
        )  # fmt: skip
        trainer = L.Trainer(
            accelerator="cpu", logger=False, enable_progress_bar=False,
            callbacks=[ScenePredictionWriter()], enable_model_summary=False,
        )  # fmt: skip
        base, base_anon = pss_kib(os.getpid())
        sampler = Sampler()
        sampler.start()
        start = time.perf_counter()
        trainer.predict(task, datamodule=dm)
        seconds = time.perf_counter() - start
        sampler.stop.set()
        sampler.join()
        assert (Path(out) / "scene.ply").is_file()
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss if args.workers else 0
    n = args.points[0]
    batches = trainer.predict_loop.batch_progress.total.completed
    print(json.dumps({
        "batches": batches,
        "points_per_s": n / seconds, "seconds": seconds,
        "peak_pss_mib": sampler.peak / 1024, "peak_anon_mib": sampler.peak_anon / 1024,
        "bytes_per_point": (sampler.peak - base) * 1024 / n,
        "anon_bytes_per_point": (sampler.peak_anon - base_anon) * 1024 / n,
        "rss_main_mib": own / 1024, "rss_worker_mib": workers / 1024,
    }))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, nargs="+", default=[5_000_000])
    parser.add_argument("--models", nargs="+", default=MODELS, choices=list(SMALL))
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--crop", default="block", choices=["block", "sphere"])
    parser.add_argument("--block", type=float, default=3.0)
    parser.add_argument("--stride", type=float, default=None, help="default: block / 2")
    parser.add_argument("--layout", default="dense", choices=["dense", "sparse"])
    parser.add_argument("--batch_points", type=int, default=None, help="default: the data module's")
    parser.add_argument("--voxel", type=float, default=0.04)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--full", action="store_true", help="the registry's default widths")
    parser.add_argument("--tmp", default=None, help="folder for the scan and the outputs")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--scan", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.workers = args.workers[0]
        child(args)
        return
    print(
        "| layout | model | points | workers | batches | points/s | vs first | seconds "
        "| peak PSS (MiB) | peak anon (MiB) | bytes/point | anon bytes/point | RSS main (MiB) "
        "| RSS worker (MiB) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    first = None
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        for n in args.points:
            scan = Path(tmp) / "scene.npy"
            (write_sparse if args.layout == "sparse" else write_scene)(scan, n)
            for model in args.models:
                for workers in args.workers:
                    cmd = [
                        sys.executable, __file__, "--child", "--model", model, "--scan", str(scan),
                        "--points", str(n), "--workers", str(workers), "--crop", args.crop,
                        "--block", str(args.block),
                        "--voxel", str(args.voxel), "--batch_size", str(args.batch_size),
                        "--threads", str(args.threads),
                    ] + (["--full"] if args.full else []) + (["--tmp", tmp])  # fmt: skip
                    if args.stride is not None:
                        cmd += ["--stride", str(args.stride)]
                    if args.batch_points is not None:
                        cmd += ["--batch_points", str(args.batch_points)]
                    out = subprocess.run(cmd, capture_output=True, text=True)
                    if out.returncode:
                        tail = out.stderr.strip()[-300:].replace("\n", " ")
                        print(
                            f"| {args.layout} | {model} | {n:,} | {workers} | failed: {tail} |",
                            flush=True,
                        )
                        continue
                    r = json.loads(out.stdout.strip().splitlines()[-1])
                    first = first or r["points_per_s"]
                    print(
                        f"| {args.layout} | {model} | {n:,} | {workers} | {r['batches']:,} | "
                        f"{r['points_per_s']:,.0f} | "
                        f"{r['points_per_s'] / first:.2f} | {r['seconds']:.0f} | "
                        f"{r['peak_pss_mib']:,.0f} | {r['peak_anon_mib']:,.0f} | "
                        f"{r['bytes_per_point']:.0f} | {r['anon_bytes_per_point']:.0f} | "
                        f"{r['rss_main_mib']:,.0f} | {r['rss_worker_mib']:,.0f} |",
                        flush=True,
                    )
            scan.unlink()


if __name__ == "__main__":
    main()
