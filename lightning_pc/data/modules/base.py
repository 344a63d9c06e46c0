"""Shared LightningDataModule plumbing: loaders, collate, transforms, seeding, caching."""

from __future__ import annotations

import copy
from abc import ABCMeta, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

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
from lightning_pc.data.collate import Mix3DCollate, collate
from lightning_pc.data.datasets.base import PackedDataset, PointDataset
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
    """Base data module: owns the four loaders, ``eval_batch_size``, transforms, the cache.

    Subclasses set the class metadata (``class_names``, the default transform specs) and
    build the datasets (:meth:`build_datasets`); a module over a packed cache declares its
    fields instead (:class:`PackedDataModule`). The loaders read ``datasets["train"]``,
    ``["val"]`` (no validation loop when a set-up module has none), ``["test"]`` and
    ``["predict"]`` (else ``["test"]``); evaluation and prediction batches hold
    ``eval_batch_size`` clouds.

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
        eval_batch_size: clouds per validation/test/predict batch (``None``: ``batch_size``).
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
        mix_prob: Mix3D: probability that a training batch's clouds are merged in pairs
            (:class:`~lightning_pc.data.collate.Mix3DCollate`; Pointcept's scene recipes use
            0.8); 0 never mixes.
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
        eval_batch_size: int | None = None,
        mix_prob: float = 0.0,
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
        if not 0 <= mix_prob <= 1:
            raise ValueError(f"mix_prob must be a probability in [0, 1], got {mix_prob}")
        self.mix_prob = mix_prob
        self.cache_verify: VerifyLevel = cache_verify
        self.cache_fingerprint: FingerprintMode = cache_fingerprint
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
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
    #: the training transforms used when ``train_transforms`` is ``None``
    train_transform_specs: ClassVar[list[TransformSpec]] = []
    #: the evaluation transforms used when ``eval_transforms`` is ``None``
    eval_transform_specs: ClassVar[list[TransformSpec]] = []

    def default_train_transforms(self) -> list[TransformSpec]:
        """The training recipe used when ``train_transforms`` is ``None``."""
        return copy.deepcopy(self.train_transform_specs)  # callers may edit what they get

    def default_eval_transforms(self) -> list[TransformSpec]:
        """The evaluation recipe used when ``eval_transforms`` is ``None``."""
        return copy.deepcopy(self.eval_transform_specs)

    def train_transform(self) -> Compose | None:
        specs = (
            self._train_specs if self._train_specs is not None else self.default_train_transforms()
        )
        return build_transforms(specs, "train_transforms") if specs else None

    def eval_transform(self) -> Compose | None:
        specs = self._eval_specs if self._eval_specs is not None else self.default_eval_transforms()
        return build_transforms(specs, "eval_transforms") if specs else None

    def split_transform(self, split: str) -> Compose | None:
        """The transform of a loader split: the training one for ``"train"``, else the
        evaluation one."""
        return self.train_transform() if split == "train" else self.eval_transform()

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
            raise RuntimeError(
                f"no {split!r} dataset: call setup() with the right stage first "
                f"({type(self).__name__} has {sorted(self.datasets) or 'none yet'})"
            )
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
            collate_fn=Mix3DCollate(self.mix_prob)
            if split == "train" and self.mix_prob
            else collate,
            pin_memory=self.pin_memory,
            persistent_workers=workers > 0,
            prefetch_factor=4 if workers > 0 else None,
        )

    def _eval_loader(self, split: str) -> DataLoader:
        return self._loader(split, False, self.eval_batch_size)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        if "val" not in self.datasets and "train" in self.datasets:
            return []  # set up, without validation data: Lightning runs no validation loop
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader("predict" if "predict" in self.datasets else "test")


class SceneTransforms:
    """Default transforms of a scene data module (a mixin placed before the base class):
    :func:`scene_train_transforms` with the class's ``augmentations`` and
    :func:`scene_eval_transforms`, from the module's ``voxel_size`` and ``num_points``."""

    #: augmentations between the voxel grid and the subsample of training scenes
    augmentations: ClassVar[list[TransformSpec]] = INDOOR_SCENE_AUGMENTATIONS
    voxel_size: float | None
    num_points: int | None

    def default_train_transforms(self) -> list[TransformSpec]:
        return scene_train_transforms(self.voxel_size, self.num_points, self.augmentations)

    def default_eval_transforms(self) -> list[TransformSpec]:
        return scene_eval_transforms(self.voxel_size)


Sampling = Literal["random", "first", "strided"]


@dataclass(frozen=True)
class PackedFields:
    """What the samples of one packed cache split hold (see :class:`PackedDataModule`).

    Args:
        points: per-point cache field -> ``Data`` attribute (``{"pos": "pos", "rgb": "x"}``);
            the order is the attributes' order in a sample.
        sample: per-sample cache field -> attribute, a ``[1]`` tensor (``{"label": "y"}``).
        features: attributes appended to ``x`` after the transform, then removed
            (``("normal",)``: normals rotate with the points, then become input channels).
    """

    points: Mapping[str, str]
    sample: Mapping[str, str] = field(default_factory=dict)
    features: tuple[str, ...] = ()


class PackedDataModule(PointCloudDataModule, metaclass=ABCMeta):
    """A data module over a packed cache (:mod:`lightning_pc.data.packed`), by declaration.

    A subclass declares, besides its arguments (``__init__``) and ``class_names``:

    - :meth:`recipe`: the cache recipe (how the raw release becomes the cache);
    - :meth:`fields`: a :class:`PackedFields` per cache split folder (what a sample holds);
    - ``splits``: loader split -> the cache split folders it may read, the first present
      one wins (``"val": ("val", "test")``: validate on ``test/`` when there is no
      ``val/``); a loader none of whose folders exists has no data (``val``: no validation
      loop);
    - ``sampling``: how ``num_points`` points are read per sample in training and in
      evaluation (``"random"``, ``"first"``, ``"strided"``), or ``None`` to read every point
      (scenes: their transforms voxelise and subsample);
    - the default transforms (``train_transform_specs`` / ``eval_transform_specs``, or
      :class:`SceneTransforms`).

    Loaders reading the same folder in the same mode share one dataset (ModelNet validates
    and tests on one ``test`` dataset).
    """

    #: loader split -> cache split folders, the first present one is read
    splits: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "train": ("train",),
        "val": ("val",),
        "test": ("test",),
    }
    #: how ``num_points`` points are read per sample: ``{"train": ..., "eval": ...}``
    #: (``None``: every point)
    sampling: ClassVar[Mapping[str, Sampling] | None] = {"train": "random", "eval": "strided"}
    #: points read per sample when ``sampling`` is set (``None``: all)
    num_points: int | None = None

    @abstractmethod
    def recipe(self) -> CacheRecipe:
        """The cache recipe."""

    @abstractmethod
    def fields(self, split: str) -> PackedFields:
        """What the samples of cache split folder ``split`` hold."""

    def build_datasets(self, stage: str | None) -> dict[str, Dataset]:
        folder = Path(self.cache_folder())
        shared: dict[tuple[str, bool], Dataset] = {}
        out: dict[str, Dataset] = {}
        for split, candidates in self.splits.items():
            found = next((name for name in candidates if (folder / name).is_dir()), None)
            if found is None:
                continue
            train = split == "train"
            if (found, train) not in shared:
                shared[found, train] = self.packed_dataset(folder / found, found, train)
            out[split] = shared[found, train]
        return out

    def packed_dataset(self, folder: Path, split: str, train: bool) -> PackedDataset:
        """The dataset over cache split ``folder`` (named ``split``), for training or not."""
        fields = self.fields(split)
        sampling = self.sampling
        return PackedDataset(
            folder,
            dict(fields.points),
            dict(fields.sample),
            self.num_points if sampling is not None else None,
            sampling["train" if train else "eval"] if sampling is not None else "random",
            self.split_transform("train" if train else "eval"),
            fields.features,
        )
