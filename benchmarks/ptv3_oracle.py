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

Prints: serialisation codes equal or not (4 orders, depths 1-16); our default PTv3 against
the current model file (segmentation and classification); then, for each released PT-v3m1
checkpoint's architecture (:data:`lightning_pc.models.ptv3.PRESETS`, checked equal to the
backbone of Pointcept's config read from the mirror at ``v1.5.1``), our preset against the
v1.5.1 model file that trained the weights (``legacy=True``; ``legacy=False`` beside it, to
show the switch matters) and against the current file (``legacy=False``). Each row gives the
parameter counts of both models (head included) and the max abs difference of the logits.
RPE tables are drawn from U(-1, 1) instead of their 0.02-std initialisation, so that the
relative position encoding moves the logits (a row with our tables zeroed shows it does).
Last, Pointcept's ``GridSample(mode="test")`` (its ``datasets/transform.py``, loaded alone)
against :mod:`lightning_pc.nn.grid_sample` on one scan: grid coordinates, fragment count,
one point of every voxel per fragment, and how often both pick the same point.

The key map from Pointcept's backbone state dict to ours is :func:`map_backbone`, the
package's :func:`lightning_pc.models.pointcept_keys.ptv3m1_to_ours` (the released
checkpoints' map; spconv kernels ``[C_out, kx, ky, kz, C_in]`` to ours ``[K, C_in, C_out]``).

spconv 2.3.8's CPU submanifold convolution is not deterministic with several OpenMP
threads: now and then one output site is wrong (seen on a 3x3x3 conv of 5,739 sites, once
in four calls, by up to 0.4 against dense ``conv3d``); one thread avoids it, so this script
sets ``OMP_NUM_THREADS=1`` before anything loads.

    .venv-ptv3/bin/python benchmarks/ptv3_oracle.py --pointcept /path/to/Pointcept

The side environment needs no torch_geometric: inputs are :class:`lightning_pc.nn.point.Point`.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import os

os.environ["OMP_NUM_THREADS"] = "1"  # spconv's CPU map building races with more threads

import sys
import tempfile
import types
from pathlib import Path
from typing import Any

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import pointcept_files  # noqa: E402
from lightning_pc.models.pointcept_keys import ptv3m1_to_ours  # noqa: E402

FILES = [
    *pointcept_files.POINTCEPT_FILES,
    "pointcept/models/point_transformer_v3/point_transformer_v3m1_base.py",
]


_LOADED: list[str] = []


def load_official(src: Path, rev: str = "HEAD") -> types.ModuleType:
    """Pointcept's PT-v3m1 module at ``rev``, imported from a temporary copy of the files it
    needs (a second call, at another revision, imports a second copy beside the first)."""
    for name in [m for m in sys.modules if m == "pointcept" or m.startswith("pointcept.")]:
        del sys.modules[name]  # the copy loaded before keeps its own module objects
    for path in _LOADED:
        if path in sys.path:
            sys.path.remove(path)
    tmp = Path(tempfile.mkdtemp(prefix=f"pointcept-{rev}-"))
    pointcept_files.copy_files(src, tmp, FILES, pointcept_files.POINTCEPT_STANDINS, rev)
    pointcept_files.install_standins()
    sys.path.insert(0, str(tmp))
    _LOADED.append(str(tmp))
    import pointcept.models.point_transformer_v3.point_transformer_v3m1_base as official

    return official


def config_backbone(src: Path, rel: str, rev: str) -> dict[str, Any]:
    """The ``backbone`` dict and ``num_classes`` of a Pointcept config, read without running
    it (``ast``: the configs import Pointcept's dataset constants)."""
    tree = ast.parse(pointcept_files.read_file(src, rel, rev))

    def lit(node: ast.expr) -> Any:
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "dict":
            return {k.arg: lit(k.value) for k in node.keywords}
        return ast.literal_eval(node)

    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "model":
            assert isinstance(node.value, ast.Call)
            model = {k.arg: k.value for k in node.value.keywords}
            out = lit(model["backbone"])
            out["num_classes"] = lit(model["num_classes"])
            return out
    raise SystemExit(f"no model = dict(...) in {rel}")


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


def map_backbone(theirs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Pointcept backbone state dict -> ours (``backbone.`` prefix), through the package's
    PT-v3m1 key map; a key it cannot place raises ``KeyError``."""
    out = ptv3m1_to_ours({"backbone." + k: v for k, v in theirs.items()})
    unknown = [k[1:] for k in out if k.startswith("?")]
    if unknown:
        raise KeyError(f"no place for {unknown}")
    return out


def make_input(clouds: list[int], seed: int, in_channels: int) -> Any:
    from lightning_pc.nn.point import Point

    g = torch.Generator().manual_seed(seed)
    pos, x, batch = [], [], []
    for b, n in enumerate(clouds):  # room-like: points on the faces of a box plus clutter
        p = torch.rand(n, 3, generator=g) * torch.tensor([3.0, 2.5, 1.5])
        face = torch.randint(0, 3, (n // 2,), generator=g)
        p[torch.arange(n // 2), face] = 0.0
        pos.append(p)
        x.append(torch.rand(n, in_channels, generator=g) * 2 - 1)
        batch.append(torch.full((n,), b, dtype=torch.long))
    return Point(torch.cat(pos), torch.cat(x), torch.cat(batch))


def official_input(x: Any, stem_xyz: bool = True) -> dict[str, torch.Tensor]:
    """Pointcept's input dict for our voxels ``x`` (``feat``: coordinates and features, or
    the features alone)."""
    sp = x.sparse_tensor()
    batch = sp.coords[:, 0]
    return {
        "coord": x.pos.clone(),
        "grid_coord": sp.coords[:, 1:].int().clone(),
        "feat": (sp.feats if stem_xyz else x.x).clone(),
        "offset": torch.cumsum(torch.bincount(batch, minlength=x.num_clouds), 0),
    }


def prepare_official(ref: nn.Module) -> nn.Module:
    """Evaluation mode with spconv's training path, no shuffles, non-trivial statistics."""
    pointcept_files.cpu_eval(ref, "SerializedPooling")
    for m in ref.modules():
        if type(m).__name__ == "RPE":
            m.rpe_table.data.uniform_(-1.0, 1.0)  # a bias that moves the logits
    for m in ref.modules():  # non-trivial BatchNorm statistics
        if isinstance(m, nn.BatchNorm1d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    return ref


def official_kwargs(
    official: types.ModuleType, kw: dict[str, Any], enc_mode: bool
) -> dict[str, Any]:
    """``kw`` for this revision's constructor (``cls_mode`` in v1.5.1, ``enc_mode`` after)."""
    params = inspect.signature(official.PointTransformerV3).parameters
    out = {k: v for k, v in kw.items() if k in params}
    out["enc_mode" if "enc_mode" in params else "cls_mode"] = enc_mode
    return out


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
        )  # fmt: skip
        prepare_official(ref)
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
        state = map_backbone(ref.state_dict())
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


CONFIGS = {  # preset -> config file at v1.5.1 (the s3dis one was renamed -1-rpe in v1.5.2)
    "scannet-semseg-pt-v3m1-0-base": "configs/scannet/semseg-pt-v3m1-0-base.py",
    "scannet200-semseg-pt-v3m1-0-base": "configs/scannet200/semseg-pt-v3m1-0-base.py",
    "s3dis-semseg-pt-v3m1-0-rpe": "configs/s3dis/semseg-pt-v3m1-0-rpe.py",
}
ARCH_KEYS = [
    "in_channels", "order", "stride", "enc_depths", "enc_channels", "enc_num_head",
    "enc_patch_size", "dec_depths", "dec_channels", "dec_num_head", "dec_patch_size",
    "mlp_ratio", "qkv_bias", "qk_scale", "attn_drop", "proj_drop", "drop_path", "pre_norm",
    "shuffle_orders", "enable_rpe", "num_classes",
]  # fmt: skip


def preset_matches_config(name: str, cfg: dict[str, Any]) -> bool:
    from lightning_pc.models.ptv3 import PRESETS

    def norm(v: Any) -> Any:
        return list(v) if isinstance(v, list | tuple) else v

    preset = PRESETS[name]
    assert not any(cfg.get(k) for k in ("pdnorm_bn", "pdnorm_ln", "cls_mode", "enc_mode"))
    return all(norm(preset[k]) == norm(cfg[k]) for k in ARCH_KEYS) and not preset["stem_xyz"]


def compare_preset(
    official: types.ModuleType,
    name: str,
    cfg: dict[str, Any],
    points: int,
    seed: int,
    legacy: bool,
    zero_rpe: bool = False,
) -> dict[str, float]:
    """Our preset ``name`` (``legacy`` as given) against ``official`` built from the
    config's backbone, on one cloud (Pointcept tests one fragment at a time)."""
    from lightning_pc.models.ptv3 import ptv3_input, ptv3_preset

    torch.manual_seed(seed)
    kw = dict(cfg, enable_flash=False, shuffle_orders=False)  # flash-attn needs CUDA
    ref = prepare_official(official.PointTransformerV3(**official_kwargs(official, kw, False)))
    head = nn.Linear(64, cfg["num_classes"])
    ours = ptv3_preset(name, shuffle_orders=False, legacy=legacy).eval()
    state = map_backbone(ref.state_dict())
    state.update({"head.0." + k: v for k, v in head.state_dict().items()})
    result = ours.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    if zero_rpe:  # to show that the encoding moves the logits
        for key, value in ours.state_dict().items():
            if key.endswith("rpe_table"):
                value.zero_()
    data = make_input([points], seed, cfg["in_channels"])
    with torch.no_grad():
        x = ptv3_input(data, cfg["in_channels"], 0.02, "pointcept")
        theirs = head(ref(official_input(x, stem_xyz=False)).feat)[x.inverse]
        mine = ours(data)
    return {
        "params_official": sum(p.numel() for p in [*ref.parameters(), *head.parameters()]),
        "params_ours": sum(p.numel() for p in ours.parameters()),
        "maxdiff": float((theirs - mine).abs().max()),
        "maxabs": float(theirs.abs().max()),
    }


def load_grid_sample(src: Path) -> Any:
    """Pointcept's ``GridSample`` (current ``datasets/transform.py``, loaded alone, with
    stand-ins for the imports its other transforms use)."""
    import importlib.util

    tmp = Path(tempfile.mkdtemp(prefix="pointcept-transform-"))
    (tmp / "transform.py").write_text(
        pointcept_files.read_file(src, "pointcept/datasets/transform.py")
    )
    registry = types.ModuleType("pointcept.utils.registry")

    class Registry:
        def __init__(self, name: str) -> None:
            pass

        def register_module(self, name: Any = None, **kw: Any) -> Any:
            return lambda cls: cls

    registry.Registry = Registry  # type: ignore[attr-defined]
    tv = types.ModuleType("torchvision")
    tv.transforms = None  # type: ignore[attr-defined]
    stubs = {"pointcept.utils": types.ModuleType("pointcept.utils"), "pointcept.utils.registry": registry,
             "torchvision": tv}  # fmt: skip
    for name in ("scipy", "scipy.ndimage", "scipy.interpolate"):
        stubs[name] = types.ModuleType(name)
    sys.modules.update(stubs)
    spec = importlib.util.spec_from_file_location("pointcept_transform", tmp / "transform.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.GridSample


def check_fragments(grid_sample: Any, points: int, seed: int) -> dict[str, Any]:
    """Pointcept's ``GridSample(mode="test")`` against ours (``pointcept_grid``,
    ``grid_fragments``) on one scan of ``points`` points at 0.05."""
    import numpy as np

    from lightning_pc.nn.grid_sample import grid_fragments, pointcept_grid

    data = make_input([points], seed, 3)
    pos = data.pos - data.pos.mean(0)  # CenterShift: negative coordinates too
    parts = grid_sample(grid_size=0.05, hash_type="fnv", mode="test", return_grid_coord=True)(
        {"coord": pos.numpy(), "color": data.x.numpy()}
    )
    grid = pointcept_grid(pos, torch.zeros(points, dtype=torch.long), 1, 0.05)
    frags = grid_fragments(grid)
    grid_equal = all(np.array_equal(p["grid_coord"], grid[p["index"]].numpy()) for p in parts)
    voxel = torch.unique(grid, dim=0, return_inverse=True)[1]
    same_voxels = len(parts) == len(frags) and all(
        sorted(voxel[p["index"]].tolist()) == sorted(voxel[f].tolist()) == list(range(int(voxel.max()) + 1))
        for p, f in zip(parts, frags)
    )  # fmt: skip
    theirs = {(i, int(voxel[j])): int(j) for i, p in enumerate(parts) for j in p["index"]}
    ours = {(i, int(voxel[j])): int(j) for i, f in enumerate(frags) for j in f}
    return {
        "fragments": (len(parts), len(frags)),
        "voxels": int(voxel.max()) + 1,
        "grid_equal": grid_equal,
        "one_per_voxel": same_voxels,
        "same_pick": sum(theirs[k] == ours[k] for k in ours) / len(ours),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pointcept", type=Path, required=True, help="checkout or git dir")
    ap.add_argument("--points", type=int, default=6000, help="points of the preset clouds")
    args = ap.parse_args()
    torch.set_num_threads(1)
    configs = {n: config_backbone(args.pointcept, rel, "v1.5.1") for n, rel in CONFIGS.items()}
    head = load_official(args.pointcept, "HEAD")
    print(f"serialisation codes equal (4 orders, depths 1-16): {check_codes()}")
    print("\nOur default PTv3 (stem: xyz + 3 features) against the current model file")
    print("| clouds (points) | patch | params seg (official / ours) | params cls (official / "
          "ours) | max abs diff seg | max abs diff cls | max abs logit |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for clouds, patch, seed in [([6000], 1024, 0), ([5000, 4000], 48, 1)]:
        r = compare(head, clouds, patch, seed)
        print(
            f"| {clouds} | {patch} | {r['params_seg_official']:,} / {r['params_seg_ours']:,} | "
            f"{r['params_cls_official']:,} / {r['params_cls_ours']:,} | {r['maxdiff_seg']:.2e} | "
            f"{r['maxdiff_cls']:.2e} | {max(r['maxabs_seg'], r['maxabs_cls']):.2f} |"
        )
    v151 = load_official(args.pointcept, "v1.5.1")
    print(f"\nReleased PT-v3m1 checkpoints' architectures, one cloud of {args.points} points")
    print("| preset | equals config (v1.5.1) | Pointcept file | ours | params (official / ours) "
          "| max abs diff | max abs logit |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for name, cfg in configs.items():
        same = preset_matches_config(name, cfg)
        runs = [("v1.5.1", v151, True, False), ("v1.5.1", v151, False, False)]
        if cfg["enable_rpe"]:
            runs.append(("v1.5.1", v151, True, True))
        for label, official, legacy, zero in [*runs, ("HEAD", head, False, False)]:
            r = compare_preset(official, name, cfg, args.points, 2, legacy, zero)
            ours = f"legacy={legacy}" + (", RPE tables zeroed" if zero else "")
            print(
                f"| {name} | {same} | {label} | {ours} | {r['params_official']:,} / "
                f"{r['params_ours']:,} | {r['maxdiff']:.2e} | {r['maxabs']:.2f} |"
            )
    r = check_fragments(load_grid_sample(args.pointcept), 20000, 3)
    print(
        f"\nGridSample(mode='test') at 0.05 on 20000 points, {r['voxels']} voxels: fragments "
        f"(Pointcept / ours) {r['fragments'][0]} / {r['fragments'][1]}; grid_coord equal: "
        f"{r['grid_equal']}; each fragment one point of every voxel, both: {r['one_per_voxel']}; "
        f"same point picked per (fragment, voxel): {r['same_pick']:.1%} (Pointcept orders a "
        "voxel's points by numpy's unstable argsort, ours by input order)"
    )


if __name__ == "__main__":
    main()
