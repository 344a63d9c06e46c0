"""The components the base task composes, on their own: the non-finite guard and the epoch
seeding (the batch-norm warm-up has its tests in ``tests/models/test_norm_warmup.py``)."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch import nn
from torch_geometric.data import Data

from lightning_pc.data import collate
from lightning_pc.tasks.guards import NonFiniteError, NonFiniteGuard
from lightning_pc.tasks.seeding import EpochSeeding


def _draws() -> list[float]:
    return torch.rand(3).tolist()


def test_epoch_seeding_depends_on_the_seed_epoch_and_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PL_GLOBAL_SEED", "7")
    seeding = EpochSeeding()
    seeding.seed_epoch(1, 0)
    first = _draws()
    seeding.seed_epoch(1, 0)
    assert _draws() == first
    seeding.seed_epoch(2, 0)
    assert _draws() != first
    seeding.seed_epoch(1, 1)
    assert _draws() != first
    assert seeding.state_dict() == {"run_seed": None}  # seed_everything's: nothing to keep


def test_drawn_run_seed_travels_in_the_checkpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PL_GLOBAL_SEED", raising=False)
    seeding = EpochSeeding()
    seeding.seed_epoch(3, 0)
    first = _draws()
    state = seeding.state_dict()
    assert isinstance(state["run_seed"], int)
    resumed = EpochSeeding()
    resumed.load_state_dict(state)
    resumed.seed_epoch(3, 0)
    assert _draws() == first
    resumed.load_state_dict({})  # an older checkpoint without the entry changes nothing
    assert resumed.state_dict() == state
    assert EpochSeeding().run_seed() != state["run_seed"]  # another run draws another


def test_guard_mode_is_checked() -> None:
    with pytest.raises(ValueError, match="nonfinite must be 'raise' or 'skip', got 'ignore'"):
        NonFiniteGuard("ignore")  # type: ignore[arg-type]


def _batch() -> Data:
    clouds = [Data(pos=torch.rand(5, 3), x=torch.rand(5, 2), idx=torch.tensor([k])) for k in (4, 9)]
    return collate(clouds)


def test_guard_names_the_clouds_and_checks_features_when_read() -> None:
    task = L.LightningModule()  # no trainer: the message still names the samples
    batch = _batch()
    batch.x[7, 1] = float("inf")  # cloud 1
    assert NonFiniteGuard().check_inputs(task, batch, "val", 0)  # features not read
    with pytest.raises(NonFiniteError, match=r"(?s)batch\.x in val batch 3.*sample 9") as error:
        NonFiniteGuard(check_features=True).check_inputs(task, batch, "val", 3)
    assert "sample 4" not in str(error.value)
    batch.pos[0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match="nonfinite: skip"):
        NonFiniteGuard("skip").check_inputs(task, batch, "predict", 0)  # never skipped


def test_skipped_batch_leaves_gradients_and_buffers_as_before() -> None:
    task = L.LightningModule()
    task.model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    guard = NonFiniteGuard("skip")
    batch = _batch()
    batch.pos[2, 1] = float("nan")
    with pytest.warns(UserWarning, match="skipped: non-finite values"):
        assert not guard.check_inputs(task, batch, "train", 0)
    assert torch.isfinite(batch.pos).all()  # zeroed: the forward pass still runs
    guard.snapshot(task.model)
    before = [b.clone() for b in task.model.buffers()]
    loss = task.model(batch.pos).sum()
    with pytest.warns(UserWarning, match=r"(?s)non-finite training loss.*sample 4.*sample 9"):
        assert not guard.check_loss(task, loss * float("nan"), batch.pos, batch, 0)
    step = guard.skip(loss)
    assert float(step) == 0.0
    step.backward()
    guard.after_backward()
    for buffer, value in zip(task.model.buffers(), before):
        assert torch.equal(buffer, value)
    optimizer = torch.optim.SGD(task.model.parameters(), lr=1.0)
    guard.before_optimizer_step(optimizer)
    assert all(p.grad is None for p in task.model.parameters())
    # the next batch trains again
    task.model(batch.pos).sum().backward()
    guard.before_optimizer_step(optimizer)
    assert all(p.grad is not None for p in task.model.parameters())
