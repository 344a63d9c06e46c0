"""Name -> builder registry, so configs and tasks can name a network (as timm's).

Each network registers its builders with :func:`register_model` where it is defined;
importing :mod:`lightning_pc.models` imports them all.

>>> from lightning_pc.models import create_model
>>> model = create_model("pointnet2_ssg", num_classes=40)

Pretrained checkpoints (:mod:`lightning_pc.models.pretrained`) are built by their card's
name, ``create_model("ptv3_scannet20", pretrained=True)``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from torch import nn

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
    # "PTv3 classifier; ``kwargs``: ..." -> "PTv3 classifier"
    return doc.splitlines()[0].split("; ``kwargs``")[0].strip() if doc else ""


def build(name: str, num_classes: int | None, **kwargs: Any) -> nn.Module:
    """Call the builder registered as ``name`` (``num_classes=None``: the builder's default).

    Raises:
        KeyError: for an unknown name (the message lists the known ones).
    """
    try:
        builder = _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(list_models())}") from None
    if num_classes is None:
        return builder(**kwargs)
    return builder(num_classes=num_classes, **kwargs)


def create_model(
    name: str,
    num_classes: int | None = None,
    pretrained: bool | str | Path = False,
    **kwargs: Any,
) -> nn.Module:
    """Build the registered network or pretrained card ``name``; ``kwargs`` override its
    hyperparameters.

    Args:
        name: a registered network (:func:`list_models`) or a pretrained card
            (:func:`~lightning_pc.models.pretrained.list_pretrained`: the card's network).
        num_classes: classes of the head (a card's default: its trained head's).
        pretrained: ``False``: initial weights. ``True``: the weights of the card ``name``
            (from the Hugging Face cache, downloaded at its pinned revision when
            ``huggingface_hub`` is installed and online). A path: a checkpoint file (or a
            folder of a card's files) in Pointcept's layouts or ours, converted by the card's
            key map (or the one its keys call for) and loaded strictly.
        **kwargs: the builder's arguments.

    Raises:
        KeyError: for an unknown name (the message lists the known networks and cards).
        ValueError: ``pretrained=True`` for a network without a card, or no ``num_classes``
            for a network whose builder needs it.
        lightning_pc.models.pretrained.PretrainedError: weights not found, unreadable, of a
            wrong checksum, or not matching the network (with the list of keys).
    """
    from lightning_pc.models import pretrained as pt

    card = pt.find_pretrained(name)
    if card is not None:
        return pt.build_pretrained(card, num_classes, pretrained, **kwargs)
    if name not in _REGISTRY:
        raise KeyError(
            f"unknown model {name!r}; known: {', '.join(list_models())}; pretrained cards: "
            f"{', '.join(pt.list_pretrained())}"
        )
    if pretrained is True:
        raise ValueError(
            f"{name!r} is a network without weights of its own: pretrained=True needs a "
            f"pretrained card ({', '.join(pt.list_pretrained())}), or give a checkpoint path"
        )
    model = build(name, num_classes, **kwargs)
    if pretrained:
        pt.load_pretrained(model, pretrained)
    return model
