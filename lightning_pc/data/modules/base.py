"""Shared LightningDataModule plumbing: loaders, collate, transforms, seeding, caching."""

from __future__ import annotations

import copy
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from lightning_pc.data.cache import (
    CacheRecipe,
    FingerprintMode,
    VerifyLevel,
    ensure_cache,
    locate_cache,
)
from lightning_pc.data.collate import collate
from lightning_pc.data.datasets.base import PointDataset
from lightning_pc.data.palettes import class_palette
from lightning_pc.data.sampler import EpochSampler, eval_sampler
from lightning_pc.data.seeding import current_rank
from lightning_pc.data.transforms import Compose, TransformSpec, build_transforms

#: Augmentations of indoor scans with colour (S3DIS, ScanNet): rotation about the vertical,
#: isotropic scale, jitter and colour contrast / jitter.
INDOOR_SCENE_AUGMENTATIONS: list[TransformSpec] = [
    {"class_path": "RandomRotate", "init_args": {"axis": "z"}},
    {"class_path": "RandomScale", "init_args": {"low": 0.9, "high": 1.1, "anisotropic": False}},
    {"class_path": "RandomJitter", "init_args": {"sigma": 0.005, "clip": 0.02}},
    {"class_path": "ChromaticAutoContrast", "init_args": {"p": 0.2}},
    {"class_path": "ChromaticJitter", "init_args": {"std": 0.05, "p": 0.95}},
]


def scene_train_transforms(
    voxel_size: float | None, num_points: int | None, augmentations: list[TransformSpec]
) -> list[TransformSpec]:
    """Training transforms of a scene data module: voxel grid subsampling (if a voxel size is
    set), the ``augmentations``, then a random subsample of ``num_points`` (if set)."""
    out: list[TransformSpec] = []
    if voxel_size:
        out.append({"class_path": "GridSubsample", "init_args": {"voxel_size": voxel_size}})
    out += copy.deepcopy(augmentations)  # callers may edit what they get
    if num_points:
        out.append({"class_path": "RandomSubsample", "init_args": {"num_points": num_points}})
    return out


def scene_eval_transforms(voxel_size: float | None) -> list[TransformSpec]:
    """Evaluation transforms of a scene data module: the voxel grid, keeping the inverse map so
    predictions reach every original point."""
    if not voxel_size:
        return []
    return [
        {
            "class_path": "GridSubsample",
            "init_args": {"voxel_size": voxel_size, "training": False, "keep_inverse": True},
        }
    ]


class PointCloudDataModule(L.LightningDataModule):
    """Base data module. Subclasses set the class metadata and build the datasets.

    A subclass declares its own arguments (and ``batch_size`` / ``num_workers`` when its
    defaults differ) and passes the rest on with ``**kwargs``; LightningCLI follows the
    ``**kwargs`` and lists them in ``--help`` and saved configs. All are saved as
    hyperparameters here.

    ``num_classes`` and ``class_names`` are static (available right after ``__init__``), so
    ``LightningCLI.link_arguments("data.num_classes", ...)`` works. ``prepare_data`` builds
    the cache (once, under a file lock); ``setup`` only reads it.

    Args:
        batch_size: clouds per batch.
        num_workers: DataLoader worker processes.
        train_transforms: YAML-able transform specs for training (``None``: the dataset's
            default recipe, ``[]``: none).
        eval_transforms: the same for validation/test/predict.
        cache_dir: cache root (``None``: the per-user cache folder).
        prepare_data_per_node: build the cache on every node (``False`` on a shared
            filesystem: built once, by global rank 0).
        pin_memory: pin batches (``None``: when CUDA is available).
        cache_verify: how an existing cache is checked when opened: ``"quick"`` (sizes,
            small files' checksums, array headers against the offsets, label ranges;
            milliseconds) or ``"full"`` (also every array's checksum and finiteness; reads
            the whole cache). A damaged cache is rebuilt by ``prepare_data``.
        cache_fingerprint: what the cache key hashes of each raw file: ``"stat"`` (name,
            size, modification time) or ``"content"`` (name and bytes: catches an edit that
            keeps the size and restores the mtime, at the cost of reading every raw file).
    """

    def __init__(
        self,
        batch_size: int = 32,
        num_workers: int = 0,
        train_transforms: list[TransformSpec] | None = None,
        eval_transforms: list[TransformSpec] | None = None,
        cache_dir: str | None = None,
        prepare_data_per_node: bool = True,
        pin_memory: bool | None = None,
        cache_verify: VerifyLevel = "quick",
        cache_fingerprint: FingerprintMode = "stat",
    ) -> None:
        super().__init__()
        # every argument, this class's and the subclass's (checkpoints keep the data module's
        # hyperparameters; LightningCLI's saved config is written from the parser)
        self.save_hyperparameters()
        # a typo or a bad argument is reported now, before a model is built or data is read
        build_transforms(train_transforms, "train_transforms")
        build_transforms(eval_transforms, "eval_transforms")
        if cache_verify not in ("quick", "full"):
            raise ValueError(f"cache_verify must be 'quick' or 'full', got {cache_verify!r}")
        if cache_fingerprint not in ("stat", "content"):
            raise ValueError(
                f"cache_fingerprint must be 'stat' or 'content', got {cache_fingerprint!r}"
            )
        self.cache_verify: VerifyLevel = cache_verify
        self.cache_fingerprint: FingerprintMode = cache_fingerprint
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.cache_dir = cache_dir
        self.prepare_data_per_node = prepare_data_per_node
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self._train_specs = train_transforms
        self._eval_specs = eval_transforms
        self.datasets: dict[str, Dataset] = {}

    # --- static metadata ------------------------------------------------------------------
    class_names: list[str] = []

    @property
    def num_classes(self) -> int:
        """Number of classes (of parts, for part segmentation)."""
        return len(self.class_names)

    @property
    def palette(self) -> list[list[int]]:
        """One RGB colour (0-255) per class (PLY predictions, pictures and 3D views use it,
        through :func:`~lightning_pc.data.palettes.resolve_palette`)."""
        return class_palette(self.num_classes)

    # --- transforms -----------------------------------------------------------------------
    def default_train_transforms(self) -> list[TransformSpec]:
        """The training recipe used when ``train_transforms`` is ``None``."""
        return []

    def default_eval_transforms(self) -> list[TransformSpec]:
        """The evaluation recipe used when ``eval_transforms`` is ``None``."""
        return []

    def train_transform(self) -> Compose | None:
        specs = (
            self._train_specs if self._train_specs is not None else self.default_train_transforms()
        )
        return build_transforms(specs, "train_transforms") if specs else None

    def eval_transform(self) -> Compose | None:
        specs = self._eval_specs if self._eval_specs is not None else self.default_eval_transforms()
        return build_transforms(specs, "eval_transforms") if specs else None

    # --- cache ----------------------------------------------------------------------------
    def recipe(self) -> CacheRecipe | None:
        """The cache recipe, or ``None`` for datasets without a cache."""
        return None

    def prepare_data(self) -> None:
        """Build the cache if it is missing or damaged (runs once per node, or once in all)."""
        recipe = self.recipe()
        if recipe is not None:
            ensure_cache(recipe, self.cache_dir, self.cache_verify, self.cache_fingerprint)

    def cache_folder(self) -> Any:
        """The completed cache folder (read-only lookup; raises if ``prepare_data`` has not run)."""
        recipe = self.recipe()
        if recipe is None:
            raise RuntimeError(f"{type(self).__name__} has no cache")
        return locate_cache(recipe, self.cache_dir, self.cache_verify, self.cache_fingerprint)

    # --- setup / loaders ------------------------------------------------------------------
    def build_datasets(self, stage: str | None) -> dict[str, Dataset]:
        """Create the split datasets for ``stage`` (read-only)."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        self.datasets.update(self.build_datasets(stage))
        rank = self.trainer.global_rank if self.trainer is not None else current_rank()
        for dataset in self.datasets.values():
            if isinstance(dataset, PointDataset):
                dataset.rank = rank

    def _world(self) -> tuple[int, int]:
        """(world size, global rank): the trainer's, else ``torch.distributed``'s, else (1, 0)."""
        if self.trainer is not None:
            return self.trainer.world_size, self.trainer.global_rank
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_world_size(), torch.distributed.get_rank()
        return 1, 0

    def _loader(self, split: str, shuffle: bool, batch_size: int | None = None) -> DataLoader:
        if split not in self.datasets:
            raise RuntimeError(f"no {split!r} dataset: call setup() with the right stage first")
        workers = self.num_workers
        dataset = self.datasets[split]
        # Training order and augmentation from (seed, epoch): exact on resume, sharded under DDP.
        # Evaluation and prediction under DDP: every cloud on exactly one rank (no padding),
        # so metrics are those of a single process.
        sampler: DistributedSampler | None
        if shuffle:
            sampler = EpochSampler(dataset)
        else:
            replicas, rank = self._world()
            sampler = eval_sampler(dataset, replicas, rank)
        if isinstance(sampler, EpochSampler) and self.trainer is not None:
            # on resume Lightning creates the loader's iterator before it calls set_epoch, and
            # worker processes draw their first indices at once: they would replay epoch 0
            # (the epoch number Lightning passes to set_epoch: its count of processed epochs)
            progress = self.trainer.fit_loop.epoch_progress.current
            sampler.set_epoch(int(getattr(progress, "processed", self.trainer.current_epoch)))
        return DataLoader(
            dataset,
            batch_size=batch_size or self.batch_size,
            sampler=sampler,
            shuffle=False if sampler is not None else shuffle,
            num_workers=workers,
            collate_fn=collate,
            pin_memory=self.pin_memory,
            persistent_workers=workers > 0,
            prefetch_factor=4 if workers > 0 else None,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
