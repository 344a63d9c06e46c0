"""Files shaped as other tools write them: read right, or refused naming file and line."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from lightning_pc.data.errors import DataFormatError
from lightning_pc.data.io import read_mesh, read_point_file
from tests.data import load_fixture


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return load_fixture("real_world").write_all(tmp_path_factory.mktemp("rw") / "real_world")


def _area(mesh) -> float:
    v = mesh.vertices[mesh.faces]
    return float(np.linalg.norm(np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]), axis=1).sum() / 2)


def test_obj_quads_polygons_and_relative_indices_keep_every_face(files: Path) -> None:
    mesh = read_mesh(files / "quads.obj")
    assert mesh.vertices.shape == (13, 3)
    # 6 cube quads -> 12 triangles, a pentagon -> 3, one relative triangle -> 1
    assert mesh.faces.shape == (16, 3)
    cube = mesh.faces[:12]
    assert _area(type(mesh)(mesh.vertices, cube)) == pytest.approx(6.0)  # the whole surface
    assert mesh.faces[15].tolist() == [8, 9, 10]  # "f -5 -4 -3" after 13 vertices


def test_obj_bad_index_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.obj"
    path.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\nf 1 2 7\n")
    with pytest.raises(DataFormatError, match=r"bad\.obj, line 5: face index '7'"):
        read_mesh(path)
    points_only = tmp_path / "points.obj"
    points_only.write_text("v 0 0 0\nv 1 0 0\np 1 2\n")
    with pytest.raises(DataFormatError, match="no faces"):
        read_mesh(points_only)


def test_off_face_colours_and_coff_noff_headers(files: Path) -> None:
    reference = read_mesh(files / "face_colors.off")
    assert reference.faces.shape == (4, 3)
    for name in ("noff.off", "coff.off"):
        mesh = read_mesh(files / name)
        np.testing.assert_array_equal(mesh.vertices, reference.vertices)  # normals/colours dropped
        np.testing.assert_array_equal(mesh.faces, reference.faces)


def test_4d_off_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "four.off"
    path.write_text("4OFF\n3 1 0\n0 0 0 1\n1 0 0 1\n0 1 0 1\n3 0 1 2\n")
    with pytest.raises(DataFormatError, match="four.off, line 1: 4OFF"):
        read_mesh(path)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("faces_short_ascii.ply", r"line 16: truncated: header declares 1000 face rows"),
        ("faces_short_binary.ply", r"truncated: header declares 1000 face rows.* 2 of them"),
    ],
)
def test_ply_whose_faces_end_early_is_refused(files: Path, name: str, message: str) -> None:
    with pytest.raises(DataFormatError, match=message):
        read_mesh(files / name)


def test_binary_ply_with_all_faces_still_reads(tmp_path: Path, files: Path) -> None:
    raw = (files / "faces_short_binary.ply").read_bytes().replace(b"face 1000", b"face 2")
    path = tmp_path / "ok.ply"
    path.write_bytes(raw)
    assert read_mesh(path).faces.shape == (2, 3)


def test_kinect_nan_pcd_drops_the_nan_points_with_one_warning(files: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = read_point_file(files / "kinect_nan.pcd")
    messages = [str(w.message) for w in caught if "dropped" in str(w.message)]
    assert len(messages) == 1 and "dropped 4 of 12 points" in messages[0]
    assert out["pos"].shape == (8, 3) and np.isfinite(out["pos"]).all()
    assert out["rgb"].shape == (8, 3)


def test_nan_normals_are_refused_with_the_line(files: Path) -> None:
    with pytest.raises(DataFormatError, match=r"nan_normals.pcd, line 14: normal of point 2"):
        read_point_file(files / "nan_normals.pcd")


def test_nan_point_in_a_ply_is_refused_with_the_line(tmp_path: Path) -> None:
    path = tmp_path / "nan.ply"
    header = "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
    header += "property float z\nend_header\n"
    path.write_text(header + "0 0 0\n1 nan 0\n0 1 0\n")
    with pytest.raises(DataFormatError, match=r"nan.ply, line 9"):
        read_point_file(path)
