"""DGCNN's spatial transformer: a learnt 3x3 matrix applied to the coordinates of a cloud.

EdgeConv 64-128 on a kNN graph of the coordinates, max over neighbours, a shared 1024-wide
layer, max over the cloud, FC 512-256 (batch norm, LeakyReLU) and a final linear map to 9
numbers, initialised to the identity matrix (zero weights, identity bias).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lightning_pc.nn.edge_conv import EdgeConv
from lightning_pc.nn.mlp import LinearBNAct
from lightning_pc.nn.segment import segment_max


class TransformNet(nn.Module):
    """Predicts a ``[B, 3, 3]`` transform from coordinates and their neighbour table.

    Args:
        negative_slope: LeakyReLU slope.
    """

    def __init__(self, negative_slope: float = 0.2) -> None:
        super().__init__()
        self.edge = EdgeConv(3, [64, 128], negative_slope)
        self.point = LinearBNAct(
            128, 1024, bias=False, act="leaky_relu", negative_slope=negative_slope
        )
        self.fc = nn.Sequential(
            LinearBNAct(1024, 512, bias=False, act="leaky_relu", negative_slope=negative_slope),
            LinearBNAct(512, 256, bias=False, act="leaky_relu", negative_slope=negative_slope),
        )
        self.transform = nn.Linear(256, 9)
        nn.init.zeros_(self.transform.weight)
        with torch.no_grad():
            self.transform.bias.copy_(torch.eye(3).flatten())

    def forward(self, pos: Tensor, neighbours: Tensor, ptr: Tensor) -> Tensor:
        """``pos [N, 3]``, ``neighbours [N, k]``, ``ptr [B + 1]`` -> ``[B, 3, 3]``."""
        h = self.point(self.edge(pos, neighbours))  # [N, 1024]
        g = self.fc(segment_max(h, ptr))  # [B, 256]
        return self.transform(g).view(-1, 3, 3)
