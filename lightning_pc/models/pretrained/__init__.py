"""Pretrained checkpoints: model cards and loading, in pure PyTorch on any device.

A card (:class:`PretrainedCard`) names a published checkpoint: the registered network and
arguments that rebuild its architecture, the files (Hugging Face repository, revision,
file name, sha256), the input it expects (channels of ``batch.x`` in order, grid size,
coordinate scale), its classes and palette, the published metric and the licence.

>>> from lightning_pc.models import create_model
>>> model = create_model("ptv3_scannet20", pretrained=True)  # doctest: +SKIP
>>> model = create_model("ptv3_scannet20", pretrained="model_best.pth")  # doctest: +SKIP
>>> model = create_model("ptv3", num_classes=13, pretrained="model_best.pth")  # doctest: +SKIP

``pretrained=True`` takes the card's files from the Hugging Face cache, downloading them at
the pinned revision when ``huggingface_hub`` is installed and online (its cache folder and
``HF_HUB_OFFLINE`` apply), and checks their sha256 where the card has one.
``pretrained="<path>"`` reads a local ``.pth`` / ``.pt`` / ``.ckpt`` / ``.safetensors`` file
in any of Pointcept's layouts (a trainer checkpoint with ``state_dict`` and ``module.``
prefixes, a bare state dict, Sonata's ``{"config", "state_dict"}``, safetensors) or our own
(a ``state_dict()`` or a Lightning checkpoint of a task); a folder holding the card's files
by name is read too (an encoder and its probe head). The keys go through the card's key map
(:mod:`~lightning_pc.models.pretrained.keymaps`; for a path without a card, the map is
detected from the keys), then load strictly: a missing, unexpected or shape-mismatched key
raises :class:`PretrainedError` with the list. A card whose trained head does not match the
``num_classes`` asked for (or that has no head) loads everything but the head, which stays
at its initialisation (the report says so).

Weights licensed for non-commercial use only (Sonata, Concerto, Utonia: CC-BY-NC-4.0) say
so on standard error the first time they load in a process.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from lightning_pc.models.pretrained.cards import CARDS, Inputs, PretrainedCard
from lightning_pc.models.pretrained.keymaps import KEY_MAPS, detect, spconv_kernel
from lightning_pc.models.pretrained.loading import (
    ChecksumError,
    HubFile,
    LoadReport,
    PretrainedError,
    PretrainedUnavailable,
    hub_path,
    load_state,
    read_file,
    unwrap,
    verify,
)

__all__ = [
    "ChecksumError",
    "HubFile",
    "Inputs",
    "LoadReport",
    "PretrainedCard",
    "PretrainedError",
    "PretrainedUnavailable",
    "build_pretrained",
    "describe_pretrained",
    "find_pretrained",
    "get_pretrained",
    "list_pretrained",
    "load_pretrained",
    "pretrained_table",
    "register_pretrained",
    "spconv_kernel",
]

_CARDS: dict[str, PretrainedCard] = {c.name: c for c in CARDS}
_NOTICED: set[str] = set()
HEAD = ("head.",)
#: keys a file may hold that a network may lack, per key map
OPTIONAL = {"pointcept_ptv3_encoder": ("backbone.embedding.mask_token",)}


def register_pretrained(card: PretrainedCard) -> PretrainedCard:
    """Add a card (a checkpoint of yours) to the registry.

    Raises:
        ValueError: the name is taken.
    """
    if card.name in _CARDS:
        raise ValueError(f"pretrained card {card.name!r} is already registered")
    _CARDS[card.name] = card
    return card


def list_pretrained() -> list[str]:
    """Names of the cards, sorted."""
    return sorted(_CARDS)


def find_pretrained(name: str) -> PretrainedCard | None:
    """The card ``name``, or ``None``."""
    return _CARDS.get(name)


def get_pretrained(name: str) -> PretrainedCard:
    """The card ``name``.

    Raises:
        KeyError: unknown (the message lists the cards).
    """
    try:
        return _CARDS[name]
    except KeyError:
        raise KeyError(
            f"unknown pretrained card {name!r}; known: {', '.join(list_pretrained())}"
        ) from None


def describe_pretrained(name: str) -> str:
    """Everything a card says, as text: architecture, source, inputs, classes, metric,
    licence and caveats."""
    c = get_pretrained(name)
    heads = f"{c.num_classes} classes" if c.num_classes else "none (encoder only)"
    lines = [
        f"{c.name}: {c.summary}",
        f"  network: create_model({c.builder!r}, **{c.arch_kwargs})",
        f"  head: {heads}",
    ]
    for f in c.files:
        sha = f", sha256 {f.sha256}" if f.sha256 else ", no sha256 published"
        lines.append(f"  file: {f.repo_id} / {f.filename} @ {f.revision}{sha}")
    i = c.inputs
    lines.append(f"  input x ({i.in_channels} channels): {', '.join(i.x)}")
    lines.append(f"  official stem reads: {', '.join(i.stem)}")
    scale = f", coordinates x {i.coord_scale}" if i.coord_scale != 1.0 else ""
    lines.append(f"  grid: {i.grid_size} (pos in metres{scale}); {i.note}")
    if c.class_names:
        shown = ", ".join(c.class_names[:25]) + (" ..." if len(c.class_names) > 25 else "")
        lines.append(f"  classes: {shown}")
    lines.append(f"  metric: {c.metric}")
    lines.append(f"  licence: {c.licence}" + (" (non-commercial use only)" * c.non_commercial))
    if c.paper:
        lines.append(f"  paper: {c.paper}")
    lines += [f"  note: {n}" for n in c.notes]
    return "\n".join(lines)


def pretrained_table() -> str:
    """The cards as a Markdown table (name, source, inputs, metric, licence)."""
    rows = [
        "| card | source | input x (grid) | metric | licence |",
        "|---|---|---|---|---|",
    ]
    for name in list_pretrained():
        c = _CARDS[name]
        src = " + ".join(f"{f.repo_id}/{f.filename}" for f in c.files)
        rev = c.files[0].revision[:7]
        i = c.inputs
        grid = (
            f"{i.grid_size} m"
            if i.coord_scale == 1.0
            else (f"{i.grid_size} on coords x{i.coord_scale}")
        )
        rows.append(
            f"| {name} | {src} @ {rev} | {', '.join(i.x)} ({grid}) | {c.metric} | {c.licence} |"
        )
    return "\n".join(rows)


def _notice(card: PretrainedCard) -> None:
    if card.name in _NOTICED:
        return
    _NOTICED.add(card.name)
    if card.non_commercial:
        repos = ", ".join(sorted({f.repo_id for f in card.files}))
        print(
            f"lightning-pc: the weights of {card.name} ({repos}) are licensed {card.licence}: "
            "non-commercial use only (https://creativecommons.org/licenses/by-nc/4.0/)",
            file=sys.stderr,
        )
    for f in card.files:
        if not f.pinned:
            warnings.warn(
                f"pretrained card {card.name}: {f.repo_id}/{f.filename} is pinned to the "
                f"branch {f.revision!r}, not a commit: the file may change upstream"
                + (" (its sha256 is checked)" if f.sha256 else " (no sha256 to check it)"),
                UserWarning,
                stacklevel=3,
            )


def _card_files(card: PretrainedCard, source: bool | str | Path) -> list[tuple[Path, str]]:
    """(local path, description) of each of the card's files."""
    out: list[tuple[Path, str]] = []
    local = None if isinstance(source, bool) else Path(source).expanduser()
    for i, f in enumerate(card.files):
        what = f"pretrained card {card.name!r}"
        if local is not None and local.is_dir():
            cands = [local / f.filename, local / Path(f.filename).name]
            found = next((p for p in cands if p.is_file()), None)
            if found is None:
                raise PretrainedUnavailable(
                    f"{what}: {local} holds neither {f.filename} nor {Path(f.filename).name}"
                )
            out.append((found, str(found)))
        elif local is not None and i == 0:
            out.append((local, str(local)))
        else:
            path = hub_path(f, what)
            verify(path, f.sha256, f"{what}, {f.repo_id}/{f.filename}")
            out.append((path, f"{f.repo_id}/{f.filename}@{f.revision[:12]}"))
    return out


def _read_mapped(path: Path, key_map: str | None) -> tuple[dict[str, Tensor], str]:
    """The file's state dict in our keys, and the key map used (``None``: detected)."""
    state, _ = unwrap(read_file(path), str(path))
    name = key_map or detect(state)
    return KEY_MAPS[name](state), name


def load_pretrained(
    model: nn.Module,
    source: bool | str | Path,
    *,
    card: PretrainedCard | str | None = None,
    num_classes: int | None = None,
    strict: bool = True,
) -> LoadReport:
    """Load weights into a built network.

    Args:
        model: a network of the card's architecture (or any registered network for a path
            without a card).
        source: a checkpoint file, a folder of the card's files, or (with ``card``)
            ``True``: the card's files from the Hugging Face cache or hub.
        card: the card whose key map and head apply (``None``: map detected from the keys,
            every key loaded).
        num_classes: classes of ``model``'s head; when they differ from the card's trained
            head (or the card has none) the head stays at its initialisation.
        strict: raise on any missing, unexpected or mismatched key.

    Raises:
        PretrainedError: unreadable file, unknown layout, or (``strict``) keys that do not
            match, with the report.
    """
    c = get_pretrained(card) if isinstance(card, str) else card
    if c is None:
        if source is True or source is False:
            raise ValueError("pretrained=True needs a card: pass a card name or a file path")
        path = Path(source).expanduser()
        mapped, name = _read_mapped(path, None)
        return load_state(model, mapped, str(path), optional=OPTIONAL.get(name, ()), strict=strict)
    _notice(c)
    state: dict[str, Tensor] = {}
    where = []
    for path, desc in _card_files(c, source):
        state.update(_read_mapped(path, c.key_map)[0])
        where.append(desc)
    new_head = c.num_classes is not None and num_classes not in (None, c.num_classes)
    skip = HEAD if (c.num_classes is None or new_head) else ()
    report = load_state(
        model,
        state,
        f"{c.name} ({' + '.join(where)})",
        skip=skip,
        optional=OPTIONAL.get(c.key_map, ()),
        strict=strict,
    )
    if new_head:
        warnings.warn(
            f"pretrained card {c.name}: its head predicts {c.num_classes} classes, the model "
            f"{num_classes}: the head is left at its initialisation (the rest is loaded)",
            UserWarning,
            stacklevel=2,
        )
    return report


def build_pretrained(
    card: PretrainedCard | str,
    num_classes: int | None = None,
    pretrained: bool | str | Path = True,
    **kwargs: Any,
) -> nn.Module:
    """The card's network, with its weights unless ``pretrained`` is false.

    Args:
        card: a card or its name.
        num_classes: classes of the head (default: the card's; another number, or a card
            without a head, gives a new head at its initialisation).
        pretrained: ``True`` (the card's files from the hub cache / hub), a path (a file
            replacing the card's first file, or a folder of its files), or ``False`` (the
            architecture only).
        **kwargs: builder arguments over the card's; ``in_channels`` must be the card's when
            loading.

    Raises:
        ValueError: ``in_channels`` other than the card's with weights to load.
        PretrainedError: see :func:`load_pretrained`.
    """
    from lightning_pc.models.registry import build

    c = get_pretrained(card) if isinstance(card, str) else card
    args = c.arch_kwargs
    given = kwargs.get("in_channels", args.get("in_channels"))
    if pretrained and given != args.get("in_channels"):
        raise ValueError(
            f"pretrained card {c.name!r} reads in_channels={c.inputs.in_channels} "
            f"({', '.join(c.inputs.x)}), got in_channels={given}: give the card's channels "
            "(set in_channels in the config), or pretrained=False to train this "
            "architecture from scratch"
        )
    args.update(kwargs)
    n = num_classes if num_classes is not None else c.num_classes
    model = build(c.builder, n, **args)
    if pretrained:
        load_pretrained(model, pretrained, card=c, num_classes=n)
    return model
