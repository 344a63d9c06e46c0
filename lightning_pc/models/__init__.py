"""Point networks on packed batches, and a name -> builder registry."""

from lightning_pc.models.dgcnn import DGCNN
from lightning_pc.models.pointnet2 import PointNet2
from lightning_pc.models.registry import create_model, list_models, register_model
from lightning_pc.models.sparse_resnet import SparseResNet
from lightning_pc.models.sparse_unet import SparseUNet

__all__ = [
    "DGCNN",
    "PointNet2",
    "SparseResNet",
    "SparseUNet",
    "create_model",
    "list_models",
    "register_model",
]
