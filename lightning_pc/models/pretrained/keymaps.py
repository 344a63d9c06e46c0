"""Key maps: official state dicts in the keys (and tensor layouts) of our networks.

A key map takes a state dict as a checkpoint holds it, with its wrapping prefixes already
removed (:func:`~lightning_pc.models.pretrained.loading.unwrap`), and returns the state
dict our registered :class:`~lightning_pc.models.heads.PointNetwork` loads (``backbone.*``,
``head.*``). A key it cannot place is returned under ``"?<key>"`` so that strict loading
lists it as unexpected, by its official name.

- ``"ours"``: our own keys (a ``state_dict()`` of our model, or a Lightning checkpoint of a
  task whose network is ``model``), unchanged.
- ``"pointcept_ptv3m1"``: Pointcept's ``DefaultSegmentorV2`` with a ``PT-v3m1`` backbone
  (the released PTv3 ScanNet / ScanNet200 / S3DIS checkpoints), see
  :func:`~lightning_pc.models.pointcept_keys.ptv3m1_to_ours` (importable from here too).
- ``"pointcept_ptv3_encoder"``: the encoder-only PT-v3m2/m3 of Sonata, Concerto and Utonia
  and their linear-probe heads (``seg_head.*``), through the converter of
  :mod:`lightning_pc.models.sonata` (imported when used).

spconv 2.x stores a ``SubMConv3d`` / ``SparseConv3d`` kernel as ``[C_out, kx, ky, kz, C_in]``
(its kernel dimensions follow the order of the index columns ``x, y, z``); ours
(:class:`~lightning_pc.nn.sparse.conv.SparseConv3d`) is ``[K, C_in, C_out]`` with the offsets
``x`` slowest: :func:`~lightning_pc.models.pointcept_keys.spconv_kernel` (importable from
here too) permutes one into the other. That this is the layout of a real spconv 2.3 module
is checked by ``tests/data/pretrained/make_fixture.py`` (an official model run through
spconv) and the tests that load its output.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from torch import Tensor

from lightning_pc.models.pointcept_keys import ptv3m1_to_ours, spconv_kernel

__all__ = [
    "KEY_MAPS", "KeyMap", "detect", "ours", "ptv3_encoder_to_ours", "ptv3m1_to_ours",
    "spconv_kernel",
]  # fmt: skip

KeyMap = Callable[[Mapping[str, Tensor]], dict[str, Tensor]]


def ours(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Our own keys, unchanged."""
    return dict(state)


def ptv3_encoder_to_ours(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Sonata / Concerto / Utonia encoder keys (and ``seg_head.*``) -> ours, through
    :func:`lightning_pc.models.sonata.convert_pointcept_state_dict`, key by key so that an
    unknown key is reported rather than raised."""
    try:
        from lightning_pc.models.sonata import convert_pointcept_state_dict
    except ImportError as e:  # pragma: no cover - the module ships with the package
        raise ImportError(f"the Sonata-family key map needs lightning_pc.models.sonata: {e}") from e
    out: dict[str, Tensor] = {}
    for key, v in state.items():
        try:
            out.update(convert_pointcept_state_dict({key: v}))
        except KeyError:
            out["?" + key] = v
    return out


KEY_MAPS: dict[str, KeyMap] = {
    "ours": ours,
    "pointcept_ptv3m1": ptv3m1_to_ours,
    "pointcept_ptv3_encoder": ptv3_encoder_to_ours,
}


def detect(state: Mapping[str, Tensor]) -> str:
    """The key map a state dict needs, from its keys (for a checkpoint given without a card).

    Raises:
        ValueError: keys of no known layout.
    """
    keys = list(state)
    if any(k.startswith("backbone.embedding.stem.conv.") for k in keys):
        return "pointcept_ptv3m1"
    if any(
        k.startswith(("embedding.stem.linear.", "backbone.embedding.stem.linear.")) for k in keys
    ):
        return "pointcept_ptv3_encoder"
    if keys and all(k.startswith("seg_head.") for k in keys):
        return "pointcept_ptv3_encoder"
    if any(k.startswith(("backbone.", "head.")) for k in keys):
        return "ours"
    raise ValueError(
        "keys of no known layout (expected ours: backbone.* / head.*, Pointcept PT-v3m1: "
        "backbone.embedding.stem.conv.*, or Sonata-family: embedding.stem.linear.*); first "
        f"keys: {keys[:5]}"
    )
