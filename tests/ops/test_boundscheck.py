"""The numba kernels never index out of bounds, checked by numba itself.

A subprocess compiles every kernel afresh with ``NUMBA_BOUNDSCHECK=1`` and runs them over
hostile clouds (:mod:`tests.ops.boundscheck_cases`): an out-of-bounds index is an
``IndexError`` and a failed test here, not heap corruption in a user's run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lightning_pc.ops._backend import available

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.skipif(not available("numba"), reason="numba backend unavailable")
def test_numba_kernels_in_bounds_on_hostile_clouds(tmp_path: Path) -> None:
    env = dict(os.environ)
    env.update(
        NUMBA_BOUNDSCHECK="1",
        NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"),  # compile afresh, with the checks
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
    )
    proc = subprocess.run(
        [sys.executable, "-m", "tests.ops.boundscheck_cases"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=800,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "no index out of bounds" in proc.stdout
