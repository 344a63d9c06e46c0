"""PTv3 options for Pointcept's released PT-v3m1 weights: the stem without coordinates,
Pointcept's grid, v1.5.1's block wiring (``legacy``), relative position encoding, the
presets, and test-time grid sampling in fragments.

Equality with Pointcept's model files on shared weights is checked by
``benchmarks/ptv3_oracle.py`` in its side environment (the parameter counts it printed are
pinned here); these tests check each option against its definition, without Pointcept.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from lightning_pc.models.ptv3 import PRESETS, PTv3, ptv3_input, ptv3_preset
from lightning_pc.nn.grid_sample import grid_fragments, pointcept_grid, predict_fragments
from lightning_pc.nn.point import Point
from lightning_pc.nn.ptv3 import CPE, RPE, SerializedAttention
from tests.conftest import tiny_kwargs

# two blocks per stage, so that a block reads another block's output in its CPE
TINY: dict[str, Any] = tiny_kwargs(
    "ptv3", drop_path=0.0, enc_depths=[2, 2], dec_depths=[2], shuffle_orders=False
)
del TINY["grid_size"]


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def room(n: int, seed: int, channels: int = 6) -> Point:
    g = torch.Generator().manual_seed(seed)
    pos = torch.rand(n, 3, generator=g) * torch.tensor([1.2, 1.0, 0.6])
    return Point(pos, torch.rand(n, channels, generator=g) * 2 - 1)


# --- stem and grid ------------------------------------------------------------------------


def test_stem_without_coordinates_reads_in_channels_exactly() -> None:
    ours = PTv3(13, in_channels=6, stem_xyz=False)
    default = PTv3(13, in_channels=3)
    # Pointcept's stem: 5x5x5 conv of in_channels=6 -> 32, no bias
    assert ours.backbone.embedding.conv.weight.shape == (125, 6, 32)
    assert count(ours) == count(default)  # the same stem width as xyz + 3 features
    with pytest.raises(ValueError, match="stem_xyz=False needs point features"):
        PTv3(13, in_channels=0, stem_xyz=False)
    with pytest.raises(ValueError, match="grid_origin"):
        PTv3(13, grid_origin="corner")


def test_without_coordinates_a_whole_cell_shift_leaves_the_logits_unchanged() -> None:
    torch.manual_seed(0)
    data = room(400, 0)
    shifted = Point(data.pos + torch.tensor([0.5, -1.0, 2.0]), data.x)  # 0.1-cells: whole
    for stem_xyz, same in ((False, True), (True, False)):
        model = PTv3(5, in_channels=6, grid_size=0.1, stem_xyz=stem_xyz,
                     grid_origin="pointcept", **TINY).eval()  # fmt: skip
        with torch.no_grad():
            a, b = model(data), model(shifted)
        assert torch.allclose(a, b, atol=1e-5) is same


def numpy_grid(pos: Tensor, size: float) -> np.ndarray:
    grid = np.floor(pos.numpy() / np.array(size)).astype(int)  # what GridSample computes
    return grid - grid.min(0)  # type: ignore[no-any-return]


def test_pointcept_grid_is_numpy_float64_floor_minus_the_minimum_cell() -> None:
    g = torch.Generator().manual_seed(3)
    pos = (torch.rand(2000, 3, generator=g) * 3 - 1).float()
    pos[:10] = torch.tensor([0.06, 0.14, 0.02])  # float32 values just under a cell boundary
    batch = torch.zeros(2000, dtype=torch.long)
    ours = pointcept_grid(pos, batch, 1, 0.02)
    assert np.array_equal(ours.numpy(), numpy_grid(pos, 0.02))
    single = torch.floor(pos / 0.02).long()  # in float32, 0.06 / 0.02 rounds up to 3
    assert not torch.equal(ours, single - single.min(0).values)
    # per cloud: each cloud's minimum cell
    other = pos * 0.5 + 5
    two = pointcept_grid(torch.cat([pos, other]), torch.cat([batch, batch + 1]), 2, 0.02)
    assert torch.equal(two[:2000], ours)
    assert np.array_equal(two[2000:].numpy(), numpy_grid(other, 0.02))


def test_pointcept_origin_uses_a_given_grid_as_is() -> None:
    pos = torch.tensor([[0.0, 0.0, 0.0], [0.01, 0.0, 0.0], [0.5, 0.5, 0.5]])
    grid = torch.tensor([[7, 3, 1], [7, 3, 1], [2, 0, 9]])
    x = torch.tensor([[1.0], [3.0], [5.0]])
    vox = ptv3_input(Point(pos, x, grid_coord=grid), 1, 0.02, "pointcept")
    assert vox.grid_coord.tolist() == [[2, 0, 9], [7, 3, 1]]
    assert vox.x.flatten().tolist() == [5.0, 2.0]  # mean of the voxel's points
    assert vox.inverse.tolist() == [1, 1, 0]


# --- legacy: Pointcept v1.5.1's CPE inputs ------------------------------------------------


Recorded = tuple[list[Tensor], list[Tensor], list[Tensor], list[Tensor]]


def cpe_inputs(model: nn.Module, data: Point) -> Recorded:
    """Per block, in call order: what its CPE convolved, its input, and its MLP branch;
    and the unpooling's projected skip features."""
    cpe_in: list[Tensor] = []
    block_in: list[Tensor] = []
    mlp_out: list[Tensor] = []
    skip: list[Tensor] = []
    hooks = [
        model.backbone.up[0].proj_skip_norm.register_forward_hook(lambda _m, _a, o: skip.append(o))
    ]
    for m in model.modules():
        if isinstance(m, CPE):
            hooks.append(m.register_forward_hook(lambda _m, a, _o: cpe_in.append(a[0])))
        if type(m).__name__ == "MLP":
            hooks.append(m.register_forward_hook(lambda _m, _a, o: mlp_out.append(o)))
    originals = []
    for m in model.modules():
        if type(m).__name__ == "Block":
            run = m.run
            originals.append((m, run))

            def spy(feat: Tensor, level: Point, cpe_input: Tensor | None = None, _run=run) -> Any:
                block_in.append(feat)
                return _run(feat, level, cpe_input)

            m.run = spy  # type: ignore[method-assign]
    try:
        with torch.no_grad():
            model(data)
    finally:
        for h in hooks:
            h.remove()
        for m, run in originals:
            m.run = run  # type: ignore[method-assign]
    return cpe_in, block_in, mlp_out, skip


def test_legacy_cpe_reads_the_previous_blocks_mlp_branch_and_nothing_else_changes() -> None:
    torch.manual_seed(0)
    model = PTv3(5, in_channels=6, grid_size=0.05, stem_xyz=False, legacy=True, **TINY).eval()
    data = room(600, 1)
    cpe_in, block_in, mlp_out, skip = cpe_inputs(model, data)
    # blocks in call order: enc stage 0 (2), enc stage 1 (2), dec stage 0 (2)
    assert len(cpe_in) == len(block_in) == len(mlp_out) == 6
    for i in (1, 3, 5):  # a stage's later blocks: v1.5.1 convolved the MLP branch
        assert torch.equal(cpe_in[i], mlp_out[i - 1])
        assert not torch.allclose(cpe_in[i], block_in[i])
    # a stage's first block: its input after the stem or a pooling, the projected skip
    # features after the unpooling (as without legacy)
    assert torch.equal(cpe_in[0], block_in[0]) and torch.equal(cpe_in[2], block_in[2])
    assert torch.equal(cpe_in[4], skip[0]) and not torch.allclose(cpe_in[4], block_in[4])
    # the same weights without legacy: every block reads its input but after the unpooling
    model.backbone.legacy = False
    cpe_in, block_in, _, skip = cpe_inputs(model, data)
    for i in (0, 1, 2, 3, 5):
        assert torch.equal(cpe_in[i], block_in[i])
    assert torch.equal(cpe_in[4], skip[0])


def test_legacy_only_changes_stages_with_several_blocks() -> None:
    data = room(600, 2)
    one = tiny_kwargs("ptv3", drop_path=0.0, shuffle_orders=False)  # one block per stage
    del one["grid_size"]
    outs = {}
    for depths, kw in (("one", one), ("two", TINY)):
        for legacy in (False, True):
            torch.manual_seed(0)
            model = PTv3(5, in_channels=6, grid_size=0.05, legacy=legacy, **kw).eval()
            with torch.no_grad():
                outs[depths, legacy] = model(data)
    assert torch.equal(outs["one", False], outs["one", True])
    assert not torch.allclose(outs["two", False], outs["two", True], atol=1e-3)


def test_legacy_in_post_norm_reads_the_block_output() -> None:
    torch.manual_seed(0)
    kw = dict(TINY, pre_norm=False)
    data = room(500, 4)
    outs = []
    for legacy in (False, True):
        torch.manual_seed(0)
        model = PTv3(5, in_channels=6, grid_size=0.05, legacy=legacy, **kw).eval()
        with torch.no_grad():
            outs.append(model(data))
    assert torch.equal(outs[0], outs[1])  # v1.5.1's norm2 wrote the sparse tensor


# --- relative position encoding -----------------------------------------------------------


def test_rpe_bound_and_table_follow_pointcepts_float_arithmetic() -> None:
    assert RPE(128, 2).pos_bnd == 15  # int(512 ** (1 / 3) * 2) = int(15.999...)
    assert RPE(1024, 4).pos_bnd == 31
    assert RPE(48, 4).pos_bnd == 11
    rpe = RPE(128, 2)
    assert rpe.rpe_table.shape == (93, 2) and rpe.rpe_num == 31


def test_rpe_indexes_the_table_per_axis_on_a_hand_computed_pair() -> None:
    rpe = RPE(128, 2)
    with torch.no_grad():
        rpe.rpe_table.copy_(torch.stack([torch.arange(93.0), 1000 * torch.arange(93.0)], 1))
    grid = torch.tensor([[[0, 0, 0], [20, -3, 1]]])  # one patch of two voxels
    bias = rpe(grid)  # [1, H, 2, 2]
    # (i=0, j=1): g0 - g1 = (-20, 3, -1) -> clamp (-15, 3, -1) -> rows 0, 31 + 18, 62 + 14
    # (i=1, j=0): (20, -3, 1) -> (15, -3, 1) -> rows 30, 31 + 12, 62 + 16
    # (i=j): rows 15, 46, 77
    expected = torch.tensor([[15 + 46 + 77, 0 + 49 + 76], [30 + 43 + 78, 15 + 46 + 77]]).float()
    torch.testing.assert_close(bias[0, 0], expected)
    torch.testing.assert_close(bias[0, 1], 1000 * expected)


def test_attention_with_rpe_equals_softmax_of_biased_logits() -> None:
    torch.manual_seed(0)
    grid = torch.unique(torch.randint(0, 40, (60, 3)), dim=0)
    n1 = 9  # cloud 0 shorter than the patch (a masked row), cloud 1 longer
    batch = torch.cat([torch.zeros(n1, dtype=torch.long), torch.ones(len(grid) - n1).long()])
    voxels = Point(grid.float(), None, batch, grid_coord=grid)
    level = voxels.with_serialization(voxels.serialization(("z",)))
    attn = SerializedAttention(8, 2, patch_size=16, enable_rpe=True).eval()
    assert attn.rpe.pos_bnd == 7  # int(64 ** (1 / 3) * 2) = int(7.999...)
    with torch.no_grad():
        attn.rpe.rpe_table.uniform_(-2, 2)
    feat = torch.randn(len(grid), 8)
    with torch.no_grad():
        out = attn(feat, level)
    q, k, v = attn.qkv(feat).detach().chunk(3, dim=1)
    order = level.serialized.order[0]
    table = attn.rpe.rpe_table.detach()
    ref = torch.empty(len(grid), 8)
    for lo, hi in [(0, n1), (n1, len(grid))]:
        pos = order[lo:hi]
        m = hi - lo
        for t in range(m):
            if m < 16:
                idx = pos
            else:
                j = min(t // 16, (m + 15) // 16 - 1)
                start = min(j * 16, m - 16)
                idx = pos[start : start + 16]
            rel = (grid[pos[t]] - grid[idx]).clamp(-7, 7) + 7  # [L, 3]
            bias = table[rel[:, 0]] + table[15 + rel[:, 1]] + table[30 + rel[:, 2]]  # [L, H]
            for h in range(2):
                sl = slice(4 * h, 4 * h + 4)
                logits = q[pos[t], sl] @ k[idx, sl].T * 4**-0.5 + bias[:, h]
                ref[pos[t], sl] = torch.softmax(logits, 0) @ v[idx, sl]
    with torch.no_grad():
        torch.testing.assert_close(out, attn.proj(ref), atol=1e-5, rtol=1e-5)
        # the bias matters: a zero table gives another result
        attn.rpe.rpe_table.zero_()
        assert not torch.allclose(attn(feat, level), out, atol=1e-3)


# --- presets ------------------------------------------------------------------------------

# parameter counts of Pointcept's PT-v3m1 backbone (v1.5.1, the config's arguments) and its
# linear head, printed by benchmarks/ptv3_oracle.py
OFFICIAL = {
    "scannet-semseg-pt-v3m1-0-base": 46_167_572,
    "scannet200-semseg-pt-v3m1-0-base": 46_179_272,
    "s3dis-semseg-pt-v3m1-0-rpe": 46_190_553,
}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_build_the_released_architectures(name: str) -> None:
    model = ptv3_preset(name)
    assert count(model) == OFFICIAL[name]
    bb = model.backbone
    assert bb.legacy and not bb.stem_xyz and bb.grid_origin == "pointcept"
    assert bb.grid_size == 0.02 and bb.embedding.conv.weight.shape[1] == 6
    rpe = [b.attn.rpe for s in [*bb.enc, *bb.dec] for b in s]
    assert all(r is not None for r in rpe) is name.endswith("-rpe")
    assert not ptv3_preset(name, legacy=False, drop_path=0.0).backbone.legacy
    with pytest.raises(KeyError, match="known: scannet"):
        ptv3_preset("scannet-semseg-pt-v3m1-9")


# --- grid sampling in fragments -----------------------------------------------------------


def test_grid_fragments_take_one_point_per_voxel_cycling_small_voxels() -> None:
    # voxel A (cell 0) holds points 0, 3, 5; voxel B (cell 1) point 1; voxel C (cell 2) 2, 4
    grid = torch.tensor([[0, 0, 0], [1, 0, 0], [2, 0, 0], [0, 0, 0], [2, 0, 0], [0, 0, 0]])
    frags = grid_fragments(grid)
    assert [f.tolist() for f in frags] == [[0, 1, 2], [3, 1, 4], [5, 1, 2]]
    assert grid_fragments(grid[:0]) == []


class Recorder(nn.Module):
    """Logits from the features (a point's logits do not depend on its fragment); records
    the fragments it sees."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Point] = []

    def forward(self, point: Point) -> Tensor:
        self.seen.append(point)
        return point.x[:, :4] * 3


def test_predict_fragments_averages_over_the_fragments_holding_each_point() -> None:
    data = room(300, 5, channels=4)
    data = Point(torch.cat([data.pos, data.pos[:50]]), torch.cat([data.x, -data.x[:50]]))
    model = Recorder()
    prob = predict_fragments(model, data, 0.5, fragments_per_batch=2)
    grid = pointcept_grid(data.pos, data.batch, 1, 0.5)
    frags = grid_fragments(grid)
    assert len(frags) >= 3 and sum(p.num_clouds for p in model.seen) == len(frags)
    for part in model.seen:  # each fragment: one point per voxel of the scan's grid
        for b in range(part.num_clouds):
            g = part.grid_coord[part.batch == b]
            assert len(torch.unique(g, dim=0)) == len(g) == len(torch.unique(grid, dim=0))
    ref = torch.softmax(data.x * 3, 1)  # each point's probabilities, whatever fragment
    torch.testing.assert_close(prob, ref)
    torch.testing.assert_close(prob.sum(1), torch.ones(350))


def test_predict_fragments_with_ptv3_batched_equals_one_at_a_time() -> None:
    torch.manual_seed(0)
    model = PTv3(5, in_channels=6, grid_size=0.1, stem_xyz=False, grid_origin="pointcept",
                 legacy=True, **TINY).eval()  # fmt: skip
    data = room(700, 6)
    data = Point(torch.cat([data.pos, data.pos[:300] + 0.01]), torch.cat([data.x, data.x[:300]]))
    with torch.no_grad():
        one = predict_fragments(model, data, 0.1)
        three = predict_fragments(model, data, 0.1, fragments_per_batch=3)
    torch.testing.assert_close(one, three, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="fragments_per_batch"):
        predict_fragments(model, data, 0.1, fragments_per_batch=0)
