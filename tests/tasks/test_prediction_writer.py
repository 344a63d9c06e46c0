"""PLYPredictionWriter: PLY files read back with Open3D, labels and colours checked."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from torch_geometric.data import Data

from lightning_pc.callbacks.prediction_writer import PLYPredictionWriter, split_prediction
from lightning_pc.data import SyntheticShapesDataModule, collate
from lightning_pc.data.palettes import class_palette
from lightning_pc.data.transforms import GridSubsample
from lightning_pc.tasks import ClassificationTask, SemanticSegmentationTask
from tests.conftest import TINY_MODELS

o3d = pytest.importorskip("open3d")


def _read(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cloud = o3d.t.io.read_point_cloud(str(path))
    pos = cloud.point.positions.numpy()
    colors = cloud.point.colors.numpy()
    if colors.dtype != np.uint8:  # Open3D may scale uchar colours to [0, 1]
        colors = np.round(colors * 255).astype(np.uint8)
    return pos, colors, cloud.point.label.numpy().reshape(-1)


def _trainer(writer: PLYPredictionWriter) -> L.Trainer:
    return L.Trainer(
        callbacks=[writer],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "ascii"])
def test_classification_predictions_round_trip(tmp_path: Path, binary: bool) -> None:
    data = SyntheticShapesDataModule(
        num_train=2, num_val=2, num_test=5, num_points=40, batch_size=2, eval_transforms=[]
    )
    torch.manual_seed(0)
    task = ClassificationTask(
        model_kwargs=TINY_MODELS["pointnet2_ssg"], num_classes=data.num_classes
    )
    writer = PLYPredictionWriter(str(tmp_path / "pred"), binary=binary)
    predictions = _trainer(writer).predict(task, data)
    labels = torch.cat(predictions).argmax(1)  # [5, C] class probabilities -> labels
    files = sorted((tmp_path / "pred").glob("*.ply"))
    assert [f.name for f in files] == [f"cloud_{i:06d}.ply" for i in range(5)]
    assert (b"binary_little_endian" if binary else b"format ascii") in files[0].read_bytes()[:80]
    palette = np.asarray(data.palette, dtype=np.uint8)
    data.setup("test")
    for i, path in enumerate(files):
        pos, colors, point_labels = _read(path)
        np.testing.assert_allclose(pos, data.datasets["test"][i].pos.numpy(), rtol=0, atol=1e-6)
        assert (point_labels == int(labels[i])).all()
        assert (colors == palette[int(labels[i])]).all()


def test_full_resolution_predictions_go_back_to_kept_points(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    clouds = []
    for n in (60, 45):
        pos = torch.rand(n, 3, generator=g)
        cloud = Data(pos=pos, x=torch.rand(n, 3, generator=g), y=torch.randint(0, 4, (n,)))
        clouds.append(GridSubsample(0.25, training=False, keep_inverse=True)(cloud))
    batch = collate(clouds)
    torch.manual_seed(0)
    task = SemanticSegmentationTask(
        model_kwargs=TINY_MODELS["pointnet2_ssg_sem_seg"], num_classes=4
    ).eval()
    with torch.no_grad():
        kept_pred = task(batch).argmax(1)
        full_pred = task.predict_step(batch, 0)
    assert full_pred.numel() == 105
    parts = split_prediction(full_pred, batch)
    assert [p.size(0) for p, _ in parts] == [int(c.pos.size(0)) for c in clouds]
    torch.testing.assert_close(torch.cat([lab for _, lab in parts]), kept_pred)

    writer = PLYPredictionWriter(str(tmp_path), binary=True, prefix="room_")
    trainer = _trainer(writer)
    writer.write_on_batch_end(trainer, task, full_pred, [3, 8], batch, 0, 0)
    palette = np.asarray(class_palette(4), dtype=np.uint8)  # no data module: the generated one
    for index, cloud, (_, lab) in zip((3, 8), clouds, parts):
        pos, colors, labels = _read(tmp_path / f"room_{index:06d}.ply")
        np.testing.assert_allclose(pos, cloud.pos.numpy(), rtol=0, atol=0)
        np.testing.assert_array_equal(labels, lab.numpy())
        np.testing.assert_array_equal(colors, palette[lab.numpy()])


def test_mismatched_prediction_is_an_error() -> None:
    batch = collate([Data(pos=torch.rand(5, 3)), Data(pos=torch.rand(4, 3))])
    with pytest.raises(ValueError, match="cannot match"):
        split_prediction(torch.zeros(7, dtype=torch.long), batch)


def test_counts_list_every_predicted_class(tmp_path: Path) -> None:
    from lightning_pc.callbacks.prediction_writer import write_counts

    labels = np.array([0, 0, 1, 3, 3, 3], dtype=np.uint8)  # class 3: a model with 4 outputs
    write_counts(tmp_path / "c.csv", labels, ["floor", "wall, north"])
    rows = (tmp_path / "c.csv").read_text().splitlines()
    assert rows == [
        "class,name,points,fraction",
        "0,floor,2,0.333333",
        '1,"wall, north",1,0.166667',
        "2,class_2,0,0.000000",
        "3,class_3,3,0.500000",
    ]


def test_every_cloud_of_a_run_gets_the_same_colours() -> None:
    """The palette is settled for the run's class count, not for one cloud's labels: a
    10-colour palette for a 12-class task falls back to the generated one for every cloud
    alike, not only for the clouds that predict class 10 or 11."""
    from lightning_pc.callbacks.prediction_writer import prediction_colors

    class DM:
        num_classes = 10
        palette = [[255 * (k % 2), 25 * k, 200 - 20 * k] for k in range(10)]

    first = prediction_colors(DM(), np.array([0, 1, 2]), num_classes=12)
    second = prediction_colors(DM(), np.array([0, 1, 11]), num_classes=12)
    np.testing.assert_array_equal(first[:2], second[:2])
    np.testing.assert_array_equal(first, np.asarray(class_palette(12), np.uint8)[[0, 1, 2]])
    # the data module's palette when it covers the task; a stray label is grey
    own = prediction_colors(DM(), np.array([0, 9, 12]), num_classes=10)
    np.testing.assert_array_equal(own[:2], np.asarray(DM.palette, np.uint8)[[0, 9]])
    assert own[2].tolist() == [170, 170, 170]
