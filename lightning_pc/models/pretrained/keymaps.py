"""Key maps: official state dicts in the keys (and tensor layouts) of our networks.

A key map takes a state dict as a checkpoint holds it, with its wrapping prefixes already
removed (:func:`~lightning_pc.models.pretrained.loading.unwrap`), and returns the state
dict our registered :class:`~lightning_pc.models.heads.PointNetwork` loads (``backbone.*``,
``head.*``). A key it cannot place is returned under ``"?<key>"`` so that strict loading
lists it as unexpected, by its official name.

- ``"ours"``: our own keys (a ``state_dict()`` of our model, or a Lightning checkpoint of a
  task whose network is ``model``), unchanged.
- ``"pointcept_ptv3m1"``: Pointcept's ``DefaultSegmentorV2`` with a ``PT-v3m1`` backbone
  (the released PTv3 ScanNet / ScanNet200 / S3DIS checkpoints), see :func:`ptv3m1_to_ours`.
- ``"pointcept_ptv3_encoder"``: the encoder-only PT-v3m2/m3 of Sonata, Concerto and Utonia
  and their linear-probe heads (``seg_head.*``), through the converter of
  :mod:`lightning_pc.models.sonata` (imported when used).

spconv 2.x stores a ``SubMConv3d`` / ``SparseConv3d`` kernel as ``[C_out, kx, ky, kz, C_in]``
(its kernel dimensions follow the order of the index columns ``x, y, z``); ours
(:class:`~lightning_pc.nn.sparse.conv.SparseConv3d`) is ``[K, C_in, C_out]`` with the offsets
``x`` slowest: :func:`~lightning_pc.models.spconv_layout.spconv_kernel` (importable from
here too) permutes one into the other. That this is the layout of a real spconv 2.3 module
is checked by ``tests/data/pretrained/make_fixture.py`` (an official model run through
spconv) and the tests that load its output.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from torch import Tensor

from lightning_pc.models.spconv_layout import spconv_kernel

KeyMap = Callable[[Mapping[str, Tensor]], dict[str, Tensor]]


def _block(p: list[str]) -> str | None:
    """A PT-v3m1 block's key (after ``block{i}.``) in ours, ``None`` when unknown."""
    if p[0] == "cpe" and len(p) == 3 and p[1] in ("0", "1", "2"):
        return "cpe." + {"0": "conv", "1": "linear", "2": "norm"}[p[1]] + "." + p[2]
    if p[0] in ("norm1", "norm2") and len(p) == 3 and p[1] == "0":
        return f"{p[0]}.{p[2]}"
    if p[0] == "attn":  # qkv, proj, rpe.rpe_table: the same names
        return ".".join(p)
    if p[0] == "mlp" and len(p) == 4 and p[1] == "0":
        return f"mlp.{p[2]}.{p[3]}"
    if p[0] in ("ls1", "ls2") and p[-1] == "gamma":
        return "gamma" + p[0][-1]
    return None


def ptv3m1_to_ours(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Pointcept ``DefaultSegmentorV2`` + ``PT-v3m1`` keys -> our ``ptv3`` network's.

    Mapping (``s``: stage, ``i``: block, ``n``: number of stages; decoder stages are
    numbered from the finest in Pointcept, from the coarsest in ours)::

        backbone.embedding.stem.conv.weight  -> backbone.embedding.conv.weight (spconv kernel)
        backbone.embedding.stem.norm.*       -> backbone.embedding.norm.norm.*
        backbone.enc.enc{s}.down.proj.*      -> backbone.down.{s-1}.proj.*
        backbone.enc.enc{s}.down.norm.0.*    -> backbone.down.{s-1}.norm.norm.*
        backbone.enc.enc{s}.block{i}.X       -> backbone.enc.{s}.{i}.X'
        backbone.dec.dec{s}.up.proj.0/1.*    -> backbone.up.{n-2-s}.proj/proj_norm(.norm).*
        backbone.dec.dec{s}.up.proj_skip.0/1.* -> backbone.up.{n-2-s}.proj_skip/proj_skip_norm(.norm).*
        backbone.dec.dec{s}.block{i}.X       -> backbone.dec.{n-2-s}.{i}.X'
        seg_head.*                           -> head.0.*

    with ``X'``: ``cpe.0/1/2`` -> ``cpe.conv`` (spconv kernel) / ``linear`` / ``norm``,
    ``norm1.0`` -> ``norm1``, ``mlp.0.fc1`` -> ``mlp.fc1``, ``attn.*`` unchanged (``qkv``,
    ``proj``, ``rpe.rpe_table``), ``ls1.0.gamma`` -> ``gamma1``.
    """
    stages = {int(k.split(".")[2][3:]) for k in state if k.startswith("backbone.enc.enc")}
    n = max(stages) + 1 if stages else 0
    out: dict[str, Tensor] = {}
    for key, v in state.items():
        p = key.split(".")
        new: str | None = None
        if p[0] == "seg_head" and len(p) == 2:
            new = "head.0." + p[1]
        elif p[0] == "backbone" and len(p) >= 4:
            b = p[1:]
            if b[0] == "embedding" and b[1] == "stem":
                if b[2] == "conv" and b[-1] == "weight":
                    new, v = "embedding.conv.weight", spconv_kernel(v)
                elif b[2] == "norm":
                    new = "embedding.norm.norm." + b[-1]
            elif b[0] == "enc" and b[1].startswith("enc"):
                s = int(b[1][3:])
                if b[2] == "down" and b[3] == "proj":
                    new = f"down.{s - 1}.proj.{b[-1]}"
                elif b[2] == "down" and b[3] == "norm":
                    new = f"down.{s - 1}.norm.norm.{b[-1]}"
                elif b[2].startswith("block") and (tail := _block(b[3:])) is not None:
                    new = f"enc.{s}.{int(b[2][5:])}.{tail}"
            elif b[0] == "dec" and b[1].startswith("dec") and n:
                j = n - 2 - int(b[1][3:])
                if b[2] == "up" and b[3] in ("proj", "proj_skip") and len(b) == 6:
                    new = f"up.{j}.{b[3]}." if b[4] == "0" else f"up.{j}.{b[3]}_norm.norm."
                    new += b[5]
                elif b[2].startswith("block") and (tail := _block(b[3:])) is not None:
                    new = f"dec.{j}.{int(b[2][5:])}.{tail}"
            if new is not None:
                if new.endswith("cpe.conv.weight"):
                    v = spconv_kernel(v)
                new = "backbone." + new
        out[new if new is not None else "?" + key] = v
    return out


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
