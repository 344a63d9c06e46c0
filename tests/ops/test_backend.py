"""Backend choice: automatic by device, forced by argument or environment variable."""

from __future__ import annotations

import importlib
import inspect

import pytest
import torch

from lightning_pc import ops
from lightning_pc.ops import _backend
from tests.ops.shapes import batch_of_clouds, edge_set


def test_auto_on_cpu_picks_the_measured_fastest():
    cpu = torch.device("cpu")
    assert _backend.choose("knn", cpu, None) == "numba"
    assert _backend.choose("radius", cpu, None) == "numba"
    assert _backend.choose("fps", cpu, None) == "numba"
    assert _backend.choose("grid", cpu, None) == "numba"


def test_resolve_returns_the_chosen_backends_function():
    from lightning_pc.ops import _numba, _reference, _scipy

    cpu = torch.device("cpu")
    assert _backend.resolve("knn", cpu, None) is _numba.knn
    assert _backend.resolve("radius", cpu, "scipy") is _scipy.radius
    assert _backend.resolve("grid", cpu, "torch") is _reference.grid


@pytest.mark.parametrize("name", sorted(_backend.REGISTRY))
def test_every_backend_module_has_its_ops_in_the_one_signature(name):
    """A registered backend defines exactly the ops it declares, each with the parameters
    of the kernel protocol, so the fronts can call any of them the same way."""
    if not _backend.available(name):
        pytest.skip(f"{name} not installed")
    protocols = {
        "knn": _backend.KnnKernel,
        "radius": _backend.RadiusKernel,
        "fps": _backend.FpsKernel,
        "grid": _backend.GridKernel,
    }
    module = importlib.import_module(_backend.REGISTRY[name].module)
    for op, protocol in protocols.items():
        if op not in _backend.REGISTRY[name].ops:
            assert not hasattr(module, op), f"{name} defines {op} but does not declare it"
            continue
        want = list(inspect.signature(protocol.__call__).parameters)[1:]  # without self
        got = list(inspect.signature(getattr(module, op)).parameters)
        assert got == want, f"{name}.{op}{got} differs from {protocol.__name__}{want}"


def test_environment_variable_forces_backend(ops_backend_env):
    ops_backend_env("torch")
    assert _backend.choose("knn", torch.device("cpu"), None) == "torch"
    # an explicit argument wins over the environment
    assert _backend.choose("knn", torch.device("cpu"), "torch_cluster") == "torch_cluster"


def test_environment_variable_is_read_at_each_choice(monkeypatch, ops_backend_env):
    cpu = torch.device("cpu")
    ops_backend_env("torch")
    assert _backend.choose("fps", cpu, None) == "torch"
    monkeypatch.setenv(_backend.ENV_VAR, "auto")  # the next choice reads it
    assert _backend.choose("fps", cpu, None) == _backend.choose("fps", cpu, "auto") != "torch"


def test_environment_variable_changes_results_path_not_results(ops_backend_env):
    x, bx = batch_of_clouds([150, 100], seed=50)
    auto = edge_set(ops.knn(x, x, 8, bx, bx))
    ops_backend_env("torch")
    assert edge_set(ops.knn(x, x, 8, bx, bx)) == auto


def test_unknown_or_unsupported_backend_raises(ops_backend_env):
    x, _ = batch_of_clouds([20], seed=51)
    with pytest.raises(ValueError, match="unknown ops backend 'faiss'"):
        ops.knn(x, x, 2, backend="faiss")
    with pytest.raises(ValueError, match="fps has no 'scipy' backend"):
        ops.fps(x, backend="scipy")
    with pytest.raises(ValueError, match="knn has no 'fpsample' backend|unknown ops backend"):
        ops.knn(x, x, 2, backend="fpsample")
    ops_backend_env("nope")
    with pytest.raises(ValueError, match="LIGHTNING_PC_OPS_BACKEND"):
        ops.knn(x, x, 2)


def test_cuda_inputs_never_route_to_cpu_only_backends():
    cuda = torch.device("cuda")
    with pytest.raises(ValueError, match="CPU only"):
        _backend.choose("knn", cuda, "numba")
    auto = _backend.choose("fps", cuda, None)
    assert auto in ("torch_cluster", "torch")
    if not _backend.torch_cluster_has_cuda():
        assert auto == "torch"


# ---------------------------------------------------------------- the registry's one rule


def _sorted(pos: torch.Tensor):
    from lightning_pc.ops._checks import sort_clouds

    return sort_clouds("x", pos, None, 1)


def test_a_backend_that_lacks_a_case_declares_it_and_choose_hands_it_on(monkeypatch):
    """No kernel calls another backend's: the cosine distance (kd-trees prune by Euclidean
    distance only) and points the cell grid cannot key go elsewhere by :func:`choose`."""
    cpu = torch.device("cpu")
    cosine = _backend.Call(cpu, facts={"cosine": True})
    assert _backend.choose("knn", cosine, "numba") == "torch"
    assert _backend.choose("knn", cosine, "scipy") == "torch"
    if _backend.available("torch_cluster"):
        assert _backend.choose("knn", cosine, "torch_cluster") == "torch_cluster"
    four = _backend.Call(cpu, facts={"x": _sorted(torch.rand(10, 4)), "r": 0.5})
    assert _backend.choose("radius", four, "numba") == "scipy"
    assert _backend.choose("radius", four, None) == "scipy"
    monkeypatch.setattr(_backend, "has_module", lambda name: name != "scipy")
    assert _backend.choose("radius", four, "numba") == "torch"  # main: ImportError
    three = _backend.Call(cpu, facts={"x": _sorted(torch.rand(10, 3)), "r": 0.5})
    assert _backend.choose("radius", three, "numba") == "numba"


def test_kernels_refuse_the_cases_they_declare_unsupported():
    from lightning_pc.ops import _numba, _scipy

    x = _sorted(torch.rand(20, 3))
    for module in (_numba, _scipy):
        with pytest.raises(ValueError, match="cosine"):
            module.knn(x, x, 3, True, False)
    x4 = _sorted(torch.rand(20, 4))
    with pytest.raises(ValueError, match="more than 3 coordinates"):
        _numba.radius(x4, x4, 0.5, 8)
    for name in ("_numba", "_scipy", "_torch_cluster", "_reference"):
        source = inspect.getsource(importlib.import_module(f"lightning_pc.ops.{name}"))
        others = {"_numba", "_scipy", "_torch_cluster", "_reference"} - {name}
        assert not [o for o in others if f"import {o}" in source or f"{o}." in source], name


def test_registry_declarations_are_consistent():
    """Every kind's reference supports every call on every device; fallbacks and rankings
    name implementations of the kind; the ops' backend lists are derived from the kinds."""
    for kind in _backend.KINDS.values():
        ref = kind[kind.reference]
        assert ref.devices is None and ref.dtypes is None and ref.accepts is None, kind.name
        assert ref.installed() and ref.traceable and ref.device_check is None, kind.name
        for impl in kind.implementations:
            assert impl.fallback is None or impl.fallback in kind.names, (kind.name, impl.name)
        for device, order in kind.ranking.items():
            assert set(order) <= set(kind.names) and kind.reference in order, (kind.name, device)
        assert "*" in kind.ranking, kind.name
    ops_names = [n for op in _backend.OPS for n in _backend.names(op)]
    assert _backend.BACKENDS == ("auto", *dict.fromkeys(ops_names))
    assert _backend.kinds("ops") == _backend.OPS
    assert {op: _backend.names(op) for op in _backend.OPS} == _backend.SUPPORTED
    for name, spec in _backend.REGISTRY.items():
        assert spec.ops == tuple(op for op in _backend.OPS if name in _backend.names(op))


def test_one_variable_per_kind_wins_over_the_alias(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setenv("LIGHTNING_PC_IMPL_KNN", "scipy")
    assert _backend.choose("knn", cpu) == "scipy"
    assert _backend.choose("radius", cpu) == "numba"  # other kinds: automatic
    assert _backend.choose("knn", cpu, "torch") == "torch"  # an argument wins
    monkeypatch.setenv(_backend.ENV_VAR, "torch")
    assert _backend.choose("knn", cpu) == "scipy"
    assert _backend.choose("radius", cpu) == "torch"
    monkeypatch.setenv("LIGHTNING_PC_IMPL_KNN", "auto")
    assert _backend.choose("knn", cpu) == "numba"  # "auto" named: the alias does not apply
    monkeypatch.setenv("LIGHTNING_PC_IMPL_FPS", "scipy")  # a kind's own variable is strict
    with pytest.raises(ValueError, match=r"fps has no 'scipy' backend.*LIGHTNING_PC_IMPL_FPS"):
        _backend.choose("fps", cpu)
    monkeypatch.setenv("LIGHTNING_PC_IMPL_GRID", "faiss")
    with pytest.raises(ValueError, match=r"unknown ops backend 'faiss'.*LIGHTNING_PC_IMPL_GRID"):
        _backend.choose("grid", cpu)


def test_describe_lists_every_kind_from_the_registry():
    chosen = _backend.describe("cpu")
    assert tuple(chosen) == tuple(_backend.KINDS)
    assert _backend.describe("cpu", "ops") == {op: "numba" for op in _backend.OPS}
    assert chosen["batch_norm"] == "fused" and chosen["knn_table"] == "padded"
    assert _backend.describe("meta")["batch_norm"] == "torch"
    table = _backend.table()
    for kind in _backend.KINDS.values():
        assert kind.env_var() in table
        assert all(f"  {name}:" in table for name in kind.names)
