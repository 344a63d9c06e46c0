"""Write ``param_groups_reference.json``: Pointcept's parameter groups of a small PT-v3m1.

Not run by the test suite: ``tests/tasks/test_optim.py`` reads the JSON it wrote. Run it in
the PTv3 oracle side environment (torch, spconv's CPU wheel, addict), pointing at a Pointcept
checkout or bare git directory. Pointcept's model file and its ``build_optimizer``
(``pointcept/utils/optimizer.py``) are read at run time into a temporary directory outside
the repository (with stand-ins for its logger, registry and Muon optimiser), never copied
into the repository::

    python tests/data/optim/make_param_groups_reference.py --pointcept /path/to/Pointcept

For every case (a ``param_dicts`` list as Pointcept's configs write it) the JSON stores the
learning rate and weight decay that Pointcept's optimiser gives each backbone parameter,
keyed by the parameter's name in our PTv3 (translated with the key map of
``benchmarks/ptv3_oracle.py``), beside the task options that should give the same groups.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO))

from ptv3_oracle import load_official, map_backbone  # noqa: E402

from benchmarks.pointcept_files import read_file  # noqa: E402

HERE = Path(__file__).resolve().parent
#: the small PT-v3m1 of tests/conftest.py's TINY_MODELS["ptv3"] (stem width 6 = ours 3 + 3)
CONFIG = dict(
    in_channels=6, stride=(2,), enc_depths=(1, 2), enc_channels=(8, 16), enc_num_head=(1, 2),
    enc_patch_size=(16, 16), dec_depths=(2,), dec_channels=(8,), dec_num_head=(1,),
    dec_patch_size=(16,), enable_flash=False,
)  # fmt: skip
LR, WEIGHT_DECAY = 0.006, 0.05
CASES = {
    # PTv3's S3DIS / ScanNet recipe
    "block": {
        "param_dicts": [{"keyword": "block", "lr": 0.0006}],
        "lr_scales": {"block": 0.1},
    },
    # first match wins: attention parameters (inside the blocks) take the first entry
    "attn_then_block": {
        "param_dicts": [{"keyword": "attn", "lr": 0.003}, {"keyword": "block", "lr": 0.0006}],
        "lr_scales": {"attn": 0.5, "block": 0.1},
    },
    "block_then_attn": {
        "param_dicts": [{"keyword": "block", "lr": 0.0006}, {"keyword": "attn", "lr": 0.003}],
        "lr_scales": {"block": 0.1, "attn": 0.5},
    },
    # a group with its own weight decay; the others keep the optimiser's
    "block_no_decay": {
        "param_dicts": [{"keyword": "block", "lr": 0.0006, "weight_decay": 0.0}],
        "lr_scales": {"block": {"lr_scale": 0.1, "weight_decay": 0.0}},
    },
}
STANDINS = {
    "pointcept/utils/__init__.py": "",
    "pointcept/utils/logger.py": (
        "import logging\n\ndef get_root_logger():\n    return logging.getLogger('pointcept')\n"
    ),
    "pointcept/utils/registry.py": (
        "class Registry:\n"
        "    def __init__(self, name):\n"
        "        self.modules = {}\n"
        "    def register_module(self, module=None, name=None, force=False):\n"
        "        self.modules[name or module.__name__] = module\n"
        "        return module\n"
        "    def build(self, cfg):\n"
        "        cfg = dict(cfg)\n"
        "        return self.modules[cfg.pop('type')](**cfg)\n"
    ),
    "pointcept/utils/muon_kimi.py": "MuonKIMI = None\n__all__ = ['MuonKIMI']\n",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pointcept", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=HERE / "param_groups_reference.json")
    args = parser.parse_args()
    from addict import Dict

    official = load_official(args.pointcept)
    # beside the model files load_official copied (its temporary ``pointcept`` package)
    root = Path(official.__file__).resolve().parents[3]
    for rel, text in STANDINS.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / "pointcept/utils/optimizer.py").write_text(
        read_file(args.pointcept, "pointcept/utils/optimizer.py")
    )
    from pointcept.utils.optimizer import build_optimizer

    torch.manual_seed(0)
    backbone = official.PointTransformerV3(**CONFIG)
    names = {n: n for n, _ in backbone.named_parameters()}
    ours = map_backbone(dict(backbone.named_parameters()))
    theirs_to_ours = dict(zip(names, ours, strict=True))
    out: dict[str, object] = {"config": CONFIG, "lr": LR, "weight_decay": WEIGHT_DECAY}
    for case, spec in CASES.items():
        cfg = Dict(type="AdamW", lr=LR, weight_decay=WEIGHT_DECAY)
        optimizer = build_optimizer(cfg, backbone, [Dict(d) for d in spec["param_dicts"]])
        index = {id(p): n for n, p in backbone.named_parameters()}
        lrs: dict[str, list[float]] = {}
        for group in optimizer.param_groups:
            for p in group["params"]:
                lrs[theirs_to_ours[index[id(p)]]] = [group["lr"], group["weight_decay"]]
        out[case] = {"lr_scales": spec["lr_scales"], "param_dicts": spec["param_dicts"],
                     "groups": lrs}  # fmt: skip
        print(f"{case}: {len(lrs)} parameters, lrs {sorted({v[0] for v in lrs.values()})}")
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
