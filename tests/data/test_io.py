"""Readers: quirks handled, bad files named with their line, mesh sampling by area."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

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
