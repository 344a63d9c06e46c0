"""Point networks on packed batches (:class:`~lightning_pc.nn.point.Point`), their shared
heads, and a name -> builder registry that each network fills where it is defined.

Every registered network is a :class:`PointNetwork`: a backbone mapping a ``Point`` to a
``Point`` of features (:class:`PointNet2Backbone`, :class:`DGCNNBackbone`,
:class:`SparseResNetBackbone`, :class:`SparseUNetBackbone`, :class:`PTv3Backbone`) and a
head of :mod:`lightning_pc.models.heads`. :func:`PointNet2`, :func:`DGCNN`,
:func:`SparseResNet`, :func:`SparseUNet`, :func:`PTv3` and :func:`PTv3Cls` build a family's
presets (the registered builders call them); :func:`create_model` builds by name.
"""

from lightning_pc.models.dgcnn import DGCNN, DGCNNBackbone
from lightning_pc.models.heads import (
    CategoryEmbedding,
    ClassificationHead,
    MLPHead,
    PointNetwork,
    SegmentationHead,
)
from lightning_pc.models.pointnet2 import PointNet2, PointNet2Backbone
from lightning_pc.models.ptv3 import PTv3, PTv3Backbone, PTv3Cls
from lightning_pc.models.registry import create_model, list_models, register_model
from lightning_pc.models.sonata import PTv3EncoderBackbone
from lightning_pc.models.sparse_resnet import SparseResNet, SparseResNetBackbone
from lightning_pc.models.sparse_unet import SparseUNet, SparseUNetBackbone
from lightning_pc.nn.point import Point, as_point

__all__ = [
    "DGCNN",
    "CategoryEmbedding",
    "ClassificationHead",
    "DGCNNBackbone",
    "MLPHead",
    "PTv3",
    "PTv3Backbone",
    "PTv3Cls",
    "PTv3EncoderBackbone",
    "Point",
    "PointNet2",
    "PointNet2Backbone",
    "PointNetwork",
    "SegmentationHead",
    "SparseResNet",
    "SparseResNetBackbone",
    "SparseUNet",
    "SparseUNetBackbone",
    "as_point",
    "create_model",
    "list_models",
    "register_model",
]
