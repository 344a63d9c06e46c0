"""Heads shared by the network families, and the part-segmentation category input.

A backbone maps a :class:`~lightning_pc.nn.point.Point` to a :class:`Point` whose ``x``
holds its features (one row per point, voxel or cloud, as its last level has them); a head
maps that to logits:

- :class:`ClassificationHead`: pools each cloud's rows (``max``, ``mean``, ``max+mean``, or
  none when the backbone already gives one row per cloud), then an MLP: ``[B, classes]``;
- :class:`SegmentationHead`: the MLP on every row, read back at the input points through the
  voxels' ``inverse`` map when the rows are voxels: ``[N, classes]``;
- :func:`category_onehot` and :class:`CategoryEmbedding`: the object category of each cloud
  (``batch.category``), one-hot or embedded, for part segmentation.

:class:`PointNetwork` joins a backbone and a head, so a new family writes only its backbone
(see ``tests/models/test_new_family.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_pc.nn.mlp import Activation, LinearBNAct
from lightning_pc.nn.point import Point, as_point
from lightning_pc.nn.segment import lengths_from_ptr, segment_max, segment_mean

Pool = Literal["none", "max", "mean", "max+mean"]
_POOL_WIDTH = {"none": 1, "max": 1, "mean": 1, "max+mean": 2}


def category_onehot(point: Point, num_categories: int, dtype: torch.dtype) -> Tensor:
    """[B, num_categories] one-hot object category of each cloud.

    Raises:
        ValueError: the batch carries no ``category``.
    """
    if point.category is None:
        raise ValueError("part segmentation needs batch.category ([B] category index)")
    return F.one_hot(point.category.view(-1).long(), num_categories).to(dtype)


class CategoryEmbedding(LinearBNAct):
    """The one-hot category of each cloud through ``Linear -> BN -> activation``: [B, C].

    Args:
        num_categories: object categories (16 for ShapeNetPart).
        out_channels: embedding width.
        **kwargs: :class:`~lightning_pc.nn.mlp.LinearBNAct` options.
    """

    def __init__(self, num_categories: int, out_channels: int, **kwargs: Any) -> None:
        super().__init__(num_categories, out_channels, **kwargs)
        self.num_categories = num_categories

    def forward(self, point: Point) -> Tensor:  # type: ignore[override]
        return super().forward(category_onehot(point, self.num_categories, self.lin.weight.dtype))


class MLPHead(nn.Sequential):
    """Hidden layers ``LinearBNAct`` (each optionally followed by dropout), then a linear
    classifier: ``[R, in_channels] -> [R, num_classes]``.

    Args:
        in_channels: input width.
        num_classes: output width.
        hidden: hidden widths.
        dropout: dropout probability after the hidden layers.
        dropout_layers: indices of the hidden layers followed by dropout (``None``: all).
        act: activation of the hidden layers.
        negative_slope: slope of the leaky ReLU.
        bias: bias of the hidden linear maps, one for all or one per layer.
        final_bias: bias of the classifier.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        hidden: Sequence[int] = (),
        dropout: float = 0.5,
        dropout_layers: Sequence[int] | None = None,
        act: Activation = "relu",
        negative_slope: float = 0.2,
        bias: bool | Sequence[bool] = True,
        final_bias: bool = True,
    ) -> None:
        biases = [bias] * len(hidden) if isinstance(bias, bool) else list(bias)
        if len(biases) != len(hidden):
            raise ValueError(f"bias needs one entry per hidden layer ({len(hidden)})")
        drop = set(range(len(hidden)) if dropout_layers is None else dropout_layers)
        layers: list[nn.Module] = []
        width = in_channels
        for i, (h, b) in enumerate(zip(hidden, biases, strict=True)):
            layers.append(LinearBNAct(width, h, b, act, negative_slope))
            if i in drop:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, num_classes, bias=final_bias))
        super().__init__(*layers)
        self.in_channels = in_channels
        self.num_classes = num_classes


class ClassificationHead(MLPHead):
    """Per-cloud logits [B, num_classes]: pool each cloud's rows, then the MLP.

    Args:
        in_channels: width of the backbone's features (before pooling).
        num_classes: classes.
        pool: ``"max"``, ``"mean"``, ``"max+mean"`` (concatenated: the MLP sees twice the
            width), or ``"none"`` when the backbone gives one row per cloud.
        **kwargs: :class:`MLPHead` options.
    """

    def __init__(
        self, in_channels: int, num_classes: int, pool: Pool = "max", **kwargs: Any
    ) -> None:
        if pool not in _POOL_WIDTH:
            raise ValueError(f"pool must be one of {', '.join(_POOL_WIDTH)}, got {pool!r}")
        super().__init__(_POOL_WIDTH[pool] * in_channels, num_classes, **kwargs)
        self.pool = pool

    def pooled(self, point: Point) -> Tensor:
        """[B, C] (or [B, 2C]) pooled features; clouds without rows get zeros."""
        x = point.x
        if x is None:
            raise ValueError("the backbone returned no features (Point.x is None)")
        if self.pool == "none":
            return x
        ptr = point.ptr
        parts = []
        if self.pool in ("max", "max+mean"):
            parts.append(segment_max(x, ptr))  # [B, C]
        if self.pool in ("mean", "max+mean"):
            mean = segment_mean(x, ptr)  # nan for a cloud without rows: zeros instead
            parts.append(torch.where(lengths_from_ptr(ptr).view(-1, 1) > 0, mean, 0.0))
        return parts[0] if len(parts) == 1 else torch.cat(parts, 1)

    def forward(self, point: Point) -> Tensor:  # type: ignore[override]
        return super().forward(self.pooled(point))  # type: ignore[no-any-return]


class SegmentationHead(MLPHead):
    """Per-point logits [N, num_classes]: the MLP on every row, read back at the input points
    through ``inverse`` when the rows are voxels.

    Args:
        in_channels: width of the backbone's features.
        num_classes: classes.
        **kwargs: :class:`MLPHead` options (``hidden=()``: one linear layer).
    """

    def forward(self, point: Point) -> Tensor:  # type: ignore[override]
        if point.x is None:
            raise ValueError("the backbone returned no features (Point.x is None)")
        logits = super().forward(point.x)
        if point.inverse is not None:
            logits = logits.index_select(0, point.inverse)  # [N, num_classes]
        return logits  # type: ignore[no-any-return]


class PointNetwork(nn.Module):
    """A backbone and a head: ``head(backbone(as_point(data)))``, the shape of every
    registered network.

    The backbone's parameters live under ``backbone.``, the head's under ``head.``, so
    freezing the backbone, swapping the head and loading a pretrained backbone are the same
    calls for every family (:meth:`freeze_backbone`, :meth:`replace_head`,
    :meth:`load_backbone_state_dict`).

    Args:
        backbone: module mapping a :class:`Point` to a :class:`Point` of features (its
            ``out_channels`` is their width, by convention).
        head: :class:`ClassificationHead`, :class:`SegmentationHead`, or any module taking
            that :class:`Point`.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.backbone_frozen = False

    def forward(self, data: Any) -> Tensor:
        """Logits of a :class:`Point` or a PyG batch."""
        return self.head(self.backbone(as_point(data)))  # type: ignore[no-any-return]

    def freeze_backbone(self, frozen: bool = True) -> PointNetwork:
        """Stop (``frozen=False``: restart) training the backbone, to fine-tune the head alone.

        A frozen backbone's parameters stop requiring gradients, and it stays in evaluation
        mode whatever :meth:`train` is called with (its batch-norm statistics, dropout and
        drop path stand still), so its features are those of the weights it was given. The
        state is a plain attribute: it is not saved in the state dict.

        Returns:
            ``self``.
        """
        self.backbone_frozen = frozen
        self.backbone.requires_grad_(not frozen)
        return self.train(self.training)

    def train(self, mode: bool = True) -> PointNetwork:
        """:meth:`torch.nn.Module.train`, leaving a frozen backbone in evaluation mode."""
        super().train(mode)
        if self.backbone_frozen:
            self.backbone.eval()
        return self

    def replace_head(self, head: nn.Module) -> nn.Module:
        """Put ``head`` in place of the head (e.g. for another number of classes).

        Returns:
            the head it replaced.
        """
        old = self.head
        self.head = head
        return old

    def load_backbone_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> Any:
        """Load the backbone's weights alone, leaving the head as it is.

        Args:
            state_dict: the backbone's own keys (``backbone.state_dict()``), or those of a
                whole network (``backbone.`` prefix) or of a task's checkpoint
                (``model.backbone.`` prefix); keys outside the backbone (the head) are then
                ignored.
            strict: every backbone key must be given and no other (see
                :meth:`torch.nn.Module.load_state_dict`).

        Returns:
            the missing and unexpected keys, as :meth:`torch.nn.Module.load_state_dict`.
        """
        for prefix in ("model.backbone.", "backbone."):
            if any(k.startswith(prefix) for k in state_dict):
                state_dict = {
                    k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)
                }
                break
        return self.backbone.load_state_dict(state_dict, strict=strict)
