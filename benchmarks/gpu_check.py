"""GPU check: the ``gpu`` tests, then the ops, train-step and sparse-conv benchmarks on CUDA,
summed up in one table.

    make gpu-check                       # = python3 benchmarks/gpu_check.py
    python3 benchmarks/gpu_check.py --dry-run
    python3 benchmarks/gpu_check.py --device cpu --quick --stages train_step_fp32,sparse_conv

Written for a fresh GPU machine without network: it installs nothing and needs only torch
with CUDA, lightning, torch-geometric, numba, scipy and pytest (torch-cluster and Open3D are
optional; without torch-cluster our ops run their pure-torch backend on CUDA, and the env
rows say which backend each op takes). The repository root goes on ``PYTHONPATH``, so the
package need not be installed. Each stage runs in its own process group with its own
timeout (killed with its children when it runs over), and the stages' timeouts add up to
under 8 minutes (``--budget``); a stage that fails or times out does not stop the others.

Stages:

- ``env``: Python, torch, CUDA, GPU, driver, nvcc, Triton and the optional packages, and the
  backend our ops choose on the device;
- ``tests``: ``pytest -m gpu`` on the test files that hold ``gpu`` tests;
- ``ops``: ``benchmarks/ops.py --device cuda``;
- ``train_step_fp32`` / ``train_step_bf16``: ``benchmarks/train_step.py --device cuda`` for
  our PointNet++ SSG and DGCNN (batch 32 x 1024), in float32 and under bf16 autocast;
- ``sparse_conv``: ``benchmarks/sparse_conv.py --device cuda``.

Each stage's full output goes to ``--log-dir`` (default: ``$OUT`` when set, as on the
device machine, else none); the summary table is printed last, and written there too as
``summary.md``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"

#: seconds per stage; they add up to 460 s, under the 8 minutes the check must fit in
TIMEOUTS = {
    "env": 40,  # imports only; 20 s was too tight on a loaded machine
    "tests": 150,
    "ops": 70,
    "train_step_fp32": 70,
    "train_step_bf16": 70,
    "sparse_conv": 60,
}
STAGES = tuple(TIMEOUTS)


@dataclass
class Result:
    stage: str
    status: str
    seconds: float
    output: str
    rows: list[tuple[str, str]] = field(default_factory=list)


def gpu_test_files() -> list[str]:
    """Test files (relative to the root) that hold a ``@pytest.mark.gpu`` test."""
    files = []
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        if "pytest.mark.gpu" in path.read_text(encoding="utf-8", errors="replace"):
            files.append(str(path.relative_to(ROOT)))
    return files


def stage_commands(args: argparse.Namespace) -> dict[str, list[str]]:
    """The command of each stage."""
    py, dev = sys.executable, args.device
    train = [py, str(BENCH / "train_step.py"), "--device", dev, "--only", "ours"]
    if args.quick:
        train += ["--batch", "2", "--points", "256", "--steps", "1", "--rounds", "1"]
    else:
        train += ["--steps", "10", "--rounds", "1"]
    sparse = [py, str(BENCH / "sparse_conv.py"), "--device", dev, "--repeat", "5"]
    if args.quick:
        sparse = [*sparse[:-1], "1", "--sizes", "2000"]
    if dev == "cpu":
        sparse.append("--ours-only")
    return {
        "env": [py, str(Path(__file__).resolve()), "--env-child", dev],
        "tests": [
            py,
            "-m",
            "pytest",
            "-m",
            "gpu",
            "-q",
            "-p",
            "no:cacheprovider",
            "--continue-on-collection-errors",
            *gpu_test_files(),
        ],
        "ops": [py, str(BENCH / "ops.py"), "--device", dev, "--repeat", "5"],
        "train_step_fp32": train,
        "train_step_bf16": [*train, "--precision", "bf16-mixed"],
        "sparse_conv": sparse,
    }


def run_stage(name: str, cmd: list[str], timeout: float, env: dict[str, str]) -> Result:
    """Runs ``cmd`` in a new process group; on timeout the whole group is killed."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
        status = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        status = f"timeout ({timeout:.0f} s)"
    return Result(name, status, time.perf_counter() - t0, out or "")


def markdown_rows(text: str) -> list[tuple[str, str]]:
    """``(case, result)`` from every markdown table in a benchmark's output: the case is
    the first cell (the first two when the second is an implementation), the result the
    other cells as ``header=value`` (empty and ``n/a`` cells left out)."""
    rows: list[tuple[str, str]] = []
    header: list[str] | None = None
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if all(set(c) <= set("-: ") for c in cells):
            continue  # the separator line
        if header is None:
            header = cells
            continue
        lead = 2 if len(header) > 1 and header[1] == "implementation" else 1
        case = " / ".join(cells[:lead])
        result = ", ".join(
            f"{h}={v}"
            for h, v in zip(header[lead:], cells[lead:], strict=False)
            if v and v not in ("n/a", "-")
        )
        rows.append((case, result))
    return rows


def pytest_rows(text: str) -> list[tuple[str, str]]:
    """The summary line and each failure or error of a pytest run."""
    rows = []
    for line in text.splitlines():
        if line.startswith(("FAILED ", "ERROR ")):
            kind, _, rest = line.partition(" ")
            rows.append((kind.lower(), rest[:160]))
    summary = [ln.strip("= ") for ln in text.splitlines() if re.search(r" in [\d.]+s", ln)]
    rows.append(("summary", summary[-1] if summary else "(no pytest summary line)"))
    return rows


def env_rows(text: str) -> list[tuple[str, str]]:
    rows = []
    for line in text.splitlines():
        key, sep, value = line.partition(": ")
        if sep and key and not key.startswith((" ", "|")):
            rows.append((key, value))
    return rows


def env_child(device: str) -> None:
    """Prints ``key: value`` lines about the machine (the ``env`` stage)."""
    import torch

    print(f"python: {platform.python_version()} ({sys.executable})")
    print(f"torch: {torch.__version__}, CUDA {torch.version.cuda}")
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        print(
            f"gpu: {torch.cuda.device_count()} x {props.name}, "
            f"{props.total_memory / 2**30:.0f} GiB, capability {props.major}.{props.minor}"
        )
    else:
        print("gpu: none visible to torch")
    smi = shutil.which("nvidia-smi")
    if smi:
        q = "--query-gpu=driver_version,clocks.sm,temperature.gpu,utilization.gpu"
        res = subprocess.run([smi, q, "--format=csv,noheader"], capture_output=True, text=True)
        print(f"nvidia-smi: driver, SM clock, temperature, load = {res.stdout.strip()}")
    nvcc = shutil.which("nvcc")
    if nvcc:
        res = subprocess.run([nvcc, "--version"], capture_output=True, text=True)
        print(f"nvcc: {(res.stdout.strip().splitlines() or ['?'])[-1]}")
    else:
        print("nvcc: not found")
    for mod in ("triton", "numba", "lightning", "torch_geometric", "torch_cluster", "open3d"):
        if importlib.util.find_spec(mod) is None:
            print(f"{mod}: not installed")
            continue
        try:
            m = __import__(mod)
            print(f"{mod}: {getattr(m, '__version__', '?')}")
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            print(f"{mod}: fails to import ({type(exc).__name__}: {exc})")
    from lightning_pc.ops._backend import describe

    dev = torch.device(device)
    chosen = describe(dev, "ops")  # every ops kind of the registry, by name
    print(f"ops backends on {dev}: " + ", ".join(f"{k} {v}" for k, v in chosen.items()))
    others = {kind: name for kind, name in describe(dev).items() if kind not in chosen}
    print(f"other implementations on {dev}: " + ", ".join(f"{k} {v}" for k, v in others.items()))
    print(f"cpu threads: {torch.get_num_threads()}")


def format_table(results: list[Result]) -> str:
    lines = ["| stage | status | s | case | result |", "|---|---|---|---|---|"]
    for r in results:
        rows = r.rows or [("", "")]
        for i, (case, result) in enumerate(rows):
            head = f"| {r.stage} | {r.status} | {r.seconds:.0f} |" if i == 0 else "| | | |"
            lines.append(f"{head} {case} | {result} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--device", default="cuda", help="cuda (default), or cpu to try the stages")
    p.add_argument(
        "--stages",
        default=",".join(STAGES),
        help=f"comma-separated subset of {', '.join(STAGES)}",
    )
    p.add_argument(
        "--budget", type=float, default=470.0, help="seconds for all stages (each is cut to it)"
    )
    p.add_argument("--quick", action="store_true", help="tiny benchmark sizes (a smoke test)")
    p.add_argument("--dry-run", action="store_true", help="print the stage commands and exit")
    p.add_argument("--log-dir", type=Path, default=None, help="default: $OUT when set")
    p.add_argument("--env-child", metavar="DEVICE", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.env_child:
        env_child(args.env_child)
        return
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        p.error(f"unknown stage(s) {', '.join(unknown)}; choose from {', '.join(STAGES)}")
    commands = stage_commands(args)
    if args.dry_run:
        for s in stages:
            print(f"{s} (timeout {TIMEOUTS[s]} s): {' '.join(commands[s])}")
        return
    log_dir = args.log_dir or (Path(os.environ["OUT"]) if os.environ.get("OUT") else None)
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env["PYTHONUNBUFFERED"] = "1"
    start = time.perf_counter()
    results = []
    for s in stages:
        left = args.budget - (time.perf_counter() - start)
        if left < 5:
            results.append(Result(s, "skipped (budget spent)", 0.0, ""))
            continue
        print(f"=== {s}: {' '.join(commands[s])}", flush=True)
        r = run_stage(s, commands[s], min(TIMEOUTS[s], left), env)
        print(r.output, flush=True)
        parse = {"env": env_rows, "tests": pytest_rows}.get(s, markdown_rows)
        r.rows = parse(r.output)
        if not r.rows and r.status != "ok":
            tail = [ln for ln in r.output.splitlines() if ln.strip()][-1:]
            r.rows = [("last line", tail[0][:200] if tail else "(no output)")]
        results.append(r)
        if log_dir is not None:
            (log_dir / f"{s}.log").write_text(r.output, encoding="utf-8")
    table = format_table(results)
    total = time.perf_counter() - start
    print(f"\n## gpu-check on {args.device}: {total:.0f} s in all\n\n{table}")
    if log_dir is not None:
        (log_dir / "summary.md").write_text(table + "\n", encoding="utf-8")
    sys.exit(0 if all(r.status == "ok" for r in results) else 1)


if __name__ == "__main__":
    main()
