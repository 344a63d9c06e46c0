"""``lightning-pc predict`` with a pretrained card on any scan: labels in the card's classes
and palette (configs/predict_ptv3_*.yaml, :class:`CardScenesDataModule`)."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from lightning_pc.cli import main
from lightning_pc.data import CardScenesDataModule, input_channels
from lightning_pc.data.io import read_scan
from lightning_pc.models import pretrained as pt
from lightning_pc.models.pretrained import HubFile, PretrainedCard
from lightning_pc.models.pretrained.cards import PTV3_INPUTS
from tests.test_predict import room, write_scan

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "data" / "pretrained"
ARCH = (
    "order", "stride", "enc_depths", "enc_channels", "enc_num_head", "enc_patch_size",
    "dec_depths", "dec_channels", "dec_num_head", "dec_patch_size", "shuffle_orders",
)  # fmt: skip
PLY_ROW = np.dtype(
    [("x", "<f8"), ("y", "<f8"), ("z", "<f8"), ("r", "u1"), ("g", "u1"), ("b", "u1"),
     ("label", "<i4")]
)  # fmt: skip
NAMES = ("floor", "wall", "chair", "table", "clutter")
PALETTE = ((10, 200, 30), (200, 20, 20), (20, 20, 220), (230, 200, 0), (120, 0, 160))


@pytest.fixture
def tiny_card(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[str, Path]:
    """A card of a tiny official PT-v3m1 (5 classes, colours in -1..1 alone) and its
    checkpoint in Pointcept's trainer layout, written here from the official state dict of
    tests/data/pretrained (no download)."""
    official: dict[str, Any] = torch.load(FIXTURES / "ptv3m1_tiny_official.pt", weights_only=True)
    cfg = official["config"]
    kwargs = dict(in_channels=3, grid_size=cfg["grid_size"], **{k: cfg[k] for k in ARCH})
    card = PretrainedCard(
        name="tiny_ptv3_labels",
        summary="tiny official PT-v3m1 (test)",
        builder="ptv3",
        kwargs=tuple(
            sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in kwargs.items())
        ),
        num_classes=5,
        files=(HubFile("lightning-pc-test/ptv3-tiny", "model_best.pth", "0" * 40),),
        key_map="pointcept_ptv3m1",
        inputs=dataclasses.replace(
            PTV3_INPUTS, x=("r/127.5-1", "g/127.5-1", "b/127.5-1"), grid_size=cfg["grid_size"]
        ),
        class_names=NAMES,
        palette=PALETTE,
        metric="none (test)",
    )
    monkeypatch.setitem(pt._CARDS, card.name, card)
    monkeypatch.setattr(input_channels, "_WARNED", set())
    monkeypatch.chdir(tmp_path)  # predict saves its config.yaml in the working folder
    path = tmp_path / "exp" / "model_best.pth"
    path.parent.mkdir()
    state = {"module." + k: v for k, v in official["state_dict"].items()}
    torch.save({"epoch": 100, "state_dict": state}, path)
    return card.name, path


def _predict(card: str, checkpoint: Path, scans: Path, out: Path, *extra: str) -> None:
    main(
        ["predict", "--config", str(REPO / "configs" / "predict_ptv3_scannet20.yaml"),
         f"--model.init_args.model={card}", f"--model.init_args.pretrained={checkpoint}",
         "--model.init_args.in_channels=3", f"--data.init_args.card={card}",
         f"--data.init_args.root={scans}", f"--data.init_args.output_dir={out}",
         "--data.init_args.block_size=4.0", "--trainer.accelerator=cpu",
         "--trainer.enable_progress_bar=false", *extra]
    )  # fmt: skip


def test_predict_with_a_card_writes_its_classes_and_palette(
    tiny_card: tuple[str, Path], tmp_path: Path
) -> None:
    card, checkpoint = tiny_card
    scans = tmp_path / "scans"
    scans.mkdir()
    pos, rgb = room(600, offset=500_000.0)
    write_scan(scans / "site.las", pos, rgb)
    out = tmp_path / "labelled"
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*zero-filled.*")  # colours are there
        _predict(card, checkpoint, scans, out)
    n = len(read_scan(scans / "site.las")["pos"])
    raw = (out / "site.ply").read_bytes()
    rows = np.frombuffer(raw, PLY_ROW, count=n, offset=raw.index(b"end_header\n") + 11)
    labels = rows["label"].astype(np.int64)
    assert labels.min() >= 0 and labels.max() < len(NAMES)
    colours = np.c_[rows["r"], rows["g"], rows["b"]]
    np.testing.assert_array_equal(colours, np.asarray(PALETTE)[labels])  # the card's palette
    lines = (out / "site.counts.csv").read_text().splitlines()
    assert [line.split(",")[1] for line in lines[1:]] == list(NAMES)  # the card's names
    import laspy

    las = laspy.read(out / "site.las")
    np.testing.assert_array_equal(np.asarray(las.classification), labels)


def test_card_scenes_lay_out_colours_as_the_card_reads_them(
    tiny_card: tuple[str, Path], tmp_path: Path
) -> None:
    card, _ = tiny_card
    pos, rgb = room(300)
    write_scan(tmp_path / "a.ply", pos, rgb)
    data = CardScenesDataModule(card, str(tmp_path / "a.ply"), block_size=100.0)
    assert data.class_names == list(NAMES) and data.palette == [list(c) for c in PALETTE]
    assert data.fragments.voxel_size == 0.05  # the card's grid
    batch = next(iter(data.predict_dataloader()))
    raw = batch.x.clone()
    assert raw.min() >= 0 and raw.max() <= 1  # the scan's colours in 0-1
    laid = data.on_after_batch_transfer(batch, 0)
    torch.testing.assert_close(laid.x, raw * 2 - 1)  # Pointcept's colour / 127.5 - 1


def test_a_scan_without_colours_is_zero_filled_with_one_warning(
    tiny_card: tuple[str, Path], tmp_path: Path
) -> None:
    card, checkpoint = tiny_card
    pos, _ = room(300)
    scans = tmp_path / "scans"
    scans.mkdir()
    np.save(scans / "bare.npy", pos.astype(np.float32))  # coordinates alone
    with pytest.warns(UserWarning, match=r"rgb \(3 channels: red green blue\).*bare\.npy"):
        data = CardScenesDataModule(card, str(scans), block_size=100.0)
    batch = data.on_after_batch_transfer(next(iter(data.predict_dataloader())), 0)
    assert batch.x.shape[1] == 3 and (batch.x == 0).all()
    _predict(card, checkpoint, scans, tmp_path / "out")
    assert (tmp_path / "out" / "bare.ply").is_file()


def test_embed_with_a_card_reads_its_inputs_and_weights(
    tiny_card: tuple[str, Path], tmp_path: Path
) -> None:
    from lightning_pc.embed import embed_scans
    from lightning_pc.models import create_model

    card, checkpoint = tiny_card
    pos, rgb = room(300)
    scan = write_scan(tmp_path / "a.ply", pos, rgb)
    out = tmp_path / "cli"
    with pytest.raises(SystemExit) as done:
        main(
            ["embed", str(scan), "--model", card, "--pretrained", str(checkpoint),
             "--output_dir", str(out), "--voxel_size", "0.05", "--block_size", "100",
             "--accelerator", "cpu", "--no_pca", "--dtype", "float32"]
        )  # fmt: skip
    assert done.value.code == 0
    network = create_model(card, pretrained=checkpoint)
    embed_scans(
        scan, network, ["rgb"], tmp_path / "api", voxel_size=0.05, block_size=100.0,
        scales={"rgb": (2.0, -1.0)}, dtype="float32", pca=False,
        trainer_kwargs={"accelerator": "cpu", "enable_progress_bar": False},
    )  # fmt: skip
    cli = np.load(out / "a.features.npy")
    np.testing.assert_allclose(cli, np.load(tmp_path / "api" / "a.features.npy"), atol=1e-5)
    assert cli.shape == (len(pos), 8)  # the finest decoder level's 8 channels
