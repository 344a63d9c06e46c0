"""Data-module contracts: LightningCLI-friendly signatures, static metadata, YAML transforms."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from lightning.pytorch.cli import LightningCLI

from lightning_pc import data as D

MODULES = [
    D.SyntheticShapesDataModule,
    D.ModelNetDataModule,
    D.ShapeNetPartDataModule,
    D.S3DISDataModule,
    D.PointCloudFolderDataModule,
]


@pytest.mark.parametrize("cls", MODULES, ids=lambda c: c.__name__)
def test_signature_is_plain_yaml(cls: type) -> None:
    # what LightningCLI sees: the module's own arguments plus the shared ones it passes on
    # with **kwargs (jsonargparse follows them to PointCloudDataModule)
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_class_arguments(cls, "data")
    defaults = parser.get_defaults()["data"].as_dict()
    for name in ("batch_size", "num_workers", "train_transforms", "eval_transforms"):
        assert name in defaults, name
    if cls is not D.SyntheticShapesDataModule:
        shared = {"root", "cache_dir", "prepare_data_per_node", "cache_verify", "pin_memory"}
        assert shared <= set(defaults)
    for value in defaults.values():
        yaml.safe_dump(value)  # plain YAML types only, no class instances
    assert cls.__doc__ and "Args:" in cls.__doc__
    # the arguments' help text reaches --help (from the class that declares them)
    text = parser.format_help()
    assert "cache root" in text or cls is D.SyntheticShapesDataModule


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
