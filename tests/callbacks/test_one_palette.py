"""One palette: class k has the same RGB in a written PLY, in the rendered picture and in the
logger's 3D view, for a data module's own palette and for one whose colours are too close."""

from __future__ import annotations

import glob
import os
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from PIL import Image

from lightning_pc.callbacks import RenderPredictions
from lightning_pc.callbacks.prediction_writer import PLYPredictionWriter
from lightning_pc.data import SyntheticShapesDataModule
from lightning_pc.data.palettes import class_palette, min_color_distance, resolve_palette
from lightning_pc.tasks import PartSegmentationTask
from tests.conftest import tiny_kwargs

o3d = pytest.importorskip("open3d")

TINY_PART = tiny_kwargs("pointnet2_ssg_part_seg")  # the one tiny-model table


class PaintedShapes(SyntheticShapesDataModule):
    """Synthetic part segmentation whose palette the test chooses."""

    def __init__(self, colours: list[list[int]], **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.colours = colours

    @property
    def palette(self) -> list[list[int]]:
        return self.colours


def _mesh_colours(log_dir: str, tag: str) -> np.ndarray:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    acc = EventAccumulator(log_dir, size_guidance={"tensors": 0})
    acc.Reload()
    (event,) = acc.Tensors(f"{tag}_COLOR")
    return tensor_util.make_ndarray(event.tensor_proto).reshape(-1, 3).astype(np.uint8)


def _ply(path: str) -> tuple[np.ndarray, np.ndarray]:
    cloud = o3d.t.io.read_point_cloud(path)
    colours = cloud.point.colors.numpy()
    if colours.dtype != np.uint8:  # Open3D may scale uchar colours to [0, 1]
        colours = np.round(colours * 255).astype(np.uint8)
    return cloud.point.label.numpy().reshape(-1), colours


@pytest.mark.parametrize("case", ["own palette", "too close"])
def test_class_has_one_colour_in_ply_picture_and_3d_view(tmp_path: Path, case: str) -> None:
    num_parts = SyntheticShapesDataModule(task="part_segmentation").num_classes
    if case == "own palette":  # distinct colours, not the default ones
        colours = class_palette(num_parts + 7)[7:]
    else:  # every class a slightly different red: RenderPredictions used to swap these
        colours = [[200 + k % 40, 10, 10] for k in range(num_parts)]
    dm = PaintedShapes(colours, num_train=4, num_val=2, num_test=3, num_points=64,
                       task="part_segmentation", batch_size=2)
    expected = np.asarray(colours if case == "own palette" else class_palette(num_parts), np.uint8)
    assert (min_color_distance(colours) < 15) == (case == "too close")
    torch.manual_seed(0)
    task = PartSegmentationTask(model_kwargs=TINY_PART, num_classes=dm.num_classes,
                                part_offsets=dm.part_offsets)
    tb, csv = TensorBoardLogger(tmp_path, name="tb"), CSVLogger(tmp_path, name="csv")
    trainer = L.Trainer(
        max_epochs=1, logger=[tb, csv], enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=str(tmp_path), num_sanity_val_steps=0,
        limit_train_batches=1, limit_val_batches=1,
        callbacks=[RenderPredictions(num_samples=1, size=48, backend="torch",
                                     confusion_matrix=False, point_clouds=True),
                   PLYPredictionWriter(str(tmp_path / "ply"))],
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(task, dm)
        trainer.predict(task, dm)
    fallback_warnings = [w for w in caught if "look alike" in str(w.message)]
    assert bool(fallback_warnings) == (case == "too close")

    # the PLY files: every point's colour is its predicted class's colour
    plys = sorted(glob.glob(str(tmp_path / "ply" / "*.ply")))
    assert len(plys) == 3
    for path in plys:
        labels, rgb = _ply(path)
        np.testing.assert_array_equal(rgb, expected[labels])

    # the 3D view in TensorBoard: the first validation cloud's ground truth, point by point
    dm.setup("validate")
    truth = dm.datasets["val"][0].y.numpy()
    mesh = _mesh_colours(tb.log_dir, "val/cloud_0/truth")
    np.testing.assert_array_equal(mesh, expected[truth])

    # the picture: the legend's swatch of every ground-truth class is drawn in that colour
    (png,) = glob.glob(os.path.join(csv.log_dir, "images", "val", "**", "*.png"), recursive=True)
    picture = np.asarray(Image.open(png).convert("RGB"))
    for k in np.unique(truth):
        assert (picture == expected[k]).all(-1).sum() >= 20, f"class {k}: no swatch in {png}"
    np.testing.assert_array_equal(resolve_palette(colours, num_parts), expected)


def test_resolve_palette_rules() -> None:
    good = [[255, 0, 0], [0, 0, 255], [0, 160, 0]]
    np.testing.assert_array_equal(resolve_palette(good, 3), good)
    np.testing.assert_array_equal(resolve_palette(good + [[9, 9, 9]], 2), good[:2])
    np.testing.assert_array_equal(resolve_palette(good, 5), class_palette(5))  # too short
    np.testing.assert_array_equal(resolve_palette(None, 4), class_palette(4))
    with pytest.warns(UserWarning, match="look alike"):
        same = resolve_palette([[200, 0, 0], [201, 0, 0]], 2)
    np.testing.assert_array_equal(same, class_palette(2))
    with pytest.raises(ValueError, match="0-255"):
        resolve_palette([[300, 0, 0], [0, 0, 0]], 2)
