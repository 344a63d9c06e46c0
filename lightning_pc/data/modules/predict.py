"""PredictScenesDataModule: run a trained segmentation model on anyone's scans."""

from __future__ import annotations

import warnings
from collections import deque
from collections.abc import Iterator
from typing import Any

from torch.utils.data import DataLoader, Dataset, DistributedSampler

from lightning_pc.data.datasets.fragment_batches import FragmentBatches
from lightning_pc.data.datasets.scenes import SceneFragments, list_scans
from lightning_pc.data.modules.base import PointCloudDataModule
from lightning_pc.data.palettes import make_palette


class PredictScenesDataModule(PointCloudDataModule):
    """Whole scans (a file, or a folder of PLY, PCD, LAS/LAZ, NPY, TXT/XYZ/PTS files, or
    KITTI velodyne ``.bin`` scans) for
    ``predict``: no labels, no cache, any size.

    Each scan is cut lazily into overlapping fragments (square blocks of ``block_size``,
    ``stride`` apart in x-y, or spheres of diameter ``block_size`` on a ``stride`` grid),
    voxelised at ``voxel_size`` (see
    :class:`~lightning_pc.data.datasets.scenes.SceneFragments`), and the fragments are
    packed into batches by point count
    (:class:`~lightning_pc.data.datasets.fragment_batches.FragmentBatches`): at least ``batch_size``
    fragments a batch, and more while their points stay within ``batch_points``, so a
    sparse scan (many fragments of a few points) costs about what its points cost. Before
    the first batch each scan's coordinates are read once and the points of every fragment
    counted (a grid pass), so the number of batches is known (the progress bar has a
    total); when a scan's fragments hold on average under an eighth of ``crop_points``, a
    warning gives the numbers (a ``block_size`` that does not fit the scan's units or
    density). The task returns class
    probabilities per covered point and
    :class:`~lightning_pc.callbacks.prediction_writer.ScenePredictionWriter` votes them back
    onto every original point and writes the results (``lightning-pc predict`` adds that
    writer, with ``output_dir``, when the trainer has none).

    Example::

        lightning-pc predict --config configs/s3dis_sparse_unet.yaml \\
            --ckpt_path runs/s3dis_sparse_unet/checkpoints/best.ckpt \\
            --data PredictScenesDataModule --data.root my_scan.las \\
            --data.features '[rgb]' --data.output_dir predictions

    Args:
        root: a scan file or a folder searched recursively for scan files.
        num_classes: classes of the model (``lightning-pc predict`` fills it from
            ``--ckpt_path`` when neither this nor ``class_names`` is given).
        class_names: names of the classes (``None``: ``class_0``, ``class_1`` ...).
        features: per-point inputs the model was trained with: ``"rgb"`` and/or
            ``"intensity"`` (``in_channels`` of the task must match).
        block_size: side of a block in x-y, or a sphere's diameter (scan units; the
            training crop size).
        stride: step between fragments (``None``: ``block_size / 2``, which sees every
            point of a block up to 4 times and keeps spheres covering every point; spheres
            need ``block_size >= stride * sqrt(3)``).
        voxel_size: grid sampling inside a fragment (``None``: every point).
        crop: ``"block"`` (square columns, all heights) or ``"sphere"``.
        sphere_points: spheres keep at most this many points, the nearest to the centre
            (``None``: all within the radius); points left out get spheres of their own.
        output_dir: where the writer puts the results.
        batch_size: fragments per batch, at least (the scan's last batch may hold fewer).
        crop_points: points of a training crop (the S3DIS recipes: 4096), the size a
            fragment is expected to have.
        batch_points: a batch takes more than ``batch_size`` fragments while their points
            (before voxelising) stay within this (``None``: ``batch_size * crop_points``).
        num_workers: loader workers, at most one per scan of this rank (each cuts whole
            scans and holds the one it is on: about 20 bytes a point plus 4 per feature
            channel).
    """

    def __init__(
        self,
        root: str = "scans",
        num_classes: int | None = None,
        class_names: list[str] | None = None,
        features: list[str] | None = None,
        block_size: float = 3.0,
        stride: float | None = None,
        voxel_size: float | None = 0.04,
        crop: str = "block",
        sphere_points: int | None = None,
        output_dir: str = "predictions",
        batch_size: int = 4,
        num_workers: int = 0,
        crop_points: int = 4096,
        batch_points: int | None = None,
    ) -> None:
        super().__init__(batch_size, num_workers)
        if class_names is not None:
            if num_classes is not None and num_classes != len(class_names):
                raise ValueError(
                    f"num_classes={num_classes} but {len(class_names)} class_names were given"
                )
            self.class_names = list(class_names)
        elif num_classes is not None:
            if num_classes < 1:
                raise ValueError(f"num_classes must be positive, got {num_classes}")
            self.class_names = [f"class_{i}" for i in range(num_classes)]
        else:
            raise ValueError(
                "PredictScenesDataModule needs num_classes or class_names (lightning-pc "
                "predict reads num_classes from --ckpt_path)"
            )
        self.root, self.output_dir = root, output_dir
        self.files = list_scans(root)
        if stride is None:
            stride = block_size / 2  # spheres: within block_size / sqrt(3), every point covered
        self.fragments = SceneFragments(
            self.files, features or [], block_size, stride, voxel_size, crop, sphere_points
        )
        if crop_points < 1:
            raise ValueError(f"crop_points must be positive, got {crop_points}")
        self.crop_points = crop_points
        self.batch_points = batch_size * crop_points if batch_points is None else batch_points
        self.batches = FragmentBatches(self.fragments, batch_size, self.batch_points)
        self._warned = False

    @property
    def palette(self) -> list[list[int]]:
        return make_palette(self.num_classes)

    def build_datasets(self, stage: str | None) -> dict[str, Dataset]:
        return {"predict": self.fragments}

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        if self.trainer is not None:
            self.fragments.rank = self.trainer.global_rank
            self.fragments.world_size = self.trainer.world_size

    def predict_dataloader(self) -> DataLoader:
        self.batches.plan()  # counts every fragment: the loader's length is known
        self._warn_small_fragments()
        workers = min(self.num_workers, len(self.batches.scans()))  # a worker cuts whole scans
        return DataLoader(
            self.batches,
            batch_size=1,  # an item is a packed batch
            sampler=_RankBatches(self.batches, workers),
            num_workers=workers,
            collate_fn=_the_batch,
            pin_memory=self.pin_memory,
        )

    def _warn_small_fragments(self) -> None:
        """Once: the scans whose fragments hold on average far fewer points than a crop."""
        if self._warned:
            return
        self._warned = True
        small = [
            (k, fragments, covered / fragments, points)
            for k, fragments, covered, points in self.batches.stats
            if fragments and covered / fragments < self.crop_points / 8
        ]
        if not small:
            return
        f = self.fragments
        lines = [
            f"  {f.files[k].name}: {points:,} points in {fragments:,} fragments, "
            f"{mean:,.1f} points a fragment"
            for k, fragments, mean, points in small[:5]
        ]
        more = f"\n  ... and {len(small) - 5} more scans" if len(small) > 5 else ""
        warnings.warn(
            f"fragments hold far fewer points than a training crop (crop_points="
            f"{self.crop_points:,}) with block_size={f.block_size:g}, stride={f.stride:g} "
            f"({f.crop}):\n" + "\n".join(lines) + more + "\nThe block size does not fit "
            "these scans' units or density (coordinates in other units than the training "
            "data? a sparser sensor?): predictions on such fragments are unlikely to be "
            "good. Check the scans' units, or set --data.block_size so that a fragment "
            "holds about crop_points points.",
            UserWarning,
            stacklevel=2,
        )

    def _no_split(self, split: str) -> DataLoader:
        raise RuntimeError(
            f"PredictScenesDataModule has no {split} data (unlabelled scans): use `predict`"
        )

    def train_dataloader(self) -> DataLoader:
        return self._no_split("training")

    def val_dataloader(self) -> DataLoader:
        return self._no_split("validation")

    def test_dataloader(self) -> DataLoader:
        return self._no_split("test")


class _RankBatches(DistributedSampler):
    """This rank's batches: the dataset holds this rank's scans only (already split over
    the ranks, whole scans each), so Lightning must not split it again.

    With loader workers, the batches are dealt so that each worker cuts whole scans: a
    DataLoader hands the ``i``-th index to worker ``i mod workers``, so position ``i`` gets
    the next batch of the scans of worker ``i mod workers`` (scan ``s``, in this rank's
    order, to worker ``s mod workers``), or, once those are done, of the worker with the
    most batches left. Only speed and memory depend on that dealing (a worker reads each
    scan it gets a batch of); every batch comes exactly once whatever the loader does.
    """

    def __init__(self, dataset: FragmentBatches, workers: int) -> None:
        super().__init__(dataset, num_replicas=1, rank=0, shuffle=False)
        self.batches, self.workers = dataset, max(workers, 1)

    def __iter__(self) -> Iterator[int]:
        scans = self.batches.scan_of_batches()
        mine = {k: s % self.workers for s, k in enumerate(dict.fromkeys(scans.tolist()))}
        queues: list[deque[int]] = [deque() for _ in range(self.workers)]
        for b, k in enumerate(scans.tolist()):
            queues[mine[k]].append(b)
        for i in range(len(scans)):
            queue = queues[i % self.workers]
            if not queue:
                queue = max(queues, key=len)
            yield queue.popleft()

    def __len__(self) -> int:
        return len(self.batches)


def _the_batch(items: list[Any]) -> Any:
    """The one item of a loader batch: a batch packed by :class:`FragmentBatches`."""
    return items[0]


PredictScenes = PredictScenesDataModule
