"""Test-time augmentation voting of ClassificationTask."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger

from lightning_pc.data import SyntheticShapesDataModule, collate
from lightning_pc.tasks import ClassificationTask
from tests.conftest import TINY_MODELS

SCALE = [{"class_path": "RandomScale", "init_args": {"low": 0.5, "high": 1.5}}]


def _data() -> SyntheticShapesDataModule:
    data = SyntheticShapesDataModule(
        num_train=4, num_val=6, num_test=6, num_points=48, batch_size=3, eval_transforms=[]
    )
    data.setup("test")
    return data


def _task(**kwargs: object) -> ClassificationTask:
    torch.manual_seed(0)
    task = ClassificationTask(model_kwargs=TINY_MODELS["pointnet2_ssg"], num_classes=12, **kwargs)  # type: ignore[arg-type]
    return task.eval()


def _batch(data: SyntheticShapesDataModule) -> object:
    return next(iter(data.test_dataloader()))


def test_one_vote_is_plain_evaluation(tmp_path: Path) -> None:
    data = _data()
    plain, voted = _task(), _task(tta_votes=1, tta_transforms=SCALE)
    voted.load_state_dict(plain.state_dict())
    batch = _batch(data)
    with torch.no_grad():
        torch.testing.assert_close(voted.eval_logits(batch), plain(batch), rtol=0, atol=0)
        probs = voted.predict_step(batch, 0)  # class probabilities, one row per cloud
        torch.testing.assert_close(probs, plain(batch).softmax(1))
        assert torch.equal(probs.argmax(1), plain(batch).argmax(1))
    results = []
    for task in (plain, voted):
        trainer = L.Trainer(
            logger=CSVLogger(tmp_path),
            enable_progress_bar=False,
            enable_model_summary=False,
            accelerator="cpu",
        )
        results.append(trainer.test(task, data, verbose=False)[0])
    assert results[0] == results[1]


def test_votes_average_transformed_copies() -> None:
    data = _data()
    task = _task(tta_votes=3, tta_transforms=SCALE, tta_seed=7)
    batch = _batch(data)
    copies = task.augmented_copies(batch)
    assert len(copies) == 3
    with torch.no_grad():
        expected = torch.stack([task(copy) for copy in copies]).mean(0)
        torch.testing.assert_close(task.eval_logits(batch), expected)
        # the copies really are scaled versions of the clouds, different per vote
        for copy in copies:
            assert torch.equal(copy.batch, batch.batch) and torch.equal(copy.y, batch.y)
            ratio = copy.pos / batch.pos
            assert not torch.allclose(ratio, torch.ones_like(ratio))
            assert ((ratio > 0.5 - 1e-5) & (ratio < 1.5 + 1e-5)).all()
        assert not torch.equal(copies[0].pos, copies[1].pos)
        assert not torch.equal(task.eval_logits(batch), task(batch))

    # deterministic under the seed, and a cloud's copies do not depend on its batch
    again = task.augmented_copies(batch)
    for a, b in zip(copies, again):
        assert torch.equal(a.pos, b.pos)
    clouds = batch.to_data_list()
    alone = task.augmented_copies(collate([clouds[1]]))
    for vote in range(3):
        torch.testing.assert_close(alone[vote].pos, copies[vote].to_data_list()[1].pos)
    other_seed = _task(tta_votes=3, tta_transforms=SCALE, tta_seed=8)
    assert not torch.equal(other_seed.augmented_copies(batch)[0].pos, copies[0].pos)


def test_deterministic_transform_votes_equal_one_transformed_pass() -> None:
    data = _data()
    double = [{"class_path": "RandomScale", "init_args": {"low": 2.0, "high": 2.0}}]
    task = _task(tta_votes=4, tta_transforms=double)
    batch = _batch(data)
    scaled = batch.clone()
    scaled.pos = batch.pos * 2
    with torch.no_grad():
        torch.testing.assert_close(task.eval_logits(batch), task(scaled))


def test_votes_must_be_positive() -> None:
    with pytest.raises(ValueError, match="tta_votes"):
        ClassificationTask(model_kwargs=TINY_MODELS["pointnet2_ssg"], num_classes=12, tta_votes=0)
