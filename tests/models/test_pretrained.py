"""Pretrained cards and loading (lightning_pc.models.pretrained).

The official weights come from ``tests/data/pretrained/make_fixture.py`` (run once in the
side environment with spconv and Pointcept's own model file): a tiny official PT-v3m1, its
state dict in the official names, a scan and the official logits on it. Each test writes
that state dict in one of Pointcept's layouts (or into a Hugging Face cache folder) and
loads it through ``create_model``; our logits must equal the official ones, which holds only
if the key map and spconv's kernel layout are right. Nothing is downloaded.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from lightning_pc.models import create_model
from lightning_pc.models import pretrained as pt
from lightning_pc.models.pretrained import (
    ChecksumError,
    HubFile,
    PretrainedCard,
    PretrainedError,
    PretrainedUnavailable,
    build_pretrained,
    describe_pretrained,
    get_pretrained,
    list_pretrained,
    pretrained_table,
)
from lightning_pc.models.pretrained.cards import PTV3_INPUTS, SSL_INPUTS
from lightning_pc.models.pretrained.keymaps import KEY_MAPS, detect, spconv_kernel
from lightning_pc.models.pretrained.loading import sha256_of

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "pretrained"
ARCH = (
    "order", "stride", "enc_depths", "enc_channels", "enc_num_head", "enc_patch_size",
    "dec_depths", "dec_channels", "dec_num_head", "dec_patch_size", "shuffle_orders",
)  # fmt: skip
REV = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def official() -> dict[str, Any]:
    return torch.load(FIXTURES / "ptv3m1_tiny_official.pt", weights_only=True)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def released() -> dict[str, Any]:
    """A tiny model of the released checkpoints' kind (Pointcept v1.5.1, no coordinates in
    the stem, relative position encoding)."""
    return torch.load(FIXTURES / "ptv3m1_tiny_released.pt", weights_only=True)  # type: ignore[no-any-return]


def tiny_kwargs(official: dict[str, Any]) -> dict[str, Any]:
    cfg = official["config"]
    # our ptv3 stem reads [pos, x]: 3 + 3 channels = the official tiny model's 6
    return dict(in_channels=3, grid_size=cfg["grid_size"], **{k: cfg[k] for k in ARCH})


def tiny_card(official: dict[str, Any], name: str = "test_tiny", **changes: Any) -> PretrainedCard:
    kw = tiny_kwargs(official)
    card = PretrainedCard(
        name=name,
        summary="tiny official PT-v3m1 (test)",
        builder="ptv3",
        kwargs=tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in kw.items())),
        num_classes=official["config"]["num_classes"],
        files=(HubFile("lightning-pc-test/ptv3-tiny", "exp/model/model_best.pth", REV),),
        key_map="pointcept_ptv3m1",
        inputs=dataclasses.replace(PTV3_INPUTS, x=("r", "g", "b")),
        metric="none (test)",
    )
    return dataclasses.replace(card, **changes)


@pytest.fixture
def register(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Register test cards for one test (the registry is restored after it)."""

    def add(card: PretrainedCard) -> PretrainedCard:
        monkeypatch.setitem(pt._CARDS, card.name, card)
        pt._NOTICED.discard(card.name)
        return card

    return add


def logits(model: torch.nn.Module, official: dict[str, Any]) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(SimpleNamespace(pos=official["pos"], x=official["x"]))  # type: ignore[no-any-return]


def assert_official(model: torch.nn.Module, official: dict[str, Any]) -> None:
    diff = (logits(model, official) - official["logits"]).abs().max().item()
    assert diff < 1e-5, f"logits differ from the official model's by {diff}"


def write(state: dict[str, torch.Tensor], path: Path, layout: str) -> Path:
    """``state`` (official names) saved in one of Pointcept's checkpoint layouts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if layout == "trainer":  # Pointcept's train.py under DDP: module. prefixes, extras
        obj: Any = {
            "epoch": 800,
            "state_dict": {"module." + k: v for k, v in state.items()},
            "optimizer": {"state": {}, "param_groups": [{"lr": 0.006}]},
            "scheduler": {"last_epoch": 800},
            "best_metric_value": 0.776,
        }
        torch.save(obj, path)
    elif layout == "bare":
        torch.save(dict(state), path)
    elif layout == "config":  # the sonata package's {"config", "state_dict"}
        torch.save({"config": {"in_channels": 6}, "state_dict": dict(state)}, path)
    elif layout == "safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        raise AssertionError(layout)
    return path


# --- the card table -----------------------------------------------------------------------
REQUIRED = {
    "ptv3_scannet20", "ptv3_scannet200", "ptv3_s3dis_area5", "sonata_small", "sonata_base",
    "sonata_base_scannet20_probe", "concerto_tiny", "concerto_small", "concerto_base",
    "concerto_large", "concerto_large_scannet20_probe", "utonia_base",
    "utonia_base_scannet20_probe",
}  # fmt: skip


def test_required_cards_are_listed() -> None:
    names = list_pretrained()
    assert names == sorted(names)
    assert REQUIRED <= set(names)


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_card_is_complete(name: str) -> None:
    c = get_pretrained(name)
    assert c.name == name and c.summary and c.metric and c.files
    assert c.inputs.in_channels == c.arch_kwargs["in_channels"] == 6
    assert c.inputs.grid_size > 0 and len(c.inputs.stem) >= c.inputs.in_channels
    for f in c.files:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+", f.repo_id) and f.filename.endswith(".pth")
        assert f.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", f.sha256)
        if not f.pinned:  # a branch pin is announced on the card itself
            assert f.revision == "main" and any("main" in n for n in c.notes)
    if c.num_classes is not None:
        assert len(c.class_names) == len(c.palette) == c.num_classes
        assert len(set(c.class_names)) == c.num_classes
    else:
        assert not c.class_names
    nc = name.startswith(("sonata", "concerto", "utonia"))
    assert (c.licence == "CC-BY-NC-4.0") is nc and c.non_commercial is nc
    assert c.key_map in KEY_MAPS


def test_ptv3_cards_pin_a_commit_and_their_inputs() -> None:
    for name in ("ptv3_scannet20", "ptv3_scannet200", "ptv3_s3dis_area5"):
        c = get_pretrained(name)
        assert c.files[0].pinned and c.files[0].revision.startswith("5e25cfa")
        assert c.inputs.x[0] == "r/127.5-1" and c.inputs.grid_size == 0.02
    assert get_pretrained("sonata_base").inputs.stem[:4] == ("x", "y", "z", "r/255")
    utonia = get_pretrained("utonia_base").inputs
    assert (utonia.grid_size, utonia.coord_scale) == (0.01, 0.5)
    assert len(get_pretrained("sonata_base_scannet20_probe").files) == 2


def test_card_classes_are_our_data_modules_classes() -> None:
    from lightning_pc.data.datasets.s3dis import CLASS_NAMES
    from lightning_pc.data.datasets.scannet import CLASS_NAMES_20, IDS_200

    assert get_pretrained("ptv3_scannet20").class_names == tuple(CLASS_NAMES_20)
    assert get_pretrained("ptv3_s3dis_area5").class_names == tuple(CLASS_NAMES)
    assert len(get_pretrained("ptv3_scannet200").class_names) == len(IDS_200)


@pytest.mark.parametrize("name", ["ptv3_scannet20", "ptv3_scannet200", "ptv3_s3dis_area5"])
def test_card_palette_is_used_as_is(name: str) -> None:
    from lightning_pc.data.palettes import resolve_palette

    c = get_pretrained(name)
    with warnings.catch_warnings():
        # no "two classes would look alike" substitution (200 classes cannot be 15 Delta-E
        # apart: ScanNet200's card takes class_palette(200), the substitute itself)
        warnings.simplefilter("error" if len(c.palette) <= 50 else "ignore")
        got = resolve_palette([list(p) for p in c.palette], len(c.palette))
    assert got.tolist() == [list(p) for p in c.palette]


def test_describe_and_table() -> None:
    text = describe_pretrained("sonata_base_scannet20_probe")
    for part in ("facebook/sonata", "sonata_linear_prob_head_sc.pth", "r/255", "72.5",
                 "CC-BY-NC-4.0", "non-commercial", "main", "wall"):  # fmt: skip
        assert part in text, part
    assert "0.01" in describe_pretrained("utonia_base") and "x 0.5" in describe_pretrained(
        "utonia_base"
    )
    table = pretrained_table().splitlines()
    assert len(table) == 2 + len(list_pretrained()) and table[0].startswith("| card |")
    with pytest.raises(KeyError, match="ptv3_scannet20"):
        describe_pretrained("ptv3_scannet21")


# --- official key names of the released checkpoints -------------------------------------------
FULL = {
    "ptv3_scannet20": "scannet-semseg-pt-v3m1-0-base",
    "ptv3_scannet200": "scannet200-semseg-pt-v3m1-0-base",
    "ptv3_s3dis_area5": "s3dis-semseg-pt-v3m1-0-rpe",
}


@pytest.mark.parametrize("name", sorted(FULL))
def test_card_network_has_the_official_keys_and_shapes(name: str) -> None:
    """Every tensor of the released checkpoint (names and shapes recorded from Pointcept's
    model file) has a place of the same shape in the card's network, and nothing is left."""
    table = json.loads((FIXTURES / "ptv3m1_official_keys.json").read_text())[FULL[name]]
    assert table["config"]["num_classes"] == get_pretrained(name).num_classes
    official = {k: torch.empty(s, device="meta") for k, s in table["keys"].items()}
    mapped = {k: tuple(v.shape) for k, v in KEY_MAPS["pointcept_ptv3m1"](official).items()}
    ours = {
        k: tuple(v.shape) for k, v in build_pretrained(name, pretrained=False).state_dict().items()
    }
    assert mapped == ours


# --- spconv's kernel layout -------------------------------------------------------------------
def test_spconv_kernel_layout_follows_our_offsets() -> None:
    """spconv [C_out, kx, ky, kz, C_in] -> ours [K, C_in, C_out] with K in the order of our
    convolution's offsets (x slowest)."""
    from lightning_pc.nn.sparse.conv import SparseConv3d

    offsets = SparseConv3d(2, 3, 3).offsets()
    w = torch.zeros(3, 3, 3, 3, 2)
    w[1, 2, 0, 1, 0] = 7.0  # out 1, offset (+1, -1, 0), in 0
    ours = spconv_kernel(w)
    assert ours.shape == (27, 2, 3)
    (k, i, o), = ours.nonzero().tolist()  # fmt: skip
    assert (i, o) == (0, 1) and k == 2 * 9 + 0 * 3 + 1
    assert tuple(offsets[k]) == (1, -1, 0)
    with pytest.raises(ValueError, match="spconv kernel"):
        spconv_kernel(torch.zeros(27, 2, 3))


# --- local files in Pointcept's layouts ---------------------------------------------------------
@pytest.mark.parametrize("layout", ["trainer", "bare", "config", "safetensors"])
def test_official_checkpoint_loads_by_path(
    layout: str, official: dict[str, Any], tmp_path: Path
) -> None:
    suffix = ".safetensors" if layout == "safetensors" else ".pth"
    path = write(official["state_dict"], tmp_path / f"model_best{suffix}", layout)
    kw = tiny_kwargs(official)
    model = create_model("ptv3", official["config"]["num_classes"], pretrained=str(path), **kw)
    assert_official(model, official)


@pytest.mark.parametrize("layout", ["trainer", "safetensors"])
def test_released_kind_of_checkpoint_loads_through_a_card(
    layout: str, released: dict[str, Any], tmp_path: Path, register: Any
) -> None:
    """The cards' PTv3 options (features alone in the stem, Pointcept's grid, v1.5.1 wiring,
    RPE tables through the key map) reproduce the official v1.5.1 model's logits."""
    from lightning_pc.models.ptv3 import PRESETS

    preset = PRESETS["s3dis-semseg-pt-v3m1-0-rpe"]
    options = {k: preset[k] for k in ("stem_xyz", "grid_origin", "legacy", "enable_rpe")}
    assert options == dict(stem_xyz=False, grid_origin="pointcept", legacy=True, enable_rpe=True)
    card = register(tiny_card(released, name="test_tiny_released"))
    card = dataclasses.replace(card, kwargs=tuple(sorted({**dict(card.kwargs), **options}.items())))
    pt._CARDS[card.name] = card
    suffix = ".safetensors" if layout == "safetensors" else ".pth"
    path = write(released["state_dict"], tmp_path / f"model_best{suffix}", layout)
    assert any(k.endswith("rpe.rpe_table") for k in released["state_dict"])
    assert_official(create_model(card.name, pretrained=path), released)


class _Payload:
    """Pickles as a call of ``os.system``: loading must not run it."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[Any, ...]:
        import os

        return (os.system, (f"touch {self.target}",))


class _Scheduler:
    """A scheduler whose state holds a bound method, as torch 2.1's OneCycleLR pickled."""

    def __init__(self) -> None:
        self.anneal_func = self.cos

    def cos(self) -> float:
        return 0.0


def test_pointcept_trainer_checkpoint_with_objects_beside_the_weights_loads(
    official: dict[str, Any], tmp_path: Path
) -> None:
    """Pointcept's trainer saves ``best_metric_value`` as a numpy scalar (its evaluator's
    ``np.mean``) and its scheduler's state: ``weights_only`` refuses both. The weights still
    load, the other objects become inert, and nothing the file names runs."""
    import numpy as np

    marker = tmp_path / "ran"
    path = tmp_path / "model_best.pth"
    torch.save(
        {
            "epoch": 800,
            "state_dict": {"module." + k: v for k, v in official["state_dict"].items()},
            "best_metric_value": np.float64(0.776),
            "scheduler": {"anneal_func": _Scheduler().anneal_func, "last_epoch": 800},
            "payload": _Payload(marker),
        },
        path,
    )
    with pytest.raises(Exception):  # noqa: B017 - what weights_only=True makes of it
        torch.load(path, weights_only=True)
    kw = tiny_kwargs(official)
    model = create_model("ptv3", official["config"]["num_classes"], pretrained=path, **kw)
    assert_official(model, official)
    assert not marker.exists()
    from lightning_pc.models.pretrained.loading import read_file

    obj = read_file(path)
    assert type(obj["best_metric_value"]).__name__.startswith("Opaque[numpy")
    assert not marker.exists()


def test_untrained_network_is_not_the_official_one(official: dict[str, Any]) -> None:
    """The check above can fail: without the weights the logits differ."""
    model = create_model("ptv3", official["config"]["num_classes"], **tiny_kwargs(official))
    assert (logits(model, official) - official["logits"]).abs().max() > 1e-2


def test_card_loads_from_path_and_folder(
    official: dict[str, Any], tmp_path: Path, register: Any
) -> None:
    card = register(tiny_card(official))
    path = write(official["state_dict"], tmp_path / "exp" / "model" / "model_best.pth", "trainer")
    assert_official(create_model(card.name, pretrained=path), official)
    assert_official(create_model(card.name, pretrained=str(tmp_path)), official)  # folder
    with pytest.raises(PretrainedUnavailable, match="model_best.pth"):
        create_model(card.name, pretrained=tmp_path / "exp")  # a folder without the file


def test_our_own_state_dict_and_lightning_layout_load(
    official: dict[str, Any], tmp_path: Path
) -> None:
    kw = tiny_kwargs(official)
    n = official["config"]["num_classes"]
    src = tmp_path / "official.pth"
    model = create_model("ptv3", n, pretrained=write(official["state_dict"], src, "bare"), **kw)
    ours = {"model." + k: v for k, v in model.state_dict().items()}  # a task's checkpoint
    torch.save({"epoch": 1, "state_dict": ours, "hyper_parameters": {}}, tmp_path / "t.ckpt")
    assert_official(create_model("ptv3", n, pretrained=tmp_path / "t.ckpt", **kw), official)


# --- strict loading --------------------------------------------------------------------------
def test_strict_loading_reports_missing_unexpected_and_mismatched(
    official: dict[str, Any], tmp_path: Path
) -> None:
    state = dict(official["state_dict"])
    dropped = "backbone.enc.enc1.block1.attn.proj.bias"
    del state[dropped]
    state["backbone.enc.enc1.block1.extra.weight"] = torch.zeros(3)
    state["seg_head.weight"] = torch.zeros(7, 8)
    path = write(state, tmp_path / "bad.pth", "trainer")
    kw = tiny_kwargs(official)
    with pytest.raises(PretrainedError) as info:
        create_model("ptv3", official["config"]["num_classes"], pretrained=path, **kw)
    msg = str(info.value)
    assert str(path) in msg
    assert "missing" in msg and "backbone.enc.1.1.attn.proj.bias" in msg
    assert "unexpected" in msg and "backbone.enc.enc1.block1.extra.weight  (no key-map rule)" in msg
    assert "head.0.weight: [7, 8] -> [5, 8]" in msg


def test_non_strict_loading_returns_the_report(official: dict[str, Any], tmp_path: Path) -> None:
    state = dict(official["state_dict"])
    del state["seg_head.bias"]
    path = write(state, tmp_path / "m.pth", "bare")
    model = create_model("ptv3", official["config"]["num_classes"], **tiny_kwargs(official))
    report = pt.load_pretrained(model, path, strict=False)
    assert not report.ok and report.missing == ["head.0.bias"] and not report.unexpected
    assert "1 missing" in str(report)


def test_unreadable_files_name_the_file(tmp_path: Path) -> None:
    model = torch.nn.Linear(2, 2)
    with pytest.raises(PretrainedUnavailable, match="no checkpoint file at .*absent.pth"):
        pt.load_pretrained(model, tmp_path / "absent.pth")
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(PretrainedError, match="notes.pth"):
        pt.load_pretrained(model, text)
    torch.save({"weights": SimpleNamespace(a=1)}, tmp_path / "pickled.pth")
    with pytest.raises(PretrainedError, match="pickled.pth: no state dict found"):
        pt.load_pretrained(model, tmp_path / "pickled.pth")
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "nostate.pth")
    with pytest.raises(PretrainedError, match="no state dict found.*'epoch'"):
        pt.load_pretrained(model, tmp_path / "nostate.pth")
    with pytest.raises(ValueError, match="no known layout"):
        detect({"layer.weight": torch.zeros(1)})


# --- the card's head and inputs --------------------------------------------------------------
def test_other_num_classes_keeps_the_backbone_and_reinitialises_the_head(
    official: dict[str, Any], tmp_path: Path, register: Any
) -> None:
    card = register(tiny_card(official))
    path = write(official["state_dict"], tmp_path / "m.pth", "trainer")
    with pytest.warns(UserWarning, match="head is left at its initialisation"):
        model = create_model(card.name, num_classes=3, pretrained=path)
    full = create_model(card.name, pretrained=path)
    assert model.head[0].out_features == 3
    mine, ref = model.state_dict(), full.state_dict()
    assert all(torch.equal(mine[k], ref[k]) for k in ref if k.startswith("backbone."))


def test_encoder_card_loads_without_a_head(
    official: dict[str, Any], tmp_path: Path, register: Any
) -> None:
    """A card without a trained head: everything else loads, the head is new, no warning."""
    card = register(tiny_card(official, num_classes=None, class_names=(), palette=()))
    state = {k: v for k, v in official["state_dict"].items() if not k.startswith("seg_head.")}
    path = write(state, tmp_path / "enc.pth", "bare")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = create_model(card.name, num_classes=4, pretrained=path)
    assert model.head[0].out_features == 4


def test_in_channels_other_than_the_card_are_refused(
    official: dict[str, Any], register: Any, tmp_path: Path
) -> None:
    card = register(tiny_card(official))
    with pytest.raises(ValueError, match=r"reads in_channels=3 \(r, g, b\), got in_channels=6"):
        create_model(card.name, pretrained=tmp_path / "x.pth", in_channels=6)
    model = create_model(card.name, pretrained=False, in_channels=6)  # architecture only
    assert model.backbone.in_channels == 6


def test_pretrained_true_needs_a_card() -> None:
    with pytest.raises(ValueError, match="pretrained card"):
        create_model("ptv3", num_classes=3, pretrained=True)
    with pytest.raises(KeyError, match="pretrained cards: .*ptv3_scannet20"):
        create_model("ptv3_scannet21", pretrained=True)


# --- the hub, offline -----------------------------------------------------------------------
def hub_cache(root: Path, card: PretrainedCard, source: Path, ref: str = "main") -> Path:
    """A Hugging Face cache folder holding ``card``'s file at its revision (blob, snapshot
    link, ref), as huggingface_hub lays it out."""
    f = card.files[0]
    rev = f.revision if f.pinned else REV
    repo = root / ("models--" + f.repo_id.replace("/", "--"))
    blob = repo / "blobs" / sha256_of(source)
    blob.parent.mkdir(parents=True)
    blob.write_bytes(source.read_bytes())
    snap = repo / "snapshots" / rev / f.filename
    snap.parent.mkdir(parents=True)
    snap.symlink_to(blob)
    (repo / "refs").mkdir()
    (repo / "refs" / ref).write_text(rev)
    return repo


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_hub_file_from_the_cache_offline(
    official: dict[str, Any], tmp_path: Path, register: Any, offline: Path
) -> None:
    src = write(official["state_dict"], tmp_path / "src.pth", "trainer")
    base = tiny_card(official, name="test_tiny_sum")
    card = register(dataclasses.replace(
        base, files=(dataclasses.replace(base.files[0], sha256=sha256_of(src)),)
    ))  # fmt: skip
    hub_cache(offline, card, src)
    assert_official(create_model(card.name, pretrained=True), official)


def test_hub_branch_pin_warns_and_reads_its_ref(
    official: dict[str, Any], tmp_path: Path, register: Any, offline: Path
) -> None:
    src = write(official["state_dict"], tmp_path / "src.pth", "bare")
    base = tiny_card(official, name="test_tiny_main")
    card = register(dataclasses.replace(
        base, files=(dataclasses.replace(base.files[0], revision="main"),)
    ))  # fmt: skip
    hub_cache(offline, card, src, ref="main")
    with pytest.warns(UserWarning, match="pinned to the branch 'main'"):
        model = create_model(card.name, pretrained=True)
    assert_official(model, official)


def test_hub_file_absent_offline_says_what_to_do(
    official: dict[str, Any], register: Any, offline: Path
) -> None:
    card = register(tiny_card(official))
    with pytest.raises(PretrainedUnavailable) as info:
        create_model(card.name, pretrained=True)
    msg = str(info.value)
    for part in (card.name, "exp/model/model_best.pth", "lightning-pc-test/ptv3-tiny", REV,
                 "HF_HUB_OFFLINE", str(offline), "pretrained='/path/to/model_best.pth'"):  # fmt: skip
        assert part in msg, part


def test_hub_without_huggingface_hub_says_what_to_do(
    official: dict[str, Any], register: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    card = register(tiny_card(official))
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails
    with pytest.raises(PretrainedUnavailable, match="huggingface_hub is not installed.*pip"):
        create_model(card.name, pretrained=True)


def test_checksum_mismatch_is_an_error(
    official: dict[str, Any], tmp_path: Path, register: Any, offline: Path
) -> None:
    src = write(official["state_dict"], tmp_path / "src.pth", "bare")
    base = tiny_card(official, name="test_tiny_badsum")
    card = register(dataclasses.replace(
        base, files=(dataclasses.replace(base.files[0], sha256="0" * 64),)
    ))  # fmt: skip
    hub_cache(offline, card, src)
    with pytest.raises(ChecksumError) as info:
        create_model(card.name, pretrained=True)
    msg = str(info.value)
    assert card.name in msg and "0" * 64 in msg and sha256_of(src) in msg


# --- licence notice ----------------------------------------------------------------------------
def test_non_commercial_licence_is_printed_once(
    official: dict[str, Any], tmp_path: Path, register: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    card = register(tiny_card(official, name="test_tiny_nc", licence="CC-BY-NC-4.0"))
    path = write(official["state_dict"], tmp_path / "m.pth", "bare")
    create_model(card.name, pretrained=path)
    create_model(card.name, pretrained=path)
    err = capsys.readouterr().err
    assert err.count("test_tiny_nc") == 1 and "CC-BY-NC-4.0" in err and "non-commercial" in err
    mit = register(tiny_card(official, name="test_tiny_mit"))
    create_model(mit.name, pretrained=path)
    assert "licensed" not in capsys.readouterr().err


def test_ssl_cards_use_the_encoder_key_map() -> None:
    for name in ("sonata_base", "concerto_large_scannet20_probe", "utonia_base"):
        c = get_pretrained(name)
        assert c.key_map == "pointcept_ptv3_encoder" and c.inputs.x == SSL_INPUTS.x


def test_cards_are_listed_in_the_command_line_help() -> None:
    from lightning_pc.cli import networks_help

    text = networks_help()
    assert "Pretrained cards" in text
    for name in list_pretrained():
        assert f"  {name}: {get_pretrained(name).summary}" in text


# --- the self-supervised encoders (Sonata, Concerto, Utonia) -----------------------------------
SSL = sorted(n for n in REQUIRED if n.startswith(("sonata", "concerto", "utonia")))
SSL_TINY = dict(
    grid_size=0.1, stride=(2,), enc_depths=(1, 1), enc_channels=(6, 12), enc_num_head=(1, 2),
    enc_patch_size=(16, 16), drop_path=0.0,
)  # fmt: skip


@pytest.mark.parametrize("name", SSL)
def test_ssl_card_builds_its_preset(name: str) -> None:
    from lightning_pc.models.sonata import PRESETS

    c = get_pretrained(name)
    preset = PRESETS[c.builder]
    assert c.inputs.grid_size == preset.get("grid_size", 0.02)
    assert c.inputs.coord_scale == preset.get("coord_scale", 1.0)
    with torch.device("meta"):
        model = build_pretrained(name, pretrained=False)
    assert model.backbone.embedding.linear.in_features == len(c.inputs.stem) == 9
    assert model.head[0].in_features == sum(preset["enc_channels"])
    if c.num_classes is not None:  # a probe card: ScanNet20's head on every level's features
        assert model.head[0].out_features == c.num_classes == 20


def _official_encoder_files(folder: Path) -> tuple[torch.nn.Module, Path, Path]:
    """A tiny Sonata-kind encoder with a probe head, written as the hub's two files: the
    encoder (``{"config", "state_dict"}``, official names, with the pretraining mask token)
    and the head (``seg_head.*``)."""
    from lightning_pc.models.sonata import to_pointcept_state_dict

    torch.manual_seed(0)
    source = create_model("sonata_small", num_classes=20, mask_token=True, **SSL_TINY).eval()
    with torch.no_grad():
        for p in source.parameters():
            p.normal_(0, 0.3)
    official = to_pointcept_state_dict(source.state_dict())
    enc = {k: v for k, v in official.items() if not k.startswith("seg_head.")}
    head = {k: v for k, v in official.items() if k.startswith("seg_head.")}
    assert "embedding.mask_token" in enc and len(head) == 2
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"config": {"in_channels": 9, "enc_mode": True}, "state_dict": enc},
               folder / "sonata.pth")  # fmt: skip
    torch.save({"config": {"backbone_out_channels": 18, "num_classes": 20}, "state_dict": head},
               folder / "sonata_linear_prob_head_sc.pth")  # fmt: skip
    return source, folder / "sonata.pth", folder / "sonata_linear_prob_head_sc.pth"


def _scan(seed: int = 3) -> Any:
    from lightning_pc.nn.point import Point

    g = torch.Generator().manual_seed(seed)
    pos = torch.rand(500, 3, generator=g) * torch.tensor([2.0, 1.5, 1.0])
    return Point(pos, torch.rand(500, 6, generator=g))


def test_encoder_and_probe_head_files_load_as_one_card(
    tmp_path: Path, register: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    source, enc, _ = _official_encoder_files(tmp_path / "hub")
    kwargs = tuple(sorted({"in_channels": 6, **SSL_TINY}.items()))
    probe = get_pretrained("sonata_base_scannet20_probe")
    card = register(dataclasses.replace(probe, name="test_probe", builder="sonata_small",
                                        kwargs=kwargs))  # fmt: skip
    with pytest.warns(UserWarning, match="branch 'main'"):  # the card pins main
        model = create_model(card.name, pretrained=tmp_path / "hub")  # the folder of both
    scan = _scan()
    with torch.no_grad():
        assert torch.allclose(model.eval()(scan), source(scan), atol=1e-5)
    assert "CC-BY-NC-4.0" in capsys.readouterr().err
    # the encoder card: the same encoder, a new head; the mask token is ignored
    enc_card = register(dataclasses.replace(get_pretrained("sonata_small"), name="test_enc",
                                            kwargs=kwargs))  # fmt: skip
    model = build_pretrained(enc_card, num_classes=4, pretrained=enc).eval()
    report = pt.load_pretrained(model, enc, card=enc_card, num_classes=4)
    assert report.ok and report.ignored == ["backbone.embedding.mask_token"]
    assert report.reinitialised == ["head.0.weight", "head.0.bias"]
    with torch.no_grad():
        assert torch.allclose(model.backbone(scan).x, source.backbone(scan).x, atol=1e-5)
    # without a card, the layout is detected from the keys
    bare = create_model("sonata_small", num_classes=20, **SSL_TINY)
    assert pt.load_pretrained(bare, enc, strict=False).missing == ["head.0.weight", "head.0.bias"]
