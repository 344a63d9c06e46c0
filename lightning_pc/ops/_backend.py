"""Backend registry, automatic choice, and the one dispatch path of the neighbour ops.

Backends:

* ``"torch"`` - pure PyTorch (:mod:`lightning_pc.ops._reference`): any device, exact, the
  oracle in tests.
* ``"torch_cluster"`` - torch-cluster's compiled CPU/CUDA kernels
  (:mod:`lightning_pc.ops._torch_cluster`).
* ``"scipy"`` - scipy's ``cKDTree`` (CPU, multithreaded queries): knn, radius
  (:mod:`lightning_pc.ops._scipy`).
* ``"numba"`` - our CPU kernels compiled with numba (:mod:`lightning_pc.ops._numba`):
  kd-tree knn, kd-tree-pruned exact FPS, cell-grid radius search, grid clustering.

``"auto"`` (the default) picks, per op and device, the fastest measured on
``benchmarks/ops.py``. A call's ``backend=`` argument forces one, and forcing a backend an
op does not have raises ``ValueError``. The environment variable ``LIGHTNING_PC_OPS_BACKEND``
sets a process-wide choice: it applies to the ops that backend has, and the others choose as
``"auto"`` (so ``LIGHTNING_PC_OPS_BACKEND=scipy`` runs knn and radius on scipy, fps on the
fastest installed backend). The variable is read once per process, by the first op call
that leaves ``backend`` unset; setting it later has no effect (:func:`reload_environment`
reads it again).

Dispatch: the op fronts (:mod:`~lightning_pc.ops.neighbors`, :mod:`~lightning_pc.ops.sampling`,
:mod:`~lightning_pc.ops.grid`) validate and sort their inputs, then call
``resolve(op, device, backend)(...)``. Every backend module defines the ops it has as
functions with the signatures of the protocols below (:class:`KnnKernel`,
:class:`RadiusKernel`, :class:`FpsKernel`, :class:`GridKernel`); inputs a backend cannot
compute (a metric or a dimension its data structure lacks) it hands to another backend
itself, so the fronts hold no per-backend code.

Adding a backend: write ``_<name>.py`` with some of ``knn``, ``radius``, ``fps``, ``grid``
in those signatures, add an entry to :data:`REGISTRY` (module, ops, CPU only or not, how to
tell it is installed) and to ``BACKENDS``, and place it in ``_CPU_PREFERENCE`` for the ops
where it should win ``"auto"``. ``tests/ops/test_backend.py`` checks every registered
module against the protocols.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol, overload

import torch
from torch import Tensor

from lightning_pc.ops._checks import SortedClouds

Backend = Literal["auto", "torch", "torch_cluster", "scipy", "numba"]
BACKENDS: tuple[str, ...] = ("auto", "torch", "torch_cluster", "scipy", "numba")
ENV_VAR = "LIGHTNING_PC_OPS_BACKEND"
Op = Literal["knn", "radius", "fps", "grid"]
OPS: tuple[Op, ...] = ("knn", "radius", "fps", "grid")


# ----------------------------------------------------------------------------------------
# The kernel signatures every backend module follows. Inputs arrive validated, in the
# compute dtype, sorted by cloud; indices in and out refer to the sorted points, and
# results lie on the inputs' device.


class KnnKernel(Protocol):
    def __call__(
        self, x: SortedClouds, y: SortedClouds, k: int, cosine: bool, skip_self: bool
    ) -> tuple[Tensor, Tensor]:
        """For each point of ``y``, its ``k`` nearest points of ``x`` in the same cloud.

        Args:
            cosine: the distance is ``1 - cos(x, y)`` instead of the Euclidean one.
            skip_self: ``y`` is ``x`` and ``k`` counts the point itself, which is dropped:
                each row keeps its ``k - 1`` nearest other points.

        Returns:
            ``(row, col)``: rows (into ``y``) ascending, each row's neighbours (into ``x``)
            ascending by distance, ties to the lower index.
        """
        ...


class RadiusKernel(Protocol):
    def __call__(
        self, x: SortedClouds, y: SortedClouds, r: float, max_num_neighbors: int
    ) -> tuple[Tensor, Tensor]:
        """For each point of ``y``, its ``max_num_neighbors`` nearest points of ``x`` strictly
        within ``r`` (same cloud); ``(row, col)`` ordered as :class:`KnnKernel`'s."""
        ...


class FpsKernel(Protocol):
    def __call__(
        self, src: SortedClouds, num_samples: Tensor, ratio: float | Tensor, start: Tensor
    ) -> Tensor:
        """Farthest point sampling of every cloud.

        Args:
            num_samples: ``[B]`` CPU samples per cloud, ``ceil(n * ratio)``.
            ratio: the ratio ``num_samples`` was computed from (a float, or a one- or
                ``B``-element tensor), for kernels that count for themselves.
            start: ``[B]`` CPU index of each cloud's first pick within the cloud.

        Returns:
            ``[S]`` indices into ``src``, cloud by cloud, each cloud's in pick order.
        """
        ...


class GridKernel(Protocol):
    def __call__(
        self, pos: Tensor, size: Tensor, start: Tensor | None, end: Tensor | None
    ) -> Tensor:
        """``[N]`` voxel ids of the non-empty ``pos`` (``size``, ``start``, ``end``: one value
        per axis, on ``pos``'s device and in its dtype; ``None`` means the points' bounds).

        Raises:
            ValueError: if the grid has more than ``2**63`` voxels.
        """
        ...


# ----------------------------------------------------------------------------------------
# Registry


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


@functools.cache
def has_numba() -> bool:
    if importlib.util.find_spec("numba") is None:
        return False
    try:
        from lightning_pc.ops import _numba  # noqa: F401
    except Exception:  # noqa: BLE001 - numba present but unusable (e.g. numpy too new)
        return False
    return True


@dataclass(frozen=True)
class BackendSpec:
    """A backend: the module holding its kernels, the ops it has, where it runs.

    Attributes:
        module: import path of the module defining one function per op in ``ops``.
        ops: the ops it implements.
        cpu_only: it runs on CPU tensors only.
        installed: whether it can run in this environment (cached by the callee).
    """

    module: str
    ops: tuple[Op, ...]
    cpu_only: bool
    installed: Callable[[], bool]


REGISTRY: dict[str, BackendSpec] = {
    "torch": BackendSpec("lightning_pc.ops._reference", OPS, False, lambda: True),
    "torch_cluster": BackendSpec("lightning_pc.ops._torch_cluster", OPS, False, has_torch_cluster),
    "scipy": BackendSpec(
        "lightning_pc.ops._scipy", ("knn", "radius"), True, lambda: has_module("scipy")
    ),
    "numba": BackendSpec("lightning_pc.ops._numba", OPS, True, has_numba),
}

# Which backends implement which op.
SUPPORTED: dict[str, tuple[str, ...]] = {
    op: tuple(name for name, spec in REGISTRY.items() if op in spec.ops) for op in OPS
}

# Fastest first, per op, on the CPU (benchmarks/ops.py).
_CPU_PREFERENCE: dict[str, tuple[str, ...]] = {
    "knn": ("numba", "scipy", "torch_cluster", "torch"),
    "radius": ("numba", "torch_cluster", "scipy", "torch"),
    "fps": ("numba", "torch_cluster", "torch"),
    "grid": ("numba", "torch_cluster", "torch"),
}


def available(name: str) -> bool:
    """Whether backend ``name`` can run in this environment."""
    return name in REGISTRY and REGISTRY[name].installed()


# ----------------------------------------------------------------------------------------
# Choice


@functools.cache
def _environment_choice() -> str | None:
    """``LIGHTNING_PC_OPS_BACKEND`` as read once per process (``None`` when unset or empty)."""
    return os.environ.get(ENV_VAR) or None


def reload_environment() -> None:
    """Reads ``LIGHTNING_PC_OPS_BACKEND`` again at the next op call (it is read once)."""
    _environment_choice.cache_clear()


def choose(op: str, device: torch.device, backend: str | None) -> str:
    """The name of the backend that runs one call of ``op``.

    Args:
        op: ``"knn"``, ``"radius"``, ``"fps"`` or ``"grid"``.
        device: device of the inputs.
        backend: the caller's choice; ``None`` falls back to ``LIGHTNING_PC_OPS_BACKEND``
            (where that backend has ``op``), then ``"auto"``.

    Raises:
        ValueError: for an unknown backend, or a requested one that lacks ``op``, is not
            installed, or cannot run on ``device``.
    """
    from_env = backend is None
    choice = (_environment_choice() or "auto") if from_env else backend
    assert choice is not None
    if choice not in BACKENDS:
        raise ValueError(
            f"unknown ops backend {choice!r}; choose one of {', '.join(BACKENDS)}"
            + (f" (from ${ENV_VAR})" if from_env else "")
        )
    if choice == "auto":
        return _auto(op, device)
    if choice not in SUPPORTED[op]:
        if from_env:
            # a process-wide choice applies to the ops that backend has; the others pick
            # as "auto"
            return _auto(op, device)
        raise ValueError(
            f"{op} has no {choice!r} backend; it supports {', '.join(SUPPORTED[op])} or 'auto'"
        )
    if not available(choice):
        raise ValueError(f"ops backend {choice!r} was requested but is not installed")
    if device.type != "cpu" and REGISTRY[choice].cpu_only:
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


@functools.cache
def kernel(name: str, op: str) -> Callable[..., object]:
    """Backend ``name``'s function for ``op`` (imports its module on first use)."""
    fn: Callable[..., object] = getattr(importlib.import_module(REGISTRY[name].module), op)
    return fn


@overload
def resolve(op: Literal["knn"], device: torch.device, backend: str | None) -> KnnKernel: ...
@overload
def resolve(op: Literal["radius"], device: torch.device, backend: str | None) -> RadiusKernel: ...
@overload
def resolve(op: Literal["fps"], device: torch.device, backend: str | None) -> FpsKernel: ...
@overload
def resolve(op: Literal["grid"], device: torch.device, backend: str | None) -> GridKernel: ...


def resolve(op: str, device: torch.device, backend: str | None) -> Callable[..., object]:
    """The kernel that runs one call of ``op``: :func:`choose`, then that backend's function.

    Raises:
        ValueError: as :func:`choose`.
    """
    return kernel(choose(op, device, backend), op)
