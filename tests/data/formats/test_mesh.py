"""OFF/OBJ meshes: what other tools write, read."""

from __future__ import annotations

from pathlib import Path

import pytest

from lightning_pc.data.errors import DataFormatError
from lightning_pc.data.io import read_mesh


def test_obj_with_latin1_names_is_read(tmp_path: Path) -> None:
    path = tmp_path / "chair.obj"
    path.write_bytes(
        b"# Cr\xe9\xe9 par un mod\xe8leur\nmtllib ch\xe2ssis.mtl\no Si\xe8ge\ng dossier\n"
        b"usemtl bois_ch\xeane\nv 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1 2 3\nf 1 2 4\n"
    )
    mesh = read_mesh(path)
    assert mesh.faces.tolist() == [[0, 1, 2], [0, 1, 3]]
    path.write_bytes(b"v 0 0 0\nv 1 0 \xe9\nv 0 1 0\nf 1 2 3\n")  # in a vertex: refused
    with pytest.raises(DataFormatError, match=r"chair.obj, line 2: non-numeric vertex"):
        read_mesh(path)


def test_binary_stl_with_a_count_beyond_the_file_is_refused_before_open3d(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import struct
    import sys

    monkeypatch.setitem(sys.modules, "open3d", None)  # the check comes first
    path = tmp_path / "part.stl"
    path.write_bytes(b"binary STL".ljust(80, b" ") + struct.pack("<I", 2_000_000_000) + bytes(100))
    with pytest.raises(DataFormatError, match=r"part.stl: truncated: header declares 2000000000"):
        read_mesh(path)


def test_off_face_vertex_count_beyond_int64_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "big.off"  # fuzz finding F10: OverflowError escaped
    path.write_text("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n" + "1" + "0" * 30 + " 0 1 2\n")
    with pytest.raises(DataFormatError, match=r"big.off, line 6: malformed face"):
        read_mesh(path)
