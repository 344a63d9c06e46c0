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
