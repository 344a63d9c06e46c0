"""Readers: quirks handled, bad files named with their line, mesh sampling by area."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import lightning_pc.data.formats as formats
from lightning_pc.data.errors import DataFormatError
from lightning_pc.data.io import (
    Mesh,
    ply_has_faces,
    read_mesh,
    read_off,
    read_point_file,
    read_table,
    sample_mesh,
)


def test_read_table_ok_and_nul_byte(tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_bytes(b"1 2 3 4 5 6\n7 8 9 185\x00187 1 2\n")
    with pytest.raises(DataFormatError, match="a.txt, line 2: expected 6 columns, found 7"):
        read_table(f, 6)
    f.write_bytes(b"1 2 3 4 5 6\n7 8 9 10 185\x00187\n")  # S3DIS defect: NUL for a space
    arr = read_table(f, 6)
    assert arr.shape == (2, 6) and arr[1, 4] == 185 and arr[1, 5] == 187
    assert f.read_bytes() == b"1 2 3 4 5 6\n7 8 9 10 185\x00187\n"  # never modified


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "file is empty"),
        ("\n\n", "file is empty"),
        ("1 2 3\n4 5 x\n", "line 2: non-numeric field 'x'"),
        ("1 2 3\n4 5\n", "line 2: expected 3 columns, found 2"),
        ("1 2 3\n\n4 5 nan\n", "line 3: non-finite value 'nan'"),
        ("1 2 3\n4 5 6\n7 8", "line 3: expected 3 columns, found 2"),  # truncated
    ],
)
def test_read_table_errors(tmp_path: Path, content: str, message: str) -> None:
    f = tmp_path / "bad.txt"
    f.write_text(content)
    with pytest.raises(DataFormatError, match=message) as info:
        read_table(f, 3)
    assert info.value.path == str(f)


def test_read_table_comma(tmp_path: Path) -> None:
    f = tmp_path / "c.txt"
    f.write_text("1,2,3\n4,5,6")
    np.testing.assert_array_equal(read_table(f, 3, delimiter=","), [[1, 2, 3], [4, 5, 6]])


def test_off_quirks(tmp_path: Path) -> None:
    f = tmp_path / "q.off"
    # glued header, comment, blank line, quad + pentagon, no trailing newline
    f.write_text(
        "OFF6 2 0\n# comment\n0 0 0\n1 0 0\n1 1 0\n\n0 1 0\n0.5 1.5 0\n2 2 2\n"
        "4 0 1 2 3\n5 0 1 2 4 3"
    )
    mesh = read_off(f)
    assert mesh.vertices.shape == (6, 3)
    assert mesh.faces.tolist() == [[0, 1, 2], [0, 2, 3], [0, 1, 2], [0, 2, 4], [0, 4, 3]]


def test_off_separate_header_and_fast_path(tmp_path: Path) -> None:
    f = tmp_path / "t.off"
    f.write_text("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n")
    mesh = read_off(f)
    assert mesh.faces.tolist() == [[0, 1, 2]]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "file is empty"),
        ("PLY\n", "line 1: missing 'OFF' header"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n", "truncated: header declares 3 vertices and 1 faces"),
        ("OFF\n3 1 0\n0 0 0\n1 a 0\n0 1 0\n3 0 1 2", "line 4: non-numeric vertex"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 7", "line 6: face index out of range"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1", "line 6: malformed face"),
        ("OFF\nthree 1 0\n", "line 2: bad counts line"),
    ],
)
def test_off_errors(tmp_path: Path, content: str, message: str) -> None:
    f = tmp_path / "bad.off"
    f.write_text(content)
    with pytest.raises(DataFormatError, match=message):
        read_off(f)


def test_sample_mesh_area_weighted() -> None:
    # Two triangles in the z=0 plane; the second has 9x the area of the first.
    verts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [10, 0, 0], [13, 0, 0], [10, 3, 0]], float)
    mesh = Mesh(verts, np.array([[0, 1, 2], [3, 4, 5]]))
    pts, normals = sample_mesh(mesh, 20000, np.random.default_rng(0))
    big = (pts[:, 0] >= 10).mean()
    assert abs(big - 0.9) < 0.01
    small = pts[pts[:, 0] < 10]
    assert (small[:, 0] >= 0).all() and (small[:, 1] >= 0).all()
    assert (small[:, 0] + small[:, 1] <= 1 + 1e-6).all()  # inside the triangle
    assert np.allclose(np.abs(normals[:, 2]), 1)
    # uniform within a triangle: the half nearer the right angle holds 3/4 of the area
    assert abs((small[:, 0] + small[:, 1] <= 0.5**0.5).mean() - 0.5) < 0.03


def test_sample_mesh_zero_area() -> None:
    mesh = Mesh(np.zeros((3, 3)), np.array([[0, 1, 2]]))
    with pytest.raises(DataFormatError, match="zero surface area"):
        sample_mesh(mesh, 10, np.random.default_rng(0), "m.off")


def test_point_files(tmp_path: Path) -> None:
    import open3d as o3d

    pts = np.random.default_rng(0).uniform(-1, 1, (50, 3)).astype(np.float32)
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts.astype(np.float64)))
    cloud.colors = o3d.utility.Vector3dVector(np.full((50, 3), 0.5))
    for suffix in (".ply", ".pcd"):
        o3d.io.write_point_cloud(str(tmp_path / f"c{suffix}"), cloud)
        out = read_point_file(tmp_path / f"c{suffix}")
        np.testing.assert_allclose(out["pos"], pts, atol=1e-5)
        np.testing.assert_allclose(out["rgb"], 0.5, atol=0.01)
    np.save(tmp_path / "c.npy", np.hstack([pts, pts[:, :1]]))
    out = read_point_file(tmp_path / "c.npy")
    assert out["pos"].shape == (50, 3) and out["features"].shape == (50, 1)
    np.savetxt(tmp_path / "c.xyz", pts)
    np.testing.assert_allclose(read_point_file(tmp_path / "c.xyz")["pos"], pts, atol=1e-6)
    (tmp_path / "c.pts").write_text("50\n" + "\n".join(" ".join(map(str, p)) + " 7" for p in pts))
    out = read_point_file(tmp_path / "c.pts")
    assert out["pos"].shape == (50, 3) and (out["features"] == 7).all()
    assert not ply_has_faces(tmp_path / "c.ply")
    # a truncated binary PLY, and an ASCII PLY with a bad value, are named with the problem
    (tmp_path / "cut.ply").write_bytes((tmp_path / "c.ply").read_bytes()[:-10])
    with pytest.raises(DataFormatError, match="cut.ply: truncated: header declares 50 vertices"):
        read_point_file(tmp_path / "cut.ply")
    o3d.io.write_point_cloud(str(tmp_path / "a.ply"), cloud, write_ascii=True)
    lines = (tmp_path / "a.ply").read_text().splitlines()
    first = lines.index("end_header") + 2
    lines[first + 3] = "0.1 oops 0.3 1 2 3"
    (tmp_path / "a.ply").write_text("\n".join(lines))
    with pytest.raises(DataFormatError, match=f"a.ply, line {first + 4}: non-numeric field 'oops'"):
        read_point_file(tmp_path / "a.ply")


def test_point_file_errors(tmp_path: Path) -> None:
    (tmp_path / "e.ply").write_bytes(b"ply\nformat ascii 1.0\nelement vertex 5\n")
    with pytest.raises(DataFormatError, match="e.ply"):
        read_point_file(tmp_path / "e.ply")
    (tmp_path / "t.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DataFormatError, match="t.npy"):
        read_point_file(tmp_path / "t.npy")
    (tmp_path / "w.xyz").write_text("1 2 3\n4 5 6\n7 8 9 10\n")
    with pytest.raises(DataFormatError, match="w.xyz, line 3: expected 3 columns"):
        read_point_file(tmp_path / "w.xyz")


def test_read_mesh_open3d(tmp_path: Path) -> None:
    import open3d as o3d

    box = o3d.geometry.TriangleMesh.create_box(2.0, 1.0, 1.0)
    box.compute_triangle_normals()  # the STL writer needs them
    for suffix in (".obj", ".stl", ".ply"):
        path = tmp_path / f"box{suffix}"
        o3d.io.write_triangle_mesh(str(path), box)
        mesh = read_mesh(path)
        assert len(mesh.faces) == 12
        assert np.allclose(mesh.vertices.max(0), [2, 1, 1])
    assert ply_has_faces(tmp_path / "box.ply")


# --- text scans read in chunks (ScanChunks) -------------------------------------------------

ROWS = [f"{i * 0.5:.2f} {-i:d} {i * 0.125:.3f} {i % 7} {200 + i % 50} 3" for i in range(40)]
TEXT_SCANS = {
    "plain.txt": "\n".join(ROWS) + "\n",
    "crlf.txt": "\r\n".join(ROWS) + "\r\n",
    "no_final_newline.xyz": "\n".join(r.rsplit(" ", 1)[0] for r in ROWS),
    "trailing_blank_lines.txt": "\n".join(ROWS) + "\n\n  \n\t\n",
    "comments.txt": "# x y z i rgb\n# written by hand\n"  # a first comment as wide as a row
    + "\n".join(r + (" # tail" if i % 5 == 0 else "") for i, r in enumerate(ROWS))
    + "\n   # an indented comment\n",
    "leading_blanks_and_tabs.txt": "\n\n" + "\n".join("\t" + r.replace(" ", "\t") for r in ROWS),
    "count_header.pts": f"{len(ROWS)}\r\n"
    + "\r\n".join(r.rsplit(" ", 2)[0] for r in ROWS)
    + "\r\n",
    "commas.xyz": "\n".join(r.replace(" ", ", ") for r in ROWS) + "\n",
    "nul_byte.txt": "\n".join(ROWS[:7] + [ROWS[7].replace(" ", "\x00", 1)] + ROWS[8:]) + "\n",
    # the columns come from the first data row, not from a narrower comment line first or
    # the words of a trailing comment on that row
    "narrow_comment_header.txt": "# x y z\n" + "\n".join(ROWS) + "\n",
    "comment_on_first_row.txt": ROWS[0] + " # from the scanner, 2024\n" + "\n".join(ROWS[1:]),
}


def _read_chunks(path: Path, chunk: int) -> tuple[dict[str, np.ndarray], list[int], object]:
    from lightning_pc.data.io import ScanChunks

    reader = ScanChunks(path, chunk=chunk)
    parts = list(reader)
    got = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    for p in parts:
        assert {k: v.dtype for k, v in p.items()} == {k: v.dtype for k, v in parts[0].items()}
    return got, [len(p["pos"]) for p in parts], reader


@pytest.mark.parametrize("name", sorted(TEXT_SCANS))
@pytest.mark.parametrize(("chunk", "block"), [(1, 9), (3, 47), (10, 1 << 21), (1000, 64)])
def test_scan_chunks_stream_text_scans_as_read_scan_reads_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, chunk: int, block: int
) -> None:
    import lightning_pc.data.io as io_module

    path = tmp_path / name
    path.write_bytes(TEXT_SCANS[name].encode())
    whole = io_module.read_scan(path)
    monkeypatch.setattr(formats._common, "TEXT_BLOCK", block)  # blocks end inside and at rows

    def no_whole_read(*args: object, **kwargs: object) -> None:
        raise AssertionError("the text scan was read whole")

    monkeypatch.setattr(formats, "read_scan", no_whole_read)
    got, sizes, reader = _read_chunks(path, chunk)
    assert reader._kind == "text"  # type: ignore[attr-defined]
    assert reader.num_points == len(whole["pos"]) == len(ROWS)  # type: ignore[attr-defined]
    assert sizes == [chunk] * (len(ROWS) // chunk) + (
        [len(ROWS) % chunk] if len(ROWS) % chunk else []
    )
    assert set(got) == set(whole) - {"classification"}
    assert got["pos"].dtype == np.float64 and reader.coord_dtype == np.float32  # type: ignore[attr-defined]
    np.testing.assert_array_equal(got["pos"], whole["pos"].astype(np.float64))
    if "features" in whole:
        assert got["features"].dtype == whole["features"].dtype == np.float32
        np.testing.assert_array_equal(got["features"], whole["features"])
        assert reader.keys == {"pos": 3, "features": whole["features"].shape[1]}  # type: ignore[attr-defined]


def test_scan_chunks_text_block_boundary_exactly_at_a_row_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:

    rows = [f"{i:04d} 1.50 2.5" for i in range(30)]  # 14 bytes a row with its newline
    path = tmp_path / "fixed.txt"
    path.write_text("\n".join(rows) + "\n")
    monkeypatch.setattr(formats._common, "TEXT_BLOCK", 14 * 4)
    blocks = list(formats._common._line_blocks(path))
    assert [len(b) for b, _ in blocks][:-1] == [56] * (len(blocks) - 1)  # whole rows per block
    assert [line0 for _, line0 in blocks] == list(range(0, 30, 4))
    got, sizes, _ = _read_chunks(path, 4)
    assert sizes == [4] * 7 + [2]
    np.testing.assert_array_equal(got["pos"][:, 0], np.arange(30))


def test_scan_chunks_name_the_line_of_a_bad_value_far_into_a_text_scan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lightning_pc.data.io import ScanChunks, read_scan

    lines = ["# header comment", ""] + [f"{i} {i + 1}.5 {i % 3} 0.25" for i in range(5000)]
    monkeypatch.setattr(formats._common, "TEXT_BLOCK", 4096)
    for bad, message in [
        ("12 oops 3 4", r"non-numeric field 'oops'"),
        ("12 nan 3 4", r"non-finite value 'nan'"),
        ("12 1 3", r"expected 4 columns, found 3"),
    ]:
        # a CRLF file whose first line is a comment as wide as a row, bad at line 4321
        body = lines[:4320] + [bad] + lines[4321:]
        path = tmp_path / "far.txt"
        path.write_bytes(("# x y z\r\n" + "\r\n".join(body[1:]) + "\r\n").encode())
        with pytest.raises(DataFormatError, match=rf"far.txt, line 4321: {message}") as whole:
            read_scan(path)
        reader = ScanChunks(path, chunk=100)
        assert reader.num_points == 5000
        handed = 0
        with pytest.raises(DataFormatError, match=rf"far.txt, line 4321: {message}") as chunked:
            for part in reader:
                handed += len(part["pos"])
        assert str(chunked.value) == str(whole.value)
        assert 3000 < handed <= 4318  # rows before the bad line came out first


def test_scan_chunks_text_errors_at_open_are_read_point_files(tmp_path: Path) -> None:
    from lightning_pc.data.io import ScanChunks

    cases = {
        "empty.txt": b"\n \n\t\n",
        "comments_only.txt": b"# a b c\n# d e f\n",
        "count_only.pts": b"12\n\n",
        "two_columns.xyz": b"\n1 2\n3 4\n",
        "two_columns.pts": b"2\n# x y\n1 2\n3 4\n",  # names the row (line 3), not the count
        "latin1.txt": b"1 2 3\n4 5 6\n7 8 \xe9\n",
    }
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(DataFormatError) as whole:
            read_point_file(path)
        with pytest.raises(DataFormatError) as opened:
            ScanChunks(path)
        assert str(opened.value) == str(whole.value) and name in str(opened.value)
        if name == "two_columns.pts":
            assert "line 3: expected at least 3 columns" in str(whole.value)


def test_scan_chunks_read_odd_line_breaks_whole(tmp_path: Path) -> None:
    from lightning_pc.data.io import ScanChunks, read_scan

    # str.splitlines breaks lines at a lone \r and a form feed: such files keep the whole path
    for name, content in [("mac.txt", b"1 2 3\r4 5 6\r"), ("ff.txt", b"1 2 3\n\x0c\n4 5 6\n")]:
        path = tmp_path / name
        path.write_bytes(content)
        reader = ScanChunks(path, chunk=1)
        assert reader._kind == "whole"
        got = np.concatenate([p["pos"] for p in reader])
        np.testing.assert_array_equal(got, read_scan(path)["pos"])


@pytest.mark.slow
def test_scan_chunks_read_a_large_text_scan_in_bounded_memory(tmp_path: Path) -> None:
    import tracemalloc

    from lightning_pc.data.io import ScanChunks, read_scan

    rng = np.random.default_rng(0)
    tile = rng.uniform(-50, 50, (10_000, 7)).astype(np.float32)
    tile[:, 4:] = rng.integers(0, 256, (10_000, 3))
    small = tmp_path / "tile.txt"
    np.savetxt(small, tile, fmt=["%.3f"] * 4 + ["%d"] * 3)
    path = tmp_path / "big.txt"  # Semantic3D's layout: x y z intensity r g b
    with open(path, "wb") as fh:
        block = small.read_bytes()
        for _ in range(200):
            fh.write(block)  # 2,000,000 rows, about 70 MB
    tracemalloc.start()
    try:
        reader = ScanChunks(path, chunk=50_000)
        rows, total = 0, 0.0
        for part in reader:
            rows += len(part["pos"])
            total += float(part["features"][:, 0].sum())
        _, chunked_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        whole = read_scan(path)
        _, whole_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rows == reader.num_points == len(whole["pos"]) == 2_000_000
    assert total == pytest.approx(float(whole["features"][:, 0].astype(np.float64).sum()), rel=1e-6)
    # reading whole holds the text, its lines and the table; chunks hold a block and a chunk
    assert chunked_peak < 64 << 20
    assert chunked_peak * 10 < whole_peak - before


def _ascii_ply(
    rows: list[str], props: str, eol: str = "\n", before: int = 0, faces: int = 0
) -> str:
    header = ["ply", "format ascii 1.0", "comment written by hand"]
    if before:
        header += [f"element camera {before}", "property float a", "property float b"]
    header += [f"element vertex {len(rows)}"] + [f"property {p}" for p in props.split(",")]
    if faces:
        header += [f"element face {faces}", "property list uchar int vertex_indices"]
    body = ["0.5 1.5"] * before + rows + ["3 0 1 2"] * faces
    return eol.join(header + ["end_header"] + body) + eol


PLY_ROWS = [f"{i * 0.25:.2f} {-i} {i % 9}.5 0 0 1 {i % 256} {(3 * i) % 256} 7" for i in range(60)]
PLY_PROPS = "float x,float y,float z,float nx,float ny,float nz,uchar red,uchar green,uchar blue"
ASCII_PLYS = {
    "plain.ply": _ascii_ply(PLY_ROWS, PLY_PROPS),
    "crlf_faces.ply": _ascii_ply(PLY_ROWS, PLY_PROPS, "\r\n", faces=4),
    "camera_first.ply": _ascii_ply(PLY_ROWS, PLY_PROPS, before=3) + "\n  \n",
    "float_colours_no_normals.ply": _ascii_ply(
        [" ".join(r.split()[:3] + ["0.25", "0.5", "1"]) for r in PLY_ROWS],
        "float x,float y,double z,float red,float green,float blue",
    ).rstrip("\n"),  # no final newline
}


@pytest.mark.parametrize("name", sorted(ASCII_PLYS))
@pytest.mark.parametrize(("chunk", "block"), [(1, 11), (7, 64), (1000, 1 << 21)])
def test_scan_chunks_stream_ascii_ply_as_read_scan_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, chunk: int, block: int
) -> None:
    import lightning_pc.data.io as io_module

    path = tmp_path / name
    path.write_bytes(ASCII_PLYS[name].encode())
    whole = io_module.read_scan(path)
    monkeypatch.setattr(formats._common, "TEXT_BLOCK", block)
    monkeypatch.setattr(formats, "read_scan", None)  # never read whole
    got, sizes, reader = _read_chunks(path, chunk)
    assert reader._kind == "ascii_ply"  # type: ignore[attr-defined]
    assert sizes[:-1] == [chunk] * (len(sizes) - 1) and sum(sizes) == len(PLY_ROWS)
    assert set(got) == set(whole)
    np.testing.assert_array_equal(got["pos"], whole["pos"].astype(np.float64))
    for key in set(whole) - {"pos"}:
        assert got[key].dtype == whole[key].dtype == np.float32
        np.testing.assert_array_equal(got[key], whole[key])
    assert reader.rgb_divisor(1.0) == 1.0  # type: ignore[attr-defined]  # rgb is 0-1 already


def test_scan_chunks_ascii_ply_errors_name_the_line_read_scan_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lightning_pc.data.io import ScanChunks, read_scan

    monkeypatch.setattr(formats._common, "TEXT_BLOCK", 512)
    rows = [f"{i}.5 {i % 7} 2.25" for i in range(3000)]
    # header: ply, format, comment, element, 3 properties, end_header; rows from line 9
    cases = {
        "far_bad.ply": (_ascii_ply(rows[:2500] + ["1 oops 2"] + rows[2501:], "float x,float y,float z"), 2509, "non-numeric field 'oops'"),
        "far_nan.ply": (_ascii_ply(rows[:2600] + ["1 nan 2"] + rows[2601:], "float x,float y,float z", "\r\n"), 2609, "non-finite value 'nan'"),
        "far_short.ply": (_ascii_ply(rows[:2700] + ["1 2"] + rows[2701:], "float x,float y,float z"), 2709, "expected 3 columns, found 2"),
        "truncated.ply": (_ascii_ply(rows, "float x,float y,float z")[:-3000], 2795, "truncated: header declares 3000 vertices, found 2786"),
        "extra.ply": (_ascii_ply(rows, "float x,float y,float z") + "\n1 2 3\n", 3010, "1 more data line"),
    }  # fmt: skip
    for name, (content, line, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(content.encode())
        with pytest.raises(DataFormatError, match=message) as whole:
            read_scan(path)
        handed = 0
        with pytest.raises(DataFormatError, match=message) as chunked:
            for part in ScanChunks(path, chunk=100):
                handed += len(part["pos"])
        assert str(chunked.value) == str(whole.value)
        assert whole.value.line == line
        if name.startswith("far"):
            assert 2000 < handed <= line - 9  # streamed: rows before the bad one came out
        if name != "truncated.ply":
            bad = content.splitlines()[line - 1]
            assert bad in ("1 oops 2", "1 nan 2", "1 2", "1 2 3") and rows.count(bad) == 0


@pytest.mark.parametrize("name", ["far.ply", "far.txt", "far.xyz"])
def test_values_beyond_float32_are_refused_naming_the_line(tmp_path: Path, name: str) -> None:
    """Point data becomes float32: 1e39 would be infinity there (and crash the block grid
    of whole-scan prediction), so both readers refuse it at its line."""
    from lightning_pc.data.io import ScanChunks, read_scan

    rows = ["0 0 0", "1 2 3", "-4e38 1 1", "2 2 2"]
    path = tmp_path / name
    if name.endswith(".ply"):
        header = "ply\nformat ascii 1.0\nelement vertex 4\n"
        header += "".join(f"property float {a}\n" for a in "xyz") + "end_header\n"
        path.write_text(header + "\n".join(rows) + "\n")
        line = 7 + 3
    else:
        path.write_text("\n".join(rows) + "\n")
        line = 3
    message = rf"{name}, line {line}: value '-4e38' is beyond float32's range"
    with pytest.raises(DataFormatError, match=message):
        read_scan(path)
    with pytest.raises(DataFormatError, match=message):
        list(ScanChunks(path, chunk=1))


def _pcd_header(spec: list[list[str]], rows: int, width: int, points: int, data: str) -> list[str]:
    """The header lines of a PCD file as PCL writes them; ``spec`` holds each field's
    ``[name, SIZE, TYPE, COUNT]``."""
    return [
        "# .PCD v0.7 - Point Cloud Data file format",
        "VERSION 0.7",
        "FIELDS " + " ".join(s[0] for s in spec),
        "SIZE " + " ".join(s[1] for s in spec),
        "TYPE " + " ".join(s[2] for s in spec),
        "COUNT " + " ".join(s[3] for s in spec),
        f"WIDTH {width}",
        f"HEIGHT {rows // width}",
        "VIEWPOINT 0 0 0 1 0 0 0",
        f"POINTS {points}",
        f"DATA {data}",
    ]


def _binary_pcd(
    path: Path, records: np.ndarray, fields: str, width: int | None = None, tail: bytes = b""
) -> Path:
    """Write ``records`` as a binary PCD file, header as PCL writes it; ``fields`` lists
    ``name:SIZE:TYPE:COUNT`` (a ``_`` name: PCL's padding)."""
    spec = [f.split(":") for f in fields.split()]
    n = len(records)
    header = _pcd_header(spec, n, width or n, n, "binary")
    assert records.dtype.itemsize == sum(int(s[1]) * int(s[3]) for s in spec)
    path.write_bytes(("\n".join(header) + "\n").encode() + records.tobytes() + tail)
    return path


def _pcd_records(kind: str, n: int = 40) -> tuple[np.ndarray, str, int | None]:
    """Records of a binary PCD file in a layout other tools write, its FIELDS spec, and the
    WIDTH of an organised cloud."""
    rng = np.random.default_rng(7)
    xyz = rng.uniform(-20, 20, (n, 3))
    colour = rng.integers(0, 1 << 24, n).astype("<u4")  # 0x00RRGGBB
    if kind in ("xyzrgb", "organised"):  # PCL PointXYZRGB: rgb, a float holding the bytes
        rec = np.zeros(n, [("xyz", "<f4", 3), ("rgb", "<u4")])
        rec["xyz"], rec["rgb"] = xyz, colour
        if kind == "organised":  # an 8 x 5 depth image: pixels without depth are NaN
            rec["xyz"][[0, 3, 4, 8, 9, 10, 11, 20, 39]] = np.nan
            rec["xyz"][5, 2] = np.inf
            return rec, "x:4:F:1 y:4:F:1 z:4:F:1 rgb:4:F:1", 8
        return rec, "x:4:F:1 y:4:F:1 z:4:F:1 rgb:4:F:1", None
    if kind == "xyzrgba_intensity":  # PointXYZRGBA then an intensity: rgba as an unsigned int
        rec = np.zeros(n, [("xyz", "<f4", 3), ("rgba", "<u4"), ("intensity", "<f4")])
        rec["xyz"], rec["rgba"], rec["intensity"] = xyz, colour | (200 << 24), 3.5
        return rec, "x:4:F:1 y:4:F:1 z:4:F:1 rgba:4:U:1 intensity:4:F:1", None
    if kind == "pointnormal":  # PCL PointNormal, 48 bytes: padding fields named '_'
        rec = np.zeros(n, [("xyz", "<f4", 3), ("p0", "u1", 4), ("nrm", "<f4", 3), ("p1", "u1", 4),
                           ("curvature", "<f4"), ("p2", "u1", 12)])  # fmt: skip
        normal = rng.normal(size=(n, 3))
        rec["xyz"], rec["nrm"] = xyz, normal / np.linalg.norm(normal, axis=1, keepdims=True)
        rec["curvature"] = rng.uniform(0, 1, n)
        spec = ("x:4:F:1 y:4:F:1 z:4:F:1 _:1:U:4 normal_x:4:F:1 normal_y:4:F:1 normal_z:4:F:1 "
                "_:1:U:4 curvature:4:F:1 _:1:U:12")  # fmt: skip
        return rec, spec, None
    if kind == "counts":  # a 33-wide descriptor before x, and a 2-wide x (its first value read)
        rec = np.zeros(n, [("fpfh", "<f4", 33), ("x", "<f4", 2), ("yz", "<i2", 2)])
        rec["fpfh"], rec["x"] = rng.uniform(0, 1, (n, 33)), xyz[:, :2]
        rec["yz"] = np.round(xyz[:, 1:] * 100)
        return rec, "fpfh:4:F:33 x:4:F:2 y:2:I:1 z:2:I:1", None
    assert kind == "double"  # x y z as doubles (SIZE 8), georeferenced
    rec = np.zeros(n, [("xyz", "<f8", 3), ("label", "<u4")])
    rec["xyz"] = xyz + [500_000.0, 4_200_000.0, 100.0]
    rec["label"] = np.arange(n)
    return rec, "x:8:F:1 y:8:F:1 z:8:F:1 label:4:U:1", None


PCD_KINDS = ["xyzrgb", "organised", "xyzrgba_intensity", "pointnormal", "counts", "double"]


@pytest.mark.parametrize("kind", PCD_KINDS)
@pytest.mark.parametrize(("chunk", "block"), [(1, 4), (3, 4), (7, 16), (1000, 1 << 16)])
def test_scan_chunks_stream_binary_pcd_as_read_scan_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, chunk: int, block: int
) -> None:
    import warnings

    import lightning_pc.data.io as io_module

    rec, spec, width = _pcd_records(kind)
    path = _binary_pcd(tmp_path / f"{kind}.pcd", rec, spec, width)
    with warnings.catch_warnings(record=True) as whole_warned:
        warnings.simplefilter("always")
        whole = io_module.read_scan(path)
    monkeypatch.setattr(formats.pcd, "PCD_BLOCK", block)  # record blocks end at NaN rows too
    monkeypatch.setattr(formats, "read_scan", None)  # never read whole
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        got, sizes, reader = _read_chunks(path, chunk)
    assert [str(w.message) for w in warned] == [str(w.message) for w in whole_warned]
    assert reader._kind == "pcd"  # type: ignore[attr-defined]
    assert reader.num_points == len(whole["pos"]) == sum(sizes)  # type: ignore[attr-defined]
    assert sizes[:-1] == [chunk] * (len(sizes) - 1) and 0 < sizes[-1] <= chunk
    assert set(got) == set(whole) and list(reader.keys) == list(whole)  # type: ignore[attr-defined]
    coord = np.float64 if kind == "double" else np.float32  # doubles kept, as LAS's
    assert got["pos"].dtype == np.float64 and reader.coord_dtype == whole["pos"].dtype == coord  # type: ignore[attr-defined]
    np.testing.assert_array_equal(got["pos"], whole["pos"].astype(np.float64))
    for key in set(whole) - {"pos"}:
        assert got[key].dtype == whole[key].dtype == np.float32
        np.testing.assert_array_equal(got[key], whole[key])
    assert reader.rgb_divisor(1.0) == 1.0  # type: ignore[attr-defined]  # rgb is 0-1 already
    # what the file holds, decoded independently
    if kind == "organised":
        assert len(whole_warned) == 1 and "dropped 10 of 40 points" in str(whole_warned[0].message)
        keep = np.isfinite(rec["xyz"]).all(1)
        np.testing.assert_array_equal(got["pos"], rec["xyz"][keep].astype(np.float64))
    elif kind == "counts":
        np.testing.assert_array_equal(got["pos"][:, 0], rec["x"][:, 0])
        np.testing.assert_array_equal(got["pos"][:, 1:], rec["yz"])
    else:
        assert not whole_warned
        np.testing.assert_array_equal(got["pos"], rec["xyz"].astype(coord))
    if "rgb" in whole:
        packed = rec[rec.dtype.names[1]][np.isfinite(rec["xyz"]).all(1)]  # rgb or rgba
        expect = np.stack([(packed >> shift) & 255 for shift in (16, 8, 0)], 1) / 255.0
        np.testing.assert_array_equal(got["rgb"], expect.astype(np.float32))
    if kind == "pointnormal":
        np.testing.assert_array_equal(got["normal"], rec["nrm"].astype(np.float32))
    else:
        assert "normal" not in whole


def test_scan_chunks_binary_pcd_errors_are_read_scans(tmp_path: Path) -> None:
    import warnings

    from lightning_pc.data.io import ScanChunks, read_scan

    rec, spec, _ = _pcd_records("pointnormal", 20)
    body = _binary_pcd(tmp_path / "ok.pcd", rec, spec).read_bytes()
    nan_normal = rec.copy()
    nan_normal["nrm"][[6, 11]] = np.nan
    nan_normal["xyz"][11] = np.nan  # a dropped point's normal does not count
    all_nan = rec.copy()
    all_nan["xyz"] = np.nan
    half = body.replace(b"normal_x", b"nx", 1)  # Open3D 0.20 would write unallocated normals
    cases = {
        "half_normals.pcd": (half, "FIELDS has normal_y normal_z without normal_x"),
        "truncated.pcd": (body[:-50], r"truncated: header declares 20 points \(\d+ bytes\), "),
        "nan_normal.pcd": (None, "normal of point 6 is NaN or infinite \\(1 points in all\\)"),
        "all_nan.pcd": (None, "point coordinates contain NaN or infinity"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        if content is None:
            _binary_pcd(path, nan_normal if name == "nan_normal.pcd" else all_nan, spec)
        else:
            path.write_bytes(content)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(DataFormatError, match=message) as whole:
                read_scan(path)
            with pytest.raises(DataFormatError, match=message) as opened:
                ScanChunks(path)
        assert str(opened.value) == str(whole.value) and name in str(opened.value)
    # bytes after the declared points: read, with one warning, by both
    path = tmp_path / "extra.pcd"
    path.write_bytes(body + b"\x01\x02")
    for read in (read_scan, lambda p: np.concatenate([c["pos"] for c in ScanChunks(p)])):
        with pytest.warns(UserWarning, match="2 bytes after them are ignored") as said:
            read(path)
        assert len([w for w in said if "ignored" in str(w.message)]) == 1
    # trailing whitespace after the records is accepted by both
    path = tmp_path / "newline.pcd"
    path.write_bytes(body + b"\n")
    assert ScanChunks(path)._kind == "pcd"  # type: ignore[attr-defined]
    np.testing.assert_array_equal(
        np.concatenate([p["pos"] for p in ScanChunks(path)]), read_scan(path)["pos"]
    )


def test_double_pcd_coordinates_are_read_not_zeroed(tmp_path: Path) -> None:
    from lightning_pc.data.io import read_scan

    # Open3D 0.20 reads SIZE 8 (double) fields of a PCD file as 0
    rec, spec, _ = _pcd_records("double", 10)
    path = _binary_pcd(tmp_path / "utm.pcd", rec, spec)
    out = read_point_file(path)
    assert out["pos"].dtype == np.float32
    np.testing.assert_array_equal(out["pos"], rec["xyz"].astype(np.float32))
    scan = read_scan(path)  # georeferenced: float32 would round to decimetres
    assert scan["pos"].dtype == np.float64
    np.testing.assert_array_equal(scan["pos"], rec["xyz"])
    cut = tmp_path / "cut.pcd"
    cut.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(DataFormatError, match="cut.pcd: truncated: header declares 10 points"):
        read_point_file(cut)


def test_scan_chunks_pcd_kept_whole_when_not_plain_binary(tmp_path: Path) -> None:
    from lightning_pc.data.io import ScanChunks, read_scan

    rec, spec, _ = _pcd_records("xyzrgb", 12)
    binary = _binary_pcd(tmp_path / "b.pcd", rec, spec).read_bytes()
    head, _, data = binary.partition(b"DATA binary\n")
    odd = {  # Open3D's offsets depend on the header's order: COUNT before SIZE
        "count_first.pcd": head.replace(b"SIZE 4 4 4 4\nTYPE F F F F\nCOUNT 1 1 1 1\n",
                                        b"COUNT 1 1 1 1\nSIZE 4 4 4 4\nTYPE F F F F\n")
        + b"DATA binary\n" + data,
    }  # fmt: skip
    import open3d as o3d

    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(rec["xyz"].astype(np.float64)))
    packed = tmp_path / "packed.pcd"  # DATA binary_compressed (LZF): Open3D's own
    o3d.io.write_point_cloud(str(packed), cloud, write_ascii=False, compressed=True)
    odd["compressed.pcd"] = packed.read_bytes()
    assert b"DATA binary_compressed" in odd["compressed.pcd"]
    for name, content in odd.items():
        path = tmp_path / name
        path.write_bytes(content)
        reader = ScanChunks(path, chunk=5)
        assert reader._kind == "whole"  # type: ignore[attr-defined]
        np.testing.assert_array_equal(
            np.concatenate([p["pos"] for p in reader]), read_scan(path)["pos"]
        )


@pytest.mark.slow
def test_scan_chunks_read_a_large_binary_pcd_in_bounded_memory(tmp_path: Path) -> None:
    import tracemalloc

    from lightning_pc.data.io import ScanChunks, read_scan

    n = 2_000_000
    rec, spec, _ = _pcd_records("xyzrgb", n)  # 32 MB of PCL PointXYZRGB records
    rec["xyz"][::1000] = np.nan  # an organised cloud's pixels without depth
    path = _binary_pcd(tmp_path / "big.pcd", rec, spec)
    tracemalloc.start()
    try:
        with pytest.warns(UserWarning, match="dropped 2000 of 2000000 points"):
            reader = ScanChunks(path, chunk=50_000)
        rows, red = 0, 0.0
        for part in reader:
            rows += len(part["pos"])
            red += float(part["rgb"][:, 0].sum())
        _, chunked_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        with pytest.warns(UserWarning, match="dropped 2000 of 2000000 points"):
            whole = read_scan(path)
        _, whole_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rows == reader.num_points == len(whole["pos"]) == n - 2000
    assert red == pytest.approx(float(whole["rgb"][:, 0].astype(np.float64).sum()), rel=1e-6)
    # the whole read holds the file's bytes and every array (and Open3D's doubles, which
    # tracemalloc does not see); chunks hold a block of records and a chunk
    assert chunked_peak < 16 << 20
    assert chunked_peak * 4 < whole_peak - before


def _ascii_pcd(path: Path, rows: list[str], fields: str, width: int | None = None,
               eol: str = "\n", points: int | None = None) -> Path:  # fmt: skip
    """An ASCII PCD file as PCL writes it; ``fields`` as for :func:`_binary_pcd`."""
    spec = [f.split(":") for f in fields.split()]
    n = len(rows)
    header = _pcd_header(spec, n, width or n, points or n, "ascii")
    path.write_bytes(eol.join(header + rows).encode() + eol.encode())
    return path


def _ascii_pcds(folder: Path) -> dict[str, Path]:
    import open3d as o3d

    rng = np.random.default_rng(3)
    xyz = rng.uniform(-9, 9, (45, 3))
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(xyz))
    cloud.normals = o3d.utility.Vector3dVector(rng.normal(size=(45, 3)))
    cloud.colors = o3d.utility.Vector3dVector(rng.uniform(0, 1, (45, 3)))
    out = {"open3d.pcd": folder / "open3d.pcd"}  # Open3D's writer: rgb as TYPE U
    o3d.io.write_point_cloud(str(out["open3d.pcd"]), cloud, write_ascii=True)
    packed = rng.integers(0, 1 << 24, 45).astype("<u4")
    as_float = packed.view("<f4")  # PCL PointXYZRGB: rgb as a float holding the bytes
    rows = [f"{x:.6f} {y:.6f} {z:.6f} {c:.9g}" for (x, y, z), c in zip(xyz, as_float)]
    for r in (0, 4, 5, 9, 17, 18, 19, 44):  # pixels without depth, at chunk ends and starts
        rows[r] = "nan nan nan " + rows[r].split()[3]
    out["organised_crlf.pcd"] = _ascii_pcd(
        folder / "organised_crlf.pcd", rows, "x:4:F:1 y:4:F:1 z:4:F:1 rgb:4:F:1", 9, "\r\n"
    )
    rows = [
        f"{i % 5} {i * 0.5} 7 {x:.4f} {y:.4f} {z:.4f} {-(i * 99991) % (1 << 31) - (1 << 30)} 3.5"
        for i, (x, y, z) in enumerate(xyz)
    ]  # a 3-wide descriptor first; rgba as a signed int, negative too; an intensity
    out["counts_signed_rgba.pcd"] = _ascii_pcd(
        folder / "counts_signed_rgba.pcd", rows,
        "desc:4:F:3 x:8:F:1 y:8:F:1 z:8:F:1 rgba:4:I:1 intensity:4:F:1",
    )  # fmt: skip
    return out


@pytest.mark.parametrize("name", ["open3d.pcd", "organised_crlf.pcd", "counts_signed_rgba.pcd"])
@pytest.mark.parametrize(("chunk", "block"), [(1, 64), (4, 200), (1000, 1 << 21)])
def test_scan_chunks_stream_ascii_pcd_as_read_scan_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, chunk: int, block: int
) -> None:
    import warnings

    import lightning_pc.data.io as io_module

    path = _ascii_pcds(tmp_path)[name]
    with warnings.catch_warnings(record=True) as whole_warned:
        warnings.simplefilter("always")
        whole = io_module.read_scan(path)
    monkeypatch.setattr(formats._common, "TEXT_BLOCK", block)
    monkeypatch.setattr(formats, "read_scan", None)  # never read whole
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        got, sizes, reader = _read_chunks(path, chunk)
    assert [str(w.message) for w in warned] == [str(w.message) for w in whole_warned]
    assert reader._kind == "pcd"  # type: ignore[attr-defined]
    assert sizes[:-1] == [chunk] * (len(sizes) - 1) and sum(sizes) == len(whole["pos"])
    assert set(got) == set(whole) and list(reader.keys) == list(whole)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(got["pos"], whole["pos"].astype(np.float64))
    for key in set(whole) - {"pos"}:
        assert got[key].dtype == whole[key].dtype == np.float32
        np.testing.assert_array_equal(got[key], whole[key])
    if name == "organised_crlf.pcd":
        assert len(whole) == 2 and "dropped 8 of 45 points" in str(whole_warned[0].message)
    if name == "counts_signed_rgba.pcd":
        assert not (whole["rgb"] == whole["rgb"][:1]).all()


def test_scan_chunks_ascii_pcd_errors_and_odd_files_are_read_scans(tmp_path: Path) -> None:
    import warnings

    from lightning_pc.data.io import ScanChunks, read_scan
    from tests.data import load_fixture

    real = load_fixture("real_world").write_all(tmp_path / "real_world")
    spec = "x:4:F:1 y:4:F:1 z:4:F:1 rgb:4:U:1"
    rows = [f"{i}.25 {i % 4} -{i}.5 {i * 40503}" for i in range(30)]
    files = {
        "kinect_nan.pcd": (real / "kinect_nan.pcd", "pcd"),
        "nan_normals.pcd": (real / "nan_normals.pcd", "line 14: normal of point 2"),
        "all_nan.pcd": (_ascii_pcd(tmp_path / "all_nan.pcd", ["nan 1 2 3"] * 4, spec),
                        "line 12: point coordinates contain NaN"),
        "extra.pcd": (_ascii_pcd(tmp_path / "extra.pcd", rows, spec, points=28),
                      "line 40: header declares 28 points"),
        # read whole: what strtol / strtod and numpy read otherwise, or Open3D skips
        "octal.pcd": (_ascii_pcd(tmp_path / "octal.pcd", rows[:5] + ["1 2 3 0100"] + rows[6:], spec), "whole"),
        "fraction.pcd": (_ascii_pcd(tmp_path / "fraction.pcd", rows[:7] + ["1 2 3 7.5"], spec), "whole"),
        "exponent.pcd": (_ascii_pcd(tmp_path / "exponent.pcd", rows[:7] + ["1 2 3 1e3"], spec), "whole"),
        "short_row.pcd": (_ascii_pcd(tmp_path / "short_row.pcd", rows[:9] + ["1 2 3"] + rows[9:], spec, 30, points=30), "line 42: header declares 30 points"),
        # Open3D returns 31 points, the last one uninitialised memory: refused beforehand
        "fewer.pcd": (_ascii_pcd(tmp_path / "fewer.pcd", rows, spec, points=31), "truncated: header declares 31 points, the file holds 30 lines"),
        "hex_float.pcd": (_ascii_pcd(tmp_path / "hex_float.pcd", ["0x1p3 1 2 5"] + rows[1:], spec), "whole"),
    }  # fmt: skip
    for name, (path, expect) in files.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if expect in ("pcd", "whole"):
                reader = ScanChunks(path, chunk=3)
                assert reader._kind == expect, name  # type: ignore[attr-defined]
                whole = read_scan(path)
                for key, value in whole.items():
                    got = np.concatenate([p[key] for p in reader])
                    np.testing.assert_array_equal(got, value.astype(got.dtype))
                continue
            with pytest.raises(DataFormatError, match=expect) as whole_error:
                read_scan(path)
            with pytest.raises(DataFormatError, match=expect) as opened:
                ScanChunks(path)
        assert str(opened.value) == str(whole_error.value) and name in str(opened.value)


def test_load_scan_keeps_a_double_pcds_millimetres(tmp_path: Path) -> None:
    from lightning_pc.data.datasets.scenes import load_scan

    rec, spec, _ = _pcd_records("double", 30)
    rec["xyz"][:, 0] += 0.001 * np.arange(30)  # millimetres apart, 500 km from the origin
    path = _binary_pcd(tmp_path / "utm.pcd", rec, spec)
    pos, _, origin = load_scan(path, [], chunk=7)
    assert origin[0] >= 499_000
    np.testing.assert_allclose(pos + origin, rec["xyz"], rtol=0, atol=1e-5)
