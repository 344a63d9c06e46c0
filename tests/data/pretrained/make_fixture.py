"""Official PT-v3m1 checkpoints, tiny and full size, for the pretrained-loading tests.

Runs in the side environment of ``benchmarks/ptv3_oracle.py`` (torch, spconv's CPU wheel,
addict), never in the test suite: Pointcept's model file is read at run time from a checkout
or bare git directory and imported from a temporary copy (``load_official`` of the oracle),
so nothing of it enters the repository. Writes into ``OUT`` (default: this folder):

- ``ptv3m1_official_keys.json``: for each released PT-v3m1 segmentation checkpoint
  (Pointcept's ``scannet-semseg-pt-v3m1-0-base``, ``scannet200-semseg-pt-v3m1-0-base``,
  ``s3dis-semseg-pt-v3m1-0-rpe``) the model config and the names and shapes of its
  ``DefaultSegmentorV2`` state dict (``backbone.*`` of PT-v3m1, ``seg_head.*``), as the
  model file of Pointcept v1.5.1 (which trained them) builds it. The tests check our cards'
  networks against these names and shapes through the key map, without spconv.
- ``ptv3m1_tiny_official.pt``: a tiny official model (two stages; its input ``6`` channels are
  the voxel's mean coordinates and 3 features, as our ``ptv3`` stem reads them), its state
  dict in the official names, a scan (``pos``, ``x``) and the official logits on every point
  of it (through our voxelisation's inverse). The tests write that state dict in each of
  Pointcept's checkpoint layouts, load it through ``create_model(..., pretrained=path)`` and
  compare our logits with the official ones: the key map and spconv's kernel layout are
  right only if they agree.
- ``ptv3m1_tiny_released.pt``: the same for a tiny model of the released checkpoints' kind,
  from Pointcept v1.5.1's model file: the stem reads the 3 features alone (no coordinates),
  relative position encoding (random tables), Pointcept's grid; ours is built as the cards
  build theirs (``stem_xyz=False, grid_origin="pointcept", legacy=True, enable_rpe=True``).

    .venv-ptv3/bin/python tests/data/pretrained/make_fixture.py --pointcept /path/to/Pointcept
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

os.environ["OMP_NUM_THREADS"] = "1"  # spconv's CPU map building races with more threads

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path.insert(0, str(REPO))

FULL: dict[str, dict[str, Any]] = {
    # Pointcept configs/scannet/semseg-pt-v3m1-0-base.py (and scannet200's: 200 classes)
    "scannet-semseg-pt-v3m1-0-base": dict(num_classes=20, backbone=dict(in_channels=6)),
    "scannet200-semseg-pt-v3m1-0-base": dict(num_classes=200, backbone=dict(in_channels=6)),
    # configs/s3dis/semseg-pt-v3m1-1-rpe.py (released as s3dis-semseg-pt-v3m1-0-rpe)
    "s3dis-semseg-pt-v3m1-0-rpe": dict(
        num_classes=13,
        backbone=dict(
            in_channels=6,
            enc_patch_size=(128,) * 5,
            dec_patch_size=(128,) * 4,
            enable_rpe=True,
            upcast_attention=True,
            upcast_softmax=True,
        ),
    ),  # fmt: skip
}
ORDER = ("z", "z-trans", "hilbert", "hilbert-trans")
TINY = dict(
    in_channels=6, order=ORDER, stride=(2,), enc_depths=(1, 2), enc_channels=(8, 16),
    enc_num_head=(1, 2), enc_patch_size=(24, 24), dec_depths=(2,), dec_channels=(8,),
    dec_num_head=(2,), dec_patch_size=(24,), shuffle_orders=False,
)  # fmt: skip
TINY_CLASSES = 5


def _oracle() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ptv3_oracle", REPO / "benchmarks/ptv3_oracle.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class Segmentor(nn.Module):
    """Pointcept's ``DefaultSegmentorV2`` parameters: ``backbone`` and ``seg_head``."""

    def __init__(self, backbone: nn.Module, channels: int, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.seg_head = nn.Linear(channels, num_classes)


def _build(oracle: ModuleType, official: ModuleType, num_classes: int, **kwargs: Any) -> Segmentor:
    kw: dict[str, Any] = dict(order=ORDER, enable_flash=False)
    kw.setdefault("upcast_attention", False)
    kw.setdefault("upcast_softmax", False)
    kw.update(kwargs)
    backbone = official.PointTransformerV3(**oracle.official_kwargs(official, kw, False))
    channels = (kw.get("dec_channels") or (64,))[0]
    return Segmentor(backbone, channels, num_classes)


def full_keys(oracle: ModuleType, official: ModuleType) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, cfg in FULL.items():
        model = _build(oracle, official, cfg["num_classes"], **cfg["backbone"])
        out[name] = {
            "config": {"num_classes": cfg["num_classes"], **cfg["backbone"]},
            "keys": {k: list(v.shape) for k, v in model.state_dict().items()},
        }
        del model
    return out


def tiny(oracle: ModuleType, official: ModuleType, released: bool) -> dict[str, Any]:
    """A tiny official model, a scan and its logits; ``released``: of the kind of the
    released checkpoints (v1.5.1 file, features alone in the stem, RPE, Pointcept's grid)."""
    from lightning_pc.models.ptv3 import ptv3_input

    torch.manual_seed(0)
    cfg: dict[str, Any] = dict(TINY)
    if released:
        cfg.update(in_channels=3, enable_rpe=True, upcast_attention=True, upcast_softmax=True)
    model = _build(oracle, official, TINY_CLASSES, **cfg)
    oracle.prepare_official(model.backbone)  # evaluation mode, spconv's CPU bias path
    g = torch.Generator().manual_seed(1)
    n = 700
    pos = torch.rand(n, 3, generator=g) * torch.tensor([1.0, 0.8, 0.5])
    pos[: n // 2, 2] = 0.0  # a floor and some clutter
    x = torch.rand(n, 3, generator=g)
    data = SimpleNamespace(pos=pos, x=x)
    with torch.no_grad():
        vox = ptv3_input(data, 3, 0.05, "pointcept" if released else "cloud_min")
        point = model.backbone(oracle.official_input(vox, stem_xyz=not released))
        logits = model.seg_head(point.feat)[vox.inverse]
    return {
        "state_dict": {k: v.clone() for k, v in model.state_dict().items()},
        "config": {"num_classes": TINY_CLASSES, "grid_size": 0.05, **cfg},
        "pos": pos,
        "x": x,
        "logits": logits,
    }


def _save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    if isinstance(obj, dict) and path.suffix == ".json":
        tmp.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n")
    else:
        torch.save(obj, tmp)
    os.replace(tmp, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pointcept", type=Path, required=True, help="checkout or bare git dir")
    ap.add_argument("--out", type=Path, default=HERE)
    args = ap.parse_args()
    torch.set_num_threads(1)
    oracle = _oracle()
    head = oracle.load_official(args.pointcept)
    v151 = oracle.load_official(args.pointcept, "v1.5.1")
    args.out.mkdir(parents=True, exist_ok=True)
    keys = full_keys(oracle, v151)
    _save(keys, args.out / "ptv3m1_official_keys.json")
    _save(tiny(oracle, head, released=False), args.out / "ptv3m1_tiny_official.pt")
    _save(tiny(oracle, v151, released=True), args.out / "ptv3m1_tiny_released.pt")
    print(f"wrote {len(keys)} key tables and two tiny official models")


if __name__ == "__main__":
    main()
