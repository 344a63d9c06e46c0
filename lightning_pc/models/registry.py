"""Name -> builder registry, so configs and tasks can name a network (as timm's).

>>> from lightning_pc.models import create_model
>>> model = create_model("pointnet2_ssg", num_classes=40)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from lightning_pc.models.dgcnn import DGCNN
from lightning_pc.models.pointnet2 import PointNet2

Builder = Callable[..., nn.Module]
_REGISTRY: dict[str, Builder] = {}
B = TypeVar("B", bound=Builder)


def register_model(name: str) -> Callable[[B], B]:
    """Decorator registering ``builder(num_classes=..., **kwargs) -> nn.Module`` as ``name``.

    The first line of the builder's docstring describes the network in the command line's
    help (``lightning-pc --help``, ``lightning-pc fit --model.help ClassificationTask``).
    """

    def wrap(builder: B) -> B:
        if name in _REGISTRY:
            raise ValueError(f"model name {name!r} is already registered")
        _REGISTRY[name] = builder
        return builder

    return wrap


def list_models() -> list[str]:
    """Registered names, sorted."""
    return sorted(_REGISTRY)


def describe_model(name: str) -> str:
    """The first line of the docstring of ``name``'s builder (``""`` when it has none).

    Raises:
        KeyError: for an unknown name.
    """
    doc = (_REGISTRY[name].__doc__ or "").strip()
    return doc.splitlines()[0].strip() if doc else ""


def create_model(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
    """Build the registered network ``name``; ``kwargs`` override its hyperparameters.

    Raises:
        KeyError: for an unknown name (the message lists the known ones).
    """
    try:
        builder = _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(list_models())}") from None
    return builder(num_classes=num_classes, **kwargs)


_TASK_WORDS = {
    "classification": "shape classifier",
    "part_segmentation": "part segmentation",
    "semantic_segmentation": "semantic segmentation",
}


def _pointnet2(task: str, grouping: str) -> Builder:
    def build(num_classes: int, **kwargs: Any) -> nn.Module:
        return PointNet2(num_classes=num_classes, task=task, grouping=grouping, **kwargs)  # type: ignore[arg-type]

    scale = "single" if grouping == "ssg" else "multi"
    build.__doc__ = f"PointNet++ {_TASK_WORDS[task]}, {scale}-scale grouping."
    return build


def _dgcnn(task: str) -> Builder:
    def build(num_classes: int, **kwargs: Any) -> nn.Module:
        return DGCNN(num_classes=num_classes, task=task, **kwargs)  # type: ignore[arg-type]

    build.__doc__ = f"DGCNN {_TASK_WORDS[task]} (EdgeConv on k-NN graphs)."
    return build


for _grouping in ("ssg", "msg"):
    register_model(f"pointnet2_{_grouping}")(_pointnet2("classification", _grouping))
    register_model(f"pointnet2_{_grouping}_part_seg")(_pointnet2("part_segmentation", _grouping))
    register_model(f"pointnet2_{_grouping}_sem_seg")(_pointnet2("semantic_segmentation", _grouping))
register_model("dgcnn")(_dgcnn("classification"))
register_model("dgcnn_part_seg")(_dgcnn("part_segmentation"))
register_model("dgcnn_sem_seg")(_dgcnn("semantic_segmentation"))


def _sparse_resnet(num_classes: int, **kwargs: Any) -> nn.Module:
    """Sparse-voxel ResNet shape classifier."""
    from lightning_pc.models.sparse_resnet import SparseResNet

    return SparseResNet(num_classes=num_classes, **kwargs)


def _sparse_unet(num_classes: int, **kwargs: Any) -> nn.Module:
    """Sparse-voxel U-Net semantic segmentation."""
    from lightning_pc.models.sparse_unet import SparseUNet

    return SparseUNet(num_classes=num_classes, **kwargs)


register_model("sparse_resnet")(_sparse_resnet)
register_model("sparse_unet")(_sparse_unet)


def _ptv3(num_classes: int, **kwargs: Any) -> nn.Module:
    """Point Transformer V3 semantic segmentation."""
    from lightning_pc.models.ptv3 import PTv3

    return PTv3(num_classes=num_classes, **kwargs)


def _ptv3_cls(num_classes: int, **kwargs: Any) -> nn.Module:
    """Point Transformer V3 shape classifier."""
    from lightning_pc.models.ptv3 import PTv3Cls

    return PTv3Cls(num_classes=num_classes, **kwargs)


register_model("ptv3")(_ptv3)
register_model("ptv3_cls")(_ptv3_cls)
