"""The contract of every registered network, discovered from the registry (a new family
cannot escape it): a :class:`PointNetwork` of a ``Point -> Point`` backbone and a shared
head, whose backbone freezes, whose head swaps, and whose backbone weights load alone.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
from torch import nn
from torch_geometric.data import Batch

from lightning_pc.models import (
    ClassificationHead,
    Point,
    PointNetwork,
    SegmentationHead,
    as_point,
    heads,
    list_models,
)
from tests.models.shapes import make_batch

NAMES = list_models()


def batch_for(name: str) -> Batch:
    """Three clouds with two features and a category of 0 or 1 each."""
    batch = make_batch([48, 40, 36], in_channels=2, seed=1)
    batch.category = torch.tensor([0, 1, 0])
    return batch


def states(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", NAMES)
def test_every_network_is_a_backbone_and_a_shared_head(
    name: str, tiny_model: Callable[..., PointNetwork]
) -> None:
    model = tiny_model(name, num_classes=5, in_channels=2).eval()
    assert type(model) is PointNetwork
    assert {k.split(".")[0] for k in model.state_dict()} == {"backbone", "head"}
    assert isinstance(model.head, ClassificationHead | SegmentationHead)
    assert type(model.head).__module__ == heads.__name__  # heads live in models/heads.py only
    batch = batch_for(name)
    with torch.no_grad():
        features = model.backbone(as_point(batch))
        logits = model(batch)
    assert isinstance(features, Point) and features.x is not None
    assert features.x.size(1) == model.backbone.out_channels
    rows = batch.num_graphs if isinstance(model.head, ClassificationHead) else batch.num_nodes
    assert logits.shape == (rows, 5)
    with torch.no_grad():
        assert torch.equal(model.head(features), logits)


@pytest.mark.parametrize("name", NAMES)
def test_a_frozen_backbone_stands_still_while_the_head_trains(
    name: str, tiny_model: Callable[..., PointNetwork]
) -> None:
    torch.manual_seed(0)
    model = tiny_model(name, num_classes=5, in_channels=2)
    assert model.freeze_backbone() is model
    model.train()  # as the Trainer does each epoch: the frozen backbone stays in eval mode
    assert model.training and model.head.training and not model.backbone.training
    assert not any(p.requires_grad for p in model.backbone.parameters())
    backbone, head = states(model.backbone), states(model.head)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.1)
    batch = batch_for(name)
    logits = model(batch)
    target = torch.zeros(logits.size(0), dtype=torch.long)
    nn.functional.cross_entropy(logits, target).backward()
    opt.step()
    assert same(states(model.backbone), backbone)  # weights and batch-norm statistics
    assert not same(states(model.head), head)
    model.freeze_backbone(False)
    assert model.backbone.training and all(p.requires_grad for p in model.backbone.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_the_head_swaps(name: str, tiny_model: Callable[..., PointNetwork]) -> None:
    model = tiny_model(name, num_classes=5, in_channels=2).eval()
    old = model.head
    new = copy.deepcopy(old)
    last = new[-1]
    new[len(new) - 1] = nn.Linear(last.in_features, 7, bias=last.bias is not None)
    assert model.replace_head(new) is old and model.head is new
    with torch.no_grad():
        assert model(batch_for(name)).size(1) == 7
    assert model.state_dict()[f"head.{len(new) - 1}.weight"].shape == (7, last.in_features)


@pytest.mark.parametrize("name", NAMES)
def test_backbone_weights_load_alone(name: str, tiny_model: Callable[..., PointNetwork]) -> None:
    torch.manual_seed(0)
    pretrained = tiny_model(name, num_classes=5, in_channels=2)
    for m in pretrained.modules():  # statistics other than the initial ones
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_()
    torch.manual_seed(1)
    model = tiny_model(name, num_classes=3, in_channels=2)  # another head: its keys do not fit
    head, init = states(model.head), states(model.backbone)
    assert not same(init, states(pretrained.backbone))
    task_state = {f"model.{k}": v for k, v in pretrained.state_dict().items()}  # a checkpoint's
    for source in (pretrained.state_dict(), pretrained.backbone.state_dict(), task_state):
        model.backbone.load_state_dict(init)
        result = model.load_backbone_state_dict(source)
        assert not result.missing_keys and not result.unexpected_keys
        assert same(states(model.backbone), states(pretrained.backbone))
        assert same(states(model.head), head)
    partial = dict(pretrained.backbone.state_dict())
    partial.pop(next(iter(partial)))
    with pytest.raises(RuntimeError, match="Missing key"):
        model.load_backbone_state_dict(partial)
    assert model.load_backbone_state_dict(partial, strict=False).missing_keys


def test_every_registered_network_has_tiny_kwargs(tiny_models: dict[str, dict]) -> None:
    """The one tiny-model table (``tests/conftest.py``) covers the registry."""
    assert sorted(tiny_models) == NAMES
