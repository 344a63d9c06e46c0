"""Name -> builder registry, so configs and tasks can name a network (as timm's).

Each network registers its builders with :func:`register_model` where it is defined;
importing :mod:`lightning_pc.models` imports them all.

>>> from lightning_pc.models import create_model
>>> model = create_model("pointnet2_ssg", num_classes=40)
"""

from __future__ import annotations

from collections.abc import Callable
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
