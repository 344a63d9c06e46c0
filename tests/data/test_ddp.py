"""DDP on CPU: two gloo processes build the cache once and see disjoint samples."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch

from lightning_pc.data import ModelNetDataModule
from lightning_pc.data.cache import BUILD_LOG
from tests.data import load_fixture


class Recorder(L.LightningModule):
    """Writes a fingerprint (coordinate sum) of every cloud it is given, per rank."""

    def __init__(self, out: str) -> None:
        super().__init__()
        self.out = out
        self.layer = torch.nn.Linear(3, 2)
        self.seen: list[float] = []

    def test_step(self, batch, batch_idx):
        sums = torch.zeros(batch.num_graphs).index_add_(0, batch.batch, batch.pos.sum(1))
        self.seen += [round(v, 3) for v in sums.tolist()]

    def on_test_end(self) -> None:
        path = Path(self.out) / f"rank{self.global_rank}.json"
        path.write_text(json.dumps({"seen": self.seen, "world": self.trainer.world_size}))


@pytest.mark.slow
def test_two_gloo_processes(tmp_path: Path) -> None:
    root = load_fixture("modelnet").make_resampled(tmp_path / "mn10")  # 10 test shapes
    cache = tmp_path / "cache"
    dm = ModelNetDataModule(
        str(root), 10, num_points=None, batch_size=2, num_workers=0, cache_dir=str(cache)
    )
    trainer = L.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.test(Recorder(str(tmp_path)), datamodule=dm)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    assert len(ranks[0]["seen"]) == len(ranks[1]["seen"]) == 5
    dm.setup("test")  # in this process: the cache is there, built once
    ds = dm.datasets["test"]
    expected = torch.tensor([ds[i].pos.sum().item() for i in range(len(ds))])

    def identify(values: list[float]) -> set[int]:
        dist = (torch.tensor(values)[:, None] - expected[None]).abs()
        assert (dist.min(1).values < 1e-3).all()
        return set(dist.argmin(1).tolist())

    a, b = identify(ranks[0]["seen"]), identify(ranks[1]["seen"])
    assert len(a) == len(b) == 5 and not a & b  # disjoint
    assert a | b == set(range(len(ds)))
    assert len((cache / "modelnet" / BUILD_LOG).read_text().splitlines()) == 1
