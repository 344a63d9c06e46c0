"""Data-layer throughput: samples/s from the cache vs parsing the raw files every time.

Run: ``flock /tmp/lpc-bench.lock .venv/bin/python benchmarks/data.py`` (``--quick`` for a
smaller run). Writes synthetic data in the real layouts to a temporary folder:
ModelNet-sized shapes (``modelnet40_normal_resampled`` text, 10,000 points each, and OFF
meshes sampled to 10,000 points) and S3DIS-sized rooms (raw aligned release, ~0.8 M points
per room). Both sides go through the same ``DataLoader`` (2 workers, batch 32 for shapes,
8 for crops, 1 for rooms, our collate) and the same transforms, and the best of several
stretches is reported (the machine is shared); the raw side re-parses its
files for every sample, the cached side reads the memory-mapped cache built once by
``prepare_data`` (its build time is reported too). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler
from torch_geometric.data import Data

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lightning_pc.data import ModelNetDataModule, S3DISDataModule, collate  # noqa: E402
from lightning_pc.data.datasets.base import PointDataset  # noqa: E402
from lightning_pc.data.datasets.modelnet import MODELNET40_CLASSES  # noqa: E402
from lightning_pc.data.datasets.s3dis import CLASS_NAMES, annotation_files, center_shift  # noqa: E402
from lightning_pc.data.io import normalize_vertices, read_off, read_table, sample_mesh  # noqa: E402

WORKERS = 2
Row = tuple[str, float, float, float, float]  # name, raw/s, cache/s, cache CPU us/sample, build s


# --- synthetic data in the real layouts ------------------------------------------------------
def write_resampled(root: Path, shapes: int, points: int = 10000) -> Path:
    rng = np.random.default_rng(0)
    classes = MODELNET40_CLASSES
    root.mkdir(parents=True)
    (root / "modelnet40_shape_names.txt").write_text("\n".join(classes) + "\n")
    ids = []
    for k in range(shapes):
        c = classes[k % len(classes)]
        (root / c).mkdir(exist_ok=True)
        shape_id = f"{c}_{k:04d}"
        p = rng.normal(size=(points, 3))
        p /= np.linalg.norm(p, axis=1, keepdims=True)
        np.savetxt(root / c / f"{shape_id}.txt", np.hstack([p, p]), fmt="%.6f", delimiter=",")
        ids.append(shape_id)
    (root / "modelnet40_train.txt").write_text("\n".join(ids) + "\n")
    (root / "modelnet40_test.txt").write_text("\n".join(ids[:8]) + "\n")
    return root


def write_off(root: Path, shapes: int) -> list[Path]:
    """UV spheres with ~3,000 triangles, like a mid-sized ModelNet mesh."""
    root.mkdir(parents=True)
    u, v = np.meshgrid(np.linspace(0, np.pi, 40), np.linspace(0, 2 * np.pi, 40), indexing="ij")
    verts = np.stack([np.sin(u) * np.cos(v), np.sin(u) * np.sin(v), np.cos(u)], -1).reshape(-1, 3)
    idx = np.arange(40 * 40).reshape(40, 40)
    a, b, c, d = idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]
    faces = np.concatenate(
        [np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)]
    )
    body = "\n".join(" ".join(f"{x:.5f}" for x in row) for row in verts * 100)
    fbody = "\n".join("3 " + " ".join(map(str, f)) for f in faces)
    files = []
    for k in range(shapes):
        path = root / f"shape_{k:04d}.off"
        path.write_text(f"OFF\n{len(verts)} {len(faces)} 0\n{body}\n{fbody}\n")
        files.append(path)
    return files


def write_rooms(root: Path, rooms: int, points: int) -> Path:
    rng = np.random.default_rng(1)
    for r in range(rooms):
        area = "Area_5" if r == 0 else f"Area_{1 + r % 4}"
        ann = root / area / f"office_{r}" / "Annotations"
        ann.mkdir(parents=True)
        for cls in CLASS_NAMES:
            n = points // len(CLASS_NAMES)
            xyz = rng.uniform(0, 1, (n, 3)) * [8.0, 6.0, 3.0]
            rows = np.hstack([xyz, rng.integers(0, 256, (n, 3))])
            np.savetxt(ann / f"{cls}_1.txt", rows, fmt="%.3f %.3f %.3f %d %d %d")
    return root


# --- raw-parse baselines (what a loader without a cache does per sample) ----------------------
class RawResampled(PointDataset):
    def __init__(self, files: list[Path], num_points: int, transform) -> None:
        super().__init__(transform)
        self.files, self.num_points = files, num_points

    def __len__(self) -> int:
        return len(self.files)

    def raw_sample(self, index: int, generator: torch.Generator) -> Data:
        arr = read_table(self.files[index], 6, delimiter=",")
        rows = torch.randperm(len(arr), generator=generator)[: self.num_points].sort().values
        return Data(pos=torch.from_numpy(arr[rows.numpy(), :3]), y=torch.tensor([0]))


class RawOff(PointDataset):
    def __init__(self, files: list[Path], num_points: int, transform) -> None:
        super().__init__(transform)
        self.files, self.num_points = files, num_points

    def __len__(self) -> int:
        return len(self.files)

    def raw_sample(self, index: int, generator: torch.Generator) -> Data:
        mesh = read_off(self.files[index])
        mesh.vertices = normalize_vertices(mesh.vertices)
        pos, _ = sample_mesh(mesh, 10000, np.random.default_rng(index))
        rows = torch.randperm(len(pos), generator=generator)[: self.num_points].sort().values
        return Data(pos=torch.from_numpy(pos[rows.numpy()]), y=torch.tensor([0]))


class RawRooms(PointDataset):
    """Parse every annotation file of a room per sample; optionally crop like S3DISCrops."""

    def __init__(self, rooms: list[Path], transform, block: float | None) -> None:
        super().__init__(transform)
        self.rooms, self.block = rooms, block

    def __len__(self) -> int:
        return len(self.rooms)

    def raw_sample(self, index: int, generator: torch.Generator) -> Data:
        parts = [read_table(f, 6) for f in annotation_files(self.rooms[index])]
        labels = np.concatenate([np.full(len(p), i) for i, p in enumerate(parts)])
        arr = np.concatenate(parts)
        if self.block:
            c = arr[int(torch.randint(len(arr), (1,), generator=generator))]
            keep = (np.abs(arr[:, 0] - c[0]) <= self.block / 2) & (
                np.abs(arr[:, 1] - c[1]) <= self.block / 2
            )
            arr, labels = arr[keep], labels[keep]
        pos = center_shift(torch.from_numpy(np.ascontiguousarray(arr[:, :3])))
        return Data(
            pos=pos, x=torch.from_numpy(arr[:, 3:] / 255.0).float(), y=torch.from_numpy(labels)
        )


# --- timing -----------------------------------------------------------------------------------
def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of processes, from ``/proc`` (Linux)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
    return total / os.sysconf("SC_CLK_TCK")


def rate(dataset: Dataset, batch_size: int, samples: int, repeats: int = 5) -> tuple[float, float]:
    """Samples/s through a 2-worker DataLoader, and CPU microseconds per sample.

    The rate is the best of ``repeats`` stretches of ``samples`` samples each, after two
    warm-up batches (the machine is shared, so the best stretch is the least disturbed one).
    The CPU cost (workers + main process, over all stretches) does not depend on how busy
    the machine is: ``cores / cost`` is the rate an otherwise idle machine would reach.
    """
    per = max(1, samples // batch_size)
    total = (per * repeats + 2) * batch_size
    sampler = RandomSampler(dataset, replacement=True, num_samples=total)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=WORKERS,
        collate_fn=collate,
        prefetch_factor=4,
    )
    it = iter(loader)
    for _ in range(2):
        next(it)
    pids = [w.pid for w in it._workers]  # type: ignore[attr-defined]
    cpu0, main0, count = _cpu_seconds(pids), time.process_time(), 0
    best = 0.0
    for _ in range(repeats):
        n, start = 0, time.perf_counter()
        for _ in range(per):
            n += next(it).num_graphs
        best = max(best, n / (time.perf_counter() - start))
        count += n
    cpu = _cpu_seconds(pids) - cpu0 + time.process_time() - main0
    return best, 1e6 * cpu / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller data, shorter runs")
    parser.add_argument(
        "--workdir",
        default=None,
        help="data folder, kept and reused if it exists (default: a temp dir)",
    )
    parser.add_argument(
        "--only", choices=["modelnet", "s3dis"], default=None, help="run one half of the table"
    )
    parser.add_argument(
        "--write-only",
        action="store_true",
        help="only write the data (run this outside the benchmark lock)",
    )
    args = parser.parse_args()
    shapes, rooms, room_points = (32, 3, 300_000) if args.quick else (64, 4, 800_000)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="lpc-bench-data-"))
    torch.manual_seed(0)
    rows: list[Row] = []
    try:
        t0 = time.perf_counter()
        resampled, s3dis = work / "modelnet40_normal_resampled", work / "s3dis"
        if not (work / "done").is_file():
            write_resampled(resampled, shapes)
            write_off(work / "off", shapes)
            write_rooms(s3dis, rooms, room_points)
            (work / "done").write_text("")
            print(f"wrote benchmark data to {work} in {time.perf_counter() - t0:.0f} s", flush=True)
        if args.write_only:
            return
        offs = sorted((work / "off").glob("*.off"))
        shutil.rmtree(work / "cache", ignore_errors=True)  # time the build from scratch

        if args.only != "s3dis":
            rows += bench_modelnet(resampled, offs, work, args.quick)
        if args.only != "modelnet":
            rows += bench_s3dis(s3dis, work, args.quick, room_points)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    print_table(rows)


def bench_modelnet(resampled: Path, offs: list[Path], work: Path, quick: bool) -> list[Row]:
    dm = ModelNetDataModule(
        str(resampled), 40, num_points=1024, num_workers=WORKERS, cache_dir=str(work / "cache")
    )
    t0 = time.perf_counter()
    dm.prepare_data()
    build = time.perf_counter() - t0
    dm.setup("fit")
    cached = dm.datasets["train"]
    transform = cached.transform
    files = [resampled / n for n in cached.names]
    cache_rate, cache_cpu = rate(cached, 32, 4000 if not quick else 2000)
    raw_rate, _ = rate(RawResampled(files, 1024, transform), 32, 64, 3)
    raw_off, _ = rate(RawOff(offs, 1024, transform), 32, 64, 3)
    nan = float("nan")
    return [
        ("ModelNet-sized, resampled txt (10k pts -> 1024)", raw_rate, cache_rate, cache_cpu, build),
        ("ModelNet-sized, OFF mesh (sample 10k -> 1024)", raw_off, cache_rate, cache_cpu, nan),
    ]


def bench_s3dis(s3dis: Path, work: Path, quick: bool, room_points: int) -> list[Row]:
    sd = S3DISDataModule(
        str(s3dis), test_area=5, num_workers=WORKERS, cache_dir=str(work / "cache")
    )
    t0 = time.perf_counter()
    sd.prepare_data()
    build = time.perf_counter() - t0
    sd.setup("fit")
    crops = sd.datasets["train"]
    room_dirs = [s3dis / crops.store.names[i] for i in crops.indices]
    crop_rate, crop_cpu = rate(crops, 8, 120 if not quick else 48)
    raw_crop, _ = rate(RawRooms(room_dirs, crops.transform, crops.block_size), 2, 4, 3)
    whole = sd.datasets["test"]
    whole.transform = None
    whole_rate, whole_cpu = rate(whole, 1, 20 if not quick else 10)
    raw_whole, _ = rate(RawRooms(room_dirs, None, None), 1, 4, 3)
    m = room_points / 1e6
    return [
        (
            f"S3DIS-sized room ({m:.1f} M pts) -> 3 m crop, voxel 0.04, 24k pts",
            raw_crop,
            crop_rate,
            crop_cpu,
            build,
        ),
        (f"S3DIS-sized whole room ({m:.1f} M pts)", raw_whole, whole_rate, whole_cpu, float("nan")),
    ]


def print_table(rows: list[Row]) -> None:
    cores = len(os.sched_getaffinity(0))
    print(
        f"\n{WORKERS} DataLoader workers, {cores} cores, torch {torch.__version__}, "
        f"load average {os.getloadavg()[0]:.1f}\n"
    )
    print(
        "| sample | raw parse (samples/s) | cache (samples/s) | speed-up | "
        "cache CPU (us/sample) | idle-machine cache rate (samples/s) | cache build (s) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, raw, cached, cpu, build_s in rows:
        b = "" if np.isnan(build_s) else f"{build_s:.1f}"
        idle = min(cores, WORKERS + 1) * 1e6 / cpu
        print(
            f"| {name} | {raw:,.1f} | {cached:,.0f} | {cached / raw:,.0f}x | {cpu:,.0f} | "
            f"{idle:,.0f} | {b} |"
        )


if __name__ == "__main__":
    main()
