"""PartIoU against a hand computation of the ShapeNetPart protocol."""

from __future__ import annotations

import pytest
import torch

from lightning_pc.tasks import PartIoU, mask_part_logits

# two categories: 0 owns parts 0-1, 1 owns parts 2-4
OFFSETS = [0, 2, 5]


def _example() -> tuple[torch.Tensor, ...]:
    # shape 0 (category 0): truth 0 0 1 1, prediction 0 1 1 1
    #   part 0: I=1 U=2 -> 0.5; part 1: I=2 U=3 -> 2/3; shape mIoU = 7/12
    # shape 1 (category 1): truth 2 2 3, prediction 2 2 2
    #   part 2: I=2 U=3 -> 2/3; part 3: I=0 U=1 -> 0; part 4: absent from both -> 1
    #   shape mIoU = 5/9
    # shape 2 (category 1): truth 4 4, prediction 4 4 -> parts 2, 3 absent (1), part 4 -> 1
    pred = torch.tensor([0, 1, 1, 1, 2, 2, 2, 4, 4])
    target = torch.tensor([0, 0, 1, 1, 2, 2, 3, 4, 4])
    batch = torch.tensor([0, 0, 0, 0, 1, 1, 1, 2, 2])
    category = torch.tensor([0, 1, 1])
    return pred, target, batch, category


def test_instance_and_class_miou_by_hand() -> None:
    pred, target, batch, category = _example()
    shape = [7 / 12, 5 / 9, 1.0]
    for average, expected in (
        ("instance", sum(shape) / 3),
        ("category", (shape[0] + (shape[1] + shape[2]) / 2) / 2),
    ):
        metric = PartIoU(OFFSETS, average)  # type: ignore[arg-type]
        metric.update(pred, target, batch, category)
        assert metric.compute().item() == pytest.approx(expected, abs=1e-6)
    per_category = PartIoU(OFFSETS, "none")
    per_category.update(pred, target, batch, category)
    torch.testing.assert_close(
        per_category.compute(), torch.tensor([7 / 12, (5 / 9 + 1) / 2]), atol=1e-6, rtol=0
    )


def test_accumulates_over_batches_like_one_batch() -> None:
    pred, target, batch, category = _example()
    whole = PartIoU(OFFSETS, "category")
    whole.update(pred, target, batch, category)
    split = PartIoU(OFFSETS, "category")
    split.update(pred[:4], target[:4], batch[:4], category[:1])
    split.update(pred[4:], target[4:], batch[4:] - 1, category[1:])
    assert split.compute().item() == pytest.approx(whole.compute().item())


def test_logits_are_masked_to_the_category() -> None:
    # the largest logit of point 0 (shape of category 0) is part 3, a foreign part
    logits = torch.tensor([[0.0, 1.0, 0.0, 9.0, 0.0], [0.0, 0.0, 0.0, 1.0, 2.0]])
    batch, category = torch.tensor([0, 1]), torch.tensor([0, 1])
    masked = mask_part_logits(logits, category, batch, torch.tensor(OFFSETS))
    assert masked.argmax(1).tolist() == [1, 4]
    metric = PartIoU(OFFSETS, "instance")
    metric.update(logits, torch.tensor([1, 4]), batch, category)
    assert metric.compute().item() == pytest.approx(1.0)


def test_rejects_bad_offsets() -> None:
    with pytest.raises(ValueError):
        PartIoU([0, 2, 2])
