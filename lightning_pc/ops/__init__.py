"""Neighbour ops for point clouds, with torch-cluster's names, signatures and conventions.

``knn``, ``knn_graph``, ``radius``, ``radius_graph``, ``fps``, ``grid_cluster`` and
``nearest`` are drop-in replacements for torch-cluster's functions; ``knn_interpolate``
follows PyG and ``chamfer_distance`` PyTorch3D. Each op picks the fastest installed backend
that supports the call on the inputs' device (the implementation registry,
:mod:`lightning_pc.ops._backend`); ``backend=`` forces one, ``LIGHTNING_PC_IMPL_<OP>`` (``KNN``,
``RADIUS``, ``FPS``, ``GRID``) sets one per op for calls that do not name one, and
``LIGHTNING_PC_OPS_BACKEND`` sets a process-wide preference (ops that backend lacks choose
automatically).

Each op is a ``torch.library`` custom op (``torch.ops.lightning_pc.knn``, ``.radius``,
``.fps``, ``.grid_cluster``, ``.nearest``, ``.chamfer_pairs``) with a fake kernel, so
``torch.export`` and ``torch.compile`` trace through it. Edge lists and samples have
data-dependent sizes: ``torch.compile`` needs
``torch._dynamo.config.capture_dynamic_output_shape_ops = True`` to keep them in the graph
(``torch.export`` sets it itself).
"""

from lightning_pc.ops._backend import BACKENDS, ENV_VAR, available
from lightning_pc.ops.chamfer import chamfer_distance
from lightning_pc.ops.grid import grid_cluster
from lightning_pc.ops.interpolate import knn_interpolate
from lightning_pc.ops.neighbors import knn, knn_graph, nearest, radius, radius_graph
from lightning_pc.ops.sampling import fps

__all__ = [
    "BACKENDS",
    "ENV_VAR",
    "available",
    "chamfer_distance",
    "fps",
    "grid_cluster",
    "knn",
    "knn_graph",
    "knn_interpolate",
    "nearest",
    "radius",
    "radius_graph",
]
