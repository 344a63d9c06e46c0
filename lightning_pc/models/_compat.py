"""Loading state dicts saved before a network's layout changed (older checkpoints)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from torch import nn


class _Rename:
    """Load-state-dict pre-hook renaming old keys (a class, so the module still pickles)."""

    def __init__(self, rename: Callable[[str], str], current: str) -> None:
        self.rename = rename
        self.current = current

    def __call__(
        self, module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any
    ) -> None:
        if prefix + self.current in state_dict:  # today's layout
            return
        for key in [k for k in state_dict if k.startswith(prefix)]:
            new = prefix + self.rename(key[len(prefix) :])
            if new != key and new not in state_dict:
                state_dict[new] = state_dict.pop(key)


def rename_on_load(module: nn.Module, rename: Callable[[str], str], current: str) -> None:
    """Let ``module.load_state_dict`` (and its parents') accept keys of an older layout.

    Args:
        module: the network.
        rename: maps a key of the old layout, relative to ``module``, to its key today
            (unchanged keys map to themselves); a picklable callable.
        current: a key (relative to ``module``) found only in today's layout: a state dict
            holding it is left alone.
    """
    module.register_load_state_dict_pre_hook(_Rename(rename, current))


def unfused_head_key(key: str, hidden: int) -> str:
    """A key of a head written as ``Linear, BatchNorm1d, ReLU, Dropout`` per hidden layer and
    a final ``Linear`` (``head.<i>.<leaf>``) -> its key in :class:`~lightning_pc.models.heads.MLPHead`
    (``LinearBNAct, Dropout`` per hidden layer, then the classifier).

    Args:
        key: a state-dict key relative to the network.
        hidden: hidden layers of the head.
    """
    m = re.fullmatch(r"head\.(\d+)\.(\w+)", key)
    if m is None:
        return key
    i, leaf = int(m.group(1)), m.group(2)
    layer, part = divmod(i, 4)
    if i == 4 * hidden:  # the classifier
        return f"head.{2 * hidden}.{leaf}"
    if layer < hidden and part == 0:
        return f"head.{2 * layer}.lin.{leaf}"
    if layer < hidden and part == 1:
        return f"head.{2 * layer}.norm.{leaf}"
    return key


def linear_head_key(key: str) -> str:
    """``head.weight`` / ``head.bias`` of a one-layer head -> ``head.0.*`` of an
    :class:`~lightning_pc.models.heads.MLPHead` without hidden layers."""
    m = re.fullmatch(r"head\.(weight|bias)", key)
    return key if m is None else f"head.0.{m.group(1)}"
