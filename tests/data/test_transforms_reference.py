"""Our Pointcept-recipe augmentations against Pointcept's own, as recorded in
``pointcept_transform_reference.npz`` by ``make_pointcept_transform_reference.py`` (which runs
Pointcept's ``transform.py`` and ``point_collate_fn``; not run here).

Deterministic settings (fixed angles and scales, ``p = 1``, fixed blend, centre crops, the
elastic field given its noise, Mix3D with ``mix_prob = 1``) must give the same numbers;
random ones the same statistics within a few standard errors of both sides' sampling noise.
Pointcept's colours are 0-255, ours 0-1: the reference colours are divided by 255.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_geometric.data import Data

from lightning_pc.data import transforms as T
from lightning_pc.data.collate import Mix3DCollate

REF = np.load(Path(__file__).with_name("pointcept_transform_reference.npz"))
DRAWS = 4000


def scene() -> Data:
    return Data(
        pos=torch.from_numpy(REF["coord"].copy()),
        x=torch.from_numpy(REF["color"] / 255).float(),
        normal=torch.from_numpy(REF["normal"].copy()),
        y=torch.arange(len(REF["coord"])),
    )


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def near(ours: float, ref: float, se: float, k: float = 4.5) -> bool:
    """Within ``k`` standard errors of the difference of two independent estimates, each
    with standard error ``se``."""
    return abs(ours - ref) <= k * math.sqrt(2) * se


def assert_close(actual: torch.Tensor, expected: np.ndarray, atol: float = 1e-5) -> None:
    np.testing.assert_allclose(actual.double().numpy(), expected, atol=atol, rtol=0)


# --- deterministic --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("axis", "pi", "center"),
    [("x", 0.3, [0.0, 0.0, 0.0]), ("y", 0.25, "bbox"), ("z", -0.6, "origin")],
)
def test_rotate_by_a_fixed_angle_is_pointcepts(axis: str, pi: float, center: object) -> None:
    # Pointcept's angle=[a, a] (multiples of pi) about `center` is our degrees=[180a, 180a]
    rotate = T.RandomRotate(axis, degrees=[180 * pi, 180 * pi], center=center)  # type: ignore[arg-type]
    out = rotate(scene(), gen())
    assert_close(out.pos, REF[f"rotate_{axis}_coord"])
    assert_close(out.normal, REF[f"rotate_{axis}_normal"])


def test_scale_flip_shift_clip_are_pointcepts() -> None:
    assert_close(
        T.RandomScale(1.07, 1.07, anisotropic=False)(scene(), gen()).pos, REF["scale_coord"]
    )
    out = T.RandomFlip(p=1.0)(scene(), gen())
    assert_close(out.pos, REF["flip_coord"])
    assert_close(out.normal, REF["flip_normal"])
    assert_close(T.CenterShift(apply_z=True)(scene()).pos, REF["center_shift_z_coord"])
    assert_close(T.CenterShift(apply_z=False)(scene()).pos, REF["center_shift_coord"])
    clip = T.PointClip([1.5, -0.2, 0.5, 3.0, 1.0, 1.2])
    assert_close(clip(scene()).pos, REF["clip_coord"])


def test_normalize_color_is_pointcepts() -> None:
    data = scene()
    data.x = torch.from_numpy(REF["color"].copy())  # 0-255, as Pointcept's input
    assert_close(T.NormalizeColor()(data).x, REF["normalize_color"])


def test_auto_contrast_with_a_fixed_blend_is_pointcepts() -> None:
    out = T.ChromaticAutoContrast(p=1.0, blend_factor=0.3)(scene(), gen())
    assert_close(out.x * 255, REF["auto_contrast_color"], atol=1e-3)
    # a channel without range goes to 0 with the blend; a cloud without any is left alone
    half = Data(
        pos=torch.zeros(400, 3), x=torch.from_numpy(REF["auto_contrast_half_flat_in"] / 255)
    )
    out = T.ChromaticAutoContrast(p=1.0, blend_factor=0.5)(half, gen())
    assert_close(out.x * 255, REF["auto_contrast_half_flat_color"], atol=1e-3)
    flat = Data(pos=torch.zeros(50, 3), x=torch.full((50, 3), 90 / 255))
    out = T.ChromaticAutoContrast(p=1.0, blend=0.5)(flat, gen())
    assert_close(out.x * 255, REF["auto_contrast_flat_color"], atol=1e-3)
    with pytest.raises(ValueError, match="not both"):
        T.ChromaticAutoContrast(blend=0.1, blend_factor=0.2)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"point_max": 150, "mode": "center"}, "sphere_center_coord"),
        ({"sample_rate": 0.6, "mode": "center"}, "sphere_rate_coord"),
        ({"point_max": 1000, "mode": "center"}, "sphere_small_coord"),
    ],
)
def test_sphere_crop_around_the_middle_point_is_pointcepts(kwargs: dict, key: str) -> None:
    out = T.SphereCrop(**kwargs)(scene(), gen())
    assert_close(out.pos, REF[key], atol=0)  # same points, in the same (distance) order
    assert torch.equal(out.pos, scene().pos[out.y])  # every attribute follows
    if key == "sphere_center_coord":
        assert_close(out.x * 255, REF["sphere_center_color"], atol=1e-3)


@pytest.mark.parametrize("step", [0, 1])
def test_elastic_distortion_given_its_noise_is_pointcepts(step: int) -> None:
    granularity, magnitude = ((0.2, 0.4), (0.8, 1.6))[step]
    start, noise = REF[f"elastic_{step}_in"], REF[f"elastic_{step}_noise"]
    assert T.elastic_noise_shape(start, granularity) == noise.shape
    out = T.elastic_distortion(start, noise, granularity, magnitude)
    np.testing.assert_allclose(out, REF[f"elastic_{step}_out"], atol=1e-5, rtol=0)


def test_elastic_distortion_transform_draws_its_noise_from_the_generator() -> None:
    data = scene()
    out = T.ElasticDistortion(p=1.0)(scene(), gen(5))
    g = gen(5)
    torch.rand(1, generator=g)  # the application draw
    pos = data.pos.double().numpy()
    for granularity, magnitude in ((0.2, 0.4), (0.8, 1.6)):
        noise = torch.randn(T.elastic_noise_shape(pos, granularity), generator=g).numpy()
        pos = T.elastic_distortion(pos, noise, granularity, magnitude)
    np.testing.assert_allclose(out.pos.numpy(), pos, atol=1e-5)


def test_grid_sample_in_training_keeps_one_point_per_voxel_as_pointcept() -> None:
    data = Data(pos=torch.from_numpy(REF["grid_in"].copy()))
    out = T.GridSubsample(0.25)(data, gen())
    assert out.pos.size(0) == int(REF["grid_count"])


@pytest.mark.parametrize("count", [3, 4])
def test_mix3d_merges_pairs_as_pointcepts_collate(count: int) -> None:
    clouds = []
    for i in range(count):
        n = 5 + 3 * i
        clouds.append(
            Data(pos=torch.full((n, 3), float(i)), y=torch.full((n,), i), idx=torch.tensor([i]))
        )
    batch = Mix3DCollate(1.0)(clouds)
    assert batch.ptr[1:].tolist() == REF[f"mix{count}_offset"].tolist()
    assert torch.equal(batch.pos, torch.from_numpy(REF[f"mix{count}_coord"]))
    assert torch.equal(batch.y, torch.from_numpy(REF[f"mix{count}_segment"]))
    assert batch.idx.tolist() == list(range(0, count, 2))  # a mixed cloud names its first
    sizes = torch.tensor([5 + 3 * i for i in range(count)])
    assert torch.equal(Mix3DCollate(0.0)(clouds).ptr[1:], sizes.cumsum(0))  # never mixes


# --- random: statistics ---------------------------------------------------------------------


def test_rotate_probability_and_angle_range_are_pointcepts() -> None:
    g = gen(1)
    rotate = T.RandomRotate("z", degrees=[-180, 180], center=[0, 0, 0], p=0.5)
    angles = []
    for _ in range(DRAWS):
        out = rotate(Data(pos=torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)), g)
        angles.append(math.atan2(out.pos[0, 1].item(), out.pos[0, 0].item()))
    a = np.array(angles)
    moved = np.abs(a) > 1e-12
    assert near(moved.mean(), float(REF["rotate_z_p"]), math.sqrt(0.25 / DRAWS))
    # |angle| ~ U(0, pi): mean pi/2, standard deviation pi / sqrt(12)
    se = math.pi / math.sqrt(12) / math.sqrt(moved.sum())
    assert near(np.abs(a[moved]).mean(), float(REF["rotate_z_abs_mean"]), se)
    g = gen(2)
    tilt = T.RandomRotate("x", degrees=[-180 / 64, 180 / 64], center=[0, 0, 0])
    small = []
    for _ in range(DRAWS):
        out = tilt(Data(pos=torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64)), g)
        small.append(math.atan2(out.pos[0, 2].item(), out.pos[0, 1].item()))
    bound = math.pi / 64
    assert max(abs(s) for s in small) <= bound + 1e-9
    assert abs(max(abs(s) for s in small) - float(REF["rotate_x_small_max"])) < 0.01 * bound
    se = bound / math.sqrt(3) / math.sqrt(2 * DRAWS)  # se of the std of U(-b, b), roughly
    assert near(float(np.std(small)), float(REF["rotate_x_small_std"]), se)


def test_scale_flip_and_jitter_statistics_are_pointcepts() -> None:
    g = gen(3)
    scale = T.RandomScale(0.9, 1.1, anisotropic=False)
    s = np.array([scale(Data(pos=torch.ones(1, 3)), g).pos[0, 0].item() for _ in range(DRAWS)])
    sd = 0.2 / math.sqrt(12)
    assert near(s.mean(), float(REF["scale_mean"]), sd / math.sqrt(DRAWS))
    assert near(s.std(), float(REF["scale_std"]), sd / math.sqrt(2 * DRAWS))
    g = gen(4)
    flip = T.RandomFlip(p=0.5)
    signs = np.array([flip(Data(pos=torch.ones(1, 3)), g).pos[0].numpy() for _ in range(DRAWS)])
    rate = (signs < 0).mean(0)
    for axis in range(3):
        assert near(rate[axis], float(REF["flip_rate"][axis]), math.sqrt(0.25 / DRAWS))
    assert rate[2] == 0  # z never flips, as Pointcept's
    g = gen(5)
    jitter = T.RandomJitter(sigma=0.005, clip=0.02)
    j = torch.cat([jitter(Data(pos=torch.zeros(100, 3)), g).pos for _ in range(200)]).numpy()
    assert near(j.std(), float(REF["jitter_std"]), 0.005 / math.sqrt(2 * j.size))
    assert abs(np.abs(j).max() - float(REF["jitter_max"])) < 1e-6


def test_chromatic_translation_statistics_are_pointcepts() -> None:
    g = gen(6)
    t = T.ChromaticTranslation(p=0.95, ratio=0.05)
    shifts = np.array(
        [
            (
                t(Data(pos=torch.zeros(20, 3), x=torch.full((20, 3), 128 / 255)), g).x[0] * 255
                - 128
            ).numpy()
            for _ in range(DRAWS)
        ]
    )
    applied = np.any(np.abs(shifts) > 1e-4, axis=1)
    assert near(applied.mean(), float(REF["translation_p"]), math.sqrt(0.05 * 0.95 / DRAWS))
    sd = 2 * 0.05 * 255 / math.sqrt(12)  # U(-12.75, 12.75)
    assert near(
        shifts[applied].std(),
        float(REF["translation_std"]),
        sd / math.sqrt(2 * shifts[applied].size),
    )
    assert abs(np.abs(shifts[applied]).max() - float(REF["translation_max"])) < 0.05


def test_chromatic_jitter_statistics_are_pointcepts() -> None:
    g = gen(7)
    jitter = T.ChromaticJitter(std=0.05, p=0.95)
    noise = np.array(
        [
            (
                jitter(Data(pos=torch.zeros(50, 3), x=torch.full((50, 3), 128 / 255)), g).x * 255
                - 128
            ).numpy()
            for _ in range(DRAWS // 4)
        ]
    )
    applied = np.any(np.abs(noise.reshape(len(noise), -1)) > 1e-4, axis=1)
    assert near(applied.mean(), float(REF["jitter_color_p"]), math.sqrt(0.05 * 0.95 / (DRAWS // 4)))
    sd = 0.05 * 255
    assert near(
        noise[applied].std(),
        float(REF["jitter_color_std"]),
        sd / math.sqrt(2 * noise[applied].size),
    )


def test_auto_contrast_statistics_are_pointcepts() -> None:
    g = gen(8)
    contrast = T.ChromaticAutoContrast(p=0.2, blend_factor=None)
    ramp = torch.linspace(50, 150, 30)[:, None].repeat(1, 3) / 255
    blends = np.array(
        [
            1 - contrast(Data(pos=torch.zeros(30, 3), x=ramp.clone()), g).x[0, 0].item() * 255 / 50
            for _ in range(DRAWS)
        ]
    )
    applied = blends > 1e-5
    assert near(applied.mean(), float(REF["auto_contrast_p"]), math.sqrt(0.16 / DRAWS))
    se = 1 / math.sqrt(12) / math.sqrt(applied.sum())
    assert near(blends[applied].mean(), float(REF["auto_contrast_blend_mean"]), se)


def test_dropout_statistics_are_pointcepts() -> None:
    g = gen(9)
    drop = T.RandomDropout(ratio=0.2, p=0.2)
    kept = np.array([drop(Data(pos=torch.zeros(1000, 3)), g).pos.size(0) for _ in range(DRAWS)])
    dropped = kept < 1000
    assert near(dropped.mean(), float(REF["dropout_p"]), math.sqrt(0.16 / DRAWS))
    assert (kept[dropped] == int(REF["dropout_kept"])).all()  # exactly int(0.8 N) kept


def test_elastic_distortion_statistics_are_pointcepts() -> None:
    g = gen(11)
    elastic = T.ElasticDistortion()
    pos = scene().pos.double()
    applied = [
        not torch.equal(elastic(Data(pos=pos.clone()), g).pos, pos) for _ in range(DRAWS // 4)
    ]
    assert near(
        float(np.mean(applied)), float(REF["elastic_p"]), math.sqrt(0.05 * 0.95 / (DRAWS // 4))
    )
    g = gen(12)
    disp = torch.cat([elastic(Data(pos=pos.clone()), g).pos - pos for _ in range(200)]).numpy()
    disp = disp[np.abs(disp).sum(1) > 0]
    # the field is smooth, so points are far from independent: compare within 15%
    assert abs(disp.std() / float(REF["elastic_disp_std"]) - 1) < 0.15


def test_mix3d_rate_is_pointcepts() -> None:
    mix = Mix3DCollate(0.8)
    count = 0
    for b in range(DRAWS):
        clouds = [Data(pos=torch.zeros(2, 3), idx=torch.tensor([4 * b + i])) for i in range(4)]
        count += mix(clouds).num_graphs == 2
    assert near(count / DRAWS, float(REF["mix_rate"]), math.sqrt(0.16 / DRAWS))


def test_random_sphere_crop_centres_on_a_uniform_point() -> None:
    g = gen(14)
    crop = T.SphereCrop(point_max=1)
    line = torch.arange(50, dtype=torch.float64)[:, None] * torch.tensor([1.0, 0.0, 0.0])
    c = np.array([crop(Data(pos=line.clone()), g).pos[0, 0].item() for _ in range(DRAWS)])
    sd = math.sqrt((50**2 - 1) / 12)
    assert near(c.mean(), float(REF["sphere_random_centre_mean"]), sd / math.sqrt(DRAWS))
    assert near(c.std(), float(REF["sphere_random_centre_std"]), sd / math.sqrt(2 * DRAWS))
