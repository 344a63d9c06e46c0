"""benchmarks/gpu_check.py (``make gpu-check``) parses, plans its stages within 8 minutes,
kills a stage that runs over with its children, and runs its stages on the CPU."""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gpu_check", mod)  # dataclasses look their module up there
    spec.loader.exec_module(sys.modules["gpu_check"])
    return sys.modules["gpu_check"]


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("OUT", None)
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=timeout
    )


def test_stages_fit_in_eight_minutes_and_target_cuda() -> None:
    gc = _module()
    assert sum(gc.TIMEOUTS.values()) <= 470 < 8 * 60
    cmds = gc.stage_commands(argparse.Namespace(device="cuda", quick=False))
    assert set(cmds) == set(gc.STAGES)
    for stage in ("ops", "train_step_fp32", "train_step_bf16", "sparse_conv"):
        assert cmds[stage][cmds[stage].index("--device") + 1] == "cuda"
    assert "bf16-mixed" in cmds["train_step_bf16"]
    tests = cmds["tests"]
    assert tests[tests.index("-m", 2) + 1] == "gpu"
    for f in (
        "tests/models/test_cuda.py",
        "tests/ops/test_cuda.py",
        "tests/nn/sparse/test_conv.py",
    ):
        assert f in tests
    # no gpu test file imports torch-cluster, which the GPU machine's image lacks
    for f in gc.gpu_test_files():
        assert "import torch_cluster" not in (ROOT / f).read_text(), f


def test_dry_run_and_bad_stage() -> None:
    res = _run(str(SCRIPT), "--dry-run")
    assert res.returncode == 0, res.stderr
    assert [ln.split(" ")[0] for ln in res.stdout.splitlines()] == list(_module().STAGES)
    res = _run(str(SCRIPT), "--stages", "env,nope")
    assert res.returncode == 2 and "nope" in res.stderr


@pytest.mark.parametrize("bench", ["ops.py", "train_step.py", "sparse_conv.py"])
def test_benchmarks_take_a_device(bench: str) -> None:
    res = _run(str(ROOT / "benchmarks" / bench), "--help")
    assert res.returncode == 0, res.stderr
    assert "--device" in res.stdout


def test_timeout_kills_the_stage_and_its_children() -> None:
    gc = _module()
    code = (
        "import subprocess, sys, time\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    t0 = time.perf_counter()
    r = gc.run_stage("slow", [sys.executable, "-c", code], 3, dict(os.environ))
    assert time.perf_counter() - t0 < 30
    assert r.status == "timeout (3 s)"
    child = int(r.output.split()[0])
    for _ in range(50):  # the orphaned grandchild is reaped by init shortly after the kill
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the stage's child survived the timeout")


def test_table_parsers() -> None:
    gc = _module()
    bench = (
        "device cuda\n"
        "| model | implementation | step (s) | speed-up |\n"
        "|-------|----------------|----------|----------|\n"
        "| DGCNN | ours           | 0.012    |          |\n"
        "\n"
        "| op (ms, median) | ours | torch-cluster |\n"
        "|---|---|---|\n"
        "| knn k=16, 100k | 3.1 | n/a |\n"
    )
    assert gc.markdown_rows(bench) == [
        ("DGCNN / ours", "step (s)=0.012"),
        ("knn k=16, 100k", "ours=3.1"),
    ]
    log = (
        "FAILED tests/ops/test_cuda.py::test_fps_cuda_matches_cpu - AssertionError\n"
        "=========== 1 failed, 9 passed, 1 skipped in 12.34s ===========\n"
    )
    assert gc.pytest_rows(log) == [
        ("failed", "tests/ops/test_cuda.py::test_fps_cuda_matches_cpu - AssertionError"),
        ("summary", "1 failed, 9 passed, 1 skipped in 12.34s"),
    ]


@pytest.mark.slow
def test_runs_its_stages_on_the_cpu(tmp_path: Path) -> None:
    res = _run(
        str(SCRIPT),
        "--device",
        "cpu",
        "--quick",
        "--stages",
        "env,sparse_conv",
        "--log-dir",
        str(tmp_path),
        timeout=300,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    table = res.stdout.split("## gpu-check on cpu")[1]
    assert "| env | ok |" in table and "| sparse_conv | ok |" in table
    assert "ops backends on cpu" in table and "ours fwd+bwd ms=" in table
    assert (tmp_path / "summary.md").read_text().strip() == table.split("\n\n", 1)[1].strip()
    assert {p.name for p in tmp_path.iterdir()} == {"env.log", "sparse_conv.log", "summary.md"}
