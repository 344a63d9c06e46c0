"""Collate: the same Batch as PyG's ``from_data_list``, also through DataLoader workers."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader
from torch_geometric.data import Batch, Data

from lightning_pc.data import collate


def samples(sources: bool = False) -> list[Data]:
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
        if sources:  # the batch schema's optional per-cloud string
            out[-1].source = f"Area_{i}/room_{n}.txt"
    return out


def same(a: object, b: object) -> bool:
    if torch.is_tensor(a):
        return torch.is_tensor(b) and a.dtype == b.dtype and torch.equal(a, b)
    return type(a) is type(b) and a == b


def assert_same(a: Batch, b: Batch) -> None:
    assert list(a.keys()) == list(b.keys())
    for key in a.keys():
        assert same(a[key], b[key]), key
        assert same(a._slice_dict.get(key), b._slice_dict.get(key)), key
        assert same(a._inc_dict.get(key), b._inc_dict.get(key)), key
    assert a.num_graphs == b.num_graphs
    for x, y in zip(a.to_data_list(), b.to_data_list(), strict=True):
        assert list(x.keys()) == list(y.keys())
        for key in x.keys():
            assert same(x[key], y[key]), key


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


def test_source_strings_in_the_fast_path_and_through_workers(monkeypatch) -> None:
    ref = Batch.from_data_list(samples(sources=True))
    assert ref.source == ["Area_0/room_5.txt", "Area_1/room_3.txt", "Area_2/room_7.txt"]

    def slow_path(*args: object, **kwargs: object) -> Batch:
        raise AssertionError("the batch of a dataset with sources left the fast path")

    monkeypatch.setattr(Batch, "from_data_list", slow_path)
    assert_same(collate(samples(sources=True)), ref)
    loader = DataLoader(samples(sources=True), batch_size=3, num_workers=1, collate_fn=collate)
    (batch,) = list(loader)
    assert_same(batch, ref)  # the strings crossed the process boundary with the buffer
    assert [d.source for d in batch.to_data_list()] == ref.source


def test_falls_back_for_other_attributes() -> None:
    data = [Data(pos=torch.zeros(2, 3), name="a"), Data(pos=torch.ones(3, 3), name="b")]
    batch = collate(data)
    assert batch.name == ["a", "b"] and batch.ptr.tolist() == [0, 2, 5]
