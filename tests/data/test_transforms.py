"""Transforms: each does what it says, composes from YAML, and seeds per worker and rank."""

from __future__ import annotations

import math

import pytest
import torch
import yaml
from torch_geometric.data import Data

from lightning_pc.data import transforms as T
from lightning_pc.data.seeding import sample_generator


def cloud(n: int = 200, seed: int = 0) -> Data:
    g = torch.Generator().manual_seed(seed)
    pos = torch.rand(n, 3, generator=g) * 4 + 1
    normal = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=1)
    return Data(pos=pos, normal=normal, y=torch.arange(n), x=torch.rand(n, 4, generator=g))


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_normalize_scale() -> None:
    out = T.NormalizeScale()(cloud())
    assert out.pos.mean(0).abs().max() < 1e-5
    assert math.isclose(out.pos.norm(dim=1).max().item(), 1.0, rel_tol=1e-5)


@pytest.mark.parametrize("axis", ["x", "y", "z", "so3"])
def test_rotation_is_rigid(axis: str) -> None:
    d = cloud()
    before = torch.cdist(d.pos, d.pos, compute_mode="donot_use_mm_for_euclid_dist")
    up = "xyz".index(axis) if axis != "so3" else None
    pos0 = d.pos.clone()
    out = T.RandomRotate(axis)(d, gen(3))
    after = torch.cdist(out.pos, out.pos, compute_mode="donot_use_mm_for_euclid_dist")
    assert torch.allclose(after, before, atol=1e-4)
    assert not torch.allclose(out.pos, pos0)
    if up is not None:
        assert torch.allclose(out.pos[:, up], pos0[:, up])
    assert torch.allclose(out.normal.norm(dim=1), torch.ones(200), atol=1e-5)


def test_so3_covers_rotations() -> None:
    # The image of the up vector is uniform on the sphere: its mean z is about 0.
    zs = []
    for s in range(300):
        d = T.RandomRotate("so3")(Data(pos=torch.tensor([[0.0, 0.0, 1.0]])), gen(s))
        zs.append(d.pos[0, 2].item())
    assert abs(sum(zs) / len(zs)) < 0.1 and min(zs) < -0.9 and max(zs) > 0.9


def test_scale_shear_translate_and_normals() -> None:
    d = cloud()
    pos0 = d.pos.clone()
    out = T.RandomScale(0.5, 2.0, anisotropic=True)(d, gen(1))
    ratio = out.pos / pos0
    assert torch.allclose(ratio, ratio[:1].expand_as(ratio), atol=1e-5)  # per-axis factor
    assert (ratio[0] >= 0.5).all() and (ratio[0] <= 2).all() and ratio[0].unique().numel() == 3
    # normals stay unit and perpendicular to transformed tangent planes
    assert torch.allclose(out.normal.norm(dim=1), torch.ones(200), atol=1e-5)
    d = cloud()
    out = T.RandomShear(0.2)(d, gen(2))
    assert not torch.allclose(out.pos, cloud().pos)
    d = cloud()
    out = T.RandomTranslate(0.2)(d, gen(4))
    shift = out.pos - cloud().pos
    assert torch.allclose(shift, shift[:1].expand_as(shift)) and shift.abs().max() <= 0.2


def test_normals_follow_linear_maps() -> None:
    # A plane z = 0 with normal +z, sheared/scaled: the normal stays perpendicular to it.
    g = gen(0)
    pos = torch.cat([torch.rand(50, 2, generator=g), torch.zeros(50, 1)], 1)
    d = Data(pos=pos, normal=torch.tensor([[0.0, 0.0, 1.0]]).repeat(50, 1))
    d = T.Compose([T.RandomShear(0.3), T.RandomScale(0.5, 2.0)])(d, gen(5))
    tangent = d.pos[1:] - d.pos[:1]
    assert (tangent @ d.normal[0]).abs().max() < 1e-5


def test_jitter_is_clipped() -> None:
    out = T.RandomJitter(sigma=1.0, clip=0.05)(cloud(), gen(0))
    delta = out.pos - cloud().pos
    assert delta.abs().max() <= 0.05 + 1e-6 and delta.abs().max() > 0.04


def test_dropout_and_subsample_keep_attributes_aligned() -> None:
    out = T.RandomDropout(0.8)(cloud(), gen(0))
    n = out.pos.size(0)
    assert 1 <= n < 200 and out.y.shape == (n,) and out.x.shape == (n, 4)
    assert torch.equal(out.pos, cloud().pos[out.y])  # y carries the original index
    out = T.RandomSubsample(50)(cloud(), gen(1))
    assert out.pos.shape == (50, 3) and out.y.unique().numel() == 50
    assert torch.equal(out.normal, cloud().normal[out.y])
    small = T.RandomSubsample(500)(cloud(), gen(1))
    assert small.pos.shape == (200, 3)
    padded = T.RandomSubsample(500, pad=True)(cloud(), gen(1))
    assert padded.pos.shape == (500, 3) and padded.y.unique().numel() == 200


def test_farthest_point_subsample() -> None:
    d = cloud(300)
    out = T.FarthestPointSubsample(30, random_start=False)(d, None)
    assert out.pos.shape == (30, 3) and out.y.unique().numel() == 30
    assert out.y[0] == 0  # deterministic start
    # farther apart than a random subset of the same size
    rand = T.RandomSubsample(30)(cloud(300), gen(0))

    def min_gap(p: torch.Tensor) -> float:
        return (torch.cdist(p, p) + torch.eye(len(p)) * 1e9).min().item()

    assert min_gap(out.pos) > min_gap(rand.pos)
    a = T.FarthestPointSubsample(30)(cloud(300), gen(7))
    b = T.FarthestPointSubsample(30)(cloud(300), gen(7))
    assert torch.equal(a.y, b.y)  # reproducible with the same generator


def test_grid_subsample_train_and_eval() -> None:
    d = cloud(500)
    origin = d.pos.min(0).values  # grid_cluster's grid starts at the minimum

    def vox(p: torch.Tensor) -> torch.Tensor:
        return ((p - origin) / 1.0).floor()

    voxel = vox(d.pos)
    n_vox = torch.unique(voxel, dim=0).size(0)
    ev = T.GridSubsample(1.0, training=False, keep_inverse=True)(cloud(500), None)
    assert ev.pos.size(0) == n_vox
    kept_vox = vox(ev.pos)
    assert torch.unique(kept_vox, dim=0).size(0) == n_vox  # one point per voxel
    # every input point maps to the kept point of its own voxel
    assert torch.equal(kept_vox[ev.inverse_index], voxel)
    ev2 = T.GridSubsample(1.0, training=False)(cloud(500), None)
    assert torch.equal(ev2.y, ev.y)  # deterministic
    tr1 = T.GridSubsample(1.0)(cloud(500), gen(0))
    tr2 = T.GridSubsample(1.0)(cloud(500), gen(1))
    assert tr1.pos.size(0) == n_vox and not torch.equal(tr1.y, tr2.y)


def test_color_transforms() -> None:
    d = cloud()
    out = T.ChromaticJitter(std=0.05, p=1.0)(d, gen(0))
    assert not torch.equal(out.x[:, :3], cloud().x[:, :3])
    assert torch.equal(out.x[:, 3], cloud().x[:, 3])  # only the RGB columns
    assert out.x.min() >= 0 and out.x.max() <= 1
    out = T.ChromaticAutoContrast(p=1.0, blend=1.0)(cloud(), gen(0))
    assert torch.allclose(out.x[:, :3].min(0).values, torch.zeros(3), atol=1e-6)
    assert torch.allclose(out.x[:, :3].max(0).values, torch.ones(3), atol=1e-6)
    out = T.RandomColorDrop(p=1.0)(cloud(), gen(0))
    assert (out.x[:, :3] == 0).all()
    assert torch.equal(T.RandomColorDrop(p=0.0)(cloud(), gen(0)).x, cloud().x)
    with pytest.raises(ValueError, match="RGB"):
        T.RandomColorDrop(p=1.0)(Data(pos=torch.zeros(3, 3)), gen(0))


def test_build_from_yaml() -> None:
    spec = yaml.safe_load(
        """
        - class_path: RandomScale
          init_args: {low: 0.9, high: 1.1}
        - class_path: lightning_pc.data.transforms.RandomRotate
          init_args: {axis: so3}
        - NormalizeScale
        """
    )
    composed = T.build_transforms(spec)
    assert [type(t).__name__ for t in composed.transforms] == [
        "RandomScale",
        "RandomRotate",
        "NormalizeScale",
    ]
    assert composed.transforms[0].low == 0.9
    out = composed(cloud(), gen(0))
    assert math.isclose(out.pos.norm(dim=1).max().item(), 1.0, rel_tol=1e-5)
    with pytest.raises(ValueError, match="unknown transform"):
        T.build_transforms(["NoSuchThing"])
    with pytest.raises(ValueError, match="unexpected keys"):
        T.build_transforms([{"class_path": "NormalizeScale", "args": {}}])


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("RandomRotat", "x[1]: unknown transform 'RandomRotat'; did you mean 'RandomRotate'?"),
        ("randomscale", "x[1]: unknown transform 'randomscale'; did you mean 'RandomScale'?"),
        ("Blur", "x[1]: unknown transform 'Blur' (known: NormalizeScale, RandomRotate"),
        (
            {"class_path": "RandomRotate", "init_args": {"angle": 30}},
            "x[1]: RandomRotate has no argument 'angle' (RandomRotate accepts: axis='z', "
            "max_degrees=180, degrees=None, p=1, center='origin')",
        ),
        (
            {"class_path": "GridSubsample", "init_args": {"voxel_size": 0.1, "keep_invers": True}},
            "x[1]: GridSubsample has no argument 'keep_invers'; did you mean 'keep_inverse'?",
        ),
        (
            {"class_path": "RandomRotate", "init_args": {"axis": "w"}},
            "x[1]: RandomRotate: argument 'axis' must be one of 'x', 'y', 'z', 'so3', got 'w'",
        ),
        (
            {"class_path": "RandomJitter", "init_args": {"sigma": "0.01"}},
            "x[1]: RandomJitter: argument 'sigma' must be float, got '0.01'",
        ),
        ("RandomSubsample", "x[1]: RandomSubsample: missing a required argument: 'num_points'"),
        (
            {"class_path": "RandomScale", "init_args": {"low": 2.0, "high": 1.0}},
            "x[1]: RandomScale: need 0 < low <= high",
        ),
        ({"class_path": "no.such.Module"}, "x[1]: cannot import transform 'no.such.Module'"),
        ({"init_args": {}}, "x[1]: a transform spec is a class name or a dict with 'class_path'"),
    ],
)
def test_bad_spec_names_its_place_and_what_is_accepted(spec: object, message: str) -> None:
    with pytest.raises(T.TransformSpecError) as info:
        T.build_transforms(["NormalizeScale", spec], "x")
    assert str(info.value).startswith(message), str(info.value)


def test_data_module_checks_transforms_when_constructed(monkeypatch: pytest.MonkeyPatch) -> None:
    from lightning_pc.data import SyntheticShapesDataModule

    def no_data(*args: object, **kwargs: object) -> None:
        raise AssertionError("data was built before the transform specs were checked")

    monkeypatch.setattr(SyntheticShapesDataModule, "build_datasets", no_data)
    with pytest.raises(T.TransformSpecError, match=r"^train_transforms\[0\]: unknown transform"):
        SyntheticShapesDataModule(train_transforms=["RandomRotat"])
    with pytest.raises(T.TransformSpecError, match=r"^eval_transforms\[1\]: RandomScale has no"):
        SyntheticShapesDataModule(
            eval_transforms=[
                "NormalizeScale",
                {"class_path": "RandomScale", "init_args": {"lo": 0.5}},
            ]
        )
    SyntheticShapesDataModule(train_transforms=[], eval_transforms=["NormalizeScale"])  # fine


def test_sample_generator_seeding() -> None:
    torch.manual_seed(123)
    a = torch.rand(5, generator=sample_generator(0))
    torch.manual_seed(123)
    b = torch.rand(5, generator=sample_generator(0))
    torch.manual_seed(123)
    c = torch.rand(5, generator=sample_generator(1))
    torch.manual_seed(124)
    d = torch.rand(5, generator=sample_generator(0))
    assert torch.equal(a, b)  # reproducible under the same seed
    assert not torch.equal(a, c)  # different per rank
    assert not torch.equal(a, d)  # different per worker seed


@pytest.mark.parametrize(
    ("cls", "kwargs", "message"),
    [
        (T.RandomRotate, {"degrees": [10, -10]}, "low <= high"),
        (T.RandomRotate, {"degrees": [-10, 10], "max_degrees": 30.0}, "not both"),
        (T.RandomRotate, {"axis": "so3", "degrees": [-10, 10]}, "not so3"),
        (T.RandomRotate, {"p": 1.5}, "probability"),
        (T.RandomRotate, {"center": "middle"}, "center must be"),
        (T.RandomRotate, {"center": [0, 0]}, "center must be"),
        (T.RandomFlip, {"axes": "xw"}, "axes"),
        (T.RandomFlip, {"axes": "xx"}, "axes"),
        (T.RandomDropout, {"ratio": 1.0}, "ratio"),
        (T.RandomDropout, {"ratio": 0.2, "max_ratio": 0.5}, "not both"),
        (T.ChromaticTranslation, {"ratio": -0.1}, "ratio"),
        (T.ChromaticJitter, {"p": -0.1}, "probability"),
        (T.SphereCrop, {"point_max": 0}, "point_max"),
        (T.SphereCrop, {"sample_rate": 1.5}, "sample_rate"),
        (T.SphereCrop, {"mode": "given"}, "mode"),
        (T.ElasticDistortion, {"distortion_params": [[0.0, 0.4]]}, "granularit"),
        (T.ElasticDistortion, {"distortion_params": [0.2, 0.4]}, "granularit"),
        (T.PointClip, {"point_cloud_range": [1, 0, 0, 0, 1, 1]}, "min <= max"),
        (T.NormalizeColor, {"scale": 0.0}, "scale"),
    ],
)
def test_recipe_transforms_refuse_bad_arguments(cls: type, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cls(**kwargs)


def test_rotate_about_the_bounding_box_centre_and_with_probability() -> None:
    d = cloud()
    centre = (d.pos.min(0).values + d.pos.max(0).values) / 2
    out = T.RandomRotate("x", degrees=[30, 30], center="bbox")(cloud(), gen(0))
    # the bbox centre is fixed: the mean moves only as much as the rotation of its offset
    rel = d.pos - centre
    expected = rel @ T._axis_rotation(0, math.radians(30)).T + centre
    assert torch.allclose(out.pos, expected, atol=1e-5)
    assert torch.equal(T.RandomRotate("z", p=0.0)(cloud(), gen(0)).pos, cloud().pos)
    # the default (p = 1, symmetric range) draws as before: one number for the angle
    g = gen(3)
    u = torch.rand(1, generator=g).item()
    out = T.RandomRotate("z", max_degrees=90.0)(cloud(), gen(3))
    expected = cloud().pos @ T._axis_rotation(2, math.radians(90.0) * (u * 2 - 1)).T
    assert torch.allclose(out.pos, expected, atol=1e-5)


def test_flip_negates_normals_and_only_the_listed_axes() -> None:
    out = T.RandomFlip(p=1.0, axes="z")(cloud(), gen(0))
    assert torch.equal(out.pos[:, 2], -cloud().pos[:, 2])
    assert torch.equal(out.pos[:, :2], cloud().pos[:, :2])
    assert torch.allclose(out.normal[:, 2], -cloud().normal[:, 2])
    assert torch.equal(T.RandomFlip(p=0.0)(cloud(), gen(0)).pos, cloud().pos)


def test_elastic_distortion_refuses_a_grid_too_large() -> None:
    far = Data(pos=torch.tensor([[0.0, 0.0, 0.0], [500.0, 500.0, 20.0]]))
    with pytest.raises(ValueError, match="too large"):
        T.ElasticDistortion(p=1.0)(far, gen(0))


def test_mix3d_draw_follows_the_seed_and_the_batch() -> None:
    from lightning_pc.data.collate import Mix3DCollate, merge_clouds

    def batch(start: int) -> list[Data]:
        return [Data(pos=torch.zeros(3, 3), idx=torch.tensor([start + i])) for i in range(2)]

    mix = Mix3DCollate(0.5)
    decisions = [mix(batch(2 * b)).num_graphs for b in range(200)]
    assert decisions == [mix(batch(2 * b)).num_graphs for b in range(200)]  # reproducible
    assert 60 < decisions.count(1) < 140  # about half the batches mixed
    with pytest.raises(ValueError, match="probability"):
        Mix3DCollate(1.5)
    a = Data(pos=torch.zeros(3, 3), inverse_index=torch.arange(3))
    with pytest.raises(ValueError, match="inverse_index"):
        merge_clouds(a, a.clone())
    with pytest.raises(ValueError, match="different attributes"):
        merge_clouds(Data(pos=torch.zeros(2, 3)), Data(pos=torch.zeros(2, 3), x=torch.ones(2, 1)))
