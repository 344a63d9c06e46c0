"""Sonata / Concerto / Utonia encoders (``lightning_pc/models/sonata.py``,
``lightning_pc/nn/ptv3_encoder.py``): presets, the official key map, inputs, RoPE, upcast,
mask token, bf16. Equality with the official model files on shared weights is checked by
``benchmarks/sonata_oracle.py`` in the side environment (spconv); the last test runs its
quick stage when ``LIGHTNING_PC_ORACLE_PYTHON`` names that environment's python.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import torch

from lightning_pc.models import PointNetwork, create_model
from lightning_pc.models.sonata import (
    PRESETS,
    PTv3EncoderBackbone,
    backbone_kwargs_from_config,
    convert_pointcept_state_dict,
    to_pointcept_state_dict,
)
from lightning_pc.nn.point import Point
from lightning_pc.nn.ptv3_encoder import LinearEmbedding, RoPE3D, upcast

REPO = Path(__file__).resolve().parents[2]

# state_dict() of Pointcept's PT-v3m3 (point_transformer_v3m3_utonia.py) built with
# in_channels=5, order=("z", "hilbert"), stride=(2,), enc_depths=(1, 2), enc_channels=(6, 12),
# enc_num_head=(1, 2), enc_patch_size=(16, 16), enc_mode=True, mask_token=True,
# rope_base=10, layer_scale=0.5: keys and shapes, printed in the oracle's side environment
OFFICIAL_KEYS = """
embedding.mask_token (1, 6)
embedding.stem.linear.weight (6, 5)
embedding.stem.linear.bias (6,)
embedding.stem.norm.weight (6,)
embedding.stem.norm.bias (6,)
enc.enc0.block0.cpe.0.weight (6, 3, 3, 3, 6)
enc.enc0.block0.cpe.0.bias (6,)
enc.enc0.block0.cpe.1.weight (6, 6)
enc.enc0.block0.cpe.1.bias (6,)
enc.enc0.block0.cpe.2.weight (6,)
enc.enc0.block0.cpe.2.bias (6,)
enc.enc0.block0.norm1.0.weight (6,)
enc.enc0.block0.norm1.0.bias (6,)
enc.enc0.block0.ls1.0.gamma (6,)
enc.enc0.block0.attn.qkv.weight (18, 6)
enc.enc0.block0.attn.qkv.bias (18,)
enc.enc0.block0.attn.proj.weight (6, 6)
enc.enc0.block0.attn.proj.bias (6,)
enc.enc0.block0.attn.rope.inv_freq (1,)
enc.enc0.block0.norm2.0.weight (6,)
enc.enc0.block0.norm2.0.bias (6,)
enc.enc0.block0.ls2.0.gamma (6,)
enc.enc0.block0.mlp.0.fc1.weight (24, 6)
enc.enc0.block0.mlp.0.fc1.bias (24,)
enc.enc0.block0.mlp.0.fc2.weight (6, 24)
enc.enc0.block0.mlp.0.fc2.bias (6,)
enc.enc1.down.proj.weight (12, 6)
enc.enc1.down.proj.bias (12,)
enc.enc1.down.norm.0.weight (12,)
enc.enc1.down.norm.0.bias (12,)
enc.enc1.block0.cpe.0.weight (12, 3, 3, 3, 12)
enc.enc1.block0.cpe.0.bias (12,)
enc.enc1.block0.cpe.1.weight (12, 12)
enc.enc1.block0.cpe.1.bias (12,)
enc.enc1.block0.cpe.2.weight (12,)
enc.enc1.block0.cpe.2.bias (12,)
enc.enc1.block0.norm1.0.weight (12,)
enc.enc1.block0.norm1.0.bias (12,)
enc.enc1.block0.ls1.0.gamma (12,)
enc.enc1.block0.attn.qkv.weight (36, 12)
enc.enc1.block0.attn.qkv.bias (36,)
enc.enc1.block0.attn.proj.weight (12, 12)
enc.enc1.block0.attn.proj.bias (12,)
enc.enc1.block0.attn.rope.inv_freq (1,)
enc.enc1.block0.norm2.0.weight (12,)
enc.enc1.block0.norm2.0.bias (12,)
enc.enc1.block0.ls2.0.gamma (12,)
enc.enc1.block0.mlp.0.fc1.weight (48, 12)
enc.enc1.block0.mlp.0.fc1.bias (48,)
enc.enc1.block0.mlp.0.fc2.weight (12, 48)
enc.enc1.block0.mlp.0.fc2.bias (12,)
enc.enc1.block1.cpe.0.weight (12, 3, 3, 3, 12)
enc.enc1.block1.cpe.0.bias (12,)
enc.enc1.block1.cpe.1.weight (12, 12)
enc.enc1.block1.cpe.1.bias (12,)
enc.enc1.block1.cpe.2.weight (12,)
enc.enc1.block1.cpe.2.bias (12,)
enc.enc1.block1.norm1.0.weight (12,)
enc.enc1.block1.norm1.0.bias (12,)
enc.enc1.block1.ls1.0.gamma (12,)
enc.enc1.block1.attn.qkv.weight (36, 12)
enc.enc1.block1.attn.qkv.bias (36,)
enc.enc1.block1.attn.proj.weight (12, 12)
enc.enc1.block1.attn.proj.bias (12,)
enc.enc1.block1.attn.rope.inv_freq (1,)
enc.enc1.block1.norm2.0.weight (12,)
enc.enc1.block1.norm2.0.bias (12,)
enc.enc1.block1.ls2.0.gamma (12,)
enc.enc1.block1.mlp.0.fc1.weight (48, 12)
enc.enc1.block1.mlp.0.fc1.bias (48,)
enc.enc1.block1.mlp.0.fc2.weight (12, 48)
enc.enc1.block1.mlp.0.fc2.bias (12,)
"""


def official_layout() -> dict[str, tuple[int, ...]]:
    out = {}
    for line in OFFICIAL_KEYS.strip().splitlines():
        key, shape = line.split(" ", 1)
        out[key] = tuple(int(s) for s in shape.strip("()").split(",") if s.strip())
    return out


def tiny_rope_encoder(**kw: object) -> PTv3EncoderBackbone:
    args: dict = dict(
        in_channels=2, grid_size=0.1, order=("z", "hilbert"), stride=[2], enc_depths=[1, 2],
        enc_channels=[6, 12], enc_num_head=[1, 2], enc_patch_size=[16, 16], mask_token=True,
        rope_base=10.0, layer_scale=0.5, drop_path=0.0,
    )  # fmt: skip
    args.update(kw)
    return PTv3EncoderBackbone(**args)


def room(n: int, seed: int, channels: int = 6, offset: float = 0.0) -> Point:
    g = torch.Generator().manual_seed(seed)
    pos = torch.rand(n, 3, generator=g) * torch.tensor([3.0, 2.0, 1.5]) + offset
    return Point(pos, torch.rand(n, channels, generator=g))


def randomise(model: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) / max(p[0].numel(), 1) ** 0.5)


# parameter counts of the official encoders with their mask token and a 20-class linear
# probe head, from benchmarks/sonata_oracle.py (Pointcept's PT-v3m2 / PT-v3m3)
OFFICIAL_PARAMS = {
    "sonata_small": 38_668_852,
    "sonata_base": 108_486_036,
    "concerto_tiny": 4_870_452,
    "concerto_small": 38_668_852,
    "concerto_base": 108_486_036,
    "concerto_large": 207_702_036,
    "utonia_tiny": 9_335_846,
    "utonia_small": 37_267_976,
    "utonia_base": 137_281_484,
}


@pytest.mark.parametrize("name", sorted(OFFICIAL_PARAMS))
def test_parameter_counts_equal_the_official_models(name: str) -> None:
    with torch.device("meta"):
        model = create_model(name, num_classes=20, mask_token=True)
    assert sum(p.numel() for p in model.parameters()) == OFFICIAL_PARAMS[name]
    assert model.backbone.out_channels == sum(PRESETS[name]["enc_channels"])


def test_every_preset_builds_its_published_widths() -> None:
    for name, preset in PRESETS.items():
        with torch.device("meta"):
            model = create_model(name, num_classes=20)
        assert isinstance(model, PointNetwork)
        stem = model.backbone.embedding.linear
        assert (stem.in_features, stem.out_features) == (9, preset["enc_channels"][0])
        assert model.head[0].in_features == sum(preset["enc_channels"])
        blocks = sum(len(stage) for stage in model.backbone.enc)
        assert blocks == sum(preset["enc_depths"])
        has_rope = hasattr(model.backbone.enc[0][0].attn, "rope")
        assert has_rope == name.startswith("utonia")


def test_key_map_matches_the_official_layout_both_ways() -> None:
    ours = tiny_rope_encoder()
    state = {f"backbone.{k}": v for k, v in ours.state_dict().items()}
    state.update({"head.0.weight": torch.zeros(20, 18), "head.0.bias": torch.zeros(20)})
    official = to_pointcept_state_dict(state)
    layout = official_layout()
    assert {k: tuple(v.shape) for k, v in official.items() if not k.startswith("seg_head")} == (
        layout
    )
    back = convert_pointcept_state_dict(official)
    assert back.keys() == state.keys()
    assert all(torch.equal(back[k], state[k]) for k in state)
    # Pointcept training checkpoints: "module." and "backbone." prefixes
    prefixed = {f"module.backbone.{k}": v for k, v in official.items() if "seg_head" not in k}
    assert convert_pointcept_state_dict(prefixed).keys() == {
        k for k in state if k.startswith("backbone.")
    }


def test_spconv_kernel_layout_is_permuted() -> None:
    """spconv's [C_out, kx, ky, kz, C_in] kernel entry (x, y, z) is our row x*9 + y*3 + z."""
    ours = tiny_rope_encoder()
    state = {f"backbone.{k}": v for k, v in ours.state_dict().items()}
    official = to_pointcept_state_dict(state)
    w = official["enc.enc0.block0.cpe.0.weight"]  # [6, 3, 3, 3, 6]
    mine = state["backbone.enc.0.0.cpe.conv.weight"]  # [27, C_in, C_out]
    assert torch.equal(mine[1 * 9 + 2 * 3 + 0], w[:, 1, 2, 0, :].t())


def test_loading_an_official_layout_gives_the_same_outputs() -> None:
    torch.manual_seed(0)
    source = create_model("utonia_tiny", num_classes=5, **tiny_kwargs()).eval()
    randomise(source)
    official = to_pointcept_state_dict(source.state_dict())
    target = create_model("utonia_tiny", num_classes=5, **tiny_kwargs()).eval()
    result = target.load_state_dict(convert_pointcept_state_dict(official), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    cloud = room(600, 1)
    with torch.no_grad():
        assert torch.equal(source(cloud), target(cloud))


def tiny_kwargs(**kw: object) -> dict:
    out: dict = dict(
        grid_size=0.1, stride=[2], enc_depths=[1, 1], enc_channels=[6, 12], enc_num_head=[1, 2],
        enc_patch_size=[16, 16], drop_path=0.0,
    )  # fmt: skip
    out.update(kw)
    return out


def test_key_map_refuses_unknown_keys_and_handles_the_mask_token() -> None:
    with pytest.raises(KeyError, match="teacher"):
        convert_pointcept_state_dict({"teacher.embedding.stem.linear.weight": torch.zeros(1)})
    with pytest.raises(KeyError, match="enc.enc1.up"):
        convert_pointcept_state_dict({"enc.enc1.up.proj.weight": torch.zeros(1)})
    state = {"embedding.mask_token": torch.zeros(1, 4)}
    assert convert_pointcept_state_dict(state, mask_token=False) == {}
    assert "backbone.embedding.mask_token" in convert_pointcept_state_dict(state)
    with pytest.raises(KeyError, match="mask_token"):
        convert_pointcept_state_dict({}, mask_token=True)


def test_mask_token_is_accepted_and_ignored_at_inference() -> None:
    torch.manual_seed(0)
    with_token = create_model("concerto_tiny", 5, **tiny_kwargs(mask_token=True)).eval()
    without = create_model("concerto_tiny", 5, **tiny_kwargs(mask_token=False)).eval()
    state = dict(with_token.state_dict())
    state["backbone.embedding.mask_token"] = torch.randn(1, 6)
    with_token.load_state_dict(state)
    without.load_state_dict({k: v for k, v in state.items() if "mask_token" not in k})
    cloud = room(500, 2)
    with torch.no_grad():
        assert torch.equal(with_token(cloud), without(cloud))
    # in pretraining, masked voxels take the token
    emb = LinearEmbedding(4, 6, mask_token=True)
    with torch.no_grad():
        emb.mask_token.fill_(7.0)  # type: ignore[union-attr]
    mask = torch.tensor([True, False, True])
    out = emb(torch.randn(3, 4), mask)
    assert torch.all(out[mask] == 7.0) and not torch.any(out[~mask] == 7.0)
    with pytest.raises(ValueError, match="mask_token"):
        LinearEmbedding(4, 6)(torch.randn(3, 4), mask)


def test_upcast_concatenates_levels_as_the_probe_heads_and_the_demo() -> None:
    f0, f1, f2 = (
        torch.arange(4.0).view(4, 1),
        torch.tensor([[10.0], [11.0]]),
        torch.tensor([[20.0]]),
    )
    c0, c1 = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 0])
    full = upcast([f0, f1, f2], [c0, c1], None)
    assert full.tolist() == [[0, 10, 20], [1, 10, 20], [2, 11, 20], [3, 11, 20]]
    one = upcast([f0, f1, f2], [c0, c1], 1)  # the coarsest two levels, copied down
    assert one.tolist() == [[10, 20], [10, 20], [11, 20], [11, 20]]
    assert upcast([f0, f1, f2], [c0, c1], 0).tolist() == [[20]] * 4
    model = create_model("concerto_tiny", 5, **tiny_kwargs(upcast_levels=0))
    assert model.backbone.out_channels == 12


def test_rope_depends_on_relative_positions_only() -> None:
    g = torch.Generator().manual_seed(0)
    rope = RoPE3D(head_dim=12, base=10.0)
    q, k = torch.randn(5, 2, 12, generator=g), torch.randn(5, 2, 12, generator=g)
    xyz = torch.randn(5, 3, generator=g)
    shift = torch.tensor([0.7, -1.3, 2.1])

    def logits(p: torch.Tensor) -> torch.Tensor:
        qr, _ = rope(q, q, p)
        _, kr = rope(k, k, p)
        return torch.einsum("nhd,mhd->hnm", qr, kr)

    assert torch.allclose(logits(xyz), logits(xyz + shift), atol=1e-5)
    assert not torch.allclose(logits(xyz), logits(xyz * 2.0), atol=1e-3)
    # Utonia's convention (rotate-half, x chunk first): e_0 at x = t turns to (cos t, sin t)
    unit = torch.zeros(1, 1, 6)
    unit[..., 0] = 1.0
    turned, _ = RoPE3D(head_dim=6)(unit, unit, torch.tensor([[0.3, 5.0, -2.0]]))
    t = torch.tensor(0.3)
    assert torch.allclose(turned.flatten()[:2], torch.stack([t.cos(), t.sin()]), atol=1e-6)
    assert torch.all(turned.flatten()[2:] == 0)
    same, _ = rope(q, k, torch.zeros(5, 3))
    assert torch.equal(same, q)  # no rotation at the origin
    with pytest.raises(ValueError, match="divisible by 3"):
        RoPE3D(head_dim=8)


def test_voxels_follow_gridsample_after_center_shift_and_scale() -> None:
    model = create_model("utonia_tiny", 5, **tiny_kwargs(grid_size=0.05, coord_scale=0.5))
    cloud = room(800, 3, offset=5.0)
    level = model.backbone.voxels(cloud)
    pos = cloud.pos
    lo, hi = pos.min(0).values, pos.max(0).values
    centred = (pos - torch.cat([(lo[:2] + hi[:2]) / 2, lo[2:]])) * 0.5
    grid = torch.floor(centred / 0.05).long()
    grid = grid - grid.min(0).values
    assert torch.equal(level.grid_coord[level.inverse], grid)
    # one point per voxel (voxel_reduce="first"): each voxel holds one of its points
    assert torch.allclose(level.pos[level.inverse], centred, atol=0.05 * 3**0.5)
    first = torch.full((level.num_rows,), len(pos)).scatter_reduce(
        0, level.inverse, torch.arange(len(pos)), "amin"
    )
    assert torch.allclose(level.pos, centred[first], atol=1e-6)
    assert torch.allclose(level.x, cloud.x[first])


def test_outputs_do_not_move_with_the_scan_and_clouds_stay_apart() -> None:
    torch.manual_seed(0)
    model = create_model("utonia_tiny", 5, **tiny_kwargs()).eval()
    randomise(model, 1)
    a, b = room(700, 4), room(500, 5)
    moved = Point(a.pos + torch.tensor([125.0, -40.0, 3.0]), a.x)
    both = Point(torch.cat([a.pos, b.pos]), torch.cat([a.x, b.x]),
                 torch.cat([torch.zeros(700), torch.ones(500)]).long())  # fmt: skip
    with torch.no_grad():
        ya, yb, ym, yab = model(a), model(b), model(moved), model(both)
    assert torch.allclose(ya, ym, atol=1e-4)
    assert torch.allclose(yab, torch.cat([ya, yb]), atol=1e-5)


def test_bad_inputs_are_refused_clearly() -> None:
    with pytest.raises(ValueError, match="voxel_reduce"):
        PTv3EncoderBackbone(voxel_reduce="max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="upcast_levels"):
        create_model("concerto_tiny", 5, **tiny_kwargs(upcast_levels=2))
    model = create_model("concerto_tiny", 5, **tiny_kwargs(grid_size=1e-5))
    with pytest.raises(ValueError, match="16 bits per axis"):
        model.backbone.voxels(room(50, 6))
    with pytest.raises(ValueError, match="in_channels=6"):
        create_model("concerto_tiny", 5, **tiny_kwargs())(room(50, 6, channels=3))


def test_config_of_a_checkpoint_builds_the_same_encoder() -> None:
    config = dict(
        in_channels=9, order=["z", "z-trans", "hilbert", "hilbert-trans"], stride=[2, 2, 2, 2],
        enc_depths=[3, 3, 3, 12, 3], enc_channels=[48, 96, 192, 384, 512],
        enc_num_head=[3, 6, 12, 24, 32], enc_patch_size=[1024] * 5, mlp_ratio=4,
        qkv_bias=True, qk_scale=None, attn_drop=0.0, proj_drop=0.0, drop_path=0.3,
        shuffle_orders=True, pre_norm=True, enable_rpe=False, enable_flash=True,
        upcast_attention=False, upcast_softmax=False, traceable=True, enc_mode=True,
        mask_token=True,
    )  # fmt: skip
    kwargs = backbone_kwargs_from_config(config)
    assert kwargs["in_channels"] == 6 and kwargs["mask_token"] is True
    with torch.device("meta"):
        a = PTv3EncoderBackbone(**kwargs)
        b = create_model("sonata_base", 20, mask_token=True).backbone
    assert a.state_dict().keys() == b.state_dict().keys()
    with pytest.raises(ValueError, match="enc_mode"):
        backbone_kwargs_from_config({**config, "enc_mode": False})


def test_bf16_autocast_on_cpu_runs_and_stays_close_to_fp32() -> None:
    """Tolerance: max abs difference <= 5% of the largest fp32 feature (bf16 keeps 8 bits of
    mantissa; errors add up over the blocks)."""
    torch.manual_seed(0)
    model = create_model("concerto_tiny", 20).eval()
    cloud = room(3000, 7)
    with torch.no_grad():
        fp32 = model.backbone(cloud).x
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = model.backbone(cloud).x
    assert bf16.shape == fp32.shape and torch.isfinite(bf16).all()
    assert float((bf16.float() - fp32).abs().max()) <= 0.05 * float(fp32.abs().max())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_forward_equals_cpu() -> None:
    torch.manual_seed(0)
    model = create_model("utonia_tiny", 20, **tiny_kwargs(enc_patch_size=[64, 64])).eval()
    randomise(model, 2)
    cloud = room(4000, 8)
    with torch.no_grad():
        cpu = model(cloud)
        gpu = model.cuda()(Point(cloud.pos.cuda(), cloud.x.cuda()))
    assert torch.allclose(gpu.cpu(), cpu, atol=1e-3, rtol=1e-3)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_sonata_base_cuda_eval_forward_on_a_scan() -> None:
    """Sonata base on a 100,000-point scan on CUDA: fp32 and bf16 autocast, finite and close
    (the same 5% tolerance as on CPU)."""
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = create_model("sonata_base", 20).eval()
    cloud = room(100_000, 9)
    cloud = Point(cloud.pos.cuda(), cloud.x.cuda())
    with torch.no_grad():
        fp32 = model.backbone(cloud).x
        with torch.autocast("cuda", dtype=torch.bfloat16):
            bf16 = model.backbone(Point(cloud.pos, cloud.x)).x
        logits = model(Point(cloud.pos, cloud.x))
    assert logits.shape == (100_000, 20) and torch.isfinite(logits).all()
    assert fp32.size(1) == 1232 and torch.isfinite(bf16).all()
    assert float((bf16.float() - fp32).abs().max()) <= 0.05 * float(fp32.abs().max())


@pytest.mark.skipif(
    not os.environ.get("LIGHTNING_PC_ORACLE_PYTHON"),
    reason="LIGHTNING_PC_ORACLE_PYTHON (python of the spconv side environment) not set",
)
def test_oracle_quick_stage_agrees_with_the_official_files() -> None:
    """The tiny presets against Pointcept's PT-v3m2 / PT-v3m3 files (read from a checkout or
    bare git directory in LIGHTNING_PC_POINTCEPT) on shared weights."""
    pointcept = os.environ.get("LIGHTNING_PC_POINTCEPT", "")
    if not pointcept:
        pytest.skip("LIGHTNING_PC_POINTCEPT (Pointcept checkout or git dir) not set")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [os.environ["LIGHTNING_PC_ORACLE_PYTHON"], str(REPO / "benchmarks/sonata_oracle.py"),
         "--pointcept", pointcept, "--quick", "--points", "3000"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "all equal within" in out.stdout and ": True" in out.stdout, out.stdout
