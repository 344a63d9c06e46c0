from __future__ import annotations

import inspect
import typing

import pytest
from torch import nn

from lightning_pc.models import DGCNN, PointNet2, create_model, list_models, register_model

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
    "name, cls, task",
    [
        ("pointnet2_ssg", PointNet2, "classification"),
        ("pointnet2_msg_part_seg", PointNet2, "part_segmentation"),
        ("pointnet2_ssg_sem_seg", PointNet2, "semantic_segmentation"),
        ("dgcnn", DGCNN, "classification"),
        ("dgcnn_part_seg", DGCNN, "part_segmentation"),
        ("dgcnn_sem_seg", DGCNN, "semantic_segmentation"),
    ],
)
def test_create_model_builds_the_named_network(name: str, cls: type, task: str) -> None:
    model = create_model(name, num_classes=7)
    assert isinstance(model, cls)
    assert model.task == task
    assert model.head[-1].out_features == 7


def test_kwargs_override_hyperparameters() -> None:
    model = create_model("dgcnn", num_classes=10, k=8, emb_dims=256, in_channels=3)
    assert model.k == 8 and model.embed.lin.out_features == 256
    assert model.convs[0].in_channels == 6
    model = create_model("pointnet2_ssg", num_classes=10, radii=[[0.3], [0.5]])
    assert model.sa[0].radii == [0.3] and model.sa[1].radii == [0.5]


def test_unknown_name_lists_known_ones() -> None:
    with pytest.raises(KeyError, match="pointnet2_ssg"):
        create_model("pointnet3", num_classes=2)


def test_register_model_rejects_duplicates() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_model("dgcnn")(lambda num_classes: nn.Identity())


PLAIN = {int, float, str, bool, type(None), list}


def _plain(annotation: object) -> bool:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return all(isinstance(a, str) for a in typing.get_args(annotation))
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return all(_plain(a) for a in typing.get_args(annotation))
    if origin is list:
        return all(_plain(a) for a in typing.get_args(annotation))
    return annotation in PLAIN


@pytest.mark.parametrize("cls", [PointNet2, DGCNN])
def test_hyperparameters_are_plain_yaml_types(cls: type) -> None:
    hints = typing.get_type_hints(cls.__init__)
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if name == "self":
            continue
        assert _plain(hints[name]), (name, hints[name])
        assert type(param.default) in PLAIN or param.default is None, name


@pytest.mark.parametrize("name", list_models())
def test_each_network_registers_where_it_is_defined(name: str) -> None:
    """No hand-kept table: the builder lives in the module of the network it builds, and
    ``tests/conftest.py`` has tiny widths for every registered name."""
    from lightning_pc.models.registry import _REGISTRY
    from tests.conftest import TINY_MODELS

    assert name in TINY_MODELS, f"add tiny kwargs for {name!r} to tests/conftest.py"
    kwargs = dict(TINY_MODELS[name], num_categories=2) if "part_seg" in name else TINY_MODELS[name]
    model = create_model(name, num_classes=3, **kwargs)
    assert _REGISTRY[name].__module__ == type(model).__module__
