"""The implementation registry chooses what main chose before it, for every case below.

The tables at the end were captured from main's code (before the registry: backends handing
calls to each other inside their kernels, ``LIGHTNING_PC_FUSED`` read in ``nn/fused.py``,
the renderer's own ``if``) with the same harness as here: which kernel does the work for
each neighbour-op case x device x request (argument or environment) x installed set;
whether the fused batch-norm kernels run for each norm layer x mode x device x dtype x size
x rows x tracing x numba; which renderer draws. Installed sets are simulated, so the table
holds on any machine; a torch-cluster kernel is recorded, then computed by the reference.
"""

from __future__ import annotations

import importlib
import itertools
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lightning_pc import ops
from lightning_pc.ops import _backend, _numba, _reference, _scipy, _torch_cluster

CUDA = torch.device("cuda")
# numba, scipy, torch_cluster, torch_cluster with CUDA kernels
SETS = {
    "all": (1, 1, 1, 1),
    "tc-cpu": (1, 1, 1, 0),
    "no-tc": (1, 1, 0, 0),
    "no-numba": (0, 1, 1, 1),
    "scipy-only": (0, 1, 0, 0),
    "tc-only": (0, 0, 1, 1),
    "torch-only": (0, 0, 0, 0),
}
REQUESTS = ["-", "auto", "torch", "torch_cluster", "scipy", "numba", "faiss"]
ENVS = ["", "auto", "torch", "torch_cluster", "scipy", "numba", "faiss"]
MODULES = {"torch": _reference, "torch_cluster": _torch_cluster, "scipy": _scipy, "numba": _numba}


def _cases() -> dict[str, Callable[[str | None], object]]:
    g = torch.Generator().manual_seed(0)
    x3 = torch.rand(64, 3, generator=g)
    x4 = torch.rand(64, 4, generator=g)
    far = torch.cat([torch.zeros(2, 3), torch.full((2, 3), 1e6)])  # cells beyond 64-bit keys
    return {
        "knn/euclid": lambda b: ops.knn(x3, x3, 4, backend=b),
        "knn/euclid-f64": lambda b: ops.knn(x3.double(), x3.double(), 4, backend=b),
        "knn/cosine": lambda b: ops.knn(x3, x3, 4, cosine=True, backend=b),
        "radius/3d": lambda b: ops.radius(x3, x3, 0.3, backend=b),
        "radius/4d": lambda b: ops.radius(x4, x4, 0.3, backend=b),
        "radius/fine-grid": lambda b: ops.radius(far, far, 1e-12, backend=b),
        "fps/3d": lambda b: ops.fps(x3, backend=b),
        "grid/3d": lambda b: ops.grid_cluster(x3, 0.25, backend=b),
    }


@pytest.fixture
def spies(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Records the backend of every kernel entered (the last one did the work)."""
    record: list[str] = []
    reference = {op: getattr(_reference, op) for op in _backend.OPS}  # before any spy
    for name, module in MODULES.items():
        for op in _backend.OPS:
            if not hasattr(module, op):
                continue
            real = reference[op] if name == "torch_cluster" else getattr(module, op)

            def spy(*args: object, _name: str = name, _real: Callable = real) -> object:
                record.append(_name)
                return _real(*args)

            monkeypatch.setattr(module, op, spy)
    _backend.kernel.cache_clear()
    yield record
    _backend.kernel.cache_clear()


def _simulate(monkeypatch: pytest.MonkeyPatch, installed: str) -> None:
    numba, scipy, tc, tc_cuda = SETS[installed]
    monkeypatch.setattr(_backend, "has_numba", lambda: bool(numba))
    monkeypatch.setattr(
        _backend, "has_module", lambda name: bool(scipy) if name == "scipy" else True
    )
    monkeypatch.setattr(_backend, "has_torch_cluster", lambda: bool(tc))
    monkeypatch.setattr(_backend, "torch_cluster_has_cuda", lambda: bool(tc_cuda))


def _outcome(record: list[str], run: Callable[[], object]) -> str:
    record.clear()
    try:
        run()
    except ValueError as err:
        return f"error: {err}"
    return record[-1]


def _table(text: str) -> dict[tuple[str, ...], str]:
    rows = {}
    for line in text.strip().splitlines():
        *key, got = (part.strip() for part in line.split(" | "))
        rows[tuple(key)] = got
    return rows


def test_ops_choices_equal_mains(monkeypatch: pytest.MonkeyPatch, spies: list[str]) -> None:
    got: dict[tuple[str, ...], str] = {}
    for installed in SETS:
        _simulate(monkeypatch, installed)
        for env in ENVS:
            if env:
                monkeypatch.setenv(_backend.ENV_VAR, env)
            else:
                monkeypatch.delenv(_backend.ENV_VAR, raising=False)
            for request in ["-"] if env else REQUESTS:
                backend = None if request == "-" else request
                for case, run in _cases().items():
                    key = (case, "cpu", installed, env or "-", request)
                    got[key] = _outcome(spies, lambda run=run, b=backend: run(b))
                for op in _backend.OPS:
                    try:
                        chosen = _backend.choose(op, CUDA, backend)
                    except ValueError as err:
                        chosen = f"error: {err}"
                    got[(op, "cuda", installed, env or "-", request)] = chosen
    want = _table(OPS_ON_MAIN)
    assert got.keys() == want.keys()
    differ = [
        f"{' | '.join(k)}: main {want[k]!r}, now {got[k]!r}" for k in want if got[k] != want[k]
    ]
    assert not differ, "\n".join(differ)


NORMS: dict[str, Callable[[], nn.Module]] = {
    "bn-train": lambda: nn.BatchNorm1d(4).train(),
    "bn-eval": lambda: nn.BatchNorm1d(4).eval(),
    "bn-eval-nostats": lambda: nn.BatchNorm1d(4, track_running_stats=False).eval(),
    "bn-noaffine": lambda: nn.BatchNorm1d(4, affine=False).train(),
    "sync": lambda: nn.SyncBatchNorm(4).train(),
    "bn2d": lambda: nn.BatchNorm2d(4).train(),
}


def test_fused_choices_equal_mains(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bit ``i`` of :data:`FUSED_ON_MAIN`: whether ``fusable_rows`` took the kernels for the
    ``i``-th case of the product below (in its order)."""
    from lightning_pc.nn import fused

    bits = []
    product = itertools.product(
        ["", "auto", "always", "off"],  # LIGHTNING_PC_FUSED
        NORMS,
        ["cpu", "meta"],  # meta: not the CPU
        [torch.float32, torch.float64, torch.bfloat16, torch.float16],
        [100, 1 << 16],  # elements (the threshold is 1 << 16)
        [1, 100],  # rows
        [False, True],  # being traced
        [True, False],  # numba installed
    )
    for mode, norm, device, dtype, numel, rows, compiling, numba in product:
        if mode:
            monkeypatch.setenv("LIGHTNING_PC_FUSED", mode)
        else:
            monkeypatch.delenv("LIGHTNING_PC_FUSED", raising=False)
        monkeypatch.setattr(torch.compiler, "is_compiling", lambda c=compiling: c)
        monkeypatch.setattr(_backend, "has_numba", lambda n=numba: n)
        like = torch.empty(2, 4, dtype=dtype, device=device)
        bits.append("1" if fused.fusable_rows(NORMS[norm](), like, rows, numel) else "0")
    monkeypatch.undo()
    assert "".join(bits) == FUSED_ON_MAIN.replace("\n", "")


def test_render_choices_equal_mains(monkeypatch: pytest.MonkeyPatch) -> None:
    import lightning_pc.viz.open3d_backend as o3d_backend

    render_mod = importlib.import_module("lightning_pc.viz.render")  # the package's is a function

    calls: list[str] = []

    def works(*args: object, **kwargs: object) -> np.ndarray:
        calls.append("open3d")
        return np.zeros((8, 8, 3), np.uint8)

    def broken(*args: object, **kwargs: object) -> np.ndarray:
        calls.append("open3d-failed")
        raise RuntimeError("no display")

    real_splat = render_mod.splat

    def splat(*args: object, **kwargs: object) -> object:
        calls.append("torch")
        return real_splat(*args, **kwargs)

    monkeypatch.setattr(render_mod, "splat", splat)
    pts = torch.rand(20, 3)
    got = []
    for ok, failed_before, backend in itertools.product(
        [True, False], [False, True], ["auto", "open3d", "torch"]
    ):
        monkeypatch.setattr(o3d_backend, "render_open3d", works if ok else broken)
        monkeypatch.setattr(render_mod, "_OPEN3D_FAILED", "earlier" if failed_before else None)
        calls.clear()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                render_mod.render(pts, width=8, height=8, backend=backend, shading="none")  # type: ignore[arg-type]
                result = ",".join(calls)
            except RuntimeError as err:
                result = ",".join(calls) + f" raises {err}"
        result += f" warnings={len(caught)} failed_after={render_mod._OPEN3D_FAILED is not None}"
        got.append(f"{ok} {failed_before} {backend} -> {result}")
    assert got == RENDER_ON_MAIN.strip().splitlines()


# ---------------------------------------------------------------------------------------
# Captured from main (5822510, before the registry) by this file's harness: lines ``OPS case
# | device | installed | $LIGHTNING_PC_OPS_BACKEND | backend= | kernel``, one ``FUSED`` line
# of bits, ``RENDER`` lines.

_CAPTURED = (Path(__file__).with_name("choices_on_main.txt")).read_text().splitlines()
OPS_ON_MAIN = "\n".join(line[4:] for line in _CAPTURED if line.startswith("OPS "))
FUSED_ON_MAIN = next(line[6:] for line in _CAPTURED if line.startswith("FUSED "))
RENDER_ON_MAIN = "\n".join(line[7:] for line in _CAPTURED if line.startswith("RENDER "))
