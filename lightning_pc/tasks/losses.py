"""Losses a task can name: cross-entropy, Lovasz-softmax, and weighted sums of them.

A task's ``losses`` option lists the terms, each a mapping with a ``name`` (see
:data:`LOSSES`) and a ``weight`` (1.0 when left out); the loss is the weighted sum. Pointcept's
PTv3, Sonata and Concerto segmentation configs train with cross-entropy plus Lovasz::

    losses:
      - {name: cross_entropy, weight: 1.0}
      - {name: lovasz, weight: 1.0}

``None`` (the default) is cross-entropy alone, as before. Every term reads the task's
``ignore_index``; cross-entropy also its ``class_weights`` and ``label_smoothing``.

The Lovasz-softmax loss (Berman et al., CVPR 2018) is a convex surrogate of the Jaccard
index (IoU): for every class present among the batch's labelled points, the errors
``|[y = c] - p_c|`` of the softmax probabilities are sorted in decreasing order and dotted
with the gradient of the Lovasz extension of the Jaccard loss; the loss is the mean over
those classes. This is Pointcept's ``LovaszLoss(mode="multiclass", per_image=False)``
(``pointcept/models/losses/lovasz.py``): one value over the whole batch, only the classes
present in the labels, points labelled ``ignore_index`` left out. Its value and gradient
are pinned against that file in ``tests/tasks/test_losses.py`` (reference numbers written
by ``tests/data/losses/make_lovasz_reference.py``). Unlike the reference, a batch whose
points are all ignored gives a zero scalar (with zero gradients) instead of an empty tensor.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

#: names a ``losses`` entry may take
LOSSES = ("cross_entropy", "lovasz")


def lovasz_grad(fg_sorted: Tensor) -> Tensor:
    """Gradient of the Lovasz extension of the Jaccard loss at the sorted errors.

    Args:
        fg_sorted: ``[P, K]`` foreground indicators (0/1, float) of ``K`` classes, each column
            sorted by decreasing error.

    Returns:
        ``[P, K]``: for each column, ``J_i - J_{i-1}`` with ``J_i = 1 - |gt \\ top_i| /
        |gt ∪ top_i|`` the Jaccard loss of predicting the ``i`` largest errors as foreground.
    """
    gts = fg_sorted.sum(0, keepdim=True)
    intersection = gts - fg_sorted.cumsum(0)
    union = gts + (1.0 - fg_sorted).cumsum(0)
    jaccard = 1.0 - intersection / union
    return torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]], 0)


def lovasz_softmax(logits: Tensor, target: Tensor, ignore_index: int | None = -100) -> Tensor:
    """Multiclass Lovasz-softmax loss of logits over one batch (see the module).

    Args:
        logits: ``[N, C]`` class scores (softmax is taken here, in float32).
        target: ``[N]`` labels in ``[0, C)``, or ``ignore_index``.
        ignore_index: label of the points left out (``None``: none).

    Returns:
        A scalar: the mean over the classes present in ``target`` of their Lovasz
        extension; ``0`` (with zero gradients) when every point is ignored.
    """
    if logits.dim() != 2:
        raise ValueError(f"lovasz_softmax takes logits [N, C], got shape {tuple(logits.shape)}")
    target = target.reshape(-1)
    if target.numel() != logits.shape[0]:
        raise ValueError(f"{logits.shape[0]} logits rows for {target.numel()} labels")
    probs = logits.float().softmax(1)
    if ignore_index is not None:
        keep = target != ignore_index
        probs, target = probs[keep], target[keep]
    if target.numel() == 0:
        return logits.float().sum() * 0.0
    num_classes = probs.shape[1]
    if int(target.min()) < 0 or int(target.max()) >= num_classes:
        raise ValueError(
            f"labels must lie in [0, {num_classes}) or equal ignore_index={ignore_index}, "
            f"got {int(target.min())}..{int(target.max())}"
        )
    present = torch.unique(target)  # sorted, as the reference iterates them
    fg = (target.unsqueeze(1) == present.unsqueeze(0)).to(probs.dtype)  # [P, K]
    errors = (fg - probs[:, present]).abs()
    errors_sorted, perm = torch.sort(errors, 0, descending=True)
    fg_sorted = fg.gather(0, perm)
    return (errors_sorted * lovasz_grad(fg_sorted)).sum(0).mean()


class LovaszSoftmaxLoss(nn.Module):
    """:func:`lovasz_softmax` as a module.

    Args:
        ignore_index: label of the points left out (``None``: none).
    """

    def __init__(self, ignore_index: int | None = -100) -> None:
        super().__init__()
        self.ignore_index = ignore_index

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return lovasz_softmax(logits, target, self.ignore_index)


class WeightedLossSum(nn.Module):
    """Weighted sum of losses, each called with the same ``(logits, target)``.

    Args:
        terms: ``(name, loss module, weight)`` triples; the modules are registered under
            their names (``cross_entropy``, ``lovasz``).
    """

    def __init__(self, terms: Sequence[tuple[str, nn.Module, float]]) -> None:
        super().__init__()
        if not terms:
            raise ValueError("a loss sum needs at least one term")
        self.terms = nn.ModuleDict({name: module for name, module, _ in terms})
        self.weights = {name: float(weight) for name, _, weight in terms}

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        total: Tensor | None = None
        for name, loss in self.terms.items():
            value = loss(logits, target) * self.weights[name]
            total = value if total is None else total + value
        assert total is not None
        return total


def _cross_entropy(
    num_classes: int,
    ignore_index: int,
    class_weights: Sequence[float] | None,
    label_smoothing: float,
) -> nn.CrossEntropyLoss:
    if class_weights is not None and len(class_weights) != num_classes:
        raise ValueError(
            f"class_weights has {len(class_weights)} entries for {num_classes} classes"
        )
    return nn.CrossEntropyLoss(
        weight=torch.tensor(class_weights, dtype=torch.float32) if class_weights else None,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
    )


def build_loss(
    losses: Sequence[Mapping[str, Any] | str] | None,
    num_classes: int,
    ignore_index: int = -100,
    class_weights: Sequence[float] | None = None,
    label_smoothing: float = 0.0,
) -> nn.Module:
    """The loss a task's ``losses`` option names (see the module).

    Args:
        losses: entries ``{"name": ..., "weight": ...}`` (or a bare name, weight 1);
            ``None``: cross-entropy alone (an ``nn.CrossEntropyLoss``).
        num_classes: classes of the logits (checks ``class_weights``).
        ignore_index: label left out of every term.
        class_weights: per-class weights of the cross-entropy.
        label_smoothing: label smoothing of the cross-entropy.

    Raises:
        ValueError: an unknown name, a name given twice, an entry with other keys, a
            non-finite or negative weight, or an empty list.
    """
    if losses is None:
        return _cross_entropy(num_classes, ignore_index, class_weights, label_smoothing)
    if isinstance(losses, (str, Mapping)) or not losses:
        raise ValueError(
            "losses must be a non-empty list of {name, weight} entries, e.g. "
            "[{name: cross_entropy, weight: 1.0}, {name: lovasz, weight: 1.0}]"
        )
    terms: list[tuple[str, nn.Module, float]] = []
    for i, entry in enumerate(losses):
        spec = {"name": entry} if isinstance(entry, str) else dict(entry)
        unknown = set(spec) - {"name", "weight"}
        if unknown or "name" not in spec:
            raise ValueError(
                f"losses[{i}] must have a name and optionally a weight, got keys {sorted(spec)}"
            )
        name, weight = spec["name"], float(spec.get("weight", 1.0))
        if name not in LOSSES:
            raise ValueError(f"losses[{i}]: unknown loss {name!r}; known: {', '.join(LOSSES)}")
        if any(name == t[0] for t in terms):
            raise ValueError(f"losses[{i}]: {name!r} is listed twice")
        if not weight >= 0.0 or weight == float("inf"):
            raise ValueError(f"losses[{i}]: weight must be finite and >= 0, got {weight}")
        module: nn.Module
        if name == "cross_entropy":
            module = _cross_entropy(num_classes, ignore_index, class_weights, label_smoothing)
        else:
            module = LovaszSoftmaxLoss(ignore_index)
        terms.append((name, module, weight))
    return WeightedLossSum(terms)


__all__ = [
    "LOSSES",
    "LovaszSoftmaxLoss",
    "WeightedLossSum",
    "build_loss",
    "lovasz_grad",
    "lovasz_softmax",
]
