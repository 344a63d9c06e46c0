"""Write ``pointcept_transform_reference.npz``: outputs and statistics of Pointcept's own
augmentations, which ``test_transforms_reference.py`` pins ours against.

Not run by the test suite. Reads ``pointcept/datasets/transform.py`` and
``pointcept/datasets/utils.py`` (its ``point_collate_fn``, Mix3D) at run time from a Pointcept
checkout or bare git directory, copies them into a temporary directory outside the repository
with stand-ins for the modules they import but do not use here (Pointcept's registry,
torchvision, torch_scatter), and runs them with numpy's and Python's generators seeded. Needs
numpy, scipy and torch (the project's dev environment has them)::

    python tests/data/make_pointcept_transform_reference.py \\
        --pointcept /work/.mirror/Pointcept+Pointcept/repo

Deterministic cases (fixed angles, scales, flips with ``p = 1``, colour contrast with a fixed
blend, crops around the middle point, elastic distortion given its noise, Mix3D with
``mix_prob = 1``) store inputs and outputs; random cases store statistics over many draws.
Colours are 0-255 as Pointcept's transforms take them (ours take 0-1).
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch

OUT = Path(__file__).with_name("pointcept_transform_reference.npz")


def _read(src: Path, rel: str) -> str:
    if (src / rel).exists():
        return (src / rel).read_text()
    git = ["git", "-C", str(src), "show", f"HEAD:{rel}"]
    return subprocess.run(git, check=True, capture_output=True, text=True).stdout


def load_pointcept(src: Path, tmp: Path) -> tuple[types.ModuleType, types.ModuleType]:
    """Pointcept's ``transform`` and ``utils`` modules, imported from ``tmp``."""
    (tmp / "transform.py").write_text(_read(src, "pointcept/datasets/transform.py"))
    (tmp / "pc_utils.py").write_text(_read(src, "pointcept/datasets/utils.py"))

    class Registry:  # Pointcept's registry: a decorator that registers, unused here
        def __init__(self, name: str) -> None:
            self.name = name

        def register_module(self, name: str | None = None, module: object = None) -> object:
            return lambda cls: cls

    stand_ins = {
        "pointcept": {},
        "pointcept.utils": {},
        "pointcept.utils.registry": {"Registry": Registry},
        "pointcept.models": {},
        "pointcept.models.utils": {"offset2batch": None},
        "torchvision": {"transforms": types.SimpleNamespace()},
        "torch_scatter": {"scatter_min": None},
    }
    for name, attrs in stand_ins.items():
        if name in sys.modules and name in ("torchvision", "torch_scatter"):
            continue
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        sys.modules[name] = module
    out = []
    for name in ("transform", "pc_utils"):
        spec = importlib.util.spec_from_file_location(f"pointcept_{name}", tmp / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        out.append(module)
    return out[0], out[1]


def seed(s: int) -> None:
    random.seed(s)
    np.random.seed(s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pointcept", type=Path, required=True, help="checkout or bare git dir")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        T, U = load_pointcept(args.pointcept, Path(tmp))
        ref = build(T, U)
    np.savez_compressed(args.out, **ref)
    print(f"wrote {args.out} ({len(ref)} arrays)")


def build(T: types.ModuleType, U: types.ModuleType) -> dict[str, np.ndarray]:
    ref: dict[str, np.ndarray] = {}
    rng = np.random.default_rng(0)
    coord = (rng.random((400, 3)) * [3.0, 2.0, 1.5] + [1.0, -0.5, 0.2]).astype(np.float32)
    color = (rng.random((400, 3)) * 200 + 20).astype(np.float32)
    normal = rng.normal(size=(400, 3)).astype(np.float32)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    ref["coord"], ref["color"], ref["normal"] = coord, color, normal

    def run(transform: object, **extra: np.ndarray) -> dict:
        data = {"coord": coord.copy(), "color": color.copy(), "normal": normal.copy()}
        data.update({k: v.copy() for k, v in extra.items()})
        return transform(data)  # type: ignore[operator]

    # --- deterministic: fixed parameters ------------------------------------------------
    for axis, angle, center in (("x", 0.3, [0, 0, 0]), ("y", 0.25, None), ("z", -0.6, [0, 0, 0])):
        out = run(T.RandomRotate(angle=[angle, angle], axis=axis, center=center, p=1))
        ref[f"rotate_{axis}_coord"], ref[f"rotate_{axis}_normal"] = out["coord"], out["normal"]
    ref["scale_coord"] = run(T.RandomScale(scale=[1.07, 1.07]))["coord"]
    out = run(T.RandomFlip(p=1))
    ref["flip_coord"], ref["flip_normal"] = out["coord"], out["normal"]
    ref["center_shift_z_coord"] = run(T.CenterShift(apply_z=True))["coord"]
    ref["center_shift_coord"] = run(T.CenterShift(apply_z=False))["coord"]
    ref["clip_coord"] = run(T.PointClip(point_cloud_range=(1.5, -0.2, 0.5, 3.0, 1.0, 1.2)))["coord"]
    ref["normalize_color"] = run(T.NormalizeColor())["color"]
    seed(0)
    ref["auto_contrast_color"] = run(T.ChromaticAutoContrast(p=1, blend_factor=0.3))["color"]
    flat = np.full((50, 3), 90.0, dtype=np.float32)
    data = T.ChromaticAutoContrast(p=1, blend_factor=0.5)({"color": flat.copy()})
    ref["auto_contrast_flat_color"] = data["color"]  # no range at all: left as it is
    half_flat = color.copy()
    half_flat[:, 1] = 77.0
    out = T.ChromaticAutoContrast(p=1, blend_factor=0.5)({"color": half_flat.copy()})
    ref["auto_contrast_half_flat_in"], ref["auto_contrast_half_flat_color"] = (
        half_flat,
        out["color"],
    )
    out = run(T.SphereCrop(point_max=150, mode="center"))
    ref["sphere_center_coord"], ref["sphere_center_color"] = out["coord"], out["color"]
    out = run(T.SphereCrop(sample_rate=0.6, mode="center"))
    ref["sphere_rate_coord"] = out["coord"]
    ref["sphere_small_coord"] = run(T.SphereCrop(point_max=1000, mode="center"))["coord"]

    # elastic distortion: each (granularity, magnitude) step, with its noise replayed
    ed = T.ElasticDistortion.elastic_distortion
    current = coord.astype(np.float64)
    for k, (granularity, magnitude) in enumerate(((0.2, 0.4), (0.8, 1.6))):
        seed(10 + k)
        out = ed(current.copy(), granularity, magnitude)
        seed(10 + k)
        dims = ((current - current.min(0)).max(0) // granularity).astype(int) + 3
        ref[f"elastic_{k}_noise"] = np.random.randn(*dims, 3).astype(np.float32)
        ref[f"elastic_{k}_in"], ref[f"elastic_{k}_out"] = current, out
        current = out

    # grid sampling in train mode: one point per voxel (coordinates from 0: the same voxels
    # whether the grid starts at 0, as Pointcept's, or at the minimum)
    grid_coord = np.concatenate([np.zeros((1, 3), np.float32), coord - coord.min(0)])
    seed(3)
    out = T.GridSample(grid_size=0.25, hash_type="fnv", mode="train")({"coord": grid_coord.copy()})
    ref["grid_in"], ref["grid_count"] = grid_coord, np.array(len(out["coord"]))

    # Mix3D: point_collate_fn with mix_prob = 1 on 3 and on 4 scenes
    for count in (3, 4):
        batch = []
        for i in range(count):
            n = 5 + 3 * i
            batch.append(
                {
                    "coord": torch.full((n, 3), float(i)),
                    "segment": torch.full((n,), i),
                    "offset": torch.tensor([n]),
                }
            )
        out = U.point_collate_fn(batch, mix_prob=1.0)
        ref[f"mix{count}_offset"] = out["offset"].numpy()
        ref[f"mix{count}_coord"] = out["coord"].numpy()
        ref[f"mix{count}_segment"] = out["segment"].numpy()

    # --- random: statistics over many draws ---------------------------------------------
    draws = 4000
    one = np.array([[1.0, 0.0, 0.0]], dtype=np.float64)
    seed(1)
    angles = []
    for _ in range(draws):
        out = T.RandomRotate(angle=[-1, 1], axis="z", center=[0, 0, 0], p=0.5)(
            {"coord": one.copy()}
        )
        angles.append(np.arctan2(out["coord"][0, 1], out["coord"][0, 0]))
    angles = np.array(angles)
    moved = np.abs(angles) > 1e-12
    ref["rotate_z_p"] = np.array(moved.mean())
    ref["rotate_z_abs_mean"] = np.array(np.abs(angles[moved]).mean())
    seed(2)
    angles = []
    for _ in range(draws):
        out = T.RandomRotate(angle=[-1 / 64, 1 / 64], axis="x", center=[0, 0, 0], p=1)(
            {"coord": np.array([[0.0, 1.0, 0.0]])}
        )
        angles.append(np.arctan2(out["coord"][0, 2], out["coord"][0, 1]))
    ref["rotate_x_small_std"] = np.array(np.std(angles))
    ref["rotate_x_small_max"] = np.array(np.abs(angles).max())
    seed(3)
    scales = [
        T.RandomScale(scale=[0.9, 1.1])({"coord": one.copy()})["coord"][0, 0] for _ in range(draws)
    ]
    ref["scale_mean"], ref["scale_std"] = np.array(np.mean(scales)), np.array(np.std(scales))
    seed(4)
    flips = np.array(
        [T.RandomFlip(p=0.5)({"coord": np.ones((1, 3))})["coord"][0] for _ in range(draws)]
    )
    ref["flip_rate"] = (flips < 0).mean(0)  # per axis x, y, z
    seed(5)
    jit = np.concatenate(
        [
            T.RandomJitter(sigma=0.005, clip=0.02)({"coord": np.zeros((100, 3))})["coord"]
            for _ in range(200)
        ]
    )
    ref["jitter_std"], ref["jitter_max"] = np.array(jit.std()), np.array(np.abs(jit).max())
    grey = np.full((20, 3), 128.0)
    seed(6)
    shifts = np.array(
        [
            T.ChromaticTranslation(p=0.95, ratio=0.05)({"color": grey.copy()})["color"][0] - 128
            for _ in range(draws)
        ]
    )
    applied = np.any(shifts != 0, axis=1)
    ref["translation_p"] = np.array(applied.mean())
    ref["translation_std"] = np.array(shifts[applied].std())  # 0-255 units
    ref["translation_max"] = np.array(np.abs(shifts[applied]).max())
    seed(7)
    noise = np.array(
        [
            T.ChromaticJitter(p=0.95, std=0.05)({"color": np.full((50, 3), 128.0)})["color"] - 128
            for _ in range(draws // 4)
        ]
    )
    applied = np.any(noise.reshape(len(noise), -1) != 0, axis=1)
    ref["jitter_color_p"] = np.array(applied.mean())
    ref["jitter_color_std"] = np.array(noise[applied].std())  # 0-255 units
    seed(8)
    ramp = np.linspace(50, 150, 30)[:, None].repeat(3, 1)
    blends = []
    for _ in range(draws):
        out = T.ChromaticAutoContrast(p=0.2, blend_factor=None)({"color": ramp.copy()})["color"]
        # colour 50 -> 50 (1 - b) + 0 b: the blend factor, where the contrast was applied
        blends.append(1 - out[0, 0] / 50)
    blends = np.array(blends)
    applied = blends > 1e-12
    ref["auto_contrast_p"] = np.array(applied.mean())
    ref["auto_contrast_blend_mean"] = np.array(blends[applied].mean())
    seed(9)
    kept = [
        len(
            T.RandomDropout(dropout_ratio=0.2, dropout_application_ratio=0.2)(
                {"coord": np.zeros((1000, 3))}
            )["coord"]
        )
        for _ in range(draws)
    ]
    kept = np.array(kept)
    ref["dropout_p"] = np.array((kept < 1000).mean())
    ref["dropout_kept"] = np.array(kept[kept < 1000].mean())
    seed(11)
    ed_transform = T.ElasticDistortion()
    applied = [
        not np.array_equal(ed_transform({"coord": coord.astype(np.float64)})["coord"], coord)
        for _ in range(draws // 4)
    ]
    ref["elastic_p"] = np.array(np.mean(applied))
    seed(12)
    displacement = np.concatenate(
        [ed_transform({"coord": coord.astype(np.float64)})["coord"] - coord for _ in range(200)]
    )
    displacement = displacement[np.abs(displacement).sum(1) > 0]
    ref["elastic_disp_std"] = np.array(displacement.std())
    seed(13)
    mixed = [
        len(
            U.point_collate_fn(
                [{"coord": torch.zeros(2, 3), "offset": torch.tensor([2])} for _ in range(4)],
                mix_prob=0.8,
            )["offset"]
        )
        for _ in range(draws)
    ]
    ref["mix_rate"] = np.array(np.mean(np.array(mixed) == 2))
    seed(14)
    centres = []
    line = np.arange(50, dtype=np.float64)[:, None] * [1.0, 0.0, 0.0]
    for _ in range(draws):
        out = T.SphereCrop(point_max=1, mode="random")({"coord": line.copy()})
        centres.append(out["coord"][0, 0])
    ref["sphere_random_centre_mean"] = np.array(np.mean(centres))
    ref["sphere_random_centre_std"] = np.array(np.std(centres))
    return ref


if __name__ == "__main__":
    main()
