"""Backend choice: automatic by device, forced by argument or environment variable."""

from __future__ import annotations

import pytest
import torch

from lightning_pc import ops
from lightning_pc.ops import _backend
from tests.ops.shapes import batch_of_clouds, edge_set


def test_auto_on_cpu_picks_the_measured_fastest():
    cpu = torch.device("cpu")
    assert _backend.resolve("knn", cpu, None) == "numba"
    assert _backend.resolve("radius", cpu, None) == "numba"
    assert _backend.resolve("fps", cpu, None) == "numba"
    assert _backend.resolve("grid", cpu, None) == "numba"


def test_environment_variable_forces_backend(monkeypatch):
    monkeypatch.setenv(_backend.ENV_VAR, "torch")
    assert _backend.resolve("knn", torch.device("cpu"), None) == "torch"
    # an explicit argument wins over the environment
    assert _backend.resolve("knn", torch.device("cpu"), "torch_cluster") == "torch_cluster"


def test_environment_variable_changes_results_path_not_results(monkeypatch):
    x, bx = batch_of_clouds([150, 100], seed=50)
    auto = edge_set(ops.knn(x, x, 8, bx, bx))
    monkeypatch.setenv(_backend.ENV_VAR, "torch")
    assert edge_set(ops.knn(x, x, 8, bx, bx)) == auto


def test_unknown_or_unsupported_backend_raises(monkeypatch):
    x, _ = batch_of_clouds([20], seed=51)
    with pytest.raises(ValueError, match="unknown ops backend 'faiss'"):
        ops.knn(x, x, 2, backend="faiss")
    with pytest.raises(ValueError, match="fps has no 'scipy' backend"):
        ops.fps(x, backend="scipy")
    with pytest.raises(ValueError, match="knn has no 'fpsample' backend|unknown ops backend"):
        ops.knn(x, x, 2, backend="fpsample")
    monkeypatch.setenv(_backend.ENV_VAR, "nope")
    with pytest.raises(ValueError, match="LIGHTNING_PC_OPS_BACKEND"):
        ops.knn(x, x, 2)


def test_cuda_inputs_never_route_to_cpu_only_backends():
    cuda = torch.device("cuda")
    with pytest.raises(ValueError, match="CPU only"):
        _backend.resolve("knn", cuda, "numba")
    auto = _backend.resolve("fps", cuda, None)
    assert auto in ("torch_cluster", "torch")
    if not _backend.torch_cluster_has_cuda():
        assert auto == "torch"
