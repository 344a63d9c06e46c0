"""Sparse convolutions equal dense conv3d / conv_transpose3d read at the sites."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lightning_pc.nn.sparse import (
    SparseConv3d,
    SparseConvTranspose3d,
    SparseTensor,
    downsample_map,
    kernel_offsets,
    sparse_conv,
    submanifold_map,
    voxelize,
)
from lightning_pc.nn.sparse import conv as conv_mod

S = 6  # dense grid edge
B = 2


def random_sites(
    n_per: int = 60, size: int = S, seed: int = 0, device: str = "cpu"
) -> torch.Tensor:
    """[N, 4] distinct (b, x, y, z) sites in [0, size)^3, ``n_per`` per cloud, shuffled."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for b in range(B):
        flat = torch.randperm(size**3, generator=g)[:n_per]
        xyz = torch.stack([flat // (size * size), (flat // size) % size, flat % size], 1)
        rows.append(torch.cat([torch.full((n_per, 1), b), xyz], 1))
    c = torch.cat(rows)
    return c[torch.randperm(c.size(0), generator=g)].to(device)


def to_dense(coords: torch.Tensor, feats: torch.Tensor, size: int = S) -> torch.Tensor:
    return SparseTensor(coords, feats).dense((size, size, size), B)


def at_sites(dense: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """[N, C] values of a dense [B, C, X, Y, Z] tensor at ``coords``."""
    return dense[coords[:, 0], :, coords[:, 1], coords[:, 2], coords[:, 3]]


def conv_weight_to_sparse(w: torch.Tensor) -> torch.Tensor:
    """Dense conv3d weight [C_out, C_in, k, k, k] -> ours [K, C_in, C_out]."""
    return w.permute(2, 3, 4, 1, 0).reshape(-1, w.size(1), w.size(0))


def tconv_weight_to_sparse(w: torch.Tensor) -> torch.Tensor:
    """Dense conv_transpose3d weight [C_in, C_out, k, k, k] -> ours [K, C_in, C_out]."""
    return w.permute(2, 3, 4, 0, 1).reshape(-1, w.size(0), w.size(1))


def check_grads(out_s, out_d, feats, dense_in, coords, layer_w, dense_w, to_sparse):
    g = torch.randn_like(out_s)
    gs = torch.autograd.grad(out_s, [feats, layer_w], g)
    gd = torch.autograd.grad(out_d, [dense_in, dense_w], g)
    torch.testing.assert_close(gs[0], at_sites(gd[0], coords), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gs[1], to_sparse(gd[1]), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("kernel_size", "dilation"), [(1, 1), (2, 1), (3, 1), (3, 2), (5, 1)])
def test_submanifold_equals_dense(kernel_size: int, dilation: int) -> None:
    torch.manual_seed(0)
    coords = random_sites()
    feats = torch.randn(coords.size(0), 4, requires_grad=True)
    layer = SparseConv3d(4, 5, kernel_size, dilation=dilation, bias=True)
    out = layer(SparseTensor(coords, feats))
    assert torch.equal(out.coords, coords) and out.stride == 1

    dense_in = to_dense(coords, feats)  # differentiable w.r.t. feats
    dense_in = dense_in.detach().requires_grad_()
    dw = layer.weight.detach().reshape(kernel_size, kernel_size, kernel_size, 4, 5)
    dw = dw.permute(4, 3, 0, 1, 2).contiguous().requires_grad_()
    x = dense_in
    if kernel_size % 2 == 0:  # taps at 0..k-1: pad the high side only
        x = F.pad(x, (0, kernel_size - 1) * 3)
        pad = 0
    else:
        pad = (kernel_size - 1) // 2 * dilation
    dense_out = F.conv3d(x, dw, layer.bias.detach(), padding=pad, dilation=dilation)
    out_d = at_sites(dense_out, coords)
    torch.testing.assert_close(out.feats, out_d, rtol=1e-4, atol=1e-5)
    check_grads(out.feats, out_d, feats, dense_in, coords, layer.weight, dw, conv_weight_to_sparse)


@pytest.mark.parametrize(("kernel_size", "stride"), [(2, 2), (3, 2), (1, 2), (3, 3)])
def test_strided_equals_dense(kernel_size: int, stride: int) -> None:
    torch.manual_seed(1)
    coords = random_sites(n_per=80)
    feats = torch.randn(coords.size(0), 3, requires_grad=True)
    layer = SparseConv3d(3, 4, kernel_size, stride=stride)
    out = layer(SparseTensor(coords, feats))
    assert out.stride == stride
    expect = coords.clone()
    expect[:, 1:] //= stride
    assert torch.equal(out.coords, torch.unique(expect, dim=0))  # key order = (b, x, y, z)

    dense_in = to_dense(coords, feats).detach().requires_grad_()
    dw = layer.weight.detach().reshape((kernel_size,) * 3 + (3, 4)).permute(4, 3, 0, 1, 2)
    dw = dw.contiguous().requires_grad_()
    pad = (kernel_size - 1) // 2
    dense_out = F.conv3d(dense_in, dw, stride=stride, padding=pad)
    out_d = at_sites(dense_out, out.coords)
    torch.testing.assert_close(out.feats, out_d, rtol=1e-4, atol=1e-5)
    check_grads(out.feats, out_d, feats, dense_in, coords, layer.weight, dw, conv_weight_to_sparse)


@pytest.mark.parametrize("kernel_size", [2, 3])
def test_transposed_equals_dense(kernel_size: int) -> None:
    torch.manual_seed(2)
    coords = random_sites(n_per=70)
    fine = SparseTensor(coords, torch.zeros(coords.size(0), 1))
    coarse_sites = SparseConv3d(1, 1, kernel_size, stride=2)(fine)
    cf = torch.randn(coarse_sites.num_sites, 3, requires_grad=True)
    coarse = coarse_sites.replace(cf)
    layer = SparseConvTranspose3d(3, 4, kernel_size, stride=2)
    out = layer(coarse)
    assert out.stride == 1 and torch.equal(out.coords, fine.cache.coords[1])

    dense_in = to_dense(coarse.coords, cf, size=S // 2).detach().requires_grad_()
    dw = layer.weight.detach().reshape((kernel_size,) * 3 + (3, 4)).permute(3, 4, 0, 1, 2)
    dw = dw.contiguous().requires_grad_()
    pad = (kernel_size - 1) // 2
    extra = S - ((S // 2 - 1) * 2 - 2 * pad + kernel_size)
    dense_out = F.conv_transpose3d(dense_in, dw, stride=2, padding=pad, output_padding=extra)
    assert dense_out.shape[-1] == S
    out_d = at_sites(dense_out, out.coords)
    torch.testing.assert_close(out.feats, out_d, rtol=1e-4, atol=1e-5)
    check_grads(
        out.feats, out_d, cf, dense_in, coarse.coords, layer.weight, dw, tconv_weight_to_sparse
    )


def brute_pairs(coords_in, coords_out, offsets, base_scale=1):
    """Set of (k, i, o) with coords_in[i] == coords_out[o] * base_scale + offsets[k]."""
    index = {tuple(c.tolist()): i for i, c in enumerate(coords_in)}
    pairs = set()
    for o, c in enumerate(coords_out.tolist()):
        for k, d in enumerate(offsets):
            q = (c[0], c[1] * base_scale + d[0], c[2] * base_scale + d[1], c[3] * base_scale + d[2])
            if q in index:
                pairs.add((k, index[q], o))
    return pairs


def map_pairs(kmap):
    return {
        (k, int(i), int(o))
        for k in range(kmap.kernel_volume)
        for i, o in zip(*kmap.pairs(k), strict=True)
    }


@pytest.mark.parametrize(("kernel_size", "dilation"), [(3, 1), (2, 1), (5, 2)])
def test_submanifold_map_matches_brute_force(kernel_size: int, dilation: int) -> None:
    coords = random_sites(n_per=50, size=7, seed=3) - 3  # negative coordinates too
    kmap = submanifold_map(coords, kernel_size, dilation)
    expect = brute_pairs(coords, coords, kernel_offsets(kernel_size, dilation))
    assert map_pairs(kmap) == expect
    if kernel_size % 2:  # half of the offsets searched, the centre is implicit
        assert kmap.identity == kmap.kernel_volume // 2


def test_downsample_map_matches_brute_force() -> None:
    coords = random_sites(n_per=50, size=9, seed=4) - 4
    for k in (2, 3):
        kmap, out = downsample_map(coords, k, 2)
        assert map_pairs(kmap) == brute_pairs(coords, out, kernel_offsets(k), base_scale=2)
        if k == 2:  # every input in exactly one pair
            assert sorted(kmap.in_idx.tolist()) == list(range(coords.size(0)))


def test_gradcheck_float64() -> None:
    torch.manual_seed(5)
    coords = random_sites(n_per=12, size=3, seed=5)
    x = SparseTensor(coords, torch.zeros(coords.size(0), 1))
    feats = torch.randn(coords.size(0), 2, dtype=torch.float64, requires_grad=True)
    for k, kmap in [
        (3, submanifold_map(coords, 3)),
        (2, submanifold_map(coords, 2)),
        (2, downsample_map(coords, 2, 2)[0]),
        (3, downsample_map(coords, 3, 2)[0]),
    ]:
        w = torch.randn(k**3, 2, 3, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda f, w, m=kmap: sparse_conv(f, w, m), (feats, w))
    kmap = downsample_map(coords, 2, 2)[0].transposed()
    cf = torch.randn(kmap.num_in, 2, dtype=torch.float64, requires_grad=True)
    w = torch.randn(8, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda f, w: sparse_conv(f, w, kmap), (cf, w))
    assert x.num_sites == coords.size(0)


def test_chunking_is_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    coords = random_sites(n_per=100, seed=6)
    feats = torch.randn(coords.size(0), 3, dtype=torch.float64)
    w = torch.randn(27, 3, 2, dtype=torch.float64)
    kmap = submanifold_map(coords, 3)
    full = sparse_conv(feats, w, kmap)
    monkeypatch.setattr(conv_mod, "CHUNK", 7)
    torch.testing.assert_close(sparse_conv(feats, w, kmap), full)


def test_backward_saves_only_features_and_weights() -> None:
    """The graph of a layer keeps its input features and weight, no gathered copies."""
    coords = random_sites(n_per=200, size=8, seed=7)
    feats = torch.randn(coords.size(0), 16, requires_grad=True)
    layer = SparseConv3d(16, 16, 3)
    saved: list[int] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        layer(SparseTensor(coords, feats)).feats.sum().backward()
    assert sum(saved) == feats.numel() + layer.weight.numel()
    assert feats.grad is not None and layer.weight.grad is not None


def test_unsorted_and_sorted_sites_agree() -> None:
    coords = random_sites(n_per=60, seed=8)
    feats = torch.randn(coords.size(0), 3)
    layer = SparseConv3d(3, 2, 3)
    out = layer(SparseTensor(coords, feats)).feats
    order = torch.argsort(
        coords[:, 0] * 1000 + coords[:, 1] * 100 + coords[:, 2] * 10 + coords[:, 3]
    )
    out_sorted = layer(SparseTensor(coords[order], feats[order])).feats
    torch.testing.assert_close(out[order], out_sorted)


def test_rejects_out_of_range_coordinates() -> None:
    coords = torch.tensor([[0, 0, 0, 0], [0, 40000, 0, 0]])
    with pytest.raises(ValueError, match="16 bits"):
        SparseTensor(coords, torch.zeros(2, 1))
    with pytest.raises(ValueError, match="batch index"):
        SparseTensor(torch.tensor([[-1, 0, 0, 0]]), torch.zeros(1, 1))
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        SparseTensor(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 1))
    pos = torch.tensor([[0.0, 0.0, 0.0], [5000.0, 0.0, 0.0]])  # 100000 voxels of 0.05
    with pytest.raises(ValueError, match="16 bits"):
        voxelize(pos, pos, None, 0.05)


def test_conv_is_a_custom_op_and_splits_live_on_the_cpu() -> None:
    """The convolution is ``torch.ops.lightning_pc.sparse_conv``; a map's splits are CPU
    ``int64`` running sums of its per-offset pair counts."""
    coords = random_sites(n_per=40, seed=10)
    kmap = submanifold_map(coords, 3)
    assert kmap.splits.device.type == "cpu" and kmap.splits.dtype == torch.long
    counts = [kmap.pairs(k)[0].numel() for k in range(kmap.kernel_volume) if k != kmap.identity]
    assert int(kmap.splits[-1]) == sum(counts) == kmap.num_pairs - coords.size(0)
    feats, w = torch.randn(coords.size(0), 3), torch.randn(27, 3, 2)
    direct = torch.ops.lightning_pc.sparse_conv(
        feats, w, kmap.in_idx, kmap.out_idx, kmap.splits, kmap.num_out, kmap.identity
    )
    torch.testing.assert_close(direct, sparse_conv(feats, w, kmap))


@pytest.mark.gpu
def test_cuda_equals_cpu() -> None:
    torch.manual_seed(9)
    coords = random_sites(n_per=100, seed=9)
    feats = torch.randn(coords.size(0), 8, requires_grad=True)
    down = SparseConv3d(8, 8, 2, stride=2)
    sub = SparseConv3d(8, 8, 3)
    up = SparseConvTranspose3d(8, 4, 2, stride=2)

    def run(device: str):
        f = feats.detach().to(device).requires_grad_()
        mods = [m.to(device) for m in (down, sub, up)]
        x = SparseTensor(coords.to(device), f)
        y = mods[2](mods[1](mods[0](x)))
        assert all(m.splits.device.type == "cpu" for m in x.cache.maps.values())
        y.feats.square().sum().backward()
        return y.feats.cpu(), f.grad.cpu(), [m.weight.grad.cpu() for m in mods]

    cpu = run("cpu")
    for m in (down, sub, up):
        m.weight.grad = None
    gpu = run("cuda")
    torch.testing.assert_close(cpu[0], gpu[0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(cpu[1], gpu[1], rtol=1e-4, atol=1e-4)
    for a, b in zip(cpu[2], gpu[2], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
