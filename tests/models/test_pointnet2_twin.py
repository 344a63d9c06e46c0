"""Our PointNet++ SSG classifier is the same function as the PyG twin that
``benchmarks/accuracy.py`` trains beside it (``benchmarks/train_step.py``'s ``pyg_pointnet2``:
PyG's ``PointNetConv`` and ``MLP`` on torch-cluster): with the twin's weights copied in, the
same centres and the same balls, the loss and every gradient agree in float64, in training
mode (batch statistics) and in evaluation mode. Learning-curve differences between the two
therefore come from the centres and balls each draws (torch-cluster's FPS starts from C
``rand()``, its CPU ball query keeps a kd-tree-order subset) and from float32 rounding, not
from the network."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lightning_pc.models import create_model
from tests.models.shapes import make_batch

torch_cluster = pytest.importorskip("torch_cluster")
pytest.importorskip("torch_geometric")

REPO = Path(__file__).resolve().parents[2]
# the twin's MLP prefixes -> ours
PREFIXES = {
    "sa1.conv.local_nn": "backbone.sa.0.mlps.0",
    "sa2.conv.local_nn": "backbone.sa.1.mlps.0",
    "sa3": "backbone.global_sa.mlp",
}


def _twin_builder():
    spec = importlib.util.spec_from_file_location(
        "bench_train_step", REPO / "benchmarks" / "train_step.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_train_step"] = module
    spec.loader.exec_module(module)
    return module.pyg_pointnet2


def _our_key(key: str, value: torch.Tensor) -> tuple[str, torch.Tensor]:
    """The twin's state-dict entry as ours: PyG's ``MLP`` keeps ``lins.i`` and ``norms.i.module``
    apart, ours ``i.lin`` / ``i.norm``; PyG feeds ``[x_j, p_j - p_i]`` (and ``[x, pos]`` to the
    global level) where ours feeds coordinates first."""
    for theirs, ours in PREFIXES.items():
        if key.startswith(theirs + "."):
            kind, i, *rest = key[len(theirs) + 1 :].split(".")
            if kind == "lins":
                if i == "0" and rest[-1] == "weight" and value.size(1) > 3:
                    value = torch.cat([value[:, -3:], value[:, :-3]], 1)
                return f"{ours}.{i}.lin.{rest[-1]}", value
            return f"{ours}.{i}.norm.{rest[-1]}", value
    kind, i, *rest = key[len("head.") :].split(".")
    if kind == "lins" and i == "2":
        return f"head.4.{rest[-1]}", value
    return f"head.{2 * int(i)}.{'lin' if kind == 'lins' else 'norm'}.{rest[-1]}", value


@pytest.fixture()
def same_centres(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both networks take torch-cluster's FPS from each cloud's first point."""
    import lightning_pc.nn.pointnet2 as ours

    fps = torch_cluster.fps
    monkeypatch.setattr(
        ours,
        "sample_centres",
        lambda pos, batch, ptr, ratio, random_start: fps(pos, batch, ratio, random_start=False),
    )
    monkeypatch.setattr(
        torch_cluster, "fps", lambda pos, batch, ratio: fps(pos, batch, ratio, random_start=False)
    )


@pytest.mark.parametrize("training", [True, False])
def test_pointnet2_ssg_equals_the_pyg_twin(same_centres: None, training: bool) -> None:
    torch.manual_seed(0)
    twin = _twin_builder()(10).double()
    twin.sa1.k = twin.sa2.k = 10_000  # whole balls on both sides: no truncation rule in play
    twin.head.dropout = [0.0] * len(twin.head.dropout)
    ours = create_model(
        "pointnet2_ssg", num_classes=10, dropout=0.0, num_samples=[[10_000], [10_000]]
    ).double()
    mapped = dict(_our_key(k, v) for k, v in twin.state_dict().items())
    ours.load_state_dict(mapped, strict=True)
    batch = make_batch([300, 256, 280, 310])
    batch.pos = batch.pos.double()
    target = torch.tensor([0, 3, 5, 7])
    ours.train(training)
    twin.train(training)
    if not training:  # evaluation normalises with running statistics: make them non-trivial
        with torch.no_grad():
            for name, buf in twin.named_buffers():
                if name.endswith("running_var"):
                    buf.uniform_(0.5, 2.0)
                elif name.endswith("running_mean"):
                    buf.normal_(0.0, 0.1)
        ours.load_state_dict(dict(_our_key(k, v) for k, v in twin.state_dict().items()))
    loss_ours = F.cross_entropy(ours(batch), target)
    loss_twin = F.cross_entropy(twin(batch), target)
    loss_ours.backward()
    loss_twin.backward()
    torch.testing.assert_close(loss_ours, loss_twin, rtol=1e-10, atol=1e-12)
    grads = dict(ours.named_parameters())
    checked = 0
    for key, p in twin.named_parameters():
        name, grad = _our_key(key, p.grad)
        scale = float(grad.abs().max())
        torch.testing.assert_close(grads[name].grad, grad, rtol=1e-8, atol=1e-9 * max(scale, 1.0))
        checked += 1
    assert checked == len(list(ours.parameters()))
