"""Neighbour-op speed: lightning_pc.ops beside torch-cluster, Open3D, scipy and fpsample.

Run: ``.venv/bin/python benchmarks/ops.py`` (``--device cuda`` on a GPU machine). Prints,
for each op and size, the median time in milliseconds of our op (automatic backend) and of
each peer installed, measured in this run, and our ratio to the fastest peer and to
torch-cluster (< 1 means we are faster). Peers run with their fastest settings: every
core for torch-cluster (``num_workers``), scipy (``workers=-1``) and Open3D. On a GPU the
inputs live there, every timed call ends with a device synchronisation, and the CPU-only
peers (scipy, fpsample, Open3D's CPU ops) are left out; torch-cluster takes part where its
build has CUDA kernels.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import clouds, fmt_ms, median_time, print_table, scene  # noqa: E402

from lightning_pc import ops  # noqa: E402
from lightning_pc.ops._backend import describe, torch_cluster_has_cuda  # noqa: E402

Peers = dict[str, Callable[[], object] | None]


def _try_import(name: str):
    try:
        return __import__(name, fromlist=["_"])
    except Exception:  # noqa: BLE001 - a peer that fails to import is reported as n/a
        return None


tc = _try_import("torch_cluster")
o3d_ops = _try_import("open3d.ml.torch.ops")
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_O3D_PYTHON = ROOT / ".venv-o3d" / "bin" / "python"
scipy_spatial = _try_import("scipy.spatial")
fpsample = _try_import("fpsample")


def row_splits(batch: torch.Tensor, num: int) -> torch.Tensor:
    counts = torch.bincount(batch, minlength=num)
    return torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])


def per_cloud(pos: torch.Tensor, batch: torch.Tensor, q: torch.Tensor, qbatch: torch.Tensor, fn):
    """Runs a numpy per-cloud search as a user of that library would."""
    xs, qs = pos.numpy(), q.numpy()
    px = row_splits(batch, int(batch.max()) + 1).tolist()
    pq = row_splits(qbatch, int(batch.max()) + 1).tolist()
    return [fn(xs[px[b] : px[b + 1]], qs[pq[b] : pq[b + 1]]) for b in range(len(px) - 1)]


def knn_peers(x, bx, y, by, k: int, threads: int, graph: bool) -> Peers:
    nb = int(bx.max()) + 1
    peers: Peers = {}
    if tc is not None:
        if graph:
            peers["torch-cluster"] = lambda: tc.knn_graph(x, k, bx, num_workers=threads)
        else:
            peers["torch-cluster"] = lambda: tc.knn(x, y, k, bx, by, num_workers=threads)
    if o3d_ops is not None:  # only where Open3D's ops load beside this torch
        rx, ry = row_splits(bx, nb), row_splits(by, nb)
        peers["open3d"] = lambda: o3d_ops.knn_search(
            x, y, k + int(graph), rx, ry, index_dtype=torch.int64
        )
    if scipy_spatial is not None:
        kk = k + int(graph)
        peers["scipy cKDTree"] = lambda: per_cloud(
            x, bx, y, by, lambda a, q: scipy_spatial.cKDTree(a).query(q, k=kk, workers=-1)
        )
    return peers


def radius_peers(x, bx, y, by, r: float, max_nn: int, threads: int) -> Peers:
    nb = int(bx.max()) + 1
    peers: Peers = {}
    if tc is not None:
        peers["torch-cluster"] = lambda: tc.radius(x, y, r, bx, by, max_nn, num_workers=threads)
    if o3d_ops is not None:
        rx, ry = row_splits(bx, nb), row_splits(by, nb)
        peers["open3d"] = lambda: o3d_ops.fixed_radius_search(
            x, y, r, rx, ry, index_dtype=torch.int64
        )
    if scipy_spatial is not None:
        peers["scipy cKDTree"] = lambda: per_cloud(
            x,
            bx,
            y,
            by,
            lambda a, q: scipy_spatial.cKDTree(a).query(
                q, k=max_nn, distance_upper_bound=r, workers=-1
            ),
        )
    return peers


def fps_peers(x, bx, ratio: float) -> Peers:
    peers: Peers = {}
    if tc is not None:
        peers["torch-cluster"] = lambda: tc.fps(x, bx, ratio, random_start=False)
    if fpsample is not None:
        nb = int(bx.max()) + 1
        splits = row_splits(bx, nb).tolist()
        xn = x.numpy()

        def run(h: int) -> list[np.ndarray]:
            out = []
            for b in range(nb):
                pts = xn[splits[b] : splits[b + 1]]
                m = int(np.ceil(len(pts) * ratio))
                out.append(fpsample.bucket_fps_kdline_sampling(pts, m, h=h, start_idx=0))
            return out

        # fpsample's tree height h trades set-up for pruning: give it its best of 3..9
        for h in (3, 5, 7, 9):
            peers[f"fpsample h={h}"] = lambda h=h: run(h)
    return peers


def open3d_subprocess(
    python: Path, cases: list[dict], arrays: dict, repeat: int
) -> dict[str, float]:
    """Times Open3D's ops in another interpreter (one with a CUDA build of torch)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "cases.npz")
        np.savez(path, cases=json.dumps(cases), **{k: v.numpy() for k, v in arrays.items()})
        env = dict(os.environ)
        try:
            spec = subprocess.run(
                [
                    str(python),
                    "-c",
                    "import nvidia.cuda_runtime as m, os; print(os.path.join(list(m.__path__)[0], 'lib'))",
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if spec.returncode == 0:
                env["LD_LIBRARY_PATH"] = spec.stdout.strip() + ":" + env.get("LD_LIBRARY_PATH", "")
        except OSError:
            return {}
        res = subprocess.run(
            [str(python), str(Path(__file__).with_name("open3d_peer.py")), path, str(repeat)],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if res.returncode != 0:
            print("open3d peer failed:", res.stderr.strip().splitlines()[-1:] or res.returncode)
            return {}
        return json.loads(res.stdout.strip().splitlines()[-1])


def synced(fn: Callable[[], object], device: torch.device) -> Callable[[], object]:
    """``fn`` followed by a synchronisation of ``device`` (asynchronous on a GPU)."""
    if device.type != "cuda":
        return fn

    def run() -> object:
        out = fn()
        torch.cuda.synchronize(device)
        return out

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument(
        "--open3d-python",
        type=Path,
        default=Path(os.environ.get("LPC_OPEN3D_PYTHON", DEFAULT_O3D_PYTHON)),
        help="interpreter of an environment where open3d.ml.torch loads (make bench-peers)",
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, {threads} threads, device {device}")
    if device.type != "cpu":
        global tc, o3d_ops, scipy_spatial, fpsample
        o3d_ops = scipy_spatial = fpsample = None  # CPU-only peers
        if tc is not None and not torch_cluster_has_cuda():
            tc = None
        backends = describe(device, "ops")
        print("our backends on", device, "-", ", ".join(f"{k}: {v}" for k, v in backends.items()))
    print(
        "peers:",
        ", ".join(
            n
            for n, m in [
                ("torch-cluster", tc),
                ("open3d", o3d_ops),
                ("scipy", scipy_spatial),
                ("fpsample", fpsample),
            ]
            if m
        ),
    )

    x16, b16 = clouds(16, 1024, seed=0)
    q16, qb16 = clouds(16, 512, seed=1)
    big = scene(100_000, seed=2)
    b0 = torch.zeros(big.size(0), dtype=torch.long)
    if device.type != "cpu":
        x16, b16, q16, qb16, big, b0 = (t.to(device) for t in (x16, b16, q16, qb16, big, b0))
    cases: list[tuple[str, Callable[[], object], Peers]] = [
        (
            "knn_graph k=20, 16x1024",
            lambda: ops.knn_graph(x16, 20, b16),
            knn_peers(x16, b16, x16, b16, 20, threads, graph=True),
        ),
        (
            "knn k=16, 100k",
            lambda: ops.knn(big, big, 16),
            knn_peers(big, b0, big, b0, 16, threads, graph=False),
        ),
        (
            "radius r=0.2 max 32, 16x512 in 16x1024",
            lambda: ops.radius(x16, q16, 0.2, b16, qb16, 32),
            radius_peers(x16, b16, q16, qb16, 0.2, 32, threads),
        ),
        (
            "fps 16x1024 -> 512",
            lambda: ops.fps(x16, b16, 0.5, random_start=False),
            fps_peers(x16, b16, 0.5),
        ),
        (
            "fps 100k -> 4096",
            lambda: ops.fps(big, None, 4096 / 100_000, random_start=False),
            fps_peers(big, b0, 4096 / 100_000),
        ),
        (
            "grid 100k @ 0.02",
            lambda: ops.grid_cluster(big, 0.02),
            {
                "torch-cluster": (lambda: tc.grid_cluster(big, torch.full((3,), 0.02)))
                if tc
                else None
            },
        ),
    ]
    o3d_times: dict[str, float] = {}
    if o3d_ops is None and args.open3d_python.exists() and device.type == "cpu":
        nb16 = 16
        arrays = {
            "x16": x16,
            "q16": q16,
            "big": big,
            "r16": row_splits(b16, nb16),
            "rq16": row_splits(qb16, nb16),
            "rbig": torch.tensor([0, big.size(0)]),
        }
        o3d_cases = [
            {
                "name": "knn_graph k=20, 16x1024",
                "op": "knn",
                "k": 21,
                "x": "x16",
                "y": "x16",
                "rx": "r16",
                "ry": "r16",
            },
            {
                "name": "knn k=16, 100k",
                "op": "knn",
                "k": 16,
                "x": "big",
                "y": "big",
                "rx": "rbig",
                "ry": "rbig",
            },
            {
                "name": "radius r=0.2 max 32, 16x512 in 16x1024",
                "op": "radius",
                "r": 0.2,
                "x": "x16",
                "y": "q16",
                "rx": "r16",
                "ry": "rq16",
            },
        ]
        o3d_times = open3d_subprocess(args.open3d_python, o3d_cases, arrays, args.repeat)
    elif o3d_ops is None and device.type == "cpu":
        print(
            f"open3d: its torch ops do not load beside a CPU torch and {args.open3d_python} "
            "does not exist (make bench-peers builds it)"
        )
    peer_names = ["torch-cluster", "open3d", "scipy cKDTree", "fpsample"]
    rows = []
    for name, ours, peers in cases:
        t_ours = median_time(synced(ours, device), repeat=args.repeat)
        times = {
            p: (median_time(synced(fn, device), repeat=args.repeat) if fn else None)
            for p, fn in peers.items()
        }
        if name in o3d_times:
            times["open3d"] = o3d_times[name]
        fps_h = {p: t for p, t in times.items() if p.startswith("fpsample") and t is not None}
        if fps_h:
            best = min(fps_h, key=fps_h.get)
            for p in fps_h:
                del times[p]
            times["fpsample"] = fps_h[best]
        valid = {p: t for p, t in times.items() if t is not None}
        fastest = min(valid, key=valid.get) if valid else None
        rows.append(
            [name, fmt_ms(t_ours)]
            + [fmt_ms(times.get(p)) for p in peer_names]
            + [
                f"{fastest}" if fastest else "-",
                f"{t_ours / valid[fastest]:.2f}" if fastest else "-",
                f"{t_ours / valid['torch-cluster']:.2f}" if "torch-cluster" in valid else "-",
            ]
        )
    print()
    print_table(
        ["op (ms, median)", "ours"]
        + peer_names
        + ["fastest peer", "ours/fastest", "ours/torch-cluster"],
        rows,
    )


if __name__ == "__main__":
    main()
