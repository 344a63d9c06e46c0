"""A task built from a pretrained card (``model: <card>``, ``pretrained: true | <path>``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from lightning_pc.models import pretrained as pt
from lightning_pc.models.pretrained import PretrainedCard
from lightning_pc.tasks import SemanticSegmentationTask
from tests.models.test_pretrained import FIXTURES, assert_official, tiny_card, write


@pytest.fixture(scope="module")
def official() -> dict[str, Any]:
    return torch.load(FIXTURES / "ptv3m1_tiny_official.pt", weights_only=True)  # type: ignore[no-any-return]


@pytest.fixture
def register(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    def add(card: PretrainedCard) -> PretrainedCard:
        monkeypatch.setitem(pt._CARDS, card.name, card)
        return card

    return add


def test_task_starts_from_the_card_and_its_checkpoints_do_not_refetch(
    official: dict[str, Any], tmp_path: Path, register: Any
) -> None:
    card = register(tiny_card(official))
    path = write(official["state_dict"], tmp_path / "model_best.pth", "trainer")
    n = official["config"]["num_classes"]
    task = SemanticSegmentationTask(model=card.name, pretrained=str(path), num_classes=n)
    assert_official(task.model, official)
    assert task.hparams["pretrained"] == str(path)

    # a checkpoint of the task holds the weights: it saves pretrained=false, so loading it
    # rebuilds the card's architecture without reading the (now gone) pretrained file
    ckpt: dict[str, Any] = {"hyper_parameters": dict(task.hparams)}
    task.on_save_checkpoint(ckpt)
    assert ckpt["hyper_parameters"]["pretrained"] is False
    path.unlink()
    again = SemanticSegmentationTask(**ckpt["hyper_parameters"])
    again.load_state_dict(task.state_dict())
    assert_official(again.model, official)


def test_task_with_a_missing_pretrained_file_names_it(
    official: dict[str, Any], tmp_path: Path, register: Any
) -> None:
    card = register(tiny_card(official))
    with pytest.raises(Exception, match="absent.pth"):
        SemanticSegmentationTask(
            model=card.name, pretrained=str(tmp_path / "absent.pth"), num_classes=5
        )


def test_task_default_is_no_pretrained_weights(official: dict[str, Any], register: Any) -> None:
    card = register(tiny_card(official))
    task = SemanticSegmentationTask(model=card.name, num_classes=5)
    assert task.hparams["pretrained"] is False
    with torch.no_grad():
        assert task.model.head[0].weight.abs().sum() > 0  # built, initial weights


def test_cli_fits_from_a_card_and_its_checkpoint_needs_no_pretrained_file(
    official: dict[str, Any], tmp_path: Path, register: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``model: <card>`` + ``pretrained: <path>`` in a config: fit starts from the weights
    (S3DIS has 13 classes, the card 5: new head), and validating the saved checkpoint after
    the pretrained file is gone rebuilds the card's network without it."""
    from lightning_pc.cli import main
    from tests.data import load_fixture
    from tests.test_cli import LIMITS

    card = register(tiny_card(official))
    weights = write(official["state_dict"], tmp_path / "model_best.pth", "trainer")
    root = load_fixture("s3dis").make_raw(tmp_path / "Stanford3dDataset_v1.2_Aligned_Version")
    monkeypatch.chdir(tmp_path)
    args = [
        "--config", str(Path(__file__).resolve().parents[2] / "configs" / "s3dis_ptv3.yaml"),
        *LIMITS, f"--data.init_args.root={root}", f"--data.init_args.cache_dir={tmp_path}",
        "--data.init_args.num_workers=0", "--data.init_args.batch_size=2",
        "--data.init_args.num_points=64", "--data.init_args.crops_per_room=1",
        f"--model.init_args.model={card.name}", f"--model.init_args.pretrained={weights}",
        "--model.init_args.model_kwargs={}",
    ]  # fmt: skip
    with pytest.warns(UserWarning, match="head is left at its initialisation"):
        main(["fit", *args])
    last = tmp_path / "runs" / "s3dis_ptv3" / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, weights_only=True)
    assert ckpt["hyper_parameters"]["model"] == card.name
    assert ckpt["hyper_parameters"]["pretrained"] is False
    weights.unlink()
    main(["validate", *args[:-2], f"--ckpt_path={last}"])
