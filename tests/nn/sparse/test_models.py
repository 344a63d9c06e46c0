"""SparseResNet / SparseUNet on packed batches, voxelisation, pooling, registry."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch_geometric.data import Batch, Data

from lightning_pc.models import (
    SparseResNet,
    SparseResNetBackbone,
    SparseUNet,
    SparseUNetBackbone,
    create_model,
    list_models,
)
from lightning_pc.nn.sparse import SparseTensor, devoxelize, global_pool, voxelize
from tests.conftest import tiny_kwargs


def packed(num: int = 3, n: int = 200, c: int = 0, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    datas = []
    for _ in range(num):
        pos = torch.randn(n, 3, generator=g)
        pos = pos / pos.norm(dim=1, keepdim=True)  # points on a unit sphere
        d = Data(pos=pos)
        if c:
            d.x = torch.rand(n, c, generator=g)
        datas.append(d)
    return Batch.from_data_list(datas)


@pytest.mark.parametrize("reduce", ["mean", "max", "first"])
def test_voxelize_matches_loop(reduce: str) -> None:
    g = torch.Generator().manual_seed(1)
    pos = torch.rand(300, 3, generator=g) * 2 - 1
    batch = torch.randint(0, 2, (300,), generator=g)
    feats = torch.randn(300, 2, generator=g)
    x, inverse = voxelize(pos, feats, batch, 0.5, reduce)  # type: ignore[arg-type]
    grid = torch.floor(pos / 0.5).long()
    for v in range(x.num_sites):
        members = (inverse == v).nonzero().squeeze(1)
        assert members.numel() > 0
        key = torch.cat([batch[members[:1]], grid[members[0]]])
        assert torch.equal(x.coords[v], key)
        assert (grid[members] == grid[members[0]]).all() and (batch[members] == key[0]).all()
        f = feats[members]
        expect = {"mean": f.mean(0), "max": f.amax(0), "first": f[0]}[reduce]
        torch.testing.assert_close(x.feats[v], expect)
    assert len({tuple(c) for c in x.coords.tolist()}) == x.num_sites  # distinct sites
    torch.testing.assert_close(devoxelize(x, inverse), x.feats[inverse])


def test_global_pool() -> None:
    coords = torch.tensor([[0, 0, 0, 0], [0, 1, 0, 0], [2, 0, 0, 0]])
    x = SparseTensor(coords, torch.tensor([[1.0], [3.0], [5.0]]))
    assert global_pool(x, 3, "max").flatten().tolist() == [3.0, 0.0, 5.0]
    assert global_pool(x, 3, "mean").flatten().tolist() == [2.0, 0.0, 5.0]


def test_sparse_resnet_classifies_packed_batch() -> None:
    torch.manual_seed(0)
    model = SparseResNet(
        num_classes=5, **tiny_kwargs("sparse_resnet", in_channels=2, voxel_size=0.25)
    )
    data = packed(c=2)
    out = model(data)
    assert out.shape == (3, 5)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    with torch.no_grad():  # each cloud is classified on its own
        single = model(packed(num=1, c=2))
        torch.testing.assert_close(model(data)[0], single[0], rtol=1e-4, atol=1e-5)


def test_sparse_unet_predicts_every_point() -> None:
    torch.manual_seed(0)
    model = SparseUNet(num_classes=4, **tiny_kwargs("sparse_unet", voxel_size=0.1))
    data = packed(num=2, n=300)
    out = model(data)
    assert out.shape == (600, 4)
    out.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    model.eval()
    with torch.no_grad():
        out = model(data)
        _, inverse = voxelize(data.pos, data.pos, data.batch, 0.1)
        for v in inverse[:20].tolist():  # points of one voxel share its prediction
            rows = out[inverse == v]
            torch.testing.assert_close(rows, rows[:1].expand_as(rows))


def test_registered_and_sync_batchnorm_converts_every_norm() -> None:
    assert {"sparse_resnet", "sparse_unet"} <= set(list_models())
    unet = create_model("sparse_unet", num_classes=3, **tiny_kwargs("sparse_unet", in_channels=3))
    resnet = create_model("sparse_resnet", num_classes=3, **tiny_kwargs("sparse_resnet"))
    assert type(unet.backbone) is SparseUNetBackbone
    assert type(resnet.backbone) is SparseResNetBackbone
    for model in (unet, resnet):
        n_bn = sum(isinstance(m, nn.BatchNorm1d) for m in model.modules())
        converted = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        assert n_bn > 0
        assert sum(isinstance(m, nn.SyncBatchNorm) for m in converted.modules()) == n_bn
        assert not any(type(m) is nn.BatchNorm1d for m in converted.modules())


def test_default_unet_has_spunet_size() -> None:
    n = sum(p.numel() for p in SparseUNet(num_classes=13).parameters())
    assert 38e6 < n < 40e6  # SpUNet's ~39 M
