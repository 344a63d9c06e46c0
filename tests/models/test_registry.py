from __future__ import annotations

import collections.abc
import inspect
import typing

import pytest
from torch import nn

from lightning_pc.models import (
    DGCNN,
    ClassificationHead,
    DGCNNBackbone,
    PointNet2,
    PointNet2Backbone,
    PointNetwork,
    SegmentationHead,
    create_model,
    list_models,
    register_model,
)
from lightning_pc.models.registry import _REGISTRY

NAMES = [
    "dgcnn",
    "dgcnn_part_seg",
    "dgcnn_sem_seg",
    "pointnet2_msg",
    "pointnet2_msg_part_seg",
    "pointnet2_msg_sem_seg",
    "pointnet2_ssg",
    "pointnet2_ssg_part_seg",
    "pointnet2_ssg_sem_seg",
]


def test_names_registered() -> None:
    names = list_models()
    assert names == sorted(names)
    assert set(NAMES) <= set(names)


@pytest.mark.parametrize(
    "name, backbone, head, categories",
    [
        ("pointnet2_ssg", PointNet2Backbone, ClassificationHead, 0),
        ("pointnet2_msg_part_seg", PointNet2Backbone, SegmentationHead, 16),
        ("pointnet2_ssg_sem_seg", PointNet2Backbone, SegmentationHead, 0),
        ("dgcnn", DGCNNBackbone, ClassificationHead, 0),
        ("dgcnn_part_seg", DGCNNBackbone, SegmentationHead, 16),
        ("dgcnn_sem_seg", DGCNNBackbone, SegmentationHead, 0),
    ],
)
def test_create_model_builds_the_named_network(
    name: str, backbone: type, head: type, categories: int
) -> None:
    model = create_model(name, num_classes=7)
    assert type(model) is PointNetwork
    assert type(model.backbone) is backbone and type(model.head) is head
    assert model.backbone.num_categories == categories
    assert model.head[-1].out_features == 7


def test_kwargs_override_hyperparameters() -> None:
    model = create_model("dgcnn", num_classes=10, k=8, emb_dims=256, in_channels=3)
    assert model.backbone.k == 8 and model.backbone.embed.lin.out_features == 256
    assert model.backbone.convs[0].in_channels == 6
    model = create_model("pointnet2_ssg", num_classes=10, radii=[[0.3], [0.5]])
    assert model.backbone.sa[0].radii == [0.3] and model.backbone.sa[1].radii == [0.5]
    with pytest.raises(TypeError, match="radius"):
        create_model("pointnet2_ssg", num_classes=10, radius=0.3)  # a typo is refused


def test_unknown_name_lists_known_ones() -> None:
    with pytest.raises(KeyError, match="pointnet2_ssg"):
        create_model("pointnet3", num_classes=2)


def test_register_model_rejects_duplicates() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_model("dgcnn")(lambda num_classes: nn.Identity())


PLAIN = {int, float, str, bool, type(None), list, tuple}


def _plain(annotation: object) -> bool:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return all(isinstance(a, str) for a in typing.get_args(annotation))
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return all(_plain(a) for a in typing.get_args(annotation))
    if origin in (list, tuple, collections.abc.Sequence):
        return all(_plain(a) for a in typing.get_args(annotation) if a is not Ellipsis)
    return annotation in PLAIN


def _check_plain(function: object) -> None:
    hints = typing.get_type_hints(function)
    for name, param in inspect.signature(function).parameters.items():  # type: ignore[arg-type]
        if name == "self" or param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
            continue
        assert _plain(hints[name]), (function, name, hints[name])
        default = param.default
        assert default is param.empty or type(default) in PLAIN, (function, name)


@pytest.mark.parametrize("builder", [PointNet2, DGCNN])
def test_family_builders_take_plain_yaml_types(builder: object) -> None:
    _check_plain(builder)


@pytest.mark.parametrize("name", list_models())
def test_hyperparameters_are_plain_yaml_types(name: str, tiny_model) -> None:
    """A checkpoint's hyperparameters (``model_kwargs``) are read back with
    ``weights_only=True``: every backbone argument is a plain YAML type."""
    backbone = type(tiny_model(name, in_channels=2).backbone)
    _check_plain(backbone.__init__)  # type: ignore[misc]


@pytest.mark.parametrize("name", list_models())
def test_each_network_registers_where_it_is_defined(name: str, tiny_model) -> None:
    """No hand-kept table: the builder lives in the module of the backbone it builds."""
    kwargs = {"num_categories": 2} if "part_seg" in name else {}
    model = tiny_model(name, num_classes=3, **kwargs)
    assert _REGISTRY[name].__module__ == type(model.backbone).__module__
