"""Part-segmentation IoU by the ShapeNetPart protocol, as a DDP-syncable torchmetrics Metric."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor
from torchmetrics import Metric

PartIoUAverage = Literal["instance", "category", "none"]


def mask_part_logits(
    logits: Tensor, category: Tensor, batch: Tensor, part_offsets: Tensor
) -> Tensor:
    """Set the logits of parts outside each point's shape category to ``-inf``.

    Args:
        logits: ``[N, P]`` part logits.
        category: ``[B]`` category index of each shape.
        batch: ``[N]`` shape index of each point.
        part_offsets: ``[K + 1]`` offsets: category ``k`` owns parts
            ``part_offsets[k]:part_offsets[k + 1]``.

    Returns:
        ``[N, P]`` masked logits.
    """
    cat = category.view(-1).long()[batch]  # [N]
    parts = torch.arange(logits.size(1), device=logits.device)  # [P]
    lo = part_offsets[cat].unsqueeze(1)  # [N, 1]
    hi = part_offsets[cat + 1].unsqueeze(1)
    own = (parts >= lo) & (parts < hi)  # [N, P]
    return logits.masked_fill(~own, float("-inf"))


class PartIoU(Metric):
    """Mean IoU of part segmentation by the ShapeNetPart protocol.

    For each shape: the IoU of every part of its own category (a part absent from both
    the prediction and the ground truth counts as 1), averaged over those parts. Instance
    mIoU (``average="instance"``) is the mean over shapes; class mIoU (``"category"``) the
    mean over categories (present in the data) of their shapes' means; ``"none"`` returns
    the per-category means ``[K]`` (``nan`` for categories without shapes).

    States are per-category sums of shape mIoUs and shape counts, so the metric syncs
    across processes by summation.

    Args:
        part_offsets: ``[K + 1]`` offsets; category ``k`` owns global parts
            ``part_offsets[k]:part_offsets[k + 1]``.
        average: ``"instance"``, ``"category"`` or ``"none"``.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    iou_sum: Tensor
    shape_count: Tensor
    offsets: Tensor

    def __init__(self, part_offsets: list[int], average: PartIoUAverage = "instance") -> None:
        super().__init__()
        if average not in ("instance", "category", "none"):
            raise ValueError(f"unknown average {average!r}")
        if len(part_offsets) < 2 or any(b <= a for a, b in zip(part_offsets, part_offsets[1:])):
            raise ValueError("part_offsets must be strictly increasing, with at least 2 entries")
        self.average = average
        self.num_categories = len(part_offsets) - 1
        self.num_parts = int(part_offsets[-1])
        self.register_buffer(
            "offsets", torch.tensor(part_offsets, dtype=torch.long), persistent=False
        )
        self.add_state("iou_sum", torch.zeros(self.num_categories, dtype=torch.float64), "sum")
        self.add_state("shape_count", torch.zeros(self.num_categories, dtype=torch.float64), "sum")

    def update(self, preds: Tensor, target: Tensor, batch: Tensor, category: Tensor) -> None:
        """Accumulate the shapes of one batch.

        Args:
            preds: ``[N]`` predicted global part ids, or ``[N, P]`` logits (masked to each
                shape's category, then arg-maxed).
            target: ``[N]`` true global part ids.
            batch: ``[N]`` shape index of each point (``0..B-1``).
            category: ``[B]`` category index of each shape.
        """
        category = category.view(-1).long()
        offsets = self.offsets.to(target.device)
        if preds.dim() == 2:
            preds = mask_part_logits(preds, category, batch, offsets).argmax(1)
        preds, target, batch = preds.long(), target.long(), batch.long()
        num_shapes, p = category.numel(), self.num_parts
        if target.numel() and (int(target.max()) >= p or int(target.min()) < 0):
            raise ValueError(f"target part ids must lie in [0, {p})")
        key_t = batch * p + target
        size = num_shapes * p
        hit = preds == target
        inter = torch.bincount(key_t[hit], minlength=size).view(num_shapes, p)
        # predictions outside [0, P) cannot be matched: clamp them onto no shape's own part
        pred_ok = (preds >= 0) & (preds < p)
        pred_count = torch.bincount((batch * p + preds)[pred_ok], minlength=size).view(
            num_shapes, p
        )
        true_count = torch.bincount(key_t, minlength=size).view(num_shapes, p)
        union = pred_count + true_count - inter  # [B, P]
        iou = torch.where(
            union > 0, inter / union.clamp(min=1), torch.ones_like(union, dtype=torch.float)
        )
        parts = torch.arange(p, device=target.device)
        own = (parts >= offsets[category].unsqueeze(1)) & (
            parts < offsets[category + 1].unsqueeze(1)
        )
        shape_miou = (iou * own).sum(1).double() / own.sum(1).double()  # [B]
        self.iou_sum += torch.bincount(category, shape_miou, minlength=self.num_categories)
        self.shape_count += torch.bincount(category, minlength=self.num_categories).double()

    def compute(self) -> Tensor:
        """The mIoU (scalar), or the per-category mIoUs (``average="none"``)."""
        per_category = self.iou_sum / self.shape_count  # nan where no shapes
        if self.average == "none":
            return per_category.float()
        if self.average == "instance":
            return (self.iou_sum.sum() / self.shape_count.sum().clamp(min=1)).float()
        present = self.shape_count > 0
        if not present.any():
            return torch.tensor(0.0, device=self.iou_sum.device)
        return per_category[present].mean().float()
