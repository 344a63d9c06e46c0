"""Lightning callbacks: pictures of predictions in every logger, PLY prediction files."""

from lightning_pc.callbacks.image_logging import log_image
from lightning_pc.callbacks.prediction_writer import PLYPredictionWriter
from lightning_pc.callbacks.render_predictions import RenderPredictions

__all__ = ["PLYPredictionWriter", "RenderPredictions", "log_image"]
