"""Learning curves on real ModelNet10: ours (the shipped config, run as the CLI runs it) beside a
PyG twin of the same architecture fed by a plain DataLoader, epoch by epoch.

    python benchmarks/accuracy.py                          # default, ~30 min on 2 cores
    python benchmarks/accuracy.py --models dgcnn --epochs 1 --train-subset 1000
    python benchmarks/accuracy.py --seeds 0 1 2 --epochs 1 --train-subset 1000   # noise
    python benchmarks/accuracy.py --impls ours --set data.init_args.num_workers=1

What runs, per model (``--models``: ``pointnet2_ssg``, ``dgcnn``) and seed (``--seeds``):

- **ours**: ``configs/modelnet10_<model>.yaml`` parsed and instantiated by the ``lightning-pc``
  CLI classes (:class:`lightning_pc.cli.PointCloudCLI`, ``run=False``) with ``--data.init_args.
  root`` set to ``--root``, ``--trainer.max_epochs`` to ``--epochs`` and ``seed_everything`` to
  the seed, then ``Trainer.fit``: the data module's cache, loaders, transforms and sampler, the
  task's loss, metrics, batch-norm warm-up and the config's optimiser and schedule, validation
  on the test split after every epoch (as the config does; its checkpoints and CSV log go to a
  temporary folder). ``--set key=value`` adds CLI overrides (``trainer.precision=bf16-mixed``).
- **ournet** (ablation, ``--impls ours ournet twin``): our network, built by the CLI as for
  ours, trained by the twin's plain loop below (our collate): tells the network from the rest.
- **twin**: the same architecture from PyG layers on torch-cluster (``benchmarks/
  train_step.py``'s ``pyg_pointnet2`` / ``pyg_dgcnn``), trained by a plain loop: a
  ``torch.utils.data.DataLoader`` (as many workers as ours) over the hdf5 arrays read with
  h5py, PyG's ``Batch`` collate, plain ``torch.nn`` batch norm. It gets the same data order
  (our ``EpochSampler``: a permutation per (seed, epoch)), the same augmentations with the same
  random draws (the config's transforms, each sample's generator seeded as ours), the same
  loss (the task's criterion), optimiser and schedule (the config's, stepped per epoch or per
  step as the config says) and the same ``torch.manual_seed`` before the network is built.

The two run in two processes, one epoch at a time in turn (the order flips every epoch and
every seed), so load from other processes weighs on both alike; the process not training
waits idle. Time per epoch is wall time from the epoch's start to the end of its evaluation
on the 908 test shapes (training + evaluation: what a user waits for); "to X%" is the
cumulative time at the first epoch whose test OA reaches X. ``--train-subset N`` trains on a
fixed random N of the 3,991 training shapes (the same for both), for shorter checks.

``--fit-to 0.9`` instead times the plain ``lightning-pc fit --config configs/modelnet10_<model>
.yaml --data.init_args.root <root>`` (no twin) until test OA reaches 90% (Lightning's
``EarlyStopping`` with ``stopping_threshold``), ``--epochs`` or ``--max-minutes``: wall time
from the command's start, validation and start-up included.

The twin reads the hdf5 layout only. The default (PointNet++ SSG, ours + twin, 3 epochs, one
seed) took 23 min on an otherwise busy 2-core machine (ours ~2.7 min per epoch, the twin ~4.9).
DGCNN is about 3x (ours) and 7x (twin) slower per epoch than PointNet++ on a CPU: use
``--epochs 1 --train-subset 1000`` there.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CONFIGS = {
    "pointnet2_ssg": REPO / "configs" / "modelnet10_pointnet2_ssg.yaml",
    "dgcnn": REPO / "configs" / "modelnet10_dgcnn.yaml",
}
NAMES = {"pointnet2_ssg": "PointNet++ SSG", "dgcnn": "DGCNN"}
THRESHOLDS = (0.80, 0.85, 0.90)
SUBSET_SEED = 12345
PREFIX = "@@ "


# ----------------------------------------------------------------------------- shared parts
def build_cli(args: argparse.Namespace, workdir: str, callbacks: list | None = None) -> Any:
    """Ours, exactly as ``lightning-pc fit --config ...`` builds it (without running)."""
    from lightning_pc.cli import PointCloudCLI

    argv = [
        "--config",
        str(args.config),
        f"--data.init_args.root={args.root}",
        f"--trainer.max_epochs={args.epochs}",
        f"--seed_everything={args.seed}",
        "--trainer.enable_progress_bar=false",
    ]
    argv += [f"--{kv}" for kv in args.set]
    os.chdir(workdir)  # the config's relative runs/ folders land in the temporary folder
    return PointCloudCLI(args=argv, run=False, trainer_defaults={"callbacks": callbacks or []})


def subset_indices(n: int, size: int | None) -> list[int] | None:
    if not size or size >= n:
        return None
    import torch

    g = torch.Generator().manual_seed(SUBSET_SEED)
    return sorted(torch.randperm(n, generator=g)[:size].tolist())


class Subset:
    """Training subset that passes the sampler's ``(index, seed)`` pairs through."""

    def __init__(self, base: Any, indices: list[int]) -> None:
        self.base, self.indices = base, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: Any) -> Any:
        if isinstance(item, tuple):
            return self.base[(self.indices[item[0]], item[1])]
        return self.base[self.indices[item]]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.base, name)


def say(obj: dict[str, Any]) -> None:
    print(PREFIX + json.dumps(obj), flush=True)


def wait_go() -> None:
    line = sys.stdin.readline()
    if line.strip() != "go":
        sys.exit(0)


def class_accuracy(pred: list[int], true: list[int], k: int) -> tuple[float, float]:
    hits = [0] * k
    count = [0] * k
    for p, t in zip(pred, true):
        count[t] += 1
        hits[t] += int(p == t)
    oa = sum(hits) / max(sum(count), 1)
    macc = statistics.mean(h / c for h, c in zip(hits, count) if c)
    return oa, macc


# ----------------------------------------------------------------------------- twin data
def read_hdf5(folder: Path, split: str) -> tuple[Any, Any]:
    """``data [N, P, 3]`` and ``label [N]`` of a split of PointNet's hdf5 layout, with h5py."""
    import h5py
    import numpy as np

    files = [
        folder / Path(s.strip()).name for s in (folder / f"{split}_files.txt").read_text().split()
    ]
    data, label = [], []
    for f in files:
        with h5py.File(f, "r") as h5:
            data.append(np.asarray(h5["data"], np.float32))
            label.append(np.asarray(h5["label"]).reshape(-1).astype(np.int64))
    return np.concatenate(data), np.concatenate(label)


class ArraysDataset:
    """The twin's dataset: clouds from in-memory arrays as PyG ``Data``, with the same draws as
    our ``PackedDataset`` for a ``(index, sample_seed)`` from the ``EpochSampler`` (the random
    subset of ``num_points`` in training, the first ones in evaluation, then the transform,
    all from the sample's generator)."""

    def __init__(
        self, data: Any, label: Any, transform: Any, num_points: int | None, train: bool
    ) -> None:
        self.data, self.label, self.transform = data, label, transform
        self.k, self.train = num_points, train

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, item: Any) -> Any:
        import numpy as np
        import torch
        from torch_geometric.data import Data

        from lightning_pc.data.datasets.base import _numpy_rng
        from lightning_pc.data.seeding import sample_generator

        index, seed = item if isinstance(item, tuple) else (item, 0)
        g = sample_generator(0, seed)
        cloud = self.data[index]
        n = len(cloud)
        if self.k is not None and n > self.k:
            if self.train:  # our sampler's draw (a random subset of k)
                rng = _numpy_rng(int(torch.randint(0, 1 << 62, (1,), generator=g)))
                cloud = cloud[rng.choice(n, self.k, replace=False)]
            else:
                cloud = cloud[: self.k]
        d = Data(
            pos=torch.from_numpy(np.ascontiguousarray(cloud)), y=torch.tensor([self.label[index]])
        )
        return self.transform(d, g) if self.transform is not None else d


# ----------------------------------------------------------------------------- ours
def run_ours(args: argparse.Namespace, workdir: str) -> None:
    import lightning as L

    class Turns(L.Callback):
        def __init__(self) -> None:
            self.t0 = 0.0

        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            say({"event": "ready", "epoch": trainer.current_epoch})
            wait_go()
            self.t0 = time.perf_counter()

        def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
            if trainer.sanity_checking:
                return
            m = trainer.callback_metrics
            say(
                {
                    "event": "epoch",
                    "epoch": trainer.current_epoch,
                    "seconds": time.perf_counter() - self.t0,
                    "oa": float(m["val/acc"]),
                    "macc": float(m["val/macc"]),
                    "lr": trainer.optimizers[0].param_groups[0]["lr"],
                }
            )

    cli = build_cli(args, workdir, [Turns()])
    dm = cli.datamodule
    size = args.train_subset
    build = dm.build_datasets

    def subset_build(stage: Any) -> Any:
        out = build(stage)
        if "train" in out:
            idx = subset_indices(len(out["train"]), size)
            if idx is not None:
                out["train"] = Subset(out["train"], idx)
        return out

    dm.build_datasets = subset_build
    say({"event": "info", "params": sum(p.numel() for p in cli.model.parameters())})
    cli.trainer.fit(cli.model, datamodule=dm)
    say({"event": "done"})


# ----------------------------------------------------------------------------- twin
def run_twin(args: argparse.Namespace, workdir: str) -> None:
    import torch
    from lightning.pytorch.cli import instantiate_class
    from torch.utils.data import DataLoader
    from torch_geometric.data import Batch

    from lightning_pc.data.datasets.modelnet import detect_layout
    from lightning_pc.data.sampler import EpochSampler

    sys.path.insert(0, str(HERE))
    from train_step import pyg_dgcnn, pyg_pointnet2

    cli = build_cli(args, workdir)
    dm, task = cli.datamodule, cli.model
    layout, folder = detect_layout(Path(args.root), dm.num_classes)
    if layout != "hdf5":
        raise SystemExit(f"the twin reads the hdf5 layout only; {args.root} holds {layout}")

    train_set: Any = ArraysDataset(
        *read_hdf5(folder, "train"), dm.train_transform(), dm.num_points, True
    )
    idx = subset_indices(len(train_set), args.train_subset)
    if idx is not None:
        train_set = Subset(train_set, idx)
    test_set = ArraysDataset(*read_hdf5(folder, "test"), dm.eval_transform(), dm.num_points, False)
    sampler = EpochSampler(train_set, seed=args.seed)
    workers = dm.num_workers
    loader_kw: dict[str, Any] = dict(
        collate_fn=Batch.from_data_list,
        num_workers=workers,
        persistent_workers=workers > 0,
    )
    train_loader = DataLoader(train_set, batch_size=dm.batch_size, sampler=sampler, **loader_kw)
    test_loader = DataLoader(test_set, batch_size=dm.eval_batch_size or dm.batch_size, **loader_kw)

    if args.worker == "ournet":  # ablation: our network (as the CLI built it) in this loop
        from lightning_pc.data.collate import collate

        net = task.model
        for loader in (train_loader, test_loader):
            loader.collate_fn = collate
    else:
        torch.manual_seed(args.seed)
        net = {"pointnet2_ssg": pyg_pointnet2, "dgcnn": pyg_dgcnn}[args.model](dm.num_classes)
    criterion = task.criterion
    config = cli.config
    interval = "epoch"
    if config.get("optimizer"):
        optimizer = instantiate_class(net.parameters(), config.optimizer.as_dict())
        sched_cfg = config.get("lr_scheduler")
        scheduler = instantiate_class(optimizer, sched_cfg.as_dict()) if sched_cfg else None
    else:  # the task's own optimiser and schedule (DGCNN's SGD + cosine)
        task.model = net
        task.trainer = cli.trainer
        out = task.configure_optimizers()
        if isinstance(out, dict):
            optimizer = out["optimizer"]
            spec = out.get("lr_scheduler")
            scheduler = spec["scheduler"] if isinstance(spec, dict) else spec
            interval = spec.get("interval", "epoch") if isinstance(spec, dict) else "epoch"
        else:
            optimizer, scheduler = out, None
    say({"event": "info", "params": sum(p.numel() for p in net.parameters())})
    for epoch in range(args.epochs):
        say({"event": "ready", "epoch": epoch})
        wait_go()
        t0 = time.perf_counter()
        sampler.set_epoch(epoch)
        net.train()
        for batch in train_loader:
            optimizer.zero_grad(set_to_none=True)
            loss = criterion(net(batch), batch.y)
            loss.backward()
            optimizer.step()
            if scheduler is not None and interval == "step":
                scheduler.step()
        if scheduler is not None and interval == "epoch":
            scheduler.step()
        net.eval()
        pred: list[int] = []
        true: list[int] = []
        with torch.no_grad():
            for batch in test_loader:
                pred += net(batch).argmax(1).tolist()
                true += batch.y.tolist()
        oa, macc = class_accuracy(pred, true, dm.num_classes)
        lr = optimizer.param_groups[0]["lr"]
        say(
            {
                "event": "epoch",
                "epoch": epoch,
                "seconds": time.perf_counter() - t0,
                "oa": oa,
                "macc": macc,
                "lr": lr,
            }
        )
    say({"event": "done"})


# ----------------------------------------------------------------------------- driver
class Worker:
    def __init__(self, args: argparse.Namespace, impl: str, model: str, seed: int) -> None:
        cmd = [sys.executable, __file__, "--worker", impl, "--model", model, "--seed", str(seed)]
        cmd += ["--root", str(args.root), "--epochs", str(args.epochs)]
        cmd += ["--config", str(args.config or CONFIGS[model])]
        if args.train_subset:
            cmd += ["--train-subset", str(args.train_subset)]
        for kv in args.set:
            cmd += ["--set", kv]
        env = dict(
            os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
        )
        self.log = tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True, env=env
        )
        self.impl = impl
        self.params = 0

    def expect(self, event: str) -> dict[str, Any]:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if not line.startswith(PREFIX):
                continue
            msg = json.loads(line[len(PREFIX) :])
            if msg["event"] == "info":
                self.params = msg["params"]
                continue
            if msg["event"] == event:
                return msg
            raise RuntimeError(f"{self.impl}: expected {event}, got {msg}")
        self.log.seek(0)
        tail = "".join(self.log.readlines()[-30:])
        raise RuntimeError(f"{self.impl} worker ended early (exit {self.proc.wait()}):\n{tail}")

    def epoch(self) -> dict[str, Any]:
        self.expect("ready")
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        return self.expect("epoch")

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=120)


def run_pair(args: argparse.Namespace, model: str, seed: int) -> dict[str, list[dict[str, Any]]]:
    workers = {impl: Worker(args, impl, model, seed) for impl in args.impls}
    curves: dict[str, list[dict[str, Any]]] = {impl: [] for impl in args.impls}
    try:
        for epoch in range(args.epochs):
            order = list(args.impls) if (epoch + seed) % 2 == 0 else list(args.impls)[::-1]
            for impl in order:
                r = workers[impl].epoch()
                curves[impl].append(r)
                print(
                    f"  {NAMES[model]} seed {seed} {impl:<4} epoch {epoch + 1}: OA {r['oa']:.4f} "
                    f"mAcc {r['macc']:.4f} lr {r['lr']:.2e} {r['seconds']:.0f} s",
                    flush=True,
                )
        for w in workers.values():
            w.expect("done")
    finally:
        for w in workers.values():
            try:
                w.close()
            except Exception:
                w.proc.kill()
    for impl, w in workers.items():
        curves[impl + ":params"] = w.params  # type: ignore[assignment]
    return curves


def fmt_min(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 60:.1f}"


def report(args: argparse.Namespace, model: str, runs: dict[int, dict[str, Any]]) -> None:
    impls = list(args.impls)
    seeds = list(runs)
    sizes = ", ".join(f"{i} {runs[seeds[0]][i + ':params']:,} params" for i in impls)
    print(f"\n### {NAMES[model]} on ModelNet10 ({sizes})\n")
    head = "| epoch |" + "".join(f" {i} OA | {i} mAcc | {i} min |" for i in impls)
    print(head)
    print("|---:|" + "---:|---:|---:|" * len(impls))
    for e in range(args.epochs):
        row = f"| {e + 1} |"
        for i in impls:
            oas = [runs[s][i][e]["oa"] * 100 for s in seeds]
            maccs = [runs[s][i][e]["macc"] * 100 for s in seeds]
            mins = [sum(r["seconds"] for r in runs[s][i][: e + 1]) / 60 for s in seeds]
            if len(seeds) > 1:
                row += (
                    f" {statistics.mean(oas):.1f} ± {statistics.stdev(oas):.1f} |"
                    f" {statistics.mean(maccs):.1f} ± {statistics.stdev(maccs):.1f} |"
                    f" {statistics.mean(mins):.1f} |"
                )
            else:
                row += f" {oas[0]:.1f} | {maccs[0]:.1f} | {mins[0]:.1f} |"
        print(row)
    if len(seeds) > 1:
        print("\n(mean ± sample std over seeds " + ", ".join(map(str, seeds)) + ")")
        print("\n| seed |" + "".join(f" {i} OA per epoch |" for i in impls))
        print("|---:|" + "---|" * len(impls))
        for s in seeds:
            print(
                f"| {s} |"
                + "".join(
                    " " + " ".join(f"{r['oa'] * 100:.1f}" for r in runs[s][i]) + " |" for i in impls
                )
            )
    if len(seeds) > 1 and "ours" in impls and "twin" in impls:
        # paired by seed (same samples, order and draws): the difference and its spread
        print("\n| epoch | ours - twin OA, per seed | mean ± std |\n|---:|---|---:|")
        for e in range(args.epochs):
            diffs = [(runs[s]["ours"][e]["oa"] - runs[s]["twin"][e]["oa"]) * 100 for s in seeds]
            cells = " ".join(f"{d:+.1f}" for d in diffs)
            print(
                f"| {e + 1} | {cells} | {statistics.mean(diffs):+.1f} ± "
                f"{statistics.stdev(diffs):.1f} |"
            )
    print("\n| time to OA (min) |" + "".join(f" {i} |" for i in impls))
    print("|---|" + "---:|" * len(impls))
    for thr in THRESHOLDS:
        row = f"| {thr:.0%} |"
        for i in impls:
            vals = []
            for s in seeds:
                total, hit = 0.0, None
                for r in runs[s][i]:
                    total += r["seconds"]
                    if r["oa"] >= thr:
                        hit = total
                        break
                vals.append(hit)
            shown = ", ".join(fmt_min(v) for v in vals)
            row += f" {shown} |"
        print(row)
    print(
        "\n| per epoch (s, median) |"
        + "".join(
            f" {i}: {statistics.median(r['seconds'] for s in seeds for r in runs[s][i]):.0f} |"
            for i in impls
        )
    )


def epoch_metrics(path: Path | None) -> dict[int, tuple[float, float]]:
    """Epoch (1-based) -> (val/acc, val/macc) from a CSVLogger ``metrics.csv`` (``{}`` if none)."""
    import csv

    out: dict[int, tuple[float, float]] = {}
    if path is None or not path.is_file():
        return out
    with open(path) as f:
        for row in csv.DictReader(f):
            if row.get("val/acc") and row.get("val/macc"):
                out[int(row["epoch"]) + 1] = (float(row["val/acc"]), float(row["val/macc"]))
    return out


def fit_to_accuracy(args: argparse.Namespace) -> None:
    """Time to accuracy of the plain ``lightning-pc fit`` command (``--fit-to``).

    Runs ``lightning-pc fit --config <config> --data.init_args.root <root>`` (plus Lightning's
    own ``EarlyStopping`` with ``stopping_threshold``, so it stops once test OA reaches the
    target, and no progress bar) in a temporary folder, and reads the epoch and test OA of
    every ``last.ckpt`` the config's checkpoint callback writes at each epoch end, with the
    wall time since the command started (start-up, cache check and validation included)."""
    import signal

    import torch

    model = args.models[0]
    config = Path(args.config) if args.config else CONFIGS[model]
    cmd = [
        str(Path(sys.executable).with_name("lightning-pc")),
        "fit",
        "--config",
        str(config.resolve()),
    ]
    cmd += [f"--data.init_args.root={args.root}", *[f"--{kv}" for kv in args.set]]
    stop = [
        "--trainer.callbacks+=EarlyStopping",
        "--trainer.callbacks.monitor=val/acc",
        "--trainer.callbacks.mode=max",
        f"--trainer.callbacks.stopping_threshold={args.fit_to}",
        "--trainer.callbacks.patience=100000",
        f"--trainer.max_epochs={args.epochs}",
        "--trainer.enable_progress_bar=false",
    ]
    shown = " ".join(Path(c).name if i == 0 else c for i, c in enumerate(cmd))
    print(f"command: {shown}\n  (measured with: {' '.join(stop)})", flush=True)
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    )
    rows: list[tuple[int, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-fit-") as workdir:
        log = open(Path(workdir) / "log.txt", "w")
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd + stop, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        seen = 0.0
        while True:
            done = proc.poll() is not None
            last = next(Path(workdir).glob("runs/*/checkpoints/last.ckpt"), None)
            if last is not None and last.stat().st_mtime != seen:
                seen = last.stat().st_mtime
                now = time.perf_counter() - t0
                time.sleep(1.0)  # written atomically; let the rename settle
                ckpt = torch.load(last, map_location="cpu", weights_only=False)
                state = next(
                    v for k, v in ckpt["callbacks"].items() if k.startswith("ModelCheckpoint")
                )
                oa = float(state["best_model_score"])  # best so far: crosses X when OA does
                rows.append((int(ckpt["epoch"]) + 1, oa, now))
                print(
                    f"  epoch {rows[-1][0]}: best test OA so far {oa:.4f} at {now / 60:.1f} min",
                    flush=True,
                )
            if done:
                break
            if args.max_minutes and time.perf_counter() - t0 > args.max_minutes * 60:
                print(f"  stopped at the {args.max_minutes} min limit", flush=True)
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=300)
                break
            time.sleep(2.0)
        log.close()
        if proc.returncode not in (0, -signal.SIGTERM, 143):
            print((Path(workdir) / "log.txt").read_text()[-3000:])
        curve = epoch_metrics(next(Path(workdir).glob("runs/*/version_*/metrics.csv"), None))
    print(
        "\n| epoch | test OA | test mAcc | best OA so far | wall (min) |\n|---:|---:|---:|---:|---:|"
    )
    for epoch, best, sec in rows:
        oa, macc = curve.get(epoch, (None, None))
        cells = [f"{v * 100:.1f}" if v is not None else "?" for v in (oa, macc)]
        print(f"| {epoch} | {cells[0]} | {cells[1]} | {best * 100:.1f} | {sec / 60:.1f} |")
    hit = next(((e, sec) for e, oa, sec in rows if oa >= args.fit_to), None)
    print(
        f"\nModelNet10 to {args.fit_to:.0%} test OA: "
        + (f"{hit[1] / 60:.1f} min (epoch {hit[0]})" if hit else "not reached")
        + f" on {os.cpu_count()} CPUs; load average at end "
        + " ".join(f"{x:.2f}" for x in os.getloadavg())
    )


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--root",
        default=str(REPO.parent / "shared" / "data" / "modelnet10_1024"),
        help="ModelNet10 (hdf5 layout; default: ../shared/data/modelnet10_1024 beside the repo)",
    )
    p.add_argument("--models", nargs="+", default=["pointnet2_ssg"], choices=sorted(CONFIGS))
    p.add_argument(
        "--impls",
        nargs="+",
        default=["ours", "twin"],
        choices=["ours", "twin", "ournet"],
        help="ournet (ablation): our network, as the CLI builds it, in the twin's plain loop",
    )
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--train-subset", type=int, default=None, help="train on N of the shapes")
    p.add_argument(
        "--config", default=None, help="config of ours (default: configs/modelnet10_<model>.yaml)"
    )
    p.add_argument(
        "--set", action="append", default=[], help="CLI override key=value (ours and twin)"
    )
    p.add_argument(
        "--fit-to",
        type=float,
        default=None,
        help="time the plain `lightning-pc fit` of the model's config to this test OA "
        "(e.g. 0.9; --epochs caps the epochs, --max-minutes the time); no twin",
    )
    p.add_argument("--max-minutes", type=float, default=None)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    args.root = str(Path(args.root).resolve())
    if args.worker:
        args.config = str(Path(args.config).resolve())
        with tempfile.TemporaryDirectory(prefix="bench-accuracy-") as workdir:
            (run_ours if args.worker == "ours" else run_twin)(args, workdir)
        return
    import torch

    if args.fit_to:
        print(
            f"# benchmarks/accuracy.py {' '.join(sys.argv[1:])}\n{os.cpu_count()} CPUs, torch "
            f"{torch.__version__}, load average at start "
            f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}, "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
        )
        fit_to_accuracy(args)
        return
    print(
        f"# benchmarks/accuracy.py {' '.join(sys.argv[1:])}\n"
        f"host {platform.node()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}, load average at start "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n"
        f"data {args.root}; models {args.models}; impls {args.impls}; epochs {args.epochs}; "
        f"seeds {args.seeds}; train subset {args.train_subset or 'all'}; overrides {args.set or 'none'}"
    )
    for model in args.models:
        cfg = Path(args.config) if args.config else CONFIGS[model]
        print(
            f"config of ours: {cfg.relative_to(REPO) if cfg.is_relative_to(REPO) else cfg}",
            flush=True,
        )
        runs = {}
        t0 = time.perf_counter()
        for seed in args.seeds:
            runs[seed] = run_pair(args, model, seed)
        report(args, model, runs)
        print(
            f"\n(total wall time for {NAMES[model]}: {(time.perf_counter() - t0) / 60:.1f} min, "
            f"load average at end {' '.join(f'{x:.2f}' for x in os.getloadavg())})",
            flush=True,
        )


if __name__ == "__main__":
    main()
