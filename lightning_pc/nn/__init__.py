"""Building blocks of the point networks (packed ``[N, C]`` rows with ``ptr`` offsets)."""

from lightning_pc.nn.edge_conv import EdgeConv
from lightning_pc.nn.knn_graph import knn_table
from lightning_pc.nn.mlp import LinearBNAct, SharedMLP
from lightning_pc.nn.point import Point, as_point
from lightning_pc.nn.pointnet2 import FeaturePropagation, GlobalSetAbstraction, SetAbstraction
from lightning_pc.nn.transform_net import TransformNet

__all__ = [
    "EdgeConv",
    "FeaturePropagation",
    "GlobalSetAbstraction",
    "LinearBNAct",
    "Point",
    "SetAbstraction",
    "SharedMLP",
    "TransformNet",
    "as_point",
    "knn_table",
]
