"""Square x-y blocks of a scan (``ScanBlocks``): the blocks of whole-scan prediction and of
precise scene evaluation.

``ScanBlocks`` finds the non-empty blocks a chunk of points at a time and sweeps along the
longer side; here its ``(i, j, rows)`` must equal a brute-force scan of every block of the
grid against every point, on hostile layouts and on hypothesis-drawn ones, in float32 and
float64, with chunks smaller than the scan.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lightning_pc.callbacks.scene_evaluation import scene_passes
from lightning_pc.data.datasets import scenes
from lightning_pc.data.datasets.scenes import ScanBlocks, SceneFragments, block_origins

Blocks = dict[tuple[int, int], np.ndarray]


def brute_force(xy: np.ndarray, block_size: float, stride: float) -> Blocks:
    """Every block of the grid tested against every point.

    The rule (``last_blocks`` / ``in_blocks``): with ``rel = xy - low`` in ``xy``'s dtype and
    ``home = min(floor(rel / stride), n - 1)`` (the quotient in ``xy``'s dtype, ``n`` the
    blocks along the axis), a point lies in block ``i`` of an axis when ``home >= i`` and
    either ``rel <= i * stride + block_size`` (in float64) or ``home == i``; in block
    ``(i, j)`` when it lies in ``i`` along x and ``j`` along y.
    """
    low, nx, ny = block_origins(xy, block_size, stride)
    rel = xy - low
    quotient = rel / xy.dtype.type(stride)
    home = np.minimum(np.floor(quotient).astype(np.int64), [nx - 1, ny - 1])
    rel64 = rel.astype(np.float64)

    def along(axis: int, i: int) -> np.ndarray:
        h = home[:, axis]
        return (h >= i) & ((rel64[:, axis] <= i * stride + block_size) | (h == i))

    in_y = [along(1, j) for j in range(ny)]
    found: Blocks = {}
    for i in range(nx):
        in_x = along(0, i)
        for j in range(ny):
            rows = np.flatnonzero(in_x & in_y[j])
            if len(rows):
                found[(i, j)] = rows
    return found


def scan(xy: np.ndarray, block_size: float, stride: float, chunk: int | None = None) -> Blocks:
    """``ScanBlocks``' blocks, checked for what holds whatever the rule: counted exactly,
    each once, rows sorted and unique, every point in one at least, swept along the longer
    side (the sweep axis' index never decreases)."""
    blocks = ScanBlocks(xy, block_size, stride, chunk)
    got = list(blocks)
    assert len(got) == len(blocks)
    found = {(i, j): rows for i, j, rows in got}
    assert len(found) == len(got)  # no block twice
    covered = np.zeros(len(xy), dtype=bool)
    for rows in found.values():
        assert rows.dtype == np.int64 and len(rows) and (np.diff(rows) > 0).all()
        covered[rows] = True
    assert covered.all(), f"{int((~covered).sum())} points in no block"
    axis = 0 if blocks.nx >= blocks.ny else 1
    sweep = [ij[axis] for ij in found]
    assert sweep == sorted(sweep)
    return found


def assert_same(got: Blocks, want: Blocks) -> None:
    assert sorted(got) == sorted(want)
    for key, rows in want.items():
        np.testing.assert_array_equal(got[key], rows, err_msg=f"block {key}")


def assert_geometry(xy: np.ndarray, found: Blocks, block_size: float, stride: float) -> None:
    """Independently of the float rule: a block's points lie within its square (to a few
    ulps of the coordinates), and every point clearly inside a block's square is in it."""
    xy64 = xy.astype(np.float64)
    low = xy64.min(0)
    span = float(np.abs(xy64).max()) + block_size
    tol = 8 * np.finfo(xy.dtype).eps * span
    rel = xy64 - low
    for (i, j), rows in found.items():
        corner = np.array([i * stride, j * stride])
        assert (rel[rows] >= corner - tol).all() and (rel[rows] <= corner + block_size + tol).all()
        clearly = ((rel > corner + tol) & (rel < corner + block_size - tol)).all(1)
        assert np.isin(np.flatnonzero(clearly), rows).all(), f"block {(i, j)} misses points"


def check(xy: np.ndarray, block_size: float, stride: float, chunk: int | None = None) -> Blocks:
    found = scan(xy, block_size, stride, chunk)
    assert_same(found, brute_force(xy, block_size, stride))
    assert_geometry(xy, found, block_size, stride)
    return found


# --- hostile layouts ------------------------------------------------------------------------
def corridor(axis: int, dtype: type = np.float64, offset: float = 0.0) -> np.ndarray:
    """A 4 m x 120 m corridor (points in random order), long along ``axis``."""
    rng = np.random.default_rng(axis)
    xy = np.c_[rng.uniform(0, 120, 3000), rng.uniform(0, 4, 3000)]
    return (xy[:, [axis, 1 - axis]] + offset).astype(dtype)


def on_edges(stride: float, dtype: type) -> np.ndarray:
    """Points on the block edges (multiples of ``stride`` and of ``stride / 2``), and the
    next float above and below each."""
    k = np.arange(0, 13) * (stride / 2)
    grid = np.stack(np.meshgrid(k, k), -1).reshape(-1, 2).astype(dtype)
    up, down = np.nextafter(grid, dtype(np.inf)), np.nextafter(grid, dtype(-np.inf))
    return np.concatenate([grid, up[1:], down[1:]])


def along_edges(stride: float, dtype: type, count: int = 400) -> np.ndarray:
    """``count`` multiples of ``stride / 2`` along x and y (far out, where rounding of
    float32 puts some an ulp past a block edge), and the next float above and below each."""
    k = (np.arange(count) * (stride / 2)).astype(dtype)
    xy = np.c_[k, k[::-1]]
    up, down = np.nextafter(xy, dtype(np.inf)), np.nextafter(xy, dtype(-np.inf))
    return np.concatenate([xy, up[1:], down[1:]])


LAYOUTS = {
    "corridor_y": (lambda: corridor(1), 2.0, 1.0),
    "corridor_x": (lambda: corridor(0), 2.0, 1.0),
    "corridor_y_float32_far": (lambda: corridor(1, np.float32, 1e5), 3.0, 1.5),
    "one_point": (lambda: np.array([[3.25, -7.5]]), 2.0, 1.0),
    "one_point_far": (lambda: np.array([[1e5 + 0.3, 2e5 + 0.7]], np.float32), 2.0, 1.0),
    "duplicates": (lambda: np.tile([[1.5, 2.5]], (500, 1)), 2.0, 1.0),
    "duplicates_and_one": (lambda: np.r_[np.tile([[0.0, 0.0]], (300, 1)), [[4.0, 4.0]]], 2.0, 1.0),
    "edges_integer": (lambda: on_edges(1.0, np.float64), 2.0, 1.0),
    "edges_tenths": (lambda: on_edges(0.1, np.float64), 0.3, 0.1),
    "edges_float32": (lambda: on_edges(0.3, np.float32), 0.6, 0.3),
    "edges_stride_equals_size": (lambda: on_edges(0.3, np.float32), 0.3, 0.3),
    "edges_far_stride_equals_size": (lambda: along_edges(0.3, np.float32), 0.3, 0.3),
    "edges_far_float64": (lambda: along_edges(0.1, np.float64), 0.1, 0.1),
    "float32_far": (
        lambda: (np.random.default_rng(5).uniform(0, 30, (2000, 2)) + 1e5).astype(np.float32),
        2.0,
        1.0,
    ),
    # float32 rounding puts the farthest point an ulp past the last block's upper edge
    # (1.3000000715 > 4 * 0.25 + 0.3): only its home block holds it
    "float32_last_block": (
        lambda: np.array([[0, 0], [1.3000000715255737, 0]], np.float32),
        0.3,
        0.25,
    ),
}


@pytest.mark.parametrize("chunk", [None, 7])
@pytest.mark.parametrize("name", list(LAYOUTS))
def test_blocks_equal_a_brute_force_scan_on_hostile_layouts(name: str, chunk: int | None) -> None:
    make, block_size, stride = LAYOUTS[name]
    check(make(), block_size, stride, chunk)


def test_long_corridors_are_swept_along_their_length() -> None:
    """A corridor along y is 3 blocks wide in x and 119 long in y: the sweep runs along y,
    one slab (3 blocks) at a time (along x, a slab would hold a third of the scan)."""
    for axis in (0, 1):
        xy = corridor(axis)
        blocks = ScanBlocks(xy, 2.0, 1.0)
        assert (blocks.nx, blocks.ny)[1 - axis] == 3 and (blocks.nx, blocks.ny)[axis] == 119
        along = [(i, j)[axis] for i, j, _ in blocks]
        assert along == np.repeat(np.arange(119), 3).tolist()


def test_the_grid_reaches_every_point_and_no_further() -> None:
    rng = np.random.default_rng(1)
    for block_size, stride in ((2.0, 1.0), (0.3, 0.25), (3.0, 3.0), (1.0, 0.1)):
        xy = rng.uniform(-5, 17, (500, 2))
        low, nx, ny = block_origins(xy, block_size, stride)
        extent = xy.max(0) - low
        for n, e in zip((nx, ny), extent):
            assert (n - 1) * stride + block_size >= e - 1e-9  # the last block reaches the end
            assert n == 1 or (n - 2) * stride + block_size < e  # the one before does not


def test_empty_scan_and_bad_stride() -> None:
    assert list(ScanBlocks(np.zeros((0, 2)), 2.0, 1.0)) == []
    with pytest.raises(ValueError, match="stride"):
        ScanBlocks(np.zeros((3, 2)), 1.0, 2.0)


# --- hypothesis: drawn layouts, on and off the edges ----------------------------------------
PROPERTY = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,  # the same cases in every run; a failure prints its inputs
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SIZES = [(2.0, 1.0), (3.0, 1.5), (0.3, 0.1), (0.3, 0.25), (1.0, 1.0), (0.1, 0.1), (1.5, 0.4)]


@st.composite
def layouts(draw: st.DrawFn) -> tuple[np.ndarray, float, float, int | None]:
    block_size, stride = draw(st.sampled_from(SIZES))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    n = draw(st.integers(1, 300))
    # coordinates on a lattice of stride / q (q = 1, 2, 3: on block edges and between them),
    # or uniform; stretched along x or y; shifted far from the origin
    q = draw(st.sampled_from([1, 2, 3, None]))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    cells = draw(st.sampled_from([1, 4, 40]))
    stretch = draw(st.sampled_from([(1, 1), (1, 20), (20, 1)]))
    limit = np.array(stretch) * cells
    if q is None:
        xy = rng.uniform(0, 1, (n, 2)) * limit * stride
    else:
        xy = rng.integers(0, limit * q + 1, (n, 2)) * (stride / q)
    duplicates = draw(st.integers(0, 3))
    if duplicates:
        xy = np.concatenate([xy, np.repeat(xy[:1], duplicates * 10, 0)])
    offset = draw(st.sampled_from([0.0, -37.5, 1e5]))
    xy = (xy + offset).astype(dtype)
    chunk = draw(st.sampled_from([None, 1, 5, 64]))
    return xy[rng.permutation(len(xy))], block_size, stride, chunk


@PROPERTY
@given(layouts())
def test_blocks_equal_a_brute_force_scan_on_drawn_layouts(
    case: tuple[np.ndarray, float, float, int | None],
) -> None:
    check(*case)


# --- the two users of ScanBlocks ------------------------------------------------------------
def test_scene_fragments_are_the_blocks_centred(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whole-scan prediction, with chunks smaller than the scan: one fragment per block,
    its points the block's rows, moved by the block's centre."""
    monkeypatch.setattr(scenes, "SCAN_CHUNK", 97)
    rng = np.random.default_rng(4)
    pos = np.c_[rng.uniform(0, 2, 1500), rng.uniform(0, 40, 1500), rng.uniform(0, 3, 1500)]
    pos = (pos + [1e5, 2e5, 10.0]).astype(np.float32)  # far from the origin, float32 file
    path = tmp_path / "corridor.npy"
    np.save(path, pos)
    frags = list(SceneFragments([path], (), block_size=2.0, stride=1.0, voxel_size=None))
    blocks = ScanBlocks(pos[:, :2], 2.0, 1.0, chunk=10_000)  # one chunk: the same blocks
    want = list(blocks)
    assert len(frags) == len(want) == int(frags[0].num_fragments)
    for f, (i, j, rows) in zip(frags, want):
        np.testing.assert_array_equal(f.source_rows.numpy(), rows)
        x0, y0 = blocks.corner(i, j)
        centre = np.array([x0 + 1.0, y0 + 1.0])
        moved = pos[rows, :2].astype(np.float64) - centre
        np.testing.assert_allclose(f.pos[f.inverse_index, :2].numpy(), moved, atol=1e-5)
        assert np.abs(moved).max() <= 1.0 + 1e-2  # within the block (float32 at 1e5: 8 mm)


@pytest.mark.parametrize(
    ("xs", "block_size", "stride"),
    [
        (np.arange(0, 200) * 0.3, 0.3, 0.3),  # blocks edge to edge: x = 7.5 fell between two
        (np.array([0.0, 1.3000000715255737]), 0.3, 0.25),  # an ulp past the last block
    ],
)
def test_scene_fragments_cover_float32_points_rounded_past_an_edge(
    tmp_path: Path, xs: np.ndarray, block_size: float, stride: float
) -> None:
    """Float32 scans where rounding puts points an ulp past their block's upper edge: each
    still lies in its home block, so prediction covers it."""
    pos = np.c_[xs, np.zeros_like(xs), np.zeros_like(xs)].astype(np.float32)
    path = tmp_path / "edges.npy"
    np.save(path, pos)
    frags = SceneFragments([path], (), block_size=block_size, stride=stride, voxel_size=None)
    rows = np.concatenate([f.source_rows.numpy() for f in frags])
    assert set(rows.tolist()) == set(range(len(pos)))


def test_precise_evaluation_fragments_are_the_blocks() -> None:
    rng = np.random.default_rng(6)
    pos = np.c_[rng.uniform(0, 30, 800), rng.uniform(0, 3, 800), rng.uniform(0, 3, 800)]
    y = np.zeros(len(pos), dtype=np.int64)
    passes = list(scene_passes(pos.astype(np.float32), None, y, 2.0, 1.0, None))
    want = brute_force(pos[:, :2].astype(np.float32).astype(np.float64), 2.0, 1.0)
    assert sorted(tuple(p.rows.tolist()) for p in passes) == sorted(
        tuple(rows.tolist()) for rows in want.values()
    )
