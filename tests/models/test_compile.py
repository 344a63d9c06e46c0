"""``torch.compile`` and ``torch.export`` of the point networks.

The neighbour ops, the sparse networks' voxelisation, kernel maps and convolution, and
PTv3's coordinate check, serialisation, patch planning and pooling clusters are custom ops
with fake kernels, so PointNet++, DGCNN, SparseResNet, SparseUNet and PTv3 trace as one
graph (no graph break anywhere, in training and eval), and ``torch.export`` with dynamic
point and cloud counts gives a program whose outputs equal the eager model's on batches of
other sizes.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor, nn

from lightning_pc.models import DGCNN, Point, PointNet2, PTv3, SparseResNet, SparseUNet
from lightning_pc.models.ptv3 import PTv3Cls
from tests.conftest import TINY_MODELS
from tests.models.shapes import make_batch

DYNAMIC = {"capture_dynamic_output_shape_ops": True}


class TensorsIn(nn.Module):
    """``model(Point(...))`` as a function of tensors, for ``torch.export`` (a PyG ``Batch``
    is not a pytree of tensors; the point structure is built inside the traced function)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pos: Tensor, batch: Tensor, ptr: Tensor, x: Tensor) -> Tensor:
        return self.model(Point(pos, x, batch, ptr))  # type: ignore[no-any-return]


def tiny(name: str) -> nn.Module:
    torch.manual_seed(0)
    if name == "pointnet2":
        return PointNet2(
            num_classes=5,
            in_channels=2,
            ratios=[0.5, 0.5],
            radii=[[0.4], [0.8]],
            num_samples=[[8], [8]],
            sa_mlps=[[[8, 16]], [[16, 16]]],
            global_mlp=[16, 32],
            head=[16],
        )
    if name == "pointnet2_seg":
        return PointNet2(
            num_classes=5,
            task="semantic_segmentation",
            in_channels=2,
            ratios=[0.5, 0.5],
            radii=[[0.4], [0.8]],
            num_samples=[[8], [8]],
            sa_mlps=[[[8, 16]], [[16, 16]]],
            fp_mlps=[[16], [16]],
            head=[16],
        )
    if name == "sparse_resnet":
        return SparseResNet(
            num_classes=5, in_channels=2, voxel_size=0.25, channels=[8, 16, 16], layers=[1, 1]
        )
    if name == "sparse_unet":
        return SparseUNet(
            num_classes=5,
            in_channels=2,
            voxel_size=0.25,
            stem_channels=8,
            channels=[8, 16, 16, 8],
            layers=[1, 1, 1, 1],
        )
    if name in ("ptv3", "ptv3_cls"):
        # patches of 32 then 24 voxels: the test batches hold clouds with more voxels than a
        # patch (full patches, a padded last one) and clouds with fewer (masked short rows)
        kwargs = dict(TINY_MODELS[name], enc_patch_size=[32, 24])
        return (PTv3 if name == "ptv3" else PTv3Cls)(num_classes=5, in_channels=2, **kwargs)
    return DGCNN(
        num_classes=5, in_channels=2, k=5, edge_mlps=[[8], [8, 8]], emb_dims=16, head=[16, 16]
    )


def args_of(sizes: list[int], seed: int) -> tuple[Tensor, ...]:
    b = make_batch(sizes, in_channels=2, seed=seed)
    return b.pos, b.batch, b.ptr, b.x


NETWORKS = [
    "pointnet2",
    "pointnet2_seg",
    "dgcnn",
    "sparse_resnet",
    "sparse_unet",
    "ptv3",
    "ptv3_cls",
]
SPARSE = ["sparse_resnet", "sparse_unet"]
SPARSE_OPS = {
    "lightning_pc.sparse_voxel_sites.default",
    "lightning_pc.sparse_submanifold_map.default",
    "lightning_pc.sparse_downsample_map.default",
    "lightning_pc.sparse_conv.default",
}
PTV3_OPS = {
    "lightning_pc.cloud_min_offsets.default",
    "lightning_pc.sparse_voxel_sites.default",
    "lightning_pc.ptv3_serialize.default",
    "lightning_pc.ptv3_patch_plan.default",
    "lightning_pc.ptv3_pool_clusters.default",
    "lightning_pc.sparse_submanifold_map.default",
    "lightning_pc.sparse_conv.default",
}


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("name", NETWORKS)
def test_networks_compile_without_graph_breaks(name, training):
    model = TensorsIn(tiny(name)).train(training)
    args = args_of([40, 33, 27], seed=1)
    torch._dynamo.reset()
    with torch._dynamo.config.patch(**DYNAMIC):
        explained = torch._dynamo.explain(model)(*args)
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1
    calls = {str(n.target) for g in explained.graphs for n in g.graph.nodes}
    wanted = {
        "dgcnn": {"lightning_pc.knn_table.default"},
        "sparse_resnet": SPARSE_OPS,
        "sparse_unet": SPARSE_OPS,
        "ptv3": PTV3_OPS,
        "ptv3_cls": PTV3_OPS,
    }.get(name, {"lightning_pc.fps.default", "lightning_pc.radius.default"})
    assert wanted <= calls


@pytest.mark.parametrize("name", NETWORKS)
def test_export_in_eval_matches_eager_for_other_batch_sizes(name):
    model = TensorsIn(tiny(name)).eval()
    points, clouds = torch.export.Dim("points", min=4), torch.export.Dim("clouds_plus_1", min=3)
    dynamic: dict[str, Any] = {
        "pos": {0: points},
        "batch": {0: points},
        "ptr": {0: clouds},
        "x": {0: points},
    }
    program = torch.export.export(model, args_of([40, 33], seed=2), dynamic_shapes=dynamic)
    for sizes, seed in (([40, 33], 3), ([61, 18, 25, 30], 4)):
        args = args_of(sizes, seed)
        with torch.no_grad():
            want = model(*args)
        got = program.module()(*args)
        assert got.shape == want.shape
        assert torch.allclose(got, want, atol=1e-5, rtol=1e-5)


def test_compiled_training_step_matches_eager():
    """One SGD step of the compiled PointNet++ gives the eager step's loss and gradients."""
    losses, grads = [], []
    for compiled in (False, True):
        model = TensorsIn(tiny("pointnet2")).train()
        run = model
        if compiled:
            torch._dynamo.reset()
            run = torch.compile(model, backend="aot_eager", fullgraph=True)
        args = args_of([40, 33, 27], seed=5)
        target = torch.tensor([0, 3, 1])
        torch.manual_seed(7)  # dropout and fps's random start
        with torch._dynamo.config.patch(**DYNAMIC):
            loss = nn.functional.cross_entropy(run(*args), target)
        loss.backward()
        losses.append(loss.detach())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert torch.allclose(losses[0], losses[1], atol=1e-5)
    assert torch.allclose(grads[0], grads[1], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["pointnet2", "dgcnn", "sparse_unet", "ptv3"])
def test_batches_of_other_sizes_reuse_the_compiled_graph(name):
    """A PyG batch goes in as is; after the first batch, dynamic shapes cover every size:
    five batches of different point and cloud counts compile at most twice, no breaks."""
    from torch._dynamo.utils import counters

    model = tiny(name).train()
    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(model, backend="eager")
    with torch._dynamo.config.patch(**DYNAMIC):
        for seed, sizes in enumerate([[40, 33], [50, 21, 30], [35, 35, 35, 20], [64, 17]]):
            batch = make_batch(sizes, in_channels=2, seed=seed)
            compiled(batch).sum().backward()
    assert sum(counters["graph_break"].values()) == 0
    assert counters["stats"]["unique_graphs"] <= 2


def lone_site_args(seed: int) -> tuple[Tensor, ...]:
    """One cloud inside a 0.5 cube: up to 8 voxels of 0.25 at stride 1, a single site at
    every coarser stride (where batch norm in training falls back to running statistics)."""
    g = torch.Generator().manual_seed(seed)
    pos = 0.01 + 0.48 * torch.rand(30, 3, generator=g)
    assert torch.floor(pos / 0.5).unique(dim=0).size(0) == 1
    return pos, torch.zeros(30, dtype=torch.long), torch.tensor([0, 30]), torch.randn(30, 2)


@pytest.mark.parametrize(
    ("name", "clouds"),
    [
        ("sparse_resnet", "three"),
        ("sparse_unet", "three"),
        ("sparse_unet", "lone_sites"),
        ("ptv3", "three"),
        ("ptv3", "lone_sites"),
        ("ptv3_cls", "three"),
    ],
)
def test_compiled_sparse_training_step_matches_eager(name, clouds):
    """A compiled training step of a voxel network gives the eager step's loss, finite
    gradients equal to eager's and the same batch-norm running statistics, also when
    levels hold a single site (PTv3: with its order shuffle and drop path drawing the same
    random numbers as eager)."""
    results = []
    for compiled in (False, True):
        model = TensorsIn(tiny(name)).train()
        run = model
        if compiled:
            torch._dynamo.reset()
            run = torch.compile(model, backend="aot_eager", fullgraph=True)
        args = args_of([40, 33, 27], seed=5) if clouds == "three" else lone_site_args(6)
        torch.manual_seed(7)  # dropout
        with torch._dynamo.config.patch(**DYNAMIC):
            loss = run(*args).square().mean()
        loss.backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters()])
        stats = torch.cat([b.double().flatten() for b in model.buffers()])
        results.append((loss.detach(), grads, stats))
    (loss0, grads0, stats0), (loss1, grads1, stats1) = results
    assert torch.isfinite(grads1).all() and grads1.abs().sum() > 0
    assert torch.allclose(loss0, loss1, atol=1e-6, rtol=1e-5)
    assert torch.allclose(grads0, grads1, atol=1e-4, rtol=1e-4)
    assert torch.allclose(stats0, stats1, atol=1e-6)


@pytest.mark.parametrize(
    ("name", "row", "value", "message"),
    [
        # the coordinate range check runs inside the voxelisation op: a cloud too large for
        # the 16-bit keys (400000 voxels of 0.25 from the origin)
        ("sparse_unet", 5, [1e5, 0.0, 0.0], "16 bits"),
        # PTv3's finite-coordinate check runs inside a custom op: a NaN coordinate
        ("ptv3", 5, [0.0, float("nan"), 0.0], "NaN or infinite"),
    ],
)
def test_exported_network_still_checks_coordinates(
    name: str, row: int, value: list[float], message: str
) -> None:
    """An exported program raises the eager ``ValueError`` for coordinates the network
    refuses."""
    model = TensorsIn(tiny(name)).eval()
    points = torch.export.Dim("points", min=4)
    dynamic: dict[str, Any] = {
        "pos": {0: points},
        "batch": {0: points},
        "ptr": None,
        "x": {0: points},
    }
    program = torch.export.export(model, args_of([40, 33], seed=2), dynamic_shapes=dynamic)
    pos, batch, ptr, x = args_of([40, 33], seed=3)
    pos = pos.clone()
    pos[row] = torch.tensor(value)
    for run in (model, program.module()):
        with pytest.raises(ValueError, match=message):
            run(pos, batch, ptr, x)
