"""Sonata / Concerto / Utonia encoders: ours against the official model files, same weights.

Runs in the side environment of ``benchmarks/ptv3_oracle.py`` (torch, spconv 2.3.8's CPU
wheel with cumm, addict), never in the package. The official files are read from bare git
directories (or checkouts) given on the command line and copied to a temporary directory
outside the repository, with stand-ins for what they import but do not use on this path
(``torch_scatter.segment_csr`` on ``torch.segment_reduce``, timm's ``DropPath`` as identity,
Pointcept's registry and hook base, ``huggingface_hub`` and ``packaging`` for the
standalone ``sonata`` package). As in ``ptv3_oracle.py``: spconv's convolutions run in training mode on CPU (its
CPU kernels add a bias only there; same result), the official models run without flash
attention (``enable_flash=False``: its patches equal the flash patching ours follows on one
cloud, or on clouds of at least ``patch_size`` voxels at every level) and without order
shuffling (also switched off on their pooling layers, which shuffle in evaluation too), and
``OMP_NUM_THREADS=1`` (spconv's CPU map building races with more threads).

Stage 1 (oracle): for each preset (Pointcept's PT-v3m2 for Sonata / Concerto, PT-v3m3 for
Utonia, and the standalone ``sonata`` package's model for Sonata base when given), build the
official encoder with random weights (LayerNorm affine terms and the mask token randomised
too), load its state dict into ours through
:func:`lightning_pc.models.sonata.convert_pointcept_state_dict` (strict), and compare the
upcast per-voxel features (Pointcept's ``DefaultSegmentorV2`` walk over ``pooling_parent``)
and the logits of a shared linear head on a room-like cloud with colours and normals.
Prints parameter counts and max abs differences; exits non-zero when a difference exceeds
``--tol``.

Stage 2 (``--speed``): evaluation forward of Sonata base on a ``--speed-points`` scan
(default 100,000) on CPU, ours and the official model (spconv CPU) alternating in this
process, median of ``--repeats``; then bf16 autocast of ours on the same scan (finite, max
abs difference to fp32). ``--ours-only --device cuda`` times ours alone in any environment
(no official files, no spconv).

    .venv-ptv3/bin/python benchmarks/sonata_oracle.py \
        --pointcept /path/to/Pointcept --sonata /path/to/sonata [--speed] [--quick]
    python benchmarks/sonata_oracle.py --ours-only --device cuda
"""

from __future__ import annotations

import argparse
import os

os.environ["OMP_NUM_THREADS"] = "1"  # spconv's CPU map building races with more threads

import statistics
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import pointcept_files  # noqa: E402

FILES = [
    *pointcept_files.POINTCEPT_FILES,
    "pointcept/models/point_transformer_v3/point_transformer_v3m2_sonata.py",
    "pointcept/models/point_transformer_v3/point_transformer_v3m3_utonia.py",
]
SONATA_FILES = [
    "sonata/model.py",
    "sonata/module.py",
    "sonata/structure.py",
    "sonata/utils.py",
    "sonata/serialization/__init__.py",
    "sonata/serialization/default.py",
    "sonata/serialization/z_order.py",
    "sonata/serialization/hilbert.py",
]
SONATA_STANDINS = {"sonata/__init__.py": ""}


def _standins() -> None:
    pointcept_files.install_standins()
    hub = types.ModuleType("huggingface_hub")

    class PyTorchModelHubMixin:
        pass

    hub.PyTorchModelHubMixin = PyTorchModelHubMixin  # type: ignore[attr-defined]
    hub.hf_hub_download = None  # type: ignore[attr-defined]
    packaging = types.ModuleType("packaging")  # the standalone loader's version check
    version = types.ModuleType("packaging.version")
    version.parse = str  # type: ignore[attr-defined]
    packaging.version = version  # type: ignore[attr-defined]
    sys.modules["huggingface_hub"] = hub
    sys.modules.setdefault("packaging", packaging)
    sys.modules.setdefault("packaging.version", version)


def load_official(pointcept: Path, sonata: Path | None) -> dict[str, Any]:
    """The official model classes: ``m2``, ``m3`` (Pointcept) and ``sonata`` (standalone)."""
    tmp = Path(tempfile.mkdtemp(prefix="sonata-oracle-"))
    pointcept_files.copy_files(pointcept, tmp, FILES, pointcept_files.POINTCEPT_STANDINS)
    if sonata is not None:
        pointcept_files.copy_files(sonata, tmp, SONATA_FILES, SONATA_STANDINS)
    _standins()
    sys.path.insert(0, str(tmp))
    from pointcept.models.point_transformer_v3 import point_transformer_v3m2_sonata as m2
    from pointcept.models.point_transformer_v3 import point_transformer_v3m3_utonia as m3

    out: dict[str, Any] = {"m2": m2.PointTransformerV3, "m3": m3.PointTransformerV3}
    if sonata is not None:
        import sonata.model as standalone

        out["sonata"] = standalone.PointTransformerV3
    return out


def room(sizes: list[int], seed: int) -> Any:
    """Room-like clouds of ``sizes`` points (points on the faces of a box plus clutter,
    colours in [0, 1] and unit normals: ``x`` [N, 6]), packed in one :class:`Point`."""
    from lightning_pc.nn.point import Point

    g = torch.Generator().manual_seed(seed)
    pos, x, batch = [], [], []
    for b, n in enumerate(sizes):
        p = torch.rand(n, 3, generator=g) * torch.tensor([4.0, 3.0, 2.5])
        face = torch.randint(0, 3, (n // 2,), generator=g)
        p[torch.arange(n // 2), face] = 0.0
        pos.append(p + torch.tensor([10.0, -3.0, 0.7]) * (b + 1))  # not centred
        normal = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=1)
        x.append(torch.cat([torch.rand(n, 3, generator=g), normal], 1))
        batch.append(torch.full((n,), b))
    return Point(torch.cat(pos), torch.cat(x), torch.cat(batch))


def randomise(model: nn.Module, seed: int) -> None:
    """Weights with non-trivial activations (Pointcept's init has std 0.02 everywhere)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1 and ("norm" in name or name.endswith("gamma")):
                p.copy_(torch.rand(p.shape, generator=g) + 0.5 if name.endswith("weight")
                        else torch.rand(p.shape, generator=g) - 0.5)  # fmt: skip
            elif name.endswith("bias"):
                p.copy_((torch.rand(p.shape, generator=g) - 0.5) * 0.2)
            else:
                fan_in = p[0].numel() if p.dim() > 1 else p.numel()
                p.copy_(torch.randn(p.shape, generator=g) / fan_in**0.5)


def official_input(level: Any) -> dict[str, torch.Tensor]:
    counts = torch.bincount(level.batch, minlength=level.num_clouds)
    return {
        "coord": level.pos.clone(),
        "grid_coord": level.grid_coord.int().clone(),
        "feat": level.pos_x.clone(),
        "offset": torch.cumsum(counts, 0),
        "grid_size": torch.tensor(level.grid_size),
    }


def official_features(ref: nn.Module, data: dict[str, torch.Tensor]) -> torch.Tensor:
    """Pointcept's ``DefaultSegmentorV2`` walk: concatenate every level down to the finest."""
    point = ref(data)
    while "pooling_parent" in point.keys():
        parent = point.pop("pooling_parent")
        inverse = point.pop("pooling_inverse")
        parent.feat = torch.cat([parent.feat, point.feat[inverse]], dim=-1)
        point = parent
    return point.feat  # type: ignore[no-any-return]


def prepare(ref: nn.Module) -> nn.Module:
    return pointcept_files.cpu_eval(ref, "GridPooling")


def official_config(preset: str, patch: int) -> dict[str, Any]:
    from lightning_pc.models.sonata import PRESETS

    p = PRESETS[preset]
    cfg = dict(
        in_channels=9, order=("z", "z-trans", "hilbert", "hilbert-trans"),
        stride=(2, 2, 2, 2), enc_depths=p["enc_depths"], enc_channels=p["enc_channels"],
        enc_num_head=p["enc_num_head"], enc_patch_size=(patch,) * 5, mlp_ratio=4,
        drop_path=0.0, shuffle_orders=False, enable_flash=False, upcast_attention=False,
        upcast_softmax=False, enc_mode=True, mask_token=True,
    )  # fmt: skip
    if "rope_base" in p:
        cfg.update(rope_base=p["rope_base"], jitter_coords=1.1, rescale_coords=1.2)
    return cfg


def compare(official: dict[str, Any], preset: str, kind: str, sizes: list[int], patch: int) -> dict:
    # the registry's builder, not create_model: the cards import lightning, absent here
    from lightning_pc.models.registry import build as create_model
    from lightning_pc.models.sonata import convert_pointcept_state_dict

    cfg = official_config(preset, patch)
    if kind == "sonata":  # the standalone package's model: no RoPE arguments
        cfg = {k: v for k, v in cfg.items() if k not in ("rope_base", "jitter_coords",
                                                         "rescale_coords")}  # fmt: skip
    torch.manual_seed(0)
    ref = official[kind](**cfg)
    randomise(ref, 1)
    prepare(ref)
    head = nn.Linear(sum(cfg["enc_channels"]), 20)
    ours = create_model(
        preset, num_classes=20, enc_patch_size=[patch] * 5, mask_token=True, drop_path=0.0,
        voxel_reduce="mean",
    ).eval()  # fmt: skip
    state = dict(ref.state_dict())
    state.update({f"seg_head.{k}": v for k, v in head.state_dict().items()})
    res = ours.load_state_dict(convert_pointcept_state_dict(state), strict=True)
    assert not res.missing_keys and not res.unexpected_keys
    cloud = room(sizes, 2)
    with torch.no_grad():
        level = ours.backbone.voxels(cloud)
        theirs = official_features(ref, official_input(level))
        mine = ours.backbone(cloud).x
        logits_theirs = head(theirs)[level.inverse]
        logits_mine = ours(cloud)
    n_ref = sum(p.numel() for p in ref.parameters()) + sum(p.numel() for p in head.parameters())
    return {
        "params_official": n_ref,
        "params_ours": sum(p.numel() for p in ours.parameters()),
        "voxels": level.num_rows,
        "feat_diff": float((theirs - mine).abs().max()),
        "feat_max": float(theirs.abs().max()),
        "logit_diff": float((logits_theirs - logits_mine).abs().max()),
    }


CASES = [
    ("sonata_small", "m2"), ("sonata_base", "m2"), ("sonata_base", "sonata"),
    ("concerto_tiny", "m2"), ("concerto_small", "m2"), ("concerto_base", "m2"),
    ("concerto_large", "m2"), ("utonia_tiny", "m3"), ("utonia_small", "m3"),
    ("utonia_base", "m3"),
]  # fmt: skip


def oracle(official: dict[str, Any], n: int, patch: int, tol: float, quick: bool) -> bool:
    print(f"\n## Oracle: eval, CPU, one thread; one cloud of {n:,} points with patches of "
          f"{patch}, and two clouds with patches of 48 (tiny presets)\n")  # fmt: skip
    print("| preset | official file | clouds (points) | voxels | params (official / ours) | "
          "max abs diff features | max abs feature | max abs diff logits |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    ok = True
    two = [(p, k, [5000, 4000], 48) for p, k in (("concerto_tiny", "m2"), ("utonia_tiny", "m3"))]
    cases = [(p, k, [n], patch) for p, k in CASES if k in official]
    if quick:  # the batched cases first, then the tiny presets on one cloud
        cases = two + [c for c in cases if c[0] in ("concerto_tiny", "utonia_tiny")]
    else:
        cases += two
    for preset, kind, sizes, p in cases:
        r = compare(official, preset, kind, sizes, p)
        fname = {"m2": "PT-v3m2 (Pointcept)", "m3": "PT-v3m3 (Pointcept)",
                 "sonata": "sonata/model.py (standalone)"}[kind]  # fmt: skip
        print(
            f"| {preset} | {fname} | {sizes} | {r['voxels']:,} | {r['params_official']:,} / "
            f"{r['params_ours']:,} | {r['feat_diff']:.2e} | {r['feat_max']:.2f} | "
            f"{r['logit_diff']:.2e} |",
            flush=True,
        )
        ok &= r["params_official"] == r["params_ours"] and r["feat_diff"] <= tol
    return ok


def speed(official: dict[str, Any], n: int, repeats: int, device: str) -> None:
    """Sonata base eval forward on an ``n``-point scan: ours (``device``) and, when loaded,
    the official PT-v3m2 with spconv on CPU, alternating; then bf16 autocast of ours."""
    # the registry's builder, not create_model: the cards import lightning, absent here
    from lightning_pc.models.registry import build as create_model
    from lightning_pc.models.sonata import convert_pointcept_state_dict
    from lightning_pc.nn.point import Point

    threads = int(os.environ.get("SONATA_SPEED_THREADS", "1"))
    torch.set_num_threads(threads)
    dev = torch.device(device)
    torch.manual_seed(0)
    ref = None
    if "m2" in official:
        ref = prepare(official["m2"](**official_config("sonata_base", 1024)))
        with torch.device("meta"):  # no initialisation: the official weights are assigned
            ours = create_model("sonata_base", 20, mask_token=True, drop_path=0.0).eval()
        state = convert_pointcept_state_dict(ref.state_dict())
        state.update({f"head.0.{k}": v for k, v in nn.Linear(1232, 20).state_dict().items()})
        ours.load_state_dict(state, strict=True, assign=True)
    else:
        ours = create_model("sonata_base", 20, mask_token=True, drop_path=0.0).eval()
    ours.to(dev)
    g = torch.Generator().manual_seed(3)
    pos = torch.rand(n, 3, generator=g) * torch.tensor([8.0, 6.0, 3.0])
    face = torch.randint(0, 3, (n // 2,), generator=g)
    pos[torch.arange(n // 2), face] = 0.0  # walls and floor, clutter inside
    pos, x = pos.to(dev), torch.rand(n, 6, generator=g).to(dev)

    def run_ours(m: int = n) -> Any:
        out = ours.backbone(Point(pos[:m], x[:m]))  # new Point: voxelisation, maps included
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return out

    with torch.no_grad():
        level = ours.backbone.voxels(Point(pos, x))
    data = {k: v.cpu() for k, v in official_input(level).items()}
    print(f"\n## Speed: Sonata base eval forward, {n:,} points ({level.num_rows:,} voxels at "
          f"2 cm), ours on {device}, {threads} CPU thread(s), median of {repeats}\n")  # fmt: skip
    t_ours: list[float] = []
    t_ref: list[float] = []
    with torch.no_grad():  # no warm-up run (the load allows few runs): the median copes
        for i in range(repeats):
            t0 = time.perf_counter()
            fp32 = run_ours().x
            t_ours.append(time.perf_counter() - t0)
            print(f"repeat {i + 1}: ours {t_ours[-1]:.2f} s", end="", flush=True)
            if ref is not None:
                t0 = time.perf_counter()
                official_features(ref, {k: v.clone() for k, v in data.items()})
                t_ref.append(time.perf_counter() - t0)
                print(f", official {t_ref[-1]:.2f} s", end="", flush=True)
            print(f" (load average {os.getloadavg()[0]:.1f})", flush=True)
    print()
    print("| model | median s | all (s) |")
    print("|---|---|---|")
    mo = statistics.median(t_ours)
    print(f"| ours (pure PyTorch, {device}; centring and voxelisation included) | {mo:.2f} | "
          f"{', '.join(f'{t:.2f}' for t in t_ours)} |")  # fmt: skip
    if ref is not None:
        mr = statistics.median(t_ref)
        print(f"| official PT-v3m2 (spconv CPU, no flash; given voxels) | {mr:.2f} | "
              f"{', '.join(f'{t:.2f}' for t in t_ref)} |")  # fmt: skip
        print(f"\nratio official / ours: {mr / mo:.2f} (>1: ours faster)")
    with torch.no_grad():  # fp32: the last timed run's output
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            bf16 = run_ours().x
    diff = (bf16.float() - fp32).abs()
    print(f"bf16 autocast (ours, {device}): finite {bool(torch.isfinite(bf16).all())}, "
          f"max abs diff {float(diff.max()):.3f}, mean abs diff {float(diff.mean()):.4f}, "
          f"max abs feature {float(fp32.abs().max()):.2f}")  # fmt: skip
    print(f"load average: {os.getloadavg()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pointcept", type=Path, help="checkout or bare git dir")
    ap.add_argument("--sonata", type=Path, help="standalone sonata checkout or bare git dir")
    ap.add_argument("--points", type=int, default=6000, help="oracle cloud size")
    ap.add_argument("--patch", type=int, default=1024)
    ap.add_argument("--tol", type=float, default=1e-4, help="largest accepted feature diff")
    ap.add_argument("--quick", action="store_true", help="tiny presets only")
    ap.add_argument("--speed", action="store_true", help="also time Sonata base (stage 2)")
    ap.add_argument("--speed-points", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-oracle", action="store_true", help="speed stage only")
    ap.add_argument(
        "--ours-only",
        action="store_true",
        help="speed stage of ours alone (no official files, no spconv: any environment)",
    )
    ap.add_argument("--device", default="cpu", help="device of ours in the speed stage")
    args = ap.parse_args()
    if args.ours_only:
        args.speed, args.no_oracle = True, True
    elif args.pointcept is None:
        ap.error("--pointcept is required (or --ours-only)")
    official = {} if args.ours_only else load_official(args.pointcept, args.sonata)
    torch.set_num_threads(1)
    ok = True
    if not args.no_oracle:
        ok = oracle(official, args.points, args.patch, args.tol, args.quick)
        print(f"\nall equal within {args.tol:g} with equal parameter counts: {ok}")
    if args.speed:
        speed(official, args.speed_points, args.repeats, args.device)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
