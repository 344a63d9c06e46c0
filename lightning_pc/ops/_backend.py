"""The implementation registry: every swappable implementation, what it supports, one choice.

Some computations have several implementations that give the same result (up to float
rounding and exact ties): the neighbour ops' backends, the fused batch-norm kernels, DGCNN's
neighbour tables, the renderers. Each such computation is a *kind* (:data:`KINDS`), and each
implementation declares what it supports (:class:`Implementation`): the devices it runs on,
the dtypes it takes, whether it can be traced by ``torch.compile``, whether its package is
installed, which calls it accepts, and, for the automatic choice only, whether it is worth
taking for a call (size thresholds). :func:`choose` is the one rule that picks:

1. The request is the caller's argument (``backend=``, ``mode=``); without one, the
   environment (below); without that, ``"auto"``.
2. ``"auto"`` takes the first implementation of the kind's ranking for the inputs' device
   (fastest measured first) that is installed, runs on that device and is worth taking.
3. A named implementation that is not installed or cannot run on the device raises
   ``ValueError`` for a *strict* kind (the ops: the caller asked for it) and falls back for
   the others (the fused kernels are an optimisation and never an error).
4. Where the implementation picked does not support the call (the cosine distance on a
   kd-tree, a grid too fine for 64-bit cell keys, a norm layer in eval mode, tracing), the
   choice moves to its declared ``fallback`` (the kind's reference implementation unless it
   names another), and on until one supports it; the reference supports every call.

No implementation calls another: a fast kernel that lacks a case declares it, and
:func:`choose` hands the call on.

Environment: ``LIGHTNING_PC_IMPL_<KIND>=<name>`` (``<KIND>`` upper-cased, e.g.
``LIGHTNING_PC_IMPL_KNN=scipy``, ``LIGHTNING_PC_IMPL_BATCH_NORM=torch``) requests an
implementation for every call of that kind that does not name one; ``auto`` or empty means
the automatic choice, and an unknown name raises ``ValueError``. Two older variables remain
as aliases with their documented meaning (a ``LIGHTNING_PC_IMPL_*`` variable wins over
them): ``LIGHTNING_PC_OPS_BACKEND`` (:data:`ENV_VAR`) sets the neighbour ops' backend where
that backend has the op (the other ops choose as ``auto``), and ``LIGHTNING_PC_FUSED``
(``auto``, ``always``: the fused kernels at any size, ``off``: torch's ops) the batch-norm
implementation. The variables are read at each choice (a dictionary look-up).

Kinds (see :data:`KINDS`; :func:`table` lists them with what is installed):

* ``knn``, ``radius``, ``fps``, ``grid``: the neighbour ops' backends ``"torch"`` (pure
  PyTorch, any device, exact: the oracle in tests), ``"torch_cluster"`` (its compiled CPU
  and CUDA kernels), ``"scipy"`` (``cKDTree``, CPU: knn and radius), ``"numba"`` (our CPU
  kernels: kd-tree knn, kd-tree-pruned exact FPS, cell-grid radius, grid clustering).
* ``batch_norm``: ``"fused"`` (the numba kernels of :mod:`lightning_pc.nn.fused`, CPU
  training) or ``"torch"`` (``BatchNorm1d`` and the activation as torch ops).
* ``knn_table``: DGCNN's neighbour tables, ``"padded"`` (dense distances, BLAS) or
  ``"packed"`` (:func:`lightning_pc.ops.knn`), see :mod:`lightning_pc.nn.knn_graph`.
* ``render``: ``"open3d"`` (offscreen Filament) or ``"torch"`` (the splatting rasteriser),
  see :mod:`lightning_pc.viz.render`.

Adding an ops backend: write ``_<name>.py`` with some of ``knn``, ``radius``, ``fps``,
``grid`` in the signatures of the protocols below (:class:`KnnKernel`, ...), add one
:class:`Implementation` per op to :data:`KINDS` (what it supports) and place its name in the
op's ranking where it should win ``"auto"``. ``tests/ops/test_backend.py`` checks every
registered module against the protocols, and the backend lists of the tests, benchmarks and
``gpu_check`` are read from here.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, Protocol, overload

import torch
from torch import Tensor

from lightning_pc.ops._checks import SortedClouds

Backend = Literal["auto", "torch", "torch_cluster", "scipy", "numba"]
Op = Literal["knn", "radius", "fps", "grid"]
ENV_PREFIX = "LIGHTNING_PC_IMPL_"
ENV_VAR = "LIGHTNING_PC_OPS_BACKEND"  # alias for the neighbour ops' kinds
FUSED_ENV_VAR = "LIGHTNING_PC_FUSED"  # alias for the batch_norm kind


# ----------------------------------------------------------------------------------------
# The kernel signatures every ops backend module follows. Inputs arrive validated, in the
# compute dtype, sorted by cloud; indices in and out refer to the sorted points, and
# results lie on the inputs' device.


class KnnKernel(Protocol):
    def __call__(
        self, x: SortedClouds, y: SortedClouds, k: int, cosine: bool, skip_self: bool
    ) -> tuple[Tensor, Tensor]:
        """For each point of ``y``, its ``k`` nearest points of ``x`` in the same cloud.

        Args:
            cosine: the distance is ``1 - cos(x, y)`` instead of the Euclidean one (only
                backends whose registry entry accepts it receive ``True``).
            skip_self: ``y`` is ``x`` and ``k`` counts the point itself, which is dropped:
                each row keeps its ``k - 1`` nearest other points.

        Returns:
            ``(row, col)``: rows (into ``y``) ascending, each row's neighbours (into ``x``)
            ascending by distance, ties to the lower index.
        """
        ...


class RadiusKernel(Protocol):
    def __call__(
        self, x: SortedClouds, y: SortedClouds, r: float, max_num_neighbors: int, first: bool = ...
    ) -> tuple[Tensor, Tensor]:
        """For each point of ``y``, its ``max_num_neighbors`` nearest points of ``x`` strictly
        within ``r`` (same cloud); ``(row, col)`` ordered as :class:`KnnKernel`'s. With
        ``first=True`` (passed only to implementations whose registry entry accepts calls
        with the ``first`` fact), the first ``max_num_neighbors`` by index instead, ascending
        by index."""
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
# What is installed


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


# ----------------------------------------------------------------------------------------
# Declarations


@dataclass(frozen=True)
class Call:
    """What one call asks of an implementation: the facts its declarations are checked on.

    Attributes:
        device: where the inputs lie.
        dtype: their dtype (``None``: not relevant).
        size: elements the call processes (auto's size thresholds).
        compiling: the call is being traced by ``torch.compile`` / ``torch.export``.
        facts: kind-specific facts an implementation's ``accepts`` reads (``cosine`` for
            knn, the searched points and radius for radius, the norm layer for batch_norm);
            an implementation accepts a call that lacks the facts it reads.
    """

    device: torch.device
    dtype: torch.dtype | None = None
    size: int = 0
    compiling: bool = False
    facts: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


def _always() -> bool:
    return True


@dataclass(frozen=True)
class Implementation:
    """One implementation of a kind, and what it supports.

    Attributes:
        name: its name within the kind (what ``backend=`` and the variables take).
        module: import path of the module defining its functions (ops: one per op).
        installed: whether it can run in this environment (cached by the callee).
        devices: device types it runs on (``None``: any).
        device_check: a further condition on the device: the reason it cannot run there,
            or ``None`` (torch-cluster's CUDA kernels).
        dtypes: dtypes it takes (``None``: any the kind's front passes).
        traceable: it runs under ``torch.compile`` / ``torch.export`` tracing.
        accepts: whether it supports one call (``None``: every call); calls it does not
            support go to ``fallback``.
        worthwhile: for the automatic choice only, whether it pays off for this call (a
            size threshold); a named request ignores it.
        fallback: the implementation that takes the calls this one does not support
            (``None``: the kind's reference).
    """

    name: str
    module: str | None = None
    installed: Callable[[], bool] = _always
    devices: tuple[str, ...] | None = None
    device_check: Callable[[torch.device], str | None] | None = None
    dtypes: tuple[torch.dtype, ...] | None = None
    traceable: bool = True
    accepts: Callable[[Call], bool] | None = None
    worthwhile: Callable[[Call], bool] | None = None
    fallback: str | None = None

    def supports(self, call: Call) -> bool:
        """Whether it supports ``call`` once it runs on the call's device."""
        if self.dtypes is not None and call.dtype is not None and call.dtype not in self.dtypes:
            return False
        if call.compiling and not self.traceable:
            return False
        return self.accepts is None or self.accepts(call)


@dataclass(frozen=True)
class Kind:
    """A computation with interchangeable implementations.

    Attributes:
        name: the kind's name (``LIGHTNING_PC_IMPL_<NAME>`` requests one of its
            implementations).
        noun: what the messages call a choice (``"ops backend"``, ``"kNN mode"``).
        implementations: in the order listed to users.
        ranking: the automatic choice's order by device type (``"*"``: other devices).
        reference: the implementation that supports every call, where fallbacks end.
        strict: a named implementation that cannot run here raises (instead of falling back).
        group: kinds with one alias variable in common (``"ops"``).
    """

    name: str
    noun: str
    implementations: tuple[Implementation, ...]
    ranking: Mapping[str, tuple[str, ...]]
    reference: str
    strict: bool = True
    group: str | None = None

    def __getitem__(self, name: str) -> Implementation:
        for impl in self.implementations:
            if impl.name == name:
                return impl
        raise KeyError(name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(impl.name for impl in self.implementations)

    def env_var(self) -> str:
        return ENV_PREFIX + self.name.upper()


@dataclass(frozen=True)
class Alias:
    """An older environment variable that requests implementations for some kinds.

    Attributes:
        kinds: the kinds it applies to.
        values: value -> implementation name (``"auto"`` included); ``None``: the value is
            an implementation name or ``"auto"``, and a name a kind lacks means ``"auto"``
            for that kind (a process-wide preference).
    """

    kinds: tuple[str, ...]
    values: Mapping[str, str] | None = None


def _torch_cluster_device(device: torch.device) -> str | None:
    """CUDA with a build that has CUDA kernels"""
    if device.type == "cuda" and not torch_cluster_has_cuda():
        return "this torch-cluster build has no CUDA kernels; install a CUDA wheel"
    return None


def _euclidean(call: Call) -> bool:
    """kd-trees prune by Euclidean distance only: the cosine distance goes elsewhere."""
    return not call.facts.get("cosine", False)


def _numba_radius(call: Call) -> bool:
    """The cell grid takes at most 3 coordinates and needs 64-bit cell keys."""
    x = call.facts.get("x")
    if x is None:
        return True
    from lightning_pc.ops._numba import radius_supported

    return radius_supported(x, float(call.facts["r"]))


_OPS: tuple[Op, ...] = ("knn", "radius", "fps", "grid")


def _torch() -> Implementation:
    return Implementation("torch", module="lightning_pc.ops._reference")


def _nearest_only(call: Call) -> bool:
    """Radius search keeping the nearest points (not the first by index)."""
    return not call.facts.get("first", False)


def _torch_cluster(accepts: Callable[[Call], bool] | None = None) -> Implementation:
    return Implementation(
        "torch_cluster",
        module="lightning_pc.ops._torch_cluster",
        installed=lambda: has_torch_cluster(),
        device_check=_torch_cluster_device,
        accepts=accepts,
    )


def _scipy(accepts: Callable[[Call], bool] | None = None) -> Implementation:
    return Implementation(
        "scipy",
        module="lightning_pc.ops._scipy",
        installed=lambda: has_module("scipy"),
        devices=("cpu",),
        accepts=accepts,
    )


def _numba(
    accepts: Callable[[Call], bool] | None = None, fallback: str | None = None
) -> Implementation:
    return Implementation(
        "numba",
        module="lightning_pc.ops._numba",
        installed=lambda: has_numba(),
        devices=("cpu",),
        accepts=accepts,
        fallback=fallback,
    )


# Fastest first on the CPU (benchmarks/ops.py); torch-cluster's kernels on CUDA.
_ON_CUDA = ("torch_cluster", "torch")


def _ops_kind(op: Op, cpu: tuple[str, ...], *impls: Implementation) -> Kind:
    ranking = {"cpu": cpu, "cuda": _ON_CUDA, "*": ("torch",)}
    return Kind(op, "ops backend", impls, ranking, reference="torch", group="ops")


def _fused_installed() -> bool:
    return has_numba()


def _fused_accepts(call: Call) -> bool:
    """Training-mode ``BatchNorm1d`` (exactly; ``SyncBatchNorm`` keeps its synchronised
    statistics) with affine parameters, over more than one row."""
    norm = call.facts.get("norm")
    if norm is None:
        return True
    return (
        type(norm) is torch.nn.BatchNorm1d
        and norm.affine
        and (norm.training or norm.running_mean is None)
        and int(call.facts.get("rows", 2)) > 1
    )


def _fused_worthwhile(call: Call) -> bool:
    from lightning_pc.nn import fused  # the threshold lives (and is patched) there

    return call.size >= fused.FUSE_MIN_NUMEL


def _open3d_has_not_failed(call: Call) -> bool:
    from lightning_pc.viz.render import open3d_available

    return open3d_available()


KINDS: dict[str, Kind] = {
    "knn": _ops_kind(
        "knn",
        ("numba", "scipy", "torch_cluster", "torch"),
        _torch(),
        _torch_cluster(),
        _scipy(accepts=_euclidean),
        _numba(accepts=_euclidean),
    ),
    "radius": _ops_kind(
        "radius",
        ("numba", "torch_cluster", "scipy", "torch"),
        _torch(),
        # torch-cluster keeps the nearest; the first-by-index rule goes to the reference
        _torch_cluster(accepts=_nearest_only),
        _scipy(),
        # scipy's kd-tree takes any dimension and span (where it is missing: the reference)
        _numba(accepts=_numba_radius, fallback="scipy"),
    ),
    "fps": _ops_kind(
        "fps",
        ("numba", "torch_cluster", "torch"),
        _torch(),
        _torch_cluster(),
        _numba(),
    ),
    "grid": _ops_kind(
        "grid",
        ("numba", "torch_cluster", "torch"),
        _torch(),
        _torch_cluster(),
        _numba(),
    ),
    "batch_norm": Kind(
        "batch_norm",
        "batch-norm implementation",
        (
            Implementation("torch"),
            Implementation(
                "fused",
                module="lightning_pc.nn.fused",
                installed=_fused_installed,
                devices=("cpu",),
                dtypes=(torch.float32, torch.float64),
                traceable=False,  # compiled graphs keep the torch ops
                accepts=_fused_accepts,
                worthwhile=_fused_worthwhile,  # thread start-up outweighs the gain below
            ),
        ),
        {"cpu": ("fused", "torch"), "*": ("torch",)},
        reference="torch",
        strict=False,  # an optimisation: where it cannot run, torch's ops do
    ),
    "knn_table": Kind(
        "knn_table",
        "kNN mode",
        (
            Implementation("padded", module="lightning_pc.nn.knn_graph"),
            Implementation("packed", module="lightning_pc.nn.knn_graph"),
        ),
        {"*": ("padded", "packed")},
        reference="padded",
    ),
    "render": Kind(
        "render",
        "render backend",
        (
            # a failure to render disables Open3D for the process (worthwhile: False); a
            # named request tries it again and lets its error through
            Implementation(
                "open3d",
                module="lightning_pc.viz.open3d_backend",
                worthwhile=_open3d_has_not_failed,
            ),
            Implementation("torch", module="lightning_pc.viz.splat"),
        ),
        {"*": ("open3d", "torch")},
        reference="torch",
    ),
}

ALIASES: dict[str, Alias] = {
    ENV_VAR: Alias(_OPS),
    FUSED_ENV_VAR: Alias(("batch_norm",), {"auto": "auto", "always": "fused", "off": "torch"}),
}


def kinds(group: str | None = None) -> tuple[str, ...]:
    """The registered kinds (of one ``group``, e.g. ``"ops"``)."""
    return tuple(k for k, kind in KINDS.items() if group is None or kind.group == group)


def names(kind: str) -> tuple[str, ...]:
    """The implementations of ``kind``, in the order listed to users."""
    return KINDS[kind].names


def _group_names(kind: Kind) -> tuple[str, ...]:
    """The names valid for ``kind``'s group (the kind alone without one), in order."""
    out: list[str] = []
    for other in KINDS.values():
        if other is kind or (kind.group is not None and other.group == kind.group):
            out.extend(n for n in other.names if n not in out)
    return tuple(out)


# Derived views of the ops backends (older names, still imported by tests and benchmarks).
OPS: tuple[Op, ...] = _OPS
BACKENDS: tuple[str, ...] = ("auto", *_group_names(KINDS["knn"]))
SUPPORTED: dict[str, tuple[str, ...]] = {op: names(op) for op in OPS}


@dataclass(frozen=True)
class BackendSpec:
    """An ops backend: the module holding its kernels, the ops it has, where it runs."""

    module: str
    ops: tuple[Op, ...]
    cpu_only: bool
    installed: Callable[[], bool]


def _backend_spec(name: str) -> BackendSpec:
    impls = [KINDS[op][name] for op in OPS if name in KINDS[op].names]
    first = impls[0]
    assert first.module is not None
    ops_ = tuple(op for op in OPS if name in KINDS[op].names)
    return BackendSpec(first.module, ops_, first.devices == ("cpu",), first.installed)


REGISTRY: dict[str, BackendSpec] = {name: _backend_spec(name) for name in BACKENDS[1:]}


def available(name: str, kind: str | None = None) -> bool:
    """Whether implementation ``name`` (an ops backend without ``kind``) can run here."""
    if kind is None:
        kind = next((op for op in OPS if name in KINDS[op].names), None)
        if kind is None:
            return False
    return name in KINDS[kind].names and KINDS[kind][name].installed()


# ----------------------------------------------------------------------------------------
# The environment


def reload_environment() -> None:
    """Kept for callers of earlier versions: the variables are read at each choice."""


def _one_of(values: list[str]) -> str:
    return values[0] if len(values) == 1 else f"{', '.join(values[:-1])} or {values[-1]}"


def _environment(kind: Kind) -> tuple[str, str | None, bool]:
    """The request the environment makes for ``kind``: ``(name, variable, lenient)``
    (``("auto", None, False)`` without one). ``lenient``: a name the kind lacks means
    ``"auto"`` (a group alias's preference)."""
    var = kind.env_var()
    value = os.environ.get(var)
    if value:
        return value, var, False
    for alias_var, alias in ALIASES.items():
        if kind.name not in alias.kinds:
            continue
        value = os.environ.get(alias_var)
        if not value:
            continue
        if alias.values is None:
            return value, alias_var, True
        if value not in alias.values:
            raise ValueError(
                f"{alias_var} must be {_one_of(list(alias.values))}, got {value!r}"
                f" (or set {var} to one of auto, {', '.join(kind.names)})"
            )
        return alias.values[value], alias_var, False
    return "auto", None, False


# ----------------------------------------------------------------------------------------
# The choice


def _as_call(where: torch.device | Call) -> Call:
    return where if isinstance(where, Call) else Call(where)


def _cannot_run(kind: Kind, impl: Implementation, device: torch.device) -> str | None:
    """Why ``impl`` cannot run on ``device`` here (``None``: it can)."""
    if not impl.installed():
        return f"{kind.noun} {impl.name!r} was requested but is not installed"
    if impl.devices is not None and device.type not in impl.devices:
        where = "the CPU" if impl.devices == ("cpu",) else ", ".join(impl.devices)
        return f"{kind.noun} {impl.name!r} runs on {where} only; inputs are on {device}"
    if impl.device_check is not None:
        return impl.device_check(device)
    return None


def _settle(kind: Kind, impl: Implementation, call: Call) -> str:
    """``impl``, or where it does not support ``call`` (or cannot run), its fallbacks."""
    for _ in range(len(kind.implementations) + 1):
        if impl.name == kind.reference:
            return impl.name
        if _cannot_run(kind, impl, call.device) is None and impl.supports(call):
            return impl.name
        impl = kind[impl.fallback or kind.reference]
    raise RuntimeError(f"fallback cycle among the {kind.name} implementations")


def _auto(kind: Kind, call: Call, sized: bool = True) -> str:
    for name in kind.ranking.get(call.device.type, kind.ranking["*"]):
        impl = kind[name]
        if _cannot_run(kind, impl, call.device) is not None:
            continue
        if sized and impl.worthwhile is not None and not impl.worthwhile(call):
            continue
        return _settle(kind, impl, call)
    return kind.reference


def choose(kind: str, where: torch.device | Call, request: str | None = None) -> str:
    """The name of the implementation of ``kind`` that runs one call.

    Args:
        kind: a key of :data:`KINDS` (``"knn"``, ``"radius"``, ``"fps"``, ``"grid"``,
            ``"batch_norm"``, ``"knn_table"``, ``"render"``).
        where: the call (:class:`Call`), or only the inputs' device (no case facts: the
            choice before any case-dependent fallback).
        request: the caller's choice: an implementation's name or ``"auto"``; ``None``
            falls back to the environment (``LIGHTNING_PC_IMPL_<KIND>``, then the aliases),
            then ``"auto"``.

    Raises:
        ValueError: for an unknown name, or (strict kinds) a named implementation that
            lacks ``kind``, is not installed, or cannot run on the device.
    """
    k = KINDS[kind]
    call = _as_call(where)
    variable, lenient = None, False
    if request is None:
        request, variable, lenient = _environment(k)
    source = f" (from ${variable})" if variable else ""
    if request == "auto":
        return _auto(k, call)
    if request not in k.names:
        group = _group_names(k)
        if request in group:
            if lenient:  # a process-wide preference applies where the kind has it
                return _auto(k, call)
            raise ValueError(
                f"{kind} has no {request!r} backend; it supports {', '.join(k.names)} or "
                f"'auto'{source}"
            )
        raise ValueError(
            f"unknown {k.noun} {request!r}; choose one of auto, {', '.join(group)}{source}"
        )
    impl = k[request]
    problem = _cannot_run(k, impl, call.device)
    if problem is not None:
        if k.strict:
            raise ValueError(problem)
        return _settle(k, k[impl.fallback or k.reference], call)
    return _settle(k, impl, call)


def requested(kind: str, request: str | None = None) -> str:
    """What the caller (``request``) or else the environment asks of ``kind``: a name or
    ``"auto"`` (unchecked; :func:`choose` checks it)."""
    return request if request is not None else _environment(KINDS[kind])[0]


@functools.cache
def kernel(name: str, op: str) -> Callable[..., object]:
    """Ops backend ``name``'s function for ``op`` (imports its module on first use)."""
    module = KINDS[op][name].module
    assert module is not None
    fn: Callable[..., object] = getattr(importlib.import_module(module), op)
    return fn


@overload
def resolve(op: Literal["knn"], where: torch.device | Call, backend: str | None) -> KnnKernel: ...
@overload
def resolve(
    op: Literal["radius"], where: torch.device | Call, backend: str | None
) -> RadiusKernel: ...
@overload
def resolve(op: Literal["fps"], where: torch.device | Call, backend: str | None) -> FpsKernel: ...
@overload
def resolve(op: Literal["grid"], where: torch.device | Call, backend: str | None) -> GridKernel: ...


def resolve(op: str, where: torch.device | Call, backend: str | None) -> Callable[..., object]:
    """The kernel that runs one call of ``op``: :func:`choose`, then that backend's function.

    Raises:
        ValueError: as :func:`choose`.
    """
    return kernel(choose(op, where, backend), op)


def describe(device: torch.device | str = "cpu", group: str | None = None) -> dict[str, str]:
    """Kind -> the implementation ``"auto"`` picks on ``device`` for a call large enough to
    be worth it, before any case-dependent fallback (what ``gpu_check`` and the benchmarks
    print)."""
    call = Call(torch.device(device))
    return {kind: _auto(KINDS[kind], call, sized=False) for kind in kinds(group)}


def table() -> str:
    """Every kind, its implementations, where they run and whether they are installed."""
    lines = []
    for kind in KINDS.values():
        lines.append(f"{kind.name} (${kind.env_var()}; auto on cpu: {describe('cpu')[kind.name]})")
        for impl in kind.implementations:
            where = ", ".join(impl.devices) if impl.devices else "any device"
            if impl.device_check is not None:
                where += f" ({impl.device_check.__doc__ or 'checked per device'})"
            state = "installed" if impl.installed() else "not installed"
            lines.append(f"  {impl.name}: {where}, {state}")
    aliases = ", ".join(f"${var} ({', '.join(a.kinds)})" for var, a in ALIASES.items())
    return "\n".join([*lines, f"aliases: {aliases}"])
