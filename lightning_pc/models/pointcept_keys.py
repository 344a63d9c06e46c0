"""Pointcept's PTv3 key names and spconv's kernel layout in ours (torch only).

The PT-v3m1 key map (:func:`ptv3m1_to_ours`, the ``"pointcept_ptv3m1"`` map of
:mod:`lightning_pc.models.pretrained.keymaps`), the block key map it shares with the
Sonata-family converter (:func:`block_key`, used by
:func:`lightning_pc.models.sonata.convert_pointcept_state_dict`) and the kernel layout
(:func:`spconv_kernel`). A module of its own, importing torch only, so that the package's
key maps and the oracle scripts (``benchmarks/ptv3_oracle.py``, in a side environment
without ``lightning``) share it without importing the pretrained package (whose cards need
``lightning``).

spconv 2.x stores a ``SubMConv3d`` / ``SparseConv3d`` kernel as ``[C_out, kx, ky, kz, C_in]``
(its kernel dimensions follow the order of the index columns ``x, y, z``); ours
(:class:`~lightning_pc.nn.sparse.conv.SparseConv3d`) is ``[K, C_in, C_out]`` with the offsets
``x`` slowest.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor


def spconv_kernel(w: Tensor) -> Tensor:
    """spconv ``[C_out, kx, ky, kz, C_in]`` -> ours ``[kx * ky * kz, C_in, C_out]`` (x slowest)."""
    if w.dim() != 5:
        raise ValueError(f"an spconv kernel is [C_out, kx, ky, kz, C_in], got {tuple(w.shape)}")
    return w.permute(1, 2, 3, 4, 0).reshape(-1, w.size(4), w.size(0))


def block_key(p: list[str]) -> str | None:
    """A PTv3 block's key (after ``block{i}.``, split at the dots) in ours, ``None`` when
    unknown; the same names in PT-v3m1, PT-v3m2 and PT-v3m3."""
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
                elif b[2].startswith("block") and (tail := block_key(b[3:])) is not None:
                    new = f"enc.{s}.{int(b[2][5:])}.{tail}"
            elif b[0] == "dec" and b[1].startswith("dec") and n:
                j = n - 2 - int(b[1][3:])
                if b[2] == "up" and b[3] in ("proj", "proj_skip") and len(b) == 6:
                    new = f"up.{j}.{b[3]}." if b[4] == "0" else f"up.{j}.{b[3]}_norm.norm."
                    new += b[5]
                elif b[2].startswith("block") and (tail := block_key(b[3:])) is not None:
                    new = f"dec.{j}.{int(b[2][5:])}.{tail}"
            if new is not None:
                if new.endswith("cpe.conv.weight"):
                    v = spconv_kernel(v)
                new = "backbone." + new
        out[new if new is not None else "?" + key] = v
    return out
