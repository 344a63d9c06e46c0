"""Backend registry and automatic selection for the neighbour ops.

Backends:

* ``"torch"`` - pure PyTorch (:mod:`lightning_pc.ops._reference`): any device, exact, the
  oracle in tests.
* ``"torch_cluster"`` - torch-cluster's compiled CPU/CUDA kernels.
* ``"scipy"`` - scipy's ``cKDTree`` (CPU, multithreaded queries): knn, radius.
* ``"numba"`` - our CPU kernels compiled with numba (:mod:`lightning_pc.ops._numba`):
  kd-tree knn, kd-tree-pruned exact FPS, cell-grid radius search, grid clustering.

``"auto"`` (the default) picks, per op and device, the fastest measured on
``benchmarks/ops.py``. A call's ``backend=`` argument forces one, and forcing a backend an
op does not have raises ``ValueError``. The environment variable ``LIGHTNING_PC_OPS_BACKEND``
sets a process-wide choice: it applies to the ops that backend has, and the others choose as
``"auto"`` (so ``LIGHTNING_PC_OPS_BACKEND=scipy`` runs knn and radius on scipy, fps on the
fastest installed backend).
"""

from __future__ import annotations

import functools
import importlib.util
import os
from typing import Literal

import torch

Backend = Literal["auto", "torch", "torch_cluster", "scipy", "numba"]
BACKENDS: tuple[str, ...] = ("auto", "torch", "torch_cluster", "scipy", "numba")
ENV_VAR = "LIGHTNING_PC_OPS_BACKEND"

# Which backends implement which op.
SUPPORTED: dict[str, tuple[str, ...]] = {
    "knn": ("torch", "torch_cluster", "scipy", "numba"),
    "radius": ("torch", "torch_cluster", "scipy", "numba"),
    "fps": ("torch", "torch_cluster", "numba"),
    "grid": ("torch", "torch_cluster", "numba"),
}

# Fastest first, per op, on the CPU (benchmarks/ops.py).
_CPU_PREFERENCE: dict[str, tuple[str, ...]] = {
    "knn": ("numba", "scipy", "torch_cluster", "torch"),
    "radius": ("numba", "torch_cluster", "scipy", "torch"),
    "fps": ("numba", "torch_cluster", "torch"),
    "grid": ("numba", "torch_cluster", "torch"),
}


@functools.cache
def has_torch_cluster() -> bool:
    if importlib.util.find_spec("torch_cluster") is None:
        return False
    try:
        import torch_cluster  # noqa: F401
    except Exception:  # noqa: BLE001 - a broken build (ABI mismatch) counts as absent
        return False
    return True


@functools.cache
def torch_cluster_has_cuda() -> bool:
    if not has_torch_cluster():
        return False
    import torch_cluster  # noqa: F401 - registers torch.ops.torch_cluster

    return int(torch.ops.torch_cluster.cuda_version()) != -1


@functools.cache
def has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def available(name: str) -> bool:
    """Whether backend ``name`` can run in this environment."""
    if name == "torch":
        return True
    if name == "torch_cluster":
        return has_torch_cluster()
    if name == "numba":
        return has_numba()
    return has_module(name)


@functools.cache
def has_numba() -> bool:
    if importlib.util.find_spec("numba") is None:
        return False
    try:
        from lightning_pc.ops import _numba  # noqa: F401
    except Exception:  # noqa: BLE001 - numba present but unusable (e.g. numpy too new)
        return False
    return True


def resolve(op: str, device: torch.device, backend: str | None) -> str:
    """Chooses the backend for one call of ``op``.

    Args:
        op: ``"knn"``, ``"radius"``, ``"fps"`` or ``"grid"``.
        device: device of the inputs.
        backend: the caller's choice; ``None`` falls back to ``LIGHTNING_PC_OPS_BACKEND``
            (where that backend has ``op``), then ``"auto"``.
    """
    choice = backend if backend is not None else os.environ.get(ENV_VAR, "auto") or "auto"
    if choice not in BACKENDS:
        raise ValueError(
            f"unknown ops backend {choice!r}; choose one of {', '.join(BACKENDS)}"
            + ("" if backend is not None else f" (from ${ENV_VAR})")
        )
    if choice == "auto":
        return _auto(op, device)
    if choice not in SUPPORTED[op] and backend is None:
        # a process-wide choice applies to the ops that backend has; the others pick as "auto"
        return _auto(op, device)
    if choice not in SUPPORTED[op]:
        raise ValueError(
            f"{op} has no {choice!r} backend; it supports {', '.join(SUPPORTED[op])} or 'auto'"
        )
    if not available(choice):
        raise ValueError(f"ops backend {choice!r} was requested but is not installed")
    if device.type != "cpu" and choice in ("scipy", "numba"):
        raise ValueError(f"ops backend {choice!r} runs on the CPU only; inputs are on {device}")
    if device.type == "cuda" and choice == "torch_cluster" and not torch_cluster_has_cuda():
        raise ValueError("this torch-cluster build has no CUDA kernels; install a CUDA wheel")
    return choice


def _auto(op: str, device: torch.device) -> str:
    if device.type == "cpu":
        return next(name for name in _CPU_PREFERENCE[op] if available(name))
    if device.type == "cuda" and torch_cluster_has_cuda():
        return "torch_cluster"
    return "torch"
