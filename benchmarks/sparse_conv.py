"""One 3x3x3 submanifold sparse convolution (64 -> 64): ours beside Open3D's op.

Run: ``flock /tmp/lpc-bench.lock .venv/bin/python benchmarks/sparse_conv.py``. Sites come
from a room-like scene of surfaces (``common.scene``: floor, walls-like shells, objects),
voxelised at the voxel size that gives about 10k, 100k and 400k sites. For each size it
prints the median forward + backward time of

- ours: ``lightning_pc.nn.sparse.sparse_conv`` on a cached map, and the map build
  (sorted keys + ``searchsorted``, once per stride level in a network);
- Open3D's bundled ``open3d.ml.torch.ops.sparse_conv`` on the same sites, features, weights
  and neighbour lists (CSR by output site, from our map), run in its own environment in the
  same run (``open3d_sparse_peer.py``); and its ``layers.SparseConv``, which builds its own
  neighbour lists (hash-table radius search) on every call;

and the peak memory of one forward + backward: the high-water resident set (``VmHWM``,
reset through ``/proc/self/clear_refs``) above the resident set once the inputs are loaded,
in a fresh subprocess per measurement, after one warm-up step (glibc's mmap threshold fixed
at 128 KiB in both). ``ratio`` is (inputs + that peak) divided by the
bytes every implementation must hold: input and output features, the output gradient, the
input and weight gradients, the weight and its own neighbour map.

spconv, torchsparse and MinkowskiEngine are not installable here (no wheels for this
torch / CPU-only, or need a CUDA compiler): they are listed as n/a.

``--networks`` times a training step (forward + loss + backward) of SparseResNet (8 clouds of
1024 surface points, voxel 0.05) and SparseUNet (a 50k-point scene, voxel 0.05), default
widths, eager against ``torch.compile(model)`` (inductor, after the first compiled step,
whose time is listed apart).

``--device cuda`` times ours alone on the GPU (synchronised; Open3D's CUDA ops need its CUDA
build): the map build and forward + backward, and the peak of one forward + backward above
the inputs from ``torch.cuda.max_memory_allocated``, with the same ratio.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import clouds, median_time, print_table, scene  # noqa: E402

from lightning_pc.nn.sparse import KernelMap, sparse_conv, submanifold_map, voxelize  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_O3D_PYTHON = ROOT / ".venv-o3d" / "bin" / "python"
CHANNELS = 64


def sites_for(target: int, seed: int = 0) -> torch.Tensor:
    """[N, 4] sites of a surface scene with about ``target`` voxels (bisection on the size)."""
    pos = scene(max(4 * target, 40_000), seed=seed)
    lo, hi = 0.001, 1.0
    coords = None
    for _ in range(30):
        mid = (lo * hi) ** 0.5
        x, _ = voxelize(pos, pos[:, :1], None, mid)
        coords = x.coords
        if abs(coords.size(0) - target) < 0.01 * target:
            break
        if coords.size(0) > target:
            lo = mid
        else:
            hi = mid
    assert coords is not None
    return coords


def csr_by_output(kmap: KernelMap) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Open3D's neighbour lists: input index (int32), kernel index (uint8), row splits."""
    ks, ins, outs = [], [], []
    for k in range(kmap.kernel_volume):
        i, o = kmap.pairs(k)
        ks.append(torch.full_like(i, k))
        ins.append(i)
        outs.append(o)
    k, i, o = torch.cat(ks), torch.cat(ins), torch.cat(outs)
    order = torch.argsort(o, stable=True)
    counts = torch.bincount(o, minlength=kmap.num_out)
    splits = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
    return (
        i[order].int().numpy(),
        k[order].to(torch.uint8).numpy(),
        splits.numpy(),
    )


def map_nbytes(kmap: KernelMap) -> int:
    return kmap.nbytes()


def vm(field: str) -> int:
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(field)


def memory_child(path: str, name: str) -> None:
    """Fresh process: peak RSS above the loaded inputs of one forward + backward of ours."""
    data = np.load(path)
    coords = torch.from_numpy(data[f"{name}_coords"])
    feats = torch.from_numpy(data[f"{name}_feats"]).requires_grad_()
    weight = torch.from_numpy(data["weight"]).requires_grad_()
    grad = torch.from_numpy(data[f"{name}_grad"])
    kmap = submanifold_map(coords, 3)
    del data, coords
    sparse_conv(feats, weight, kmap).backward(grad)  # warm-up: code pages, thread pool
    feats.grad = weight.grad = None
    gc.collect()
    base = vm("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    sparse_conv(feats, weight, kmap).backward(grad)
    print(json.dumps({"peak_extra": vm("VmHWM") - base}))


def o3d_env(python: Path) -> dict[str, str]:
    env = dict(os.environ)
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
    return env


def run_json(cmd: list[str], env: dict[str, str] | None = None) -> dict | None:
    env = dict(os.environ if env is None else env)
    # A fixed mmap threshold: every large buffer is mapped and unmapped (no glibc heap
    # growth that a later allocation would reuse unseen), the same for both processes.
    env["MALLOC_MMAP_THRESHOLD_"] = "131072"
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if res.returncode != 0:
        print("subprocess failed:", " ".join(cmd[1:3]), res.stderr.strip().splitlines()[-1:])
        return None
    return json.loads(res.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def fmt_mb(b: float | None) -> str:
    return "n/a" if b is None else f"{b / 2**20:.0f}"


def main_device(args: argparse.Namespace) -> None:
    """Ours alone (on a GPU): map build, forward + backward (synchronised), peak memory
    (on CUDA only)."""
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    name = torch.cuda.get_device_name(device) if cuda else "CPU"
    print(f"torch {torch.__version__}, device {device} ({name})")
    g = torch.Generator().manual_seed(0)
    weight = (torch.randn(27, CHANNELS, CHANNELS, generator=g) / (27 * CHANNELS) ** 0.5).to(device)

    def synced(fn):
        def run() -> None:
            fn()
            if cuda:
                torch.cuda.synchronize(device)

        return run

    rows = []
    for size in args.sizes:
        coords = sites_for(size).to(device)
        n = coords.size(0)
        feats = torch.randn(n, CHANNELS, generator=g).to(device)
        grad = torch.randn(n, CHANNELS, generator=g).to(device)
        t_map = median_time(synced(lambda c=coords: submanifold_map(c, 3)), args.repeat)
        kmap = submanifold_map(coords, 3)
        f = feats.clone().requires_grad_()
        w = weight.clone().requires_grad_()

        def step(f=f, w=w, kmap=kmap, grad=grad) -> None:
            f.grad = w.grad = None
            sparse_conv(f, w, kmap).backward(grad)

        t_ours = median_time(synced(step), args.repeat)
        memory = "n/a"
        if cuda:
            f.grad = w.grad = None
            torch.cuda.synchronize(device)
            base = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
            step()
            torch.cuda.synchronize(device)
            peak = torch.cuda.max_memory_allocated(device) - base
            feat_bytes = n * CHANNELS * 4
            must = 5 * feat_bytes + 2 * weight.numel() * 4 + map_nbytes(kmap)
            inputs = 2 * feat_bytes + weight.numel() * 4 + map_nbytes(kmap)
            memory = f"{fmt_mb(peak)} ({(inputs + peak) / must:.2f})"
        rows.append(
            [
                f"{n:,}",
                f"{kmap.num_pairs / n:.1f}",
                f"{t_ours * 1e3:.1f}",
                f"{t_map * 1e3:.1f}",
                memory,
            ]
        )
        del kmap, f, w
    print_table(
        ["voxels", "pairs/voxel", "ours fwd+bwd ms", "ours map ms", "ours peak MiB (ratio)"], rows
    )


class _Batch:
    """The packed-batch attributes the models read."""

    def __init__(self, pos: torch.Tensor, batch: torch.Tensor, num_clouds: int) -> None:
        self.pos, self.batch, self.x = pos, batch, None
        self.ptr = torch.searchsorted(batch, torch.arange(num_clouds + 1))


def main_networks(args: argparse.Namespace) -> None:
    """Eager against compiled training steps of the sparse networks."""
    import time

    from lightning_pc.models import SparseResNet, SparseUNet

    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, load {load}")
    torch.manual_seed(0)
    pos, batch = clouds(8, 1024)
    room = scene(50_000)
    cases = [
        ("SparseResNet, 8 x 1024 points", SparseResNet(40), _Batch(pos, batch, 8)),
        (
            "SparseUNet, 50k-point scene",
            SparseUNet(13),
            _Batch(room, torch.zeros_like(room[:, 0]).long(), 1),
        ),
    ]
    rows = []
    for name, model, data in cases:
        model.train()
        with torch.no_grad():
            x, _ = voxelize(data.pos, data.pos, data.batch, model.voxel_size)
        sites = x.num_sites

        def step(run=model, model=model, data=data) -> None:
            model.zero_grad(set_to_none=True)
            run(data).float().square().mean().backward()

        t_eager = median_time(step, args.repeat)
        torch._dynamo.reset()
        compiled = torch.compile(model)
        with torch._dynamo.config.patch(capture_dynamic_output_shape_ops=True):
            t0 = time.perf_counter()
            step(compiled)
            t_first = time.perf_counter() - t0
            t_comp = median_time(lambda c=compiled, s=step: s(c), args.repeat, warmup=2)
        rows.append(
            [
                name,
                f"{sites:,}",
                f"{t_eager * 1e3:.0f}",
                f"{t_comp * 1e3:.0f}",
                f"{t_comp / t_eager:.2f}",
                f"{t_first:.0f}",
            ]
        )
    print(f"load average at the end: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print_table(
        [
            "network, batch",
            "voxels",
            "eager fwd+bwd ms",
            "compiled fwd+bwd ms",
            "compiled/eager",
            "first compiled step s",
        ],
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 400_000])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--open3d-python",
        type=Path,
        default=Path(os.environ.get("LPC_OPEN3D_PYTHON", DEFAULT_O3D_PYTHON)),
    )
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (ours alone)")
    parser.add_argument(
        "--ours-only", action="store_true", help="the --device cuda table, on any device"
    )
    parser.add_argument(
        "--networks", action="store_true", help="eager vs compiled sparse networks' steps"
    )
    parser.add_argument("--memory-child", nargs=2, metavar=("NPZ", "NAME"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(*args.memory_child)
        return
    if args.networks:
        main_networks(args)
        return
    if args.device != "cpu" or args.ours_only:
        main_device(args)
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(27, CHANNELS, CHANNELS, generator=g) / (27 * CHANNELS) ** 0.5
    arrays: dict[str, np.ndarray] = {"weight": weight.numpy()}
    rows_info = []
    names = []
    for size in args.sizes:
        name = f"n{size}"
        coords = sites_for(size)
        n = coords.size(0)
        feats = torch.randn(n, CHANNELS, generator=g)
        grad = torch.randn(n, CHANNELS, generator=g)
        t_map = median_time(lambda c=coords: submanifold_map(c, 3), args.repeat)
        kmap = submanifold_map(coords, 3)
        f = feats.clone().requires_grad_()
        w = weight.clone().requires_grad_()

        def step(f=f, w=w, kmap=kmap, grad=grad) -> None:
            f.grad = w.grad = None
            sparse_conv(f, w, kmap).backward(grad)

        t_ours = median_time(step, args.repeat)
        nbr, kidx, splits = csr_by_output(kmap)
        arrays |= {
            f"{name}_coords": coords.numpy(),
            f"{name}_xyz": coords[:, 1:].numpy(),
            f"{name}_feats": feats.numpy(),
            f"{name}_grad": grad.numpy(),
            f"{name}_nbr": nbr,
            f"{name}_kidx": kidx,
            f"{name}_splits": splits,
        }
        if size <= 20_000:  # the peer checks its output against ours
            with torch.no_grad():
                arrays[f"{name}_out"] = sparse_conv(feats, weight, kmap).numpy()
        feat_bytes = n * CHANNELS * 4
        must = 5 * feat_bytes + 2 * weight.numel() * 4  # x, y, dy, dx, dW + W
        rows_info.append(
            dict(
                name=name,
                n=n,
                pairs=kmap.num_pairs,
                t_map=t_map,
                t_ours=t_ours,
                inputs_ours=2 * feat_bytes + weight.numel() * 4 + map_nbytes(kmap),
                must_ours=must + map_nbytes(kmap),
                inputs_o3d=2 * feat_bytes
                + weight.numel() * 4
                + nbr.nbytes
                + kidx.nbytes
                + splits.nbytes,
                must_o3d=must + nbr.nbytes + kidx.nbytes + splits.nbytes,
            )
        )
        names.append(name)
        del kmap, f, w
        gc.collect()
    arrays["names"] = np.array(json.dumps(names))

    o3d_ok = args.open3d_python.exists()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "cases.npz")
        np.savez(path, **arrays)
        del arrays
        env = o3d_env(args.open3d_python) if o3d_ok else None
        peer_t = None
        if o3d_ok:
            peer = str(Path(__file__).with_name("open3d_sparse_peer.py"))
            peer_t = run_json([str(args.open3d_python), peer, path, "time", str(args.repeat)], env)
        for r in rows_info:
            ours = run_json([sys.executable, __file__, "--memory-child", path, r["name"]])
            r["mem_ours"] = ours["peak_extra"] if ours else None
            o3 = None
            if o3d_ok:
                o3 = run_json([str(args.open3d_python), peer, path, "memory", r["name"]], env)
            r["mem_o3d"] = o3["peak_extra"] if o3 else None
            pt = (peer_t or {}).get(r["name"], {})
            r["t_o3d"], r["t_o3d_layer"] = pt.get("op"), pt.get("layer")
            if "max_abs_diff" in pt:
                print(f"{r['name']}: Open3D output vs ours, max abs diff {pt['max_abs_diff']:.2e}")

    def ms(s: float | None) -> str:
        return "n/a" if s is None else f"{s * 1e3:.0f}"

    def ratio(r: dict, who: str) -> str:
        m = r[f"mem_{who}"]
        return "n/a" if m is None else f"{(r[f'inputs_{who}'] + m) / r[f'must_{who}']:.2f}"

    rows = []
    for r in rows_info:
        speed = "n/a" if r["t_o3d"] is None else f"{r['t_ours'] / r['t_o3d']:.2f}"
        rows.append(
            [
                f"{r['n']:,}",
                f"{r['pairs'] / r['n']:.1f}",
                ms(r["t_ours"]),
                ms(r["t_map"]),
                ms(r["t_o3d"]),
                ms(r["t_o3d_layer"]),
                speed,
                f"{fmt_mb(r['mem_ours'])} ({ratio(r, 'ours')})",
                f"{fmt_mb(r['mem_o3d'])} ({ratio(r, 'o3d')})",
                "n/a",
            ]
        )
    print_table(
        [
            "voxels",
            "pairs/voxel",
            "ours fwd+bwd ms",
            "ours map ms",
            "open3d op fwd+bwd ms",
            "open3d layer (+search) ms",
            "ours/open3d",
            "ours peak MiB (ratio)",
            "open3d peak MiB (ratio)",
            "spconv/torchsparse/ME",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
