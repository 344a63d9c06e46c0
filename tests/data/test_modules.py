"""Data-module contracts: LightningCLI-friendly signatures, static metadata, YAML transforms,
loaders and the batch schema, for every data module (found, not listed: see
:func:`data_modules`), and a new data module declared in about 30 lines."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
import yaml
from lightning.pytorch.cli import LightningCLI

import lightning_pc.data.modules
from lightning_pc import data as D
from lightning_pc.data.cache import CacheRecipe
from lightning_pc.data.datasets.fragment_batches import FragmentBatches
from lightning_pc.data.modules.base import PackedDataModule, PackedFields, PointCloudDataModule
from lightning_pc.data.packed import PackedWriter
from tests.data import load_fixture

# --- a new data module: tiny scans of x y z r g b label rows, declared (32 lines) -------------


class TinyScansRecipe(CacheRecipe):
    name = "tiny_scans"

    def __init__(self, root: str) -> None:
        self._root = Path(root).expanduser()

    @property
    def root(self) -> Path:
        return self._root

    def raw_files(self) -> list[Path]:
        return sorted(self._root.glob("*/*.npy"))

    def params(self) -> dict[str, Any]:
        return {}

    def build(self, out: Path) -> None:
        for split in ("train", "val"):
            writer = PackedWriter(out / split)
            for f in sorted((self._root / split).glob("*.npy")):
                a = np.load(f)
                rgb, label = a[:, 3:6].astype(np.uint8), a[:, 6].astype(np.int64)
                writer.append(f"{split}/{f.name}", {"pos": a[:, :3], "rgb": rgb, "label": label})
            writer.close()


class TinyScansDataModule(PackedDataModule):
    """Tiny scans, ``root/{train,val}/*.npy`` of ``x y z r g b label`` rows.

    Args:
        root: the dataset folder.
        num_points: points per scan (``None``: all).
        **kwargs: the arguments every data module shares.
    """

    class_names = ["floor", "wall", "chair"]
    splits = {"train": ("train",), "val": ("val",), "test": ("val",)}
    train_transform_specs = [{"class_path": "RandomRotate", "init_args": {"axis": "z"}}]

    def __init__(self, root: str = "data/tiny", num_points: int | None = 48, **kwargs: Any):
        super().__init__(**kwargs)
        self.root, self.num_points = root, num_points

    def recipe(self) -> TinyScansRecipe:
        return TinyScansRecipe(self.root)

    def fields(self, split: str) -> PackedFields:
        return PackedFields({"pos": "pos", "rgb": "x", "label": "y"})


# --- the end of the new data module ---------------------------------------------------------


def make_tiny_scans(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for split, count in (("train", 5), ("val", 3)):
        (root / split).mkdir(parents=True)
        for i in range(count):
            n = int(rng.integers(40, 90))
            rows = np.c_[
                rng.uniform(0, 2, (n, 3)), rng.integers(0, 256, (n, 3)), rng.integers(0, 3, n)
            ]
            np.save(root / split / f"scan_{i}.npy", rows.astype(np.float32))
    return root


def data_modules() -> list[type[PointCloudDataModule]]:
    """Every concrete data module of the package (each module under ``lightning_pc.data.modules``
    imported, then every subclass of the base found), and this file's new one."""
    for info in pkgutil.iter_modules(lightning_pc.data.modules.__path__):
        importlib.import_module(f"lightning_pc.data.modules.{info.name}")
    found: dict[str, type[PointCloudDataModule]] = {}
    stack = list(PointCloudDataModule.__subclasses__())
    while stack:
        cls = stack.pop()
        stack += cls.__subclasses__()
        ours = cls.__module__.startswith("lightning_pc.") or cls.__module__ == __name__
        if ours and not inspect.isabstract(cls):
            found[cls.__name__] = cls
    return [found[name] for name in sorted(found)]


def _folder(tmp: Path) -> PointCloudDataModule:
    return D.PointCloudFolderDataModule(
        str(load_fixture("folder").make_folder(tmp / "clouds")),
        num_points=50,
        points_per_mesh=100,
        batch_size=4,
        num_workers=0,
        cache_dir=str(tmp / "c"),
    )


def _predict(tmp: Path) -> PointCloudDataModule:
    from tests.test_predict import room, write_scan

    (tmp / "scans").mkdir()
    for i, suffix in enumerate((".npy", ".txt")):
        write_scan(tmp / "scans" / f"scan{i}{suffix}", *room(300, seed=i))
    return D.PredictScenesDataModule(
        str(tmp / "scans"), num_classes=3, features=["rgb"], voxel_size=0.2, batch_size=3
    )


def _card_scenes(tmp: Path) -> PointCloudDataModule:
    from tests.test_predict import room, write_scan

    (tmp / "scans").mkdir()
    write_scan(tmp / "scans" / "scan.ply", *room(300))
    return D.CardScenesDataModule("ptv3_scannet20", str(tmp / "scans"), block_size=3.0)


def _modelnet(tmp: Path) -> PointCloudDataModule:
    fx = load_fixture("modelnet")
    root = fx.make_raw(tmp / "ModelNet10", fx.MODELNET10)
    return D.ModelNetDataModule(
        str(root),
        10,
        num_points=64,
        points_per_shape=128,
        batch_size=4,
        num_workers=0,
        cache_dir=str(tmp / "c"),
    )


#: how each data module is made on a tiny copy of its dataset: a data module missing here fails
#: :func:`test_every_data_module_is_covered` (and every contract test then runs on it)
FACTORIES: dict[str, Callable[[Path], PointCloudDataModule]] = {
    "SyntheticShapesDataModule": lambda tmp: D.SyntheticShapesDataModule(
        num_train=6, num_val=3, num_test=3, num_points=32, batch_size=4
    ),
    "ModelNetDataModule": _modelnet,
    "ShapeNetPartDataModule": lambda tmp: D.ShapeNetPartDataModule(
        str(load_fixture("shapenetpart").make_shapenetpart(tmp / "snp")),
        num_points=40,
        use_normals=True,
        batch_size=3,
        num_workers=0,
        cache_dir=str(tmp / "c"),
    ),
    "S3DISDataModule": lambda tmp: D.S3DISDataModule(
        str(load_fixture("s3dis").make_raw(tmp / "Stanford3dDataset_v1.2_Aligned_Version")),
        num_points=40,
        voxel_size=0.05,
        crops_per_room=2,
        batch_size=2,
        num_workers=0,
        cache_dir=str(tmp / "c"),
    ),
    "ScanNetDataModule": lambda tmp: D.ScanNetDataModule(
        str(load_fixture("scannet").make_release(tmp / "scannet") / "raw"),
        num_points=100,
        batch_size=2,
        num_workers=0,
        cache_dir=str(tmp / "c"),
    ),
    "SemanticKITTIDataModule": lambda tmp: D.SemanticKITTIDataModule(
        str(load_fixture("semantickitti").make_release(tmp / "kitti")),
        num_points=100,
        batch_size=2,
        num_workers=0,
        cache_dir=str(tmp / "c"),
    ),
    "PointCloudFolderDataModule": _folder,
    "PredictScenesDataModule": _predict,
    "CardScenesDataModule": _card_scenes,
    "TinyScansDataModule": lambda tmp: TinyScansDataModule(
        str(make_tiny_scans(tmp / "tiny")),
        batch_size=2,
        eval_batch_size=3,
        num_workers=0,
        cache_dir=str(tmp / "c"),
    ),
}

MODULES = data_modules()


def test_every_data_module_is_covered() -> None:
    names = [cls.__name__ for cls in MODULES]
    missing = sorted(set(names) - set(FACTORIES))
    assert not missing, f"data modules without a tiny dataset in FACTORIES: {missing}"
    assert "PackedDataModule" not in names and "PointCloudDataModule" not in names  # abstract
    assert len(names) >= 9 and "TinyScansDataModule" in names


def test_new_data_module_is_about_30_lines() -> None:
    lines = inspect.getsource(inspect.getmodule(TinyScansDataModule)).splitlines()
    start = lines.index("class TinyScansRecipe(CacheRecipe):")
    end = next(i for i, line in enumerate(lines) if "the end of the new data module" in line)
    code = [line for line in lines[start:end] if line.strip()]
    assert len(code) <= 45, len(code)  # recipe and module, blank lines left out


@pytest.mark.parametrize("cls", MODULES, ids=lambda c: c.__name__)
def test_signature_is_plain_yaml(cls: type) -> None:
    # what LightningCLI sees: the module's own arguments plus the shared ones it passes on
    # with **kwargs (jsonargparse follows them to PointCloudDataModule)
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_class_arguments(cls, "data")
    defaults = parser.get_defaults()["data"].as_dict()
    for name in ("batch_size", "num_workers"):
        assert name in defaults, name
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        shared = {"cache_dir", "prepare_data_per_node", "cache_verify", "pin_memory"}
        shared |= {"train_transforms", "eval_transforms", "eval_batch_size"}
        assert shared <= set(defaults)
        assert "cache root" in parser.format_help()  # help text from the declaring class
    for value in defaults.values():
        yaml.safe_dump(value)  # plain YAML types only, no class instances
    assert cls.__doc__ and "Args:" in cls.__doc__
    for name, p in params.items():
        if name != "self" and p.kind is p.POSITIONAL_OR_KEYWORD:
            assert f"{name}:" in cls.__doc__, f"{cls.__name__}: {name} is not documented"


def check_batch(dm: PointCloudDataModule, batch: Any, dataset: Any, split: str) -> None:
    """The batch schema of :mod:`lightning_pc.data.collate`."""
    n, b = batch.pos.size(0), batch.num_graphs
    assert batch.pos.shape == (n, 3) and batch.pos.dtype == torch.float32
    assert batch.batch.shape == (n,) and batch.ptr.shape == (b + 1,) and int(batch.ptr[-1]) == n
    assert batch.idx.shape == (b,)
    x = getattr(batch, "x", None)
    assert x is None or (x.dim() == 2 and x.size(0) == n and x.is_floating_point())
    y = getattr(batch, "y", None)
    if y is not None:
        assert y.dtype == torch.long and y.shape in ((b,), (n,))
        ignore = getattr(dm, "ignore_index", -1)
        assert ((y >= 0) & (y < dm.num_classes) | (y == ignore)).all()
    names = getattr(dataset, "names", None)
    if names is None:
        assert getattr(batch, "source", None) is None
    else:  # each cloud's source, from the batch (what the prediction writers name files by)
        assert batch.source == [names[int(i)] for i in batch.idx]
    inverse = getattr(batch, "inverse_index", None)
    if inverse is not None:
        assert inverse.min() >= 0 and inverse.max() < n


@pytest.mark.parametrize("cls", MODULES, ids=lambda c: c.__name__)
def test_loaders_and_batch_schema(cls: type, tmp_path: Path) -> None:
    dm = FACTORIES[cls.__name__](tmp_path)
    assert type(dm) is cls
    # static metadata: before prepare_data (cli.py links data.num_classes)
    assert dm.num_classes == len(dm.class_names) >= 1 and len(dm.palette) >= dm.num_classes
    dm.prepare_data()
    eval_size = getattr(dm, "eval_batch_size", None) or dm.batch_size
    stages = {"train": "fit", "val": "fit", "test": "test", "predict": "predict"}
    served = 0
    for split, stage in stages.items():
        dm.setup(stage)
        try:
            loader = getattr(dm, f"{split}_dataloader")()
        except RuntimeError as err:  # a module without this split says so (predict only)
            assert split != "predict" and "predict" in str(err)
            continue
        if isinstance(loader, list):  # no validation data: no validation loop
            assert split == "val" and loader == []
            continue
        served += 1
        wanted = dm.batch_size if split == "train" else eval_size
        if isinstance(loader.dataset, FragmentBatches):  # its items are packed batches
            assert loader.batch_size == 1 and loader.dataset.batch_size == wanted
        else:
            assert loader.batch_size == wanted
        batch = next(iter(loader))
        check_batch(dm, batch, loader.dataset, split)
        if split == "train":  # order and augmentation from the seed: the same batch again
            again = next(iter(dm.train_dataloader()))
            assert torch.equal(again.pos, batch.pos) and torch.equal(again.idx, batch.idx)
    assert served >= 1


def test_new_data_module_fits_one_batch(tmp_path: Path) -> None:
    from lightning_pc.tasks import SemanticSegmentationTask
    from tests.conftest import TINY_MODELS

    dm = FACTORIES["TinyScansDataModule"](tmp_path)
    L.seed_everything(0)
    task = SemanticSegmentationTask(
        model_kwargs=TINY_MODELS["pointnet2_ssg_sem_seg"], num_classes=dm.num_classes, in_channels=3
    )
    trainer = L.Trainer(
        max_steps=1,
        limit_val_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        default_root_dir=str(tmp_path),
    )
    trainer.fit(task, datamodule=dm)
    assert trainer.global_step == 1
    assert dm.datasets["test"] is dm.datasets["val"]  # one dataset for both loaders
    assert len(dm.datasets["train"]) == 5 and dm.datasets["train"][0].pos.size(0) == 48


def test_static_metadata_without_files(tmp_path: Path) -> None:
    # available right after __init__: nothing on disk is read (no root exists here)
    assert D.ModelNetDataModule(str(tmp_path / "none"), 10).num_classes == 10
    assert D.ModelNetDataModule(str(tmp_path / "none")).class_names[-1] == "xbox"
    assert D.ShapeNetPartDataModule(str(tmp_path / "none"), categories=["Mug"]).num_classes == 50
    assert D.S3DISDataModule(str(tmp_path / "none")).class_names[-1] == "clutter"
    with pytest.raises(ValueError, match="10 or 40"):
        D.ModelNetDataModule(num_classes=12)


class TinyClassifier(L.LightningModule):
    """Mean-pools the points: enough to run a step on the packed batch."""

    def __init__(self, num_classes: int = 2) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.head = torch.nn.Linear(3, num_classes)

    def training_step(self, batch, batch_idx):
        pooled = torch.zeros(batch.num_graphs, 3).index_add_(0, batch.batch, batch.pos)
        pooled = pooled / batch.ptr.diff().unsqueeze(1)
        loss = torch.nn.functional.cross_entropy(self.head(pooled), batch.y)
        self.log("loss", loss, batch_size=batch.num_graphs)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class LinkingCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments(
            "data.num_classes", "model.init_args.num_classes", apply_on="instantiate"
        )


def test_lightning_cli_yaml_transforms_and_link(tmp_path: Path) -> None:
    config = {
        "trainer": {
            "max_steps": 2,
            "logger": False,
            "enable_checkpointing": False,
            "enable_progress_bar": False,
            "default_root_dir": str(tmp_path),
        },
        "model": {"class_path": f"{__name__}.TinyClassifier"},
        "data": {
            "class_path": "lightning_pc.data.SyntheticShapesDataModule",
            "init_args": {
                "num_train": 8,
                "num_points": 64,
                "batch_size": 4,
                "train_transforms": [
                    "NormalizeScale",
                    {"class_path": "RandomRotate", "init_args": {"axis": "so3"}},
                    {"class_path": "RandomDropout", "init_args": {"max_ratio": 0.5}},
                ],
            },
        },
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    cli = LinkingCLI(args=["fit", "--config", str(path)], save_config_kwargs={"overwrite": True})
    assert cli.model.hparams.num_classes == 12  # linked from the data module's static metadata
    names = [type(t).__name__ for t in cli.datamodule.datasets["train"].transform.transforms]
    assert names == ["NormalizeScale", "RandomRotate", "RandomDropout"]
    assert cli.trainer.global_step == 2


@pytest.mark.parametrize("world", [2, 3])
def test_eval_loaders_split_clouds_across_ranks_without_padding(world: int) -> None:
    # 7 validation clouds over 2 or 3 ranks: a padded DistributedSampler would repeat 1 or 2
    # of them (and the metrics would count them twice); each must be seen exactly once
    from types import SimpleNamespace

    from torch.utils.data import DistributedSampler

    seen: list[int] = []
    for rank in range(world):
        dm = D.SyntheticShapesDataModule(num_train=4, num_val=7, num_test=7, num_points=16)
        dm.setup("fit")
        dm.trainer = SimpleNamespace(world_size=world, global_rank=rank)  # type: ignore[assignment]
        loader = dm.val_dataloader()
        # a DistributedSampler: Lightning keeps it instead of inserting its padded one
        assert isinstance(loader.sampler, DistributedSampler)
        indices = list(loader.sampler)
        assert len(indices) in (7 // world, 7 // world + 1)
        seen += indices
    assert sorted(seen) == list(range(7))


def test_eval_loaders_single_process_and_tiny_splits_are_left_to_lightning() -> None:
    from types import SimpleNamespace

    from torch.utils.data import SequentialSampler

    dm = D.SyntheticShapesDataModule(num_train=4, num_val=2, num_test=2, num_points=16)
    dm.setup("fit")
    assert isinstance(dm.val_dataloader().sampler, SequentialSampler)
    # fewer clouds than ranks: a rank would get nothing and miss the epoch-end collectives,
    # so Lightning's (padded) sampler is kept
    dm.trainer = SimpleNamespace(world_size=3, global_rank=0)  # type: ignore[assignment]
    assert isinstance(dm.val_dataloader().sampler, SequentialSampler)


def test_loaders_without_validation_data_and_before_setup(tmp_path: Path) -> None:
    class NoValidation(TinyScansDataModule):
        splits = {"train": ("train",), "val": ("missing",), "test": ("val",)}

    dm = NoValidation(str(make_tiny_scans(tmp_path / "tiny")), cache_dir=str(tmp_path / "c"))
    with pytest.raises(RuntimeError, match=r"no 'val' dataset: call setup\(\)"):
        dm.val_dataloader()  # not set up yet: an error, not an empty list
    dm.prepare_data()
    dm.setup("fit")
    assert dm.val_dataloader() == []  # set up, no validation data: no validation loop
    assert sorted(dm.datasets) == ["test", "train"]
    assert dm.predict_dataloader().dataset is dm.datasets["test"]  # predict falls back to test
    assert dm.test_dataloader().batch_size == dm.batch_size == 32  # eval_batch_size None
