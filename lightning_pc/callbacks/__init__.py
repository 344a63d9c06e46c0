"""Lightning callbacks: pictures of predictions in every logger, PLY prediction files,
checkpoints that are always the latest and never half-written, a clean stop on SIGTERM,
precise evaluation of whole scenes."""

from lightning_pc.callbacks.checkpoint_io import DamagedCheckpointError, SafeCheckpointIO
from lightning_pc.callbacks.image_logging import log_image
from lightning_pc.callbacks.model_checkpoint import ModelCheckpoint
from lightning_pc.callbacks.prediction_writer import (
    PLYPredictionWriter,
    PredictionCSVWriter,
    ScenePredictionWriter,
)
from lightning_pc.callbacks.preemption import Preemption
from lightning_pc.callbacks.render_predictions import RenderPredictions
from lightning_pc.callbacks.scene_evaluation import PreciseSceneEvaluation

__all__ = [
    "DamagedCheckpointError",
    "ModelCheckpoint",
    "PLYPredictionWriter",
    "PredictionCSVWriter",
    "Preemption",
    "PreciseSceneEvaluation",
    "RenderPredictions",
    "SafeCheckpointIO",
    "ScenePredictionWriter",
    "log_image",
]
