"""Point Transformer V3: ours against Pointcept's model file, same weights, same input.

Runs in the side environment of ``make bench-ptv3-oracle`` (torch, spconv 2.3.8's CPU wheel
with cumm, addict), never in the package. Pointcept is read from a checkout or a bare git
directory given on the command line; only the files the model needs are copied to a
temporary directory outside the repository, with stand-ins for the modules the model file
imports but does not use on this path (``torch_scatter.segment_csr`` on
``torch.segment_reduce``, timm's ``DropPath`` as identity: evaluation; Pointcept's registry,
PDNorm and hook base). spconv's CPU kernels refuse a fused bias, which its
evaluation path uses, so its convolutions run in training mode (same result; the BatchNorms
stay in evaluation mode). The official model runs with ``enable_flash=False`` (plain attention)
and ``shuffle_orders=False`` (also set on its pooling layers, which otherwise shuffle the
orders at every level even in evaluation); on one cloud, or on clouds of at least ``patch_size`` voxels at
every level, its patching equals the flash patching ours follows.

Prints: serialisation codes equal or not (4 orders, depths 1-16), the parameter counts of
both models (segmentation and classification), and the max abs difference of the outputs.

spconv 2.3.8's CPU submanifold convolution is not deterministic with several OpenMP
threads: now and then one output site is wrong (seen on a 3x3x3 conv of 5,739 sites, once
in four calls, by up to 0.4 against dense ``conv3d``); one thread avoids it, so this script
sets ``OMP_NUM_THREADS=1`` before anything loads.

    .venv-ptv3/bin/python benchmarks/ptv3_oracle.py --pointcept /path/to/Pointcept
"""

from __future__ import annotations

import argparse
import os

os.environ["OMP_NUM_THREADS"] = "1"  # spconv's CPU map building races with more threads

import subprocess
import sys
import tempfile
import types
from pathlib import Path
from typing import Any

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FILES = [
    "pointcept/models/modules.py",
    "pointcept/models/utils/misc.py",
    "pointcept/models/utils/structure.py",
    "pointcept/models/utils/serialization/__init__.py",
    "pointcept/models/utils/serialization/default.py",
    "pointcept/models/utils/serialization/z_order.py",
    "pointcept/models/utils/serialization/hilbert.py",
    "pointcept/models/point_transformer_v3/point_transformer_v3m1_base.py",
]
STANDINS = {
    "pointcept/__init__.py": "",
    "pointcept/engines/__init__.py": "",
    "pointcept/engines/hooks.py": "class HookBase:\n    pass\n",
    "pointcept/models/__init__.py": "",
    "pointcept/models/builder.py": (
        "class _Registry:\n"
        "    def register_module(self, name=None):\n"
        "        return lambda cls: cls\n"
        "MODELS = _Registry()\n"
    ),
    "pointcept/models/point_prompt_training.py": "PDNorm = None\n",
    "pointcept/models/point_transformer_v3/__init__.py": "",
    "pointcept/models/utils/__init__.py": (
        "from .misc import offset2batch, offset2bincount, bincount2offset, batch2offset\n"
        "from .serialization import encode, decode\n"
    ),
}


def _read(src: Path, rel: str) -> str:
    if (src / rel).exists():
        return (src / rel).read_text()
    out = subprocess.run(
        ["git", "--git-dir", str(src), "show", f"HEAD:{rel}"], capture_output=True, text=True
    )
    if out.returncode:
        raise SystemExit(f"cannot read {rel} from {src}: {out.stderr.strip()}")
    return out.stdout


def load_official(src: Path) -> types.ModuleType:
    """Pointcept's PT-v3m1 module, imported from a temporary copy of the files it needs."""
    tmp = Path(tempfile.mkdtemp(prefix="pointcept-"))
    for rel in FILES:
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_text(_read(src, rel))
    for rel, text in STANDINS.items():
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_text(text)
    scatter = types.ModuleType("torch_scatter")

    def segment_csr(src: torch.Tensor, indptr: torch.Tensor, reduce: str = "sum") -> torch.Tensor:
        return torch.segment_reduce(src, reduce, offsets=indptr, axis=0)

    scatter.segment_csr = segment_csr  # type: ignore[attr-defined]
    timm = types.ModuleType("timm")
    layers = types.ModuleType("timm.layers")

    class DropPath(nn.Identity):
        def __init__(self, p: float = 0.0) -> None:
            super().__init__()

    layers.DropPath = DropPath  # type: ignore[attr-defined]
    sys.modules.update({"torch_scatter": scatter, "timm": timm, "timm.layers": layers})
    sys.path.insert(0, str(tmp))
    import pointcept.models.point_transformer_v3.point_transformer_v3m1_base as official

    return official


def check_codes() -> bool:
    from pointcept.models.utils.serialization import encode as theirs

    from lightning_pc.nn.serialization import ORDERS, encode

    g = torch.Generator().manual_seed(0)
    ok = True
    for depth in range(1, 17):
        grid = torch.randint(0, 1 << depth, (4000, 3), generator=g)
        batch = torch.randint(0, 5, (4000,), generator=g).sort().values
        for order in ORDERS:
            ok &= bool(
                torch.equal(encode(grid, batch, depth, order), theirs(grid, batch, depth, order))
            )
    return ok


def conv_weight(w: torch.Tensor) -> torch.Tensor:
    """spconv ``[C_out, kx, ky, kz, C_in]`` -> ours ``[K, C_in, C_out]`` (x slowest)."""
    return w.permute(1, 2, 3, 4, 0).reshape(-1, w.size(4), w.size(0))


def map_backbone(
    theirs: dict[str, torch.Tensor], n: int, enc_mode: bool
) -> dict[str, torch.Tensor]:
    """Pointcept backbone state dict -> ours (``backbone.`` prefix)."""
    out: dict[str, torch.Tensor] = {}
    for k, v in theirs.items():
        p = k.split(".")
        if p[0] == "embedding":
            key = "embedding.conv.weight" if p[2] == "conv" else "embedding.norm.norm." + p[-1]
            v = conv_weight(v) if p[2] == "conv" else v
        elif p[0] == "enc":
            s = int(p[1][3:])
            if p[2] == "down":
                key = f"down.{s - 1}." + ("proj." if p[3] == "proj" else "norm.norm.") + p[-1]
            else:
                key = f"enc.{s}.{int(p[2][5:])}." + _block_key(p[3:])
                v = conv_weight(v) if key.endswith("cpe.conv.weight") else v
        elif p[0] == "dec":
            j = n - 2 - int(p[1][3:])
            if p[2] == "up":
                head = "proj" if p[3] == "proj" else "proj_skip"
                key = f"up.{j}.{head}." if p[4] == "0" else f"up.{j}.{head}_norm.norm."
                key += p[-1]
            else:
                key = f"dec.{j}.{int(p[2][5:])}." + _block_key(p[3:])
                v = conv_weight(v) if key.endswith("cpe.conv.weight") else v
        else:
            raise KeyError(k)
        out["backbone." + key] = v
    return out


def _block_key(p: list[str]) -> str:
    if p[0] == "cpe":
        return "cpe." + {"0": "conv", "1": "linear", "2": "norm"}[p[1]] + "." + p[-1]
    if p[0] in ("norm1", "norm2"):
        return f"{p[0]}.{p[-1]}"
    if p[0] == "attn":
        return ".".join(p)
    if p[0] == "mlp":
        return f"mlp.{p[2]}.{p[-1]}"
    raise KeyError(".".join(p))


def make_input(clouds: list[int], seed: int, in_channels: int) -> object:
    from torch_geometric.data import Batch, Data

    g = torch.Generator().manual_seed(seed)
    data = []
    for n in clouds:  # room-like: points on the faces of a box plus clutter
        pos = torch.rand(n, 3, generator=g) * torch.tensor([3.0, 2.5, 1.5])
        face = torch.randint(0, 3, (n // 2,), generator=g)
        pos[torch.arange(n // 2), face] = 0.0
        data.append(Data(pos=pos, x=torch.rand(n, in_channels, generator=g)))
    return Batch.from_data_list(data)


def official_input(x: Any) -> dict[str, torch.Tensor]:
    sp = x.sparse_tensor()
    batch = sp.coords[:, 0]
    return {
        "coord": sp.feats[:, :3].clone(),
        "grid_coord": sp.coords[:, 1:].int().clone(),
        "feat": sp.feats.clone(),
        "offset": torch.cumsum(torch.bincount(batch, minlength=x.num_clouds), 0),
    }


def compare(
    official: types.ModuleType, clouds: list[int], patch: int, seed: int
) -> dict[str, float]:
    from lightning_pc.models.ptv3 import PTv3, PTv3Cls, ptv3_input

    torch.manual_seed(seed)
    kw = dict(enc_patch_size=(patch,) * 5, dec_patch_size=(patch,) * 4, shuffle_orders=False)
    res: dict[str, float] = {}
    for enc_mode in (False, True):
        ref = official.PointTransformerV3(
            in_channels=6, order=("z", "z-trans", "hilbert", "hilbert-trans"), enable_flash=False,
            upcast_attention=False, upcast_softmax=False, enc_mode=enc_mode, **kw,
        ).eval()  # fmt: skip
        for m in ref.modules():
            if type(m).__name__ == "SubMConv3d":
                m.train()  # spconv's CPU kernels add a bias only on the training path
            if type(m).__name__ == "SerializedPooling":
                m.shuffle_orders = False  # Pointcept's pooling always shuffles, eval included
        for m in ref.modules():  # non-trivial BatchNorm statistics
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.data.uniform_(0.5, 1.5)
                m.bias.data.uniform_(-0.5, 0.5)
        ours: nn.Module
        if enc_mode:
            ours = PTv3Cls(num_classes=40, in_channels=3, grid_size=0.02, **kw).eval()
            head = nn.Sequential(
                nn.Linear(512, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Dropout(0.5),
                nn.Linear(256, 128), nn.BatchNorm1d(128), nn.ReLU(), nn.Dropout(0.5),
                nn.Linear(128, 40),
            ).eval()  # fmt: skip
            # Pointcept's Linear, BN, ReLU, Dropout per hidden layer -> our ClassificationHead:
            # LinearBNAct (lin, norm), Dropout per hidden layer, then the classifier
            names = {"0": "0.lin", "1": "0.norm", "4": "2.lin", "5": "2.norm", "8": "4"}
        else:
            ours = PTv3(num_classes=13, in_channels=3, grid_size=0.02, **kw).eval()
            head = nn.Linear(64, 13)
            names = {}
        state = map_backbone(ref.state_dict(), 5, enc_mode)
        for k, v in head.state_dict().items():
            i, leaf = k.split(".", 1) if names else ("", k)
            state["head." + ((names[i] + "." + leaf) if names else "0." + leaf)] = v
        missing = ours.load_state_dict(state, strict=True)
        assert not missing.missing_keys and not missing.unexpected_keys
        n_ref = sum(p.numel() for p in ref.parameters()) + sum(p.numel() for p in head.parameters())
        n_ours = sum(p.numel() for p in ours.parameters())
        tag = "cls" if enc_mode else "seg"
        res[f"params_{tag}_official"] = n_ref
        res[f"params_{tag}_ours"] = n_ours
        data = make_input(clouds, seed, 3)
        with torch.no_grad():
            x = ptv3_input(data, 3, 0.02)
            point = ref(official_input(x))
            mine = ours(data)  # our backbone voxelises ``data`` as ``x`` itself
            if enc_mode:
                offset = nn.functional.pad(point.offset, (1, 0))
                theirs = head(torch.segment_reduce(point.feat, "mean", offsets=offset, axis=0))
            else:
                theirs = head(point.feat)[x.inverse]
        res[f"maxdiff_{tag}"] = float((theirs - mine).abs().max())
        res[f"maxabs_{tag}"] = float(theirs.abs().max())
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pointcept", type=Path, required=True, help="checkout or bare git dir")
    args = ap.parse_args()
    official = load_official(args.pointcept)
    torch.set_num_threads(1)
    print(f"serialisation codes equal (4 orders, depths 1-16): {check_codes()}")
    cases = [([6000], 1024, 0), ([5000, 4000], 48, 1)]
    print("| clouds (points) | patch | params seg (official / ours) | params cls (official / "
          "ours) | max abs diff seg | max abs diff cls | max abs logit |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for clouds, patch, seed in cases:
        r = compare(official, clouds, patch, seed)
        print(
            f"| {clouds} | {patch} | {r['params_seg_official']:,} / {r['params_seg_ours']:,} | "
            f"{r['params_cls_official']:,} / {r['params_cls_ours']:,} | {r['maxdiff_seg']:.2e} | "
            f"{r['maxdiff_cls']:.2e} | {max(r['maxabs_seg'], r['maxabs_cls']):.2f} |"
        )


if __name__ == "__main__":
    main()
