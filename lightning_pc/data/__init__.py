"""Data layer: cached datasets, LightningDataModules, transforms, collate and readers."""

from lightning_pc.data.collate import collate
from lightning_pc.data.errors import DataFormatError, MissingDataError
from lightning_pc.data.modules.base import PointCloudDataModule
from lightning_pc.data.modules.card_scenes import CardScenes, CardScenesDataModule
from lightning_pc.data.modules.folder import PointCloudFolderDataModule
from lightning_pc.data.modules.modelnet import ModelNetDataModule
from lightning_pc.data.modules.predict import PredictScenes, PredictScenesDataModule
from lightning_pc.data.modules.s3dis import S3DISDataModule
from lightning_pc.data.modules.scannet import ScanNetDataModule
from lightning_pc.data.modules.semantickitti import SemanticKITTIDataModule
from lightning_pc.data.modules.shapenetpart import ShapeNetPartDataModule
from lightning_pc.data.modules.synthetic import SyntheticShapesDataModule
from lightning_pc.data.transforms import build_transforms

__all__ = [
    "CardScenes",
    "CardScenesDataModule",
    "DataFormatError",
    "MissingDataError",
    "ModelNetDataModule",
    "PointCloudDataModule",
    "PointCloudFolderDataModule",
    "PredictScenes",
    "PredictScenesDataModule",
    "S3DISDataModule",
    "ScanNetDataModule",
    "SemanticKITTIDataModule",
    "ShapeNetPartDataModule",
    "SyntheticShapesDataModule",
    "build_transforms",
    "collate",
]
