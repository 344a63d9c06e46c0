"""Rendering point clouds: Open3D offscreen (headless Filament) and a torch splatting fallback.

- :func:`render`: points and colours to an ``(H, W, 3) uint8`` image, several views.
- :func:`splat`: the pure-torch rasteriser, hard z-buffer or soft and differentiable.
- :class:`Camera` / :func:`frame_camera`: the camera both renderers share.
- :func:`class_palette` / :func:`legend`: colours for 13-50 classes and their key.
- :func:`prediction_figure` / :func:`confusion_matrix_image`: pictures for loggers.
"""

from lightning_pc.viz.camera import VIEWS, Camera, frame_camera
from lightning_pc.viz.figures import confusion_matrix_image, hstack, titled, vstack
from lightning_pc.viz.palettes import class_palette, legend, min_color_distance
from lightning_pc.viz.predictions import prediction_figure
from lightning_pc.viz.render import open3d_available, render
from lightning_pc.viz.splat import SplatOutput, splat

__all__ = [
    "VIEWS",
    "Camera",
    "SplatOutput",
    "class_palette",
    "confusion_matrix_image",
    "frame_camera",
    "hstack",
    "legend",
    "min_color_distance",
    "open3d_available",
    "prediction_figure",
    "render",
    "splat",
    "titled",
    "vstack",
]
