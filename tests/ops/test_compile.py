"""The ops as ``torch.library`` custom ops: fake kernels that agree with the real ones,
tracing without graph breaks, and ``torch.export`` programs that give the eager results."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from lightning_pc import ops
from lightning_pc.nn.knn_graph import knn_table_op
from lightning_pc.ops.chamfer import chamfer_pairs
from lightning_pc.ops.grid import grid_op
from lightning_pc.ops.neighbors import knn_op, nearest_op, radius_op
from lightning_pc.ops.sampling import fps_op
from tests.ops.shapes import batch_of_clouds

# torch.compile turns an op whose output size depends on the data into a graph break
# unless this is set; torch.export sets it itself
DYNAMIC = {"capture_dynamic_output_shape_ops": True}


@pytest.fixture(scope="module")
def clouds() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    x, bx = batch_of_clouds([40, 25], seed=40)
    y, by = batch_of_clouds([9, 7], seed=41)
    return x, bx, y, by


def op_cases(x: Tensor, bx: Tensor, y: Tensor, by: Tensor) -> list[tuple[object, tuple]]:
    ptr = torch.tensor([0, 40, 65])
    return [
        (knn_op, (x, y, bx, by, 4, False, None, False, False, False, None)),
        (knn_op, (x, x, bx, bx, 5, False, 2, True, True, False, "torch")),
        (radius_op, (x, y, bx, by, 0.6, 8, None, False, False, None)),
        (radius_op, (x, x, bx, bx, 0.4, 6, None, True, True, "scipy")),
        (nearest_op, (y, x, by, bx, None)),
        (fps_op, (x, bx, None, 0.5, None, False, None, None)),
        (fps_op, (x, None, ptr, 0.5, torch.tensor([0.3, 0.6]), False, None, "torch")),
        (grid_op, (x, torch.tensor(0.25, dtype=torch.float64), None, None, None)),
        (knn_table_op, (x, bx, ptr, 6, "padded")),
        (knn_table_op, (x, bx, ptr, 6, "packed")),
        (chamfer_pairs, (x, y, bx, by, None)),
    ]


@pytest.mark.parametrize("case", range(11))
def test_custom_ops_pass_opcheck(clouds, case):
    """Schema, fake kernel (shapes, dtypes, devices) and AOT dispatch agree with the kernel."""
    op, args = op_cases(*clouds)[case]
    result = torch.library.opcheck(op, args)
    assert set(result.values()) == {"SUCCESS"}, result


def _traced_calls(x: Tensor, bx: Tensor, y: Tensor, by: Tensor) -> dict[str, Callable[[], Tensor]]:
    return {
        "knn": lambda: ops.knn(x, y, 3, bx, by),
        "knn_graph": lambda: ops.knn_graph(x, 4, bx, flow="target_to_source"),
        "radius": lambda: ops.radius(x, y, 0.5, bx, by, max_num_neighbors=6),
        "radius_graph": lambda: ops.radius_graph(x, 0.4, bx, loop=True),
        "fps": lambda: ops.fps(x, bx, 0.25, random_start=False),
        "fps_ptr_list": lambda: ops.fps(x, ptr=[0, 40, 65], ratio=0.5, random_start=False),
        "grid_cluster": lambda: ops.grid_cluster(x, [0.5, 0.5, 0.25]),
        "nearest": lambda: ops.nearest(y, x, by, bx),
        "knn_interpolate": lambda: ops.knn_interpolate(x[:, :2], x, y, bx, by, k=3),
        "chamfer_distance": lambda: ops.chamfer_distance(x, y, bx, by, reduction="none"),
    }


@pytest.mark.parametrize(
    "name",
    [
        "knn",
        "knn_graph",
        "radius",
        "radius_graph",
        "fps",
        "fps_ptr_list",
        "grid_cluster",
        "nearest",
        "knn_interpolate",
        "chamfer_distance",
    ],
)
def test_ops_trace_without_graph_breaks(clouds, name):
    x, bx, y, by = clouds

    def f(x: Tensor, bx: Tensor, y: Tensor, by: Tensor) -> Tensor:
        return _traced_calls(x, bx, y, by)[name]()

    torch._dynamo.reset()
    with torch._dynamo.config.patch(**DYNAMIC):
        explained = torch._dynamo.explain(f)(x, bx, y, by)
        compiled = torch.compile(f, backend="eager", fullgraph=True)(x, bx, y, by)
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1
    op_names = {str(n.target) for g in explained.graphs for n in g.graph.nodes}
    assert any(t.startswith("lightning_pc.") for t in op_names), op_names
    assert torch.equal(compiled, f(x, bx, y, by))


def test_ops_inside_export_match_eager(clouds):
    x, bx, y, by = clouds

    class Graphs(torch.nn.Module):
        def forward(self, x: Tensor, bx: Tensor, y: Tensor, by: Tensor) -> tuple[Tensor, ...]:
            edges = ops.radius(x, y, 0.5, bx, by, max_num_neighbors=6)
            centres = ops.fps(x, bx, 0.5, random_start=False)
            feats = ops.knn_interpolate(x, x, y, bx, by, k=2)
            return edges, centres, feats, ops.nearest(y, x, by, bx)

    program = torch.export.export(Graphs(), (x, bx, y, by))
    names = {str(n.target) for n in program.graph.nodes}
    assert {"lightning_pc.radius.default", "lightning_pc.fps.default"} <= names
    x2, bx2 = batch_of_clouds([40, 25], seed=42)  # same shapes, other data
    for got, want in zip(program.module()(x2, bx2, y, by), Graphs()(x2, bx2, y, by), strict=True):
        assert torch.equal(got, want)


def test_errors_raised_inside_the_ops_keep_their_type(clouds):
    x, bx, y, by = clouds
    bad = x.clone()
    bad[3, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite.*point 3"):
        ops.knn(bad, y, 2, bx, by)
    with pytest.raises(ValueError, match="every ratio"):
        ops.fps(x, bx, torch.tensor([0.5, 1.5]))
    with pytest.raises(ValueError, match="cloud 1 has points in y but none in x"):
        ops.knn_interpolate(x[:40, :1], x[:40], y, bx[:40], by)
    with pytest.raises(TypeError, match="x must be a torch.Tensor, got list"):
        ops.knn([[0.0, 1.0]], y, 1)
