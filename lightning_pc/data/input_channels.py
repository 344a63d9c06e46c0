"""A network's input channels and the data that has them: which are read, which are
zero-filled (and said so, once).

A pretrained network reads ``x`` as a fixed list of channels (Sonata: colour then normals;
our networks trained on S3DIS: colour), but a user's scans may lack some (LiDAR has
neither colours nor normals). The channels here are :data:`CHANNELS`; a missing one is
given as zeros, and a :class:`UserWarning` names it, its columns and the scans or data
lacking it, once per process for the same message:

- :func:`plan_inputs`: for scan files (``lightning-pc embed``, ``predict`` on whole scans):
  which channels every scan holds, which get zeros;
- :class:`ZeroFillChannels`: a data transform laying ``x`` out as the network's channels,
  zeros where the data module gives none (training, probing and fine-tuning configs).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch_geometric.data import Data

from lightning_pc.data.formats import ScanChunks
from lightning_pc.data.transforms import Transform

#: input channels a scan can provide (``coord``: the fragment's coordinates) and widths
CHANNELS: dict[str, int] = {"coord": 3, "rgb": 3, "normal": 3, "intensity": 1}
#: other spellings of the channel names (Pointcept's ``color``)
ALIASES: dict[str, str] = {
    "color": "rgb",
    "colour": "rgb",
    "normals": "normal",
    "strength": "intensity",
}
#: what a zero-filled channel's columns are called in the warning
_COLUMNS: dict[str, str] = {
    "rgb": "red green blue",
    "normal": "nx ny nz",
    "intensity": "intensity",
    "coord": "x y z",
}


def channel_name(name: str) -> str:
    """The canonical name of an input channel (``color`` -> ``rgb``).

    Raises:
        ValueError: an unknown channel.
    """
    key = ALIASES.get(name.lower(), name.lower())
    if key not in CHANNELS:
        raise ValueError(
            f"unknown input channel {name!r}; known: {', '.join(CHANNELS)} "
            f"(aliases: {', '.join(ALIASES)})"
        )
    return key


def scan_channels(path: str | Path) -> set[str]:
    """The input channels a scan file holds (``coord`` always), from its header or first
    read (:class:`~lightning_pc.data.formats.ScanChunks`)."""
    keys = ScanChunks(path).keys
    found = {"coord"}
    if "rgb" in keys or keys.get("features", 0) >= 3:
        found.add("rgb")
    for name in ("intensity", "normal"):
        if name in keys:
            found.add(name)
    return found


def plan_inputs(
    files: Sequence[str | Path], inputs: Sequence[str], *, warn: bool = True
) -> tuple[list[str], dict[str, list[str]]]:
    """Which of a network's input channels the scans provide, and which get zeros.

    A channel is read from the scans when every scan holds it; otherwise it is zero-filled
    for all of them (one network input for the whole run), and, with ``warn``, one
    :class:`UserWarning` names each such channel (its columns) and the scans that lack it.

    Args:
        files: the scan files.
        inputs: the network's input channels in order (names of :data:`CHANNELS` or
            :data:`ALIASES`).

    Returns:
        ``(read, missing)``: the channels read from the scans (in ``inputs`` order, without
        ``coord``, which comes from the coordinates), and per zero-filled channel the scans
        lacking it.
    """
    wanted = [channel_name(c) for c in inputs]
    held = {str(f): scan_channels(f) for f in files}
    missing: dict[str, list[str]] = {}
    for channel in wanted:
        lacking = [f for f, found in held.items() if channel not in found]
        if lacking:
            missing[channel] = lacking
    read = [c for c in wanted if c != "coord" and c not in missing]
    if missing and warn:
        warn_zero_filled(zero_fill_message(wanted, missing))
    return read, missing


def zero_fill_message(inputs: Sequence[str], missing: Mapping[str, Sequence[str]]) -> str:
    """The warning of :func:`plan_inputs`: the zero-filled channels and the scans."""
    lines = [
        f"the network reads input channels [{', '.join(inputs)}]; these are zero-filled "
        "because scans lack them:"
    ]
    for channel, files in missing.items():
        names = ", ".join(Path(f).name for f in files[:5])
        more = f" and {len(files) - 5} more" if len(files) > 5 else ""
        lines.append(
            f"  {channel} ({CHANNELS[channel]} channels: {_COLUMNS[channel]}): missing in "
            f"{len(files)} scan(s): {names}{more}"
        )
    lines.append(
        "Outputs on zero-filled inputs are not those of complete inputs (the network was "
        "trained with them): fine-tune on such scans, or give scans that hold them."
    )
    return "\n".join(lines)


_WARNED: set[str] = set()


def warn_zero_filled(message: str) -> None:
    """``message`` as a :class:`UserWarning`, once per process."""
    if message in _WARNED:
        return
    _WARNED.add(message)
    warnings.warn(message, UserWarning, stacklevel=3)


class ZeroFillChannels(Transform):
    """Lays ``x`` out as a network's input channels: the channels the data holds where they
    go, zeros for the others (with one warning naming them, see the module docstring).

    Place it last in a data module's transforms (after the colour augmentations, which read
    the colours at the start of ``x``). ``coord`` is not an ``x`` channel here (our networks
    and the Sonata encoders add the coordinates themselves).

    Example (YAML, Sonata's colour + normals from a data module with colours only)::

        - class_path: lightning_pc.data.input_channels.ZeroFillChannels
          init_args: {inputs: [rgb, normal], read: [rgb], source: ScanNet}

    Args:
        inputs: the network's channels of ``x``, in order.
        read: the channels the data's ``x`` holds, in order (``[]``: the data has no ``x``).
        source: what the data is, named in the warning.
    """

    def __init__(
        self, inputs: Sequence[str], read: Sequence[str] = (), source: str = "the data"
    ) -> None:
        self.inputs = [channel_name(c) for c in inputs]
        self.read = [channel_name(c) for c in read]
        if "coord" in self.inputs or "coord" in self.read:
            raise ValueError("ZeroFillChannels lays out x: coord is not an x channel")
        unknown = [c for c in self.read if c not in self.inputs]
        if unknown:
            raise ValueError(f"read channels {unknown} are not among the inputs {self.inputs}")
        self.source = source
        missing = [c for c in self.inputs if c not in self.read]
        if missing:
            warn_zero_filled(zero_fill_message(self.inputs, {c: [source] for c in missing}))

    def forward(self, data: Data, generator: torch.Generator | None = None) -> Data:
        n = data.pos.size(0)
        width = sum(CHANNELS[c] for c in self.read)
        x = getattr(data, "x", None)
        if width and (x is None or x.dim() != 2 or x.size(1) != width):
            raise ValueError(
                f"ZeroFillChannels: expected x with the {width} columns of {self.read}, got "
                f"{None if x is None else tuple(x.shape)}"
            )
        columns, at = {}, 0
        for c in self.read:
            columns[c] = slice(at, at + CHANNELS[c])
            at += CHANNELS[c]
        dtype = x.dtype if x is not None else data.pos.dtype
        parts = [
            x[:, columns[c]] if c in columns and x is not None
            else data.pos.new_zeros(n, CHANNELS[c], dtype=dtype)
            for c in self.inputs
        ]  # fmt: skip
        data.x = torch.cat(parts, 1) if parts else None
        return data


#: a card's column names (:attr:`lightning_pc.models.pretrained.Inputs.x`) -> channel, the
#: column's place in it, and ``(scale, shift)`` from our value (colours in 0-1)
_COLUMN_NAMES: dict[str, tuple[str, int, tuple[float, float]]] = {
    "x": ("coord", 0, (1.0, 0.0)),
    "y": ("coord", 1, (1.0, 0.0)),
    "z": ("coord", 2, (1.0, 0.0)),
    "r/255": ("rgb", 0, (1.0, 0.0)),
    "g/255": ("rgb", 1, (1.0, 0.0)),
    "b/255": ("rgb", 2, (1.0, 0.0)),
    "r/127.5-1": ("rgb", 0, (2.0, -1.0)),
    "g/127.5-1": ("rgb", 1, (2.0, -1.0)),
    "b/127.5-1": ("rgb", 2, (2.0, -1.0)),
    "nx": ("normal", 0, (1.0, 0.0)),
    "ny": ("normal", 1, (1.0, 0.0)),
    "nz": ("normal", 2, (1.0, 0.0)),
    "intensity": ("intensity", 0, (1.0, 0.0)),
}


def channels_of_columns(
    columns: Sequence[str],
) -> tuple[list[str], dict[str, tuple[float, float]]]:
    """The channels and their ``(scale, shift)`` of a card's input columns in order, e.g.
    ``("r/127.5-1", "g/127.5-1", "b/127.5-1", "nx", "ny", "nz")`` ->
    ``(["rgb", "normal"], {"rgb": (2.0, -1.0)})`` (our colours are in 0-1).

    Raises:
        ValueError: an unknown column, or a channel's columns not whole and in order.
    """
    channels: list[str] = []
    scales: dict[str, tuple[float, float]] = {}
    at = 0
    while at < len(columns):
        name = columns[at]
        if name not in _COLUMN_NAMES:
            raise ValueError(f"unknown input column {name!r}; known: {', '.join(_COLUMN_NAMES)}")
        channel, place, scale = _COLUMN_NAMES[name]
        width = CHANNELS[channel]
        group = list(columns[at : at + width])
        expected = [
            k for k, v in _COLUMN_NAMES.items() if v[0] == channel and v[2] == scale
        ]  # the channel's columns in order, at this scale
        if place != 0 or group != expected[:width]:
            raise ValueError(f"input columns {group} are not the {channel} channel in order")
        channels.append(channel)
        if scale != (1.0, 0.0):
            scales[channel] = scale
        at += width
    return channels, scales


class ChannelLayout:
    """Builds a network's ``x`` from coordinates and the channels read: the channels of
    ``inputs`` in order, ``coord`` from the coordinates, the channels of ``read`` from the
    given ``x`` (in ``read`` order) with their ``scales`` (``value * scale + shift``),
    zeros for the others (zeros in the network's units: a zero-filled colour in -1..1 is
    mid-grey).

    Args:
        inputs: the network's input channels, in order.
        read: the channels the given ``x`` holds, in order (see :func:`plan_inputs`).
        scales: per channel, ``(scale, shift)``.
    """

    def __init__(
        self,
        inputs: Sequence[str],
        read: Sequence[str],
        scales: Mapping[str, Sequence[float]] | None = None,
    ) -> None:
        self.inputs = [channel_name(c) for c in inputs]
        self.read = [channel_name(c) for c in read]
        self.scales = {
            channel_name(k): (float(v[0]), float(v[1])) for k, v in (scales or {}).items()
        }
        unknown = set(self.read) - set(self.inputs)
        if unknown:
            raise ValueError(f"read channels {sorted(unknown)} are not inputs {self.inputs}")

    @property
    def in_channels(self) -> int:
        """Width of the ``x`` it builds."""
        return sum(CHANNELS[c] for c in self.inputs)

    @property
    def zero_filled(self) -> list[str]:
        """The input channels given as zeros."""
        return [c for c in self.inputs if c != "coord" and c not in self.read]

    def __call__(self, pos: torch.Tensor, x: torch.Tensor | None) -> torch.Tensor | None:
        """``[N, in_channels]`` (``None`` without inputs)."""
        if not self.inputs:
            return None
        columns, at = {}, 0
        for c in self.read:
            columns[c] = (at, at + CHANNELS[c])
            at += CHANNELS[c]
        if at and (x is None or x.dim() != 2 or x.size(1) != at):
            raise ValueError(
                f"expected x with the {at} columns of {self.read}, got "
                f"{None if x is None else tuple(x.shape)}"
            )
        parts = []
        for c in self.inputs:
            if c == "coord":
                part = pos
            elif c in columns and x is not None:
                part = x[:, columns[c][0] : columns[c][1]]
                if c in self.scales:
                    scale, shift = self.scales[c]
                    part = part * scale + shift
            else:
                part = pos.new_zeros(pos.size(0), CHANNELS[c])
            parts.append(part.to(pos.dtype))
        return torch.cat(parts, 1)
