"""Losses a task names: Lovasz-softmax against Pointcept's definition, weighted sums, tasks.

The reference numbers (value and gradient of Pointcept's ``LovaszLoss(mode="multiclass")``
and of its PTv3 ``criteria``, cross-entropy plus Lovasz) were written by
``tests/data/losses/make_lovasz_reference.py`` running Pointcept's ``lovasz.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lightning_pc.tasks import SemanticSegmentationTask
from lightning_pc.tasks.losses import (
    LovaszSoftmaxLoss,
    WeightedLossSum,
    build_loss,
    lovasz_softmax,
)
from tests.conftest import tiny_kwargs

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "losses" / "lovasz_reference.npz"
CASES = ["mixed", "absent", "single", "one_point"]


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(REFERENCE) as data:
        return {k: data[k] for k in data.files}


def _inputs(ref: dict[str, np.ndarray], case: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    logits = torch.tensor(ref[f"{case}_logits"], requires_grad=True)
    return logits, torch.tensor(ref[f"{case}_target"]), int(ref[f"{case}_ignore"])


@pytest.mark.parametrize("case", CASES)
def test_lovasz_equals_pointcept_value_and_gradient(
    reference: dict[str, np.ndarray], case: str
) -> None:
    logits, target, ignore = _inputs(reference, case)
    loss = lovasz_softmax(logits, target, ignore)
    loss.backward()
    assert loss.item() == pytest.approx(float(reference[f"{case}_loss"]), abs=1e-6)
    assert logits.grad is not None
    np.testing.assert_allclose(logits.grad.numpy(), reference[f"{case}_grad"], atol=1e-7)


@pytest.mark.parametrize("case", CASES)
def test_cross_entropy_plus_lovasz_equals_pointcept_criteria(
    reference: dict[str, np.ndarray], case: str
) -> None:
    logits, target, ignore = _inputs(reference, case)
    criterion = build_loss(
        [{"name": "cross_entropy", "weight": 1.0}, {"name": "lovasz", "weight": 1.0}],
        num_classes=logits.shape[1],
        ignore_index=ignore,
    )
    loss = criterion(logits, target)
    loss.backward()
    assert loss.item() == pytest.approx(float(reference[f"{case}_ce_lovasz_loss"]), abs=2e-6)
    assert logits.grad is not None
    np.testing.assert_allclose(logits.grad.numpy(), reference[f"{case}_ce_lovasz_grad"], atol=1e-7)


def test_lovasz_reference_cases_cover_absent_classes(reference: dict[str, np.ndarray]) -> None:
    # the "absent" case leaves classes out of the labels: they must not enter the mean
    target = reference["absent_target"]
    labelled = set(target[target != int(reference["absent_ignore"])].tolist())
    assert labelled == {0, 2, 3, 5, 6}
    logits, t, ignore = _inputs(reference, "absent")
    per_class = []
    for c in sorted(labelled):  # mean of one-class losses == the loss
        keep = t != ignore
        fg = (t[keep] == c).float()
        err = (fg - logits[keep].softmax(1)[:, c]).abs()
        order = err.argsort(descending=True)
        fg_s = fg[order]
        inter = fg_s.sum() - fg_s.cumsum(0)
        union = fg_s.sum() + (1 - fg_s).cumsum(0)
        jac = 1 - inter / union
        grad = torch.cat([jac[:1], jac[1:] - jac[:-1]])
        per_class.append(torch.dot(err[order], grad))
    assert lovasz_softmax(logits, t, ignore).item() == pytest.approx(
        torch.stack(per_class).mean().item(), abs=1e-6
    )


def test_lovasz_all_ignored_is_a_finite_zero_with_zero_gradients() -> None:
    logits = torch.randn(10, 4, requires_grad=True)
    target = torch.full((10,), -1)
    loss = lovasz_softmax(logits, target, ignore_index=-1)
    assert loss.dim() == 0 and loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None and torch.equal(logits.grad, torch.zeros_like(logits))
    # in a sum with cross-entropy (itself NaN on an all-ignored batch in PyTorch) the
    # Lovasz part stays finite
    assert torch.isfinite(LovaszSoftmaxLoss(-1)(logits, target))
    empty = torch.zeros(0, 4, requires_grad=True)
    assert lovasz_softmax(empty, torch.zeros(0, dtype=torch.long)).item() == 0.0


def test_lovasz_perfect_prediction_is_zero_and_worst_is_one() -> None:
    target = torch.tensor([0, 1, 2, 1, 0])
    sure = nn.functional.one_hot(target, 3).float() * 100.0
    assert lovasz_softmax(sure, target).item() == pytest.approx(0.0, abs=1e-6)
    wrong = nn.functional.one_hot((target + 1) % 3, 3).float() * 100.0
    assert lovasz_softmax(wrong, target).item() == pytest.approx(1.0, abs=1e-6)


def test_lovasz_works_in_float32_under_half_logits() -> None:
    logits = torch.randn(50, 5)
    target = torch.randint(0, 5, (50,))
    half = lovasz_softmax(logits.bfloat16(), target)
    assert half.dtype == torch.float32
    assert half.item() == pytest.approx(
        lovasz_softmax(logits.bfloat16().float(), target).item(), abs=1e-6
    )


def test_lovasz_refuses_labels_out_of_range() -> None:
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        lovasz_softmax(torch.randn(4, 3), torch.tensor([0, 1, 3, 2]))


def test_weighted_sum_weights_each_term() -> None:
    logits, target = torch.randn(30, 4), torch.randint(0, 4, (30,))
    ce = nn.functional.cross_entropy(logits, target)
    lz = lovasz_softmax(logits, target)
    loss = build_loss(
        [{"name": "cross_entropy", "weight": 0.5}, {"name": "lovasz", "weight": 2.0}], 4
    )
    assert isinstance(loss, WeightedLossSum)
    assert loss(logits, target).item() == pytest.approx(0.5 * ce.item() + 2.0 * lz.item())
    alone = build_loss(["lovasz"], 4)
    assert alone(logits, target).item() == pytest.approx(lz.item())


def test_build_loss_default_is_the_old_cross_entropy() -> None:
    loss = build_loss(None, 3, ignore_index=-1, class_weights=[1.0, 2.0, 3.0], label_smoothing=0.1)
    assert isinstance(loss, nn.CrossEntropyLoss)
    assert loss.ignore_index == -1 and loss.label_smoothing == 0.1
    assert loss.weight is not None and loss.weight.tolist() == [1.0, 2.0, 3.0]


@pytest.mark.parametrize(
    ("losses", "match"),
    [
        ([], "non-empty list"),
        ([{"name": "dice"}], "unknown loss 'dice'"),
        ([{"name": "lovasz", "scale": 2}], r"losses\[0\] must have a name"),
        (["lovasz", {"name": "lovasz"}], "listed twice"),
        ([{"name": "lovasz", "weight": -1}], "weight must be finite"),
        ([{"name": "lovasz", "weight": float("nan")}], "weight must be finite"),
    ],
)
def test_build_loss_refuses_bad_entries(losses: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_loss(losses, 3)


def test_segmentation_task_trains_on_the_named_losses() -> None:
    losses = [{"name": "cross_entropy", "weight": 1.0}, {"name": "lovasz", "weight": 1.0}]
    task = SemanticSegmentationTask(
        model="ptv3", model_kwargs=tiny_kwargs("ptv3"), num_classes=4, ignore_index=-1,
        losses=losses,
    )  # fmt: skip
    assert task.hparams["losses"] == losses
    logits = torch.randn(20, 4)
    target = torch.randint(-1, 4, (20,))
    keep = target != -1
    expected = nn.functional.cross_entropy(logits[keep], target[keep]) + lovasz_softmax(
        logits, target, -1
    )
    assert task.criterion(logits, target).item() == pytest.approx(expected.item(), abs=1e-6)
    plain = SemanticSegmentationTask(model="ptv3", model_kwargs=tiny_kwargs("ptv3"), num_classes=4)
    assert isinstance(plain.criterion, nn.CrossEntropyLoss)
