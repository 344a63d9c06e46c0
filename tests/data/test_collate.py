"""Collate: the same Batch as PyG's ``from_data_list``, also through DataLoader workers."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader
from torch_geometric.data import Batch, Data

from lightning_pc.data import collate


def samples() -> list[Data]:
    g = torch.Generator().manual_seed(0)
    out = []
    for i, n in enumerate([5, 3, 7]):
        out.append(
            Data(
                pos=torch.rand(n, 3, generator=g),
                x=torch.rand(n, 2, generator=g),
                y=torch.randint(0, 4, (n,), generator=g),
                category=torch.tensor([i]),
                inverse_index=torch.randint(0, n, (n + 2,), generator=g),
                y_full=torch.randint(0, 4, (n + 2,), generator=g),
            )
        )
    return out


def assert_same(a: Batch, b: Batch) -> None:
    assert set(a.keys()) == set(b.keys())
    for key in a.keys():
        assert torch.equal(a[key], b[key]), key
    assert a.num_graphs == b.num_graphs
    for x, y in zip(a.to_data_list(), b.to_data_list()):
        for key in x.keys():
            assert torch.equal(x[key], y[key]), key


def test_matches_pyg() -> None:
    ours = collate(samples())
    ref = Batch.from_data_list(samples())
    assert_same(ours, ref)
    assert ours.ptr.tolist() == [0, 5, 8, 15]
    assert ours.inverse_index[7:10].min() >= 5  # offset by the points before
    cloud = collate([Data(pos=torch.zeros(2, 3), y=torch.tensor(1))])  # 0-dim label
    assert cloud.y.shape == (1,)


def test_through_workers() -> None:
    data = samples()
    loader = DataLoader(data, batch_size=3, num_workers=2, collate_fn=collate)
    (batch,) = list(loader)
    assert isinstance(batch, Batch)
    assert_same(batch, Batch.from_data_list(data))


def test_falls_back_for_other_attributes() -> None:
    data = [Data(pos=torch.zeros(2, 3), name="a"), Data(pos=torch.ones(3, 3), name="b")]
    batch = collate(data)
    assert batch.name == ["a", "b"] and batch.ptr.tolist() == [0, 2, 5]
