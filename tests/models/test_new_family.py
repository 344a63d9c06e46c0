"""A new network family is one file: its backbone and a registered builder; a config names it.

``FAMILY`` is the whole file a user writes: a backbone from ``Point`` to ``Point`` and one
builder that joins it to a shared head. The test runs it through the CLI (``imports:`` in
the config) for one training step and checks the network it built and trained.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from lightning_pc.cli import main
from lightning_pc.models import registry

FAMILY = '''
"""Per-point MLP: the smallest backbone (a shared MLP on each point's [pos, x])."""

from torch import nn

from lightning_pc.models import ClassificationHead, Point, PointNetwork, register_model
from lightning_pc.nn import SharedMLP


class PerPointMLP(nn.Module):
    """[pos, x] of every point through a shared MLP: features [N, width]."""

    def __init__(self, in_channels: int = 0, width: int = 32) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.mlp = SharedMLP([3 + in_channels, width, width])
        self.out_channels = width

    def forward(self, point: Point) -> Point:
        point = point.for_channels(self.in_channels)
        return point.with_features(self.mlp(point.pos_x))


@register_model("per_point_mlp")
def per_point_mlp(num_classes: int, in_channels: int = 0, width: int = 32) -> PointNetwork:
    backbone = PerPointMLP(in_channels, width)
    head = ClassificationHead(width, num_classes, pool="max", hidden=[16])
    return PointNetwork(backbone, head)
'''

CONFIG = """
imports: [per_point_mlp]
model:
  class_path: ClassificationTask
  init_args:
    model: per_point_mlp
    model_kwargs: {width: 8}
data:
  class_path: SyntheticShapesDataModule
  init_args: {num_train: 8, num_val: 4, num_test: 4, num_points: 32, batch_size: 4}
trainer:
  max_epochs: 1
  limit_train_batches: 1
  limit_val_batches: 1
  accelerator: cpu
  devices: 1
  enable_progress_bar: false
  enable_model_summary: false
  logger: false
  default_root_dir: runs
  callbacks:
    - class_path: lightning_pc.callbacks.ModelCheckpoint
      init_args: {dirpath: runs/checkpoints, filename: last}
"""


@pytest.fixture
def clean_registry() -> Iterator[None]:
    """The user's module registers a name: forget it (and the module) afterwards."""
    before = dict(registry._REGISTRY)
    yield
    registry._REGISTRY.clear()
    registry._REGISTRY.update(before)
    sys.modules.pop("per_point_mlp", None)


def test_a_new_family_is_a_backbone_a_registration_and_a_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_registry: None
) -> None:
    (tmp_path / "per_point_mlp.py").write_text(FAMILY)
    (tmp_path / "fit.yaml").write_text(CONFIG)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    main(["fit", "--config", "fit.yaml"])

    assert "per_point_mlp" in registry.list_models()
    ckpt = torch.load(tmp_path / "runs" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 1  # one optimiser step
    state = ckpt["state_dict"]
    assert {k.split(".")[1] for k in state} == {"backbone", "head"}
    assert state["model.backbone.mlp.0.lin.weight"].shape == (8, 3)
    assert state["model.head.2.weight"].shape == (12, 16)  # hidden 16 -> 12 shape classes

    # the trained network from the checkpoint classifies a PyG batch and a Point alike
    from lightning_pc.models import as_point, create_model
    from tests.models.shapes import make_batch

    model = create_model("per_point_mlp", num_classes=12, width=8).eval()
    model.load_state_dict({k.removeprefix("model."): v for k, v in state.items()})
    batch = make_batch([30, 20])
    with torch.no_grad():
        logits = model(batch)
        assert logits.shape == (2, 12)
        assert torch.equal(model(as_point(batch)), logits)
