"""Training-step time and peak memory: our networks beside the same architectures
assembled from PyG layers on torch-cluster's fps / radius / knn (as PyG's examples did
before 2.8).

    python benchmarks/train_step.py                      # CPU, batch 32 x 1024, 40 classes
    python benchmarks/train_step.py --device cuda --steps 20
    python benchmarks/train_step.py --precision bf16-mixed --only ours   # under autocast
    python benchmarks/train_step.py --scene --batch 2 --steps 1 --rounds 1  # SpUNet, PTv3
    python benchmarks/train_step.py --compile --only ours --batch 16   # + torch.compile rows

``--scene`` times the scene networks instead, SpUNet (``s3dis_sparse_unet``'s 4 cm voxels)
beside Point Transformer V3 (PT-v3m1 base, ``s3dis_ptv3``'s 2 cm grid), on S3DIS-like crops
of ``--points`` (default 24,000) points with colours and 13 per-point classes: room-like
scenes of surfaces (``common.scene``) scaled to about 3 x 2.5 m.

Each row runs in a fresh subprocess, so peak memory is that model's own: on CPU the rise
of the peak resident set size over the resident size just before the first step (glibc
``ru_maxrss``), on CUDA ``torch.cuda.max_memory_allocated``. A step is zero_grad, forward,
cross-entropy, backward and an SGD update; the first two steps are warm-up, the median of
the rest is reported. The implementations of a model run in alternating order over
``--rounds`` rounds (timings pooled, peak memory the largest), so that load from other
processes on a shared machine weighs on both alike. Clouds are points sampled on the
surfaces of random spheres, boxes, tori and cylinders (random sizes and rotations), scaled
into the unit ball. ``--precision bf16-mixed`` / ``16-mixed`` runs forward and loss under
``torch.autocast`` in that dtype, as Lightning does (float16 with a gradient scaler).
``--compile`` adds a row per model with ``torch.compile(model)`` (inductor, default mode;
compilation happens in the two warm-up steps, whose time is printed separately; the same
batch is repeated, so no recompilation is timed: real training, with clouds of varying
sizes, recompiles or runs dynamic shapes on top).
Without torch-cluster the PyG rows are left out.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

MODELS = {
    "PointNet++ SSG": ["pyg", "ours", "ours (torch BN)"],
    "DGCNN": ["pyg", "ours", "ours (packed kNN)"],
}
SCENE_MODELS = {"SpUNet": ["ours"], "PTv3": ["ours"]}


# ----------------------------------------------------------------------------- data
def surface_cloud(n: int, g: torch.Generator) -> torch.Tensor:
    kind = int(torch.randint(0, 4, (1,), generator=g))
    u = torch.rand(n, 2, generator=g)
    if kind == 0:  # ellipsoid surface
        p = torch.randn(n, 3, generator=g)
        p = p / p.norm(dim=1, keepdim=True) * (0.5 + torch.rand(3, generator=g))
    elif kind == 1:  # box surface
        size = 0.3 + torch.rand(3, generator=g)
        face = torch.randint(0, 6, (n,), generator=g)
        p = (torch.rand(n, 3, generator=g) * 2 - 1) * size
        axis = face // 2
        p[torch.arange(n), axis] = ((face % 2) * 2 - 1).float() * size[axis]
    elif kind == 2:  # torus
        t, s = u[:, 0] * 2 * math.pi, u[:, 1] * 2 * math.pi
        big, small = (
            0.6 + 0.3 * float(torch.rand(1, generator=g)),
            0.1 + 0.2 * float(torch.rand(1, generator=g)),
        )
        r = big + small * torch.cos(s)
        p = torch.stack([r * torch.cos(t), r * torch.sin(t), small * torch.sin(s)], 1)
    else:  # cylinder side
        t = u[:, 0] * 2 * math.pi
        rad, h = (
            0.2 + 0.5 * float(torch.rand(1, generator=g)),
            0.3 + float(torch.rand(1, generator=g)),
        )
        p = torch.stack([rad * torch.cos(t), rad * torch.sin(t), (u[:, 1] - 0.5) * 2 * h], 1)
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=g))
    p = p @ q
    p = p - p.mean(0)
    return p / p.norm(dim=1).max()


def make_scene_batch(batch_size: int, points: int, num_classes: int, device: str):
    from common import scene
    from torch_geometric.data import Batch, Data

    g = torch.Generator().manual_seed(0)
    data = [
        Data(
            pos=scene(points, seed=i) * 0.5,
            x=torch.rand(points, 3, generator=g),
            y=torch.randint(0, num_classes, (points,), generator=g),
        )
        for i in range(batch_size)
    ]
    return Batch.from_data_list(data).to(device)


def make_batch(batch_size: int, points: int, num_classes: int, device: str):
    from torch_geometric.data import Batch, Data

    g = torch.Generator().manual_seed(0)
    data = [
        Data(pos=surface_cloud(points, g), y=torch.randint(0, num_classes, (1,), generator=g))
        for _ in range(batch_size)
    ]
    return Batch.from_data_list(data).to(device)


# ----------------------------------------------------------------------------- PyG models
def pyg_pointnet2(num_classes: int) -> torch.nn.Module:
    import torch_cluster
    from torch_geometric.nn import MLP, PointNetConv, global_max_pool

    class SA(torch.nn.Module):
        def __init__(self, ratio: float, r: float, k: int, channels: list[int]) -> None:
            super().__init__()
            self.ratio, self.r, self.k = ratio, r, k
            local = MLP(channels, norm="batch_norm", plain_last=False)
            self.conv = PointNetConv(local, add_self_loops=False)

        def forward(self, x, pos, batch):
            idx = torch_cluster.fps(pos, batch, ratio=self.ratio)
            row, col = torch_cluster.radius(
                pos, pos[idx], self.r, batch, batch[idx], max_num_neighbors=self.k
            )
            edge_index = torch.stack([col, row], dim=0)
            x_dst = None if x is None else x[idx]
            return self.conv((x, x_dst), (pos, pos[idx]), edge_index), pos[idx], batch[idx]

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.sa1 = SA(0.5, 0.2, 32, [3, 64, 64, 128])
            self.sa2 = SA(0.25, 0.4, 64, [128 + 3, 128, 128, 256])
            self.sa3 = MLP([256 + 3, 256, 512, 1024], norm="batch_norm", plain_last=False)
            self.head = MLP([1024, 512, 256, num_classes], dropout=0.5, norm="batch_norm")

        def forward(self, data):
            x, pos, batch = self.sa1(None, data.pos, data.batch)
            x, pos, batch = self.sa2(x, pos, batch)
            x = global_max_pool(self.sa3(torch.cat([x, pos], 1)), batch)
            return self.head(x)

    return Net()


def pyg_dgcnn(num_classes: int, k: int = 20) -> torch.nn.Module:
    import torch_cluster
    from torch_geometric.nn import MLP, EdgeConv, global_max_pool, global_mean_pool

    act = dict(act="leaky_relu", act_kwargs={"negative_slope": 0.2}, norm="batch_norm")

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            widths = [(3, 64), (64, 64), (64, 128), (128, 256)]
            self.convs = torch.nn.ModuleList(
                EdgeConv(MLP([2 * a, b], bias=False, plain_last=False, **act), aggr="max")
                for a, b in widths
            )
            self.lin = MLP([512, 1024], bias=False, plain_last=False, **act)
            self.head = MLP([2048, 512, 256, num_classes], dropout=0.5, **act)

        def forward(self, data):
            h, batch, outs = data.pos, data.batch, []
            for conv in self.convs:
                row, col = torch_cluster.knn(h, h, k, batch, batch)
                h = conv(h, torch.stack([col, row], dim=0))
                outs.append(h)
            h = self.lin(torch.cat(outs, 1))
            g = torch.cat([global_max_pool(h, batch), global_mean_pool(h, batch)], 1)
            return self.head(g)

    return Net()


def build(model: str, impl: str, num_classes: int) -> torch.nn.Module:
    from lightning_pc.models import create_model

    if model == "SpUNet":
        return create_model("sparse_unet", num_classes, in_channels=3, voxel_size=0.04)
    if model == "PTv3":
        return create_model("ptv3", num_classes, in_channels=3, grid_size=0.02)
    if model == "PointNet++ SSG":
        return (
            pyg_pointnet2(num_classes)
            if impl == "pyg"
            else create_model("pointnet2_ssg", num_classes)
        )
    if impl == "pyg":
        return pyg_dgcnn(num_classes)
    knn = "packed" if "packed" in impl else "padded"
    return create_model("dgcnn", num_classes, knn=knn)


# ----------------------------------------------------------------------------- measuring
def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def worker(args: argparse.Namespace) -> None:
    if "torch BN" in args.impl:  # ablation: lightning_pc.nn.fused switched off
        os.environ["LIGHTNING_PC_FUSED"] = "off"
    torch.manual_seed(0)
    device = args.device
    data = (make_scene_batch if args.scene else make_batch)(
        args.batch, args.points, args.classes, device
    )
    model = build(args.model, args.impl, args.classes).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    if "compiled" in args.impl:
        model = torch.compile(model)
    params = sum(p.numel() for p in model.parameters())
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() / 2**20
    else:
        base = rss_mib()
    dtype = {"32": None, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}[args.precision]
    scaler = torch.amp.GradScaler(device, enabled=dtype is torch.float16)
    times = []
    for _ in range(args.steps + 2):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        autocast = (
            torch.autocast(device, dtype=dtype) if dtype is not None else contextlib.nullcontext()
        )
        with autocast:
            loss = F.cross_entropy(model(data).float(), data.y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20 - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base
    print(
        json.dumps(
            {"times": times[2:], "warmup": sum(times[:2]), "peak_mib": peak, "params": params}
        )
    )


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=None, help="32 (2 with --scene)")
    p.add_argument("--points", type=int, default=None, help="1024 (24000 with --scene)")
    p.add_argument("--classes", type=int, default=None, help="40 (13 with --scene)")
    p.add_argument("--scene", action="store_true", help="SpUNet and PTv3 on scene crops")
    p.add_argument("--steps", type=int, default=3, help="timed steps per round")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--only", default="", help="substring filter on 'model impl'")
    p.add_argument(
        "--precision",
        default="32",
        choices=["32", "bf16-mixed", "16-mixed"],
        help="autocast dtype of forward and loss (Lightning's names)",
    )
    p.add_argument("--compile", action="store_true", help="add torch.compile(model) rows (ours)")
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--impl", help=argparse.SUPPRESS)
    args = p.parse_args()
    for key, shapes, scenes in (("batch", 32, 2), ("points", 1024, 24000), ("classes", 40, 13)):
        if getattr(args, key) is None:
            setattr(args, key, scenes if args.scene else shapes)
    if args.model:
        worker(args)
        return
    print(
        f"device {args.device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"batch {args.batch} x {args.points} points, {args.classes} classes, "
        f"median of {args.rounds} x {args.steps} steps (2 warm-up steps per run), "
        f"precision {args.precision}"
    )
    has_tc = importlib.util.find_spec("torch_cluster") is not None
    if not has_tc:
        print("torch-cluster is not installed: the PyG rows (which use it) are left out")
    print(
        f"| {'model':<15} | {'implementation':<18} | {'params':>9} | {'step (s)':>8} | {'peak (MiB)':>10} | {'speed-up':>8} |"
    )
    print(f"|{'-' * 17}|{'-' * 20}|{'-' * 11}|{'-' * 10}|{'-' * 12}|{'-' * 10}|")
    for model, impls in (SCENE_MODELS if args.scene else MODELS).items():
        impls = [*impls, "ours (compiled)"] if args.compile and not args.scene else impls
        impls = [i for i in impls if not args.only or args.only in f"{model} {i}"]
        impls = [i for i in impls if has_tc or i != "pyg"]
        times: dict[str, list[float]] = {i: [] for i in impls}
        peaks: dict[str, float] = {}
        params: dict[str, int] = {}
        warmups: dict[str, float] = {}
        for rnd in range(args.rounds):
            for impl in impls if rnd % 2 == 0 else impls[::-1]:
                res = subprocess.run(worker_cmd(args, model, impl), capture_output=True, text=True)
                if res.returncode != 0:
                    print(f"| {model} | {impl} | failed: {res.stderr.strip().splitlines()[-1:]} |")
                    continue
                r = json.loads(res.stdout.strip().splitlines()[-1])
                times[impl] += r["times"]
                peaks[impl] = max(peaks.get(impl, 0.0), r["peak_mib"])
                params[impl] = r["params"]
                warmups[impl] = max(warmups.get(impl, 0.0), r["warmup"])
        ref = statistics.median(times["pyg"]) if times.get("pyg") else None
        for impl, ts in times.items():
            if not ts:
                continue
            med = statistics.median(ts)
            speed = f"{ref / med:.2f}x" if ref else ""
            print(
                f"| {model:<15} | {impl:<18} | {params[impl]:>9,} | {med:>8.3f} | "
                f"{peaks[impl]:>10.0f} | {speed:>8} |",
                flush=True,
            )
        for impl in (i for i in times if "compiled" in i and times[i]):
            print(f"  ({model}, {impl}: the two warm-up steps took {warmups[impl]:.0f} s)")


def worker_cmd(args: argparse.Namespace, model: str, impl: str) -> list[str]:
    opts = {"--model": model, "--impl": impl, "--device": args.device, "--batch": args.batch}
    opts.update({"--points": args.points, "--classes": args.classes, "--steps": args.steps})
    opts["--precision"] = args.precision
    return [*_cmd(opts), *(["--scene"] if args.scene else [])]


def _cmd(opts: dict[str, object]) -> list[str]:
    return [sys.executable, __file__, *[str(t) for kv in opts.items() for t in kv]]


if __name__ == "__main__":
    main()
