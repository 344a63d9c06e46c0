"""PLY read with numpy, never by a C++ reader: CR LF headers, triangle strips, the colour
spellings other tools write, bodies shorter than the header, counts beyond the file."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lightning_pc.data.errors import DataFormatError
from lightning_pc.data.io import ScanChunks, read_mesh, read_point_file, read_scan

QUAD = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], dtype=np.float32)


def _binary_mesh(eol: bytes, faces: list[list[int]], declared: int | None = None) -> bytes:
    header = [
        b"ply",
        b"format binary_little_endian 1.0",
        b"comment written with CR LF line ends",
        b"element vertex 4",
        b"property float x",
        b"property float y",
        b"property float z",
        b"element face %d" % (len(faces) if declared is None else declared),
        b"property list uchar int vertex_indices",
        b"end_header",
    ]
    body = QUAD.astype("<f4").tobytes()
    for face in faces:
        body += bytes([len(face)]) + np.asarray(face, dtype="<i4").tobytes()
    return eol.join(header) + eol + body


def test_crlf_binary_ply_header_is_read_in_a_child_that_survives(tmp_path: Path) -> None:
    path = tmp_path / "crlf.ply"
    path.write_bytes(_binary_mesh(b"\r\n", [[0, 1, 2], [0, 2, 3]]))
    code = (
        "import sys\n"
        "from lightning_pc.data.io import read_mesh, read_point_file, read_scan\n"
        "m = read_mesh(sys.argv[1])\n"
        "assert m.faces.tolist() == [[0, 1, 2], [0, 2, 3]], m.faces\n"
        "assert m.vertices.shape == (4, 3)\n"
        "for reader in (read_point_file, read_scan):\n"
        "    assert reader(sys.argv[1])['pos'].shape == (4, 3)\n"
        "print('ok')\n"
    )
    # in a child: a segfault there fails this test instead of killing pytest
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", (done.returncode, done.stderr)


def test_ply_meshes_never_reach_open3d(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import lightning_pc.data.formats.mesh as mesh_module

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a PLY file reached Open3D")

    monkeypatch.setattr(mesh_module, "read_open3d_mesh", refuse)
    monkeypatch.setitem(sys.modules, "open3d", None)  # importing it fails
    for eol in (b"\n", b"\r\n"):
        path = tmp_path / "mesh.ply"
        path.write_bytes(_binary_mesh(eol, [[0, 1, 2, 3]]))  # a quad: fan-triangulated
        mesh = read_mesh(path)
        assert mesh.faces.tolist() == [[0, 1, 2], [0, 2, 3]]
        np.testing.assert_array_equal(mesh.vertices, QUAD)


def test_tristrips_become_triangles_with_their_winding(tmp_path: Path) -> None:
    verts = np.array([[0, 0, 0], [0, 1, 0], [1, 0, 0], [1, 1, 0], [2, 0, 0], [2, 1, 0]], float)
    lines = [
        "ply",
        "format ascii 1.0",
        "element vertex 6",
        "property float x",
        "property float y",
        "property float z",
        "element tristrips 1",
        "property list int int vertex_indices",
        "end_header",
        *(" ".join(f"{v:g}" for v in row) for row in verts),
        "9 0 1 2 3 -1 2 3 4 5",  # two strips
    ]
    path = tmp_path / "strips.ply"
    path.write_text("\n".join(lines) + "\n")
    mesh = read_mesh(path)
    # strip a b c d: (a b c), (c b d); the second strip likewise
    assert mesh.faces.tolist() == [[0, 1, 2], [2, 1, 3], [2, 3, 4], [4, 3, 5]]
    normals = np.cross(*(verts[mesh.faces[:, k]] - verts[mesh.faces[:, 0]] for k in (1, 2)))
    assert (np.sign(normals[:, 2]) == -1).all()  # one consistent winding
    binary = tmp_path / "strips_binary.ply"
    head = "\n".join(lines[:9]).replace("ascii", "binary_little_endian") + "\n"
    strip = np.array([9, 0, 1, 2, 3, -1, 2, 3, 4, 5], "<i4")
    binary.write_bytes(head.encode() + verts.astype("<f4").tobytes() + strip.tobytes())
    assert read_mesh(binary).faces.tolist() == mesh.faces.tolist()


@pytest.mark.parametrize(
    ("names", "kind", "values", "expect"),
    [
        (("diffuse_red", "diffuse_green", "diffuse_blue"), "uchar", [255, 0, 51], [1, 0, 0.2]),
        (("red", "green", "blue"), "float", [0.5, 0.25, 1.0], [0.5, 0.25, 1.0]),
        (("r", "g", "b"), "uchar", [0, 255, 255], [0, 1, 1]),
        (("red", "green", "blue"), "ushort", [65535, 0, 13107], [1, 0, 0.2]),
    ],
)
@pytest.mark.parametrize("fmt", ["ascii", "binary_little_endian"])
def test_colour_spellings_are_read_not_dropped(
    tmp_path: Path,
    names: tuple[str, ...],
    kind: str,
    values: list[float],
    expect: list[float],
    fmt: str,
) -> None:
    props = [("float", "x"), ("float", "y"), ("float", "z"), ("float", "nx"), ("float", "ny")]
    props += [("float", "nz")] + [(kind, n) for n in names] + [("float", "scalar_Intensity")]
    props += [("float", "scalar_Distance")]
    row = [1.0, 2.0, 3.0, 0.0, 0.0, 1.0, *values, 7.0, 0.5]
    header = ["ply", f"format {fmt} 1.0", "element vertex 3"]
    header += [f"property {t} {n}" for t, n in props] + ["end_header"]
    path = tmp_path / "colours.ply"
    if fmt == "ascii":
        body = "".join(" ".join(f"{v:g}" for v in row) + "\n" for _ in range(3)).encode()
    else:
        codes = {"float": "<f4", "uchar": "u1", "ushort": "<u2"}
        dtype = np.dtype([(n, codes[t]) for t, n in props])
        rec = np.zeros(3, dtype)
        for (_, n), v in zip(props, row):
            rec[n] = v
        body = rec.tobytes()
    path.write_bytes(("\n".join(header) + "\n").encode() + body)
    for reader in (read_point_file, read_scan):
        out = reader(path)
        np.testing.assert_allclose(out["rgb"], [expect] * 3, rtol=1e-6)
        np.testing.assert_array_equal(out["normal"], [[0, 0, 1]] * 3)
        np.testing.assert_array_equal(out["intensity"], [7, 7, 7])
        np.testing.assert_array_equal(out["scalar_Distance"], [0.5] * 3)
    reader_ = ScanChunks(path, chunk=2)
    parts = list(reader_)
    rgb = np.concatenate([p["rgb"] for p in parts])
    top = float(rgb.max())
    np.testing.assert_allclose(rgb / reader_.rgb_divisor(top), [expect] * 3, rtol=1e-6)
    assert np.concatenate([p["intensity"] for p in parts]).tolist() == [7, 7, 7]


def test_ascii_mesh_whose_face_list_is_cut_short_is_refused_naming_the_line(
    tmp_path: Path,
) -> None:
    lines = ["ply", "format ascii 1.0", "element vertex 4", "property float x"]
    lines += ["property float y", "property float z", "element face 1000"]
    lines += ["property list uchar int vertex_indices", "end_header"]
    lines += ["0 0 0", "1 0 0", "1 1 0", "0 1 0", "3 0 1 2", "3 0 2 3"]
    path = tmp_path / "partial.ply"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match=r"partial.ply, line 16: truncated: .*1000 face"):
        read_mesh(path)
    lines[-1] = "3 0 2"  # a row cut inside
    lines[6] = "element face 2"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match=r"partial.ply, line 15: malformed face row"):
        read_mesh(path)


def test_short_binary_body_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "short.ply"
    path.write_bytes(_binary_mesh(b"\n", [[0, 1, 2], [0, 2, 3]])[:-6])
    with pytest.raises(DataFormatError, match=r"short.ply: truncated: .*2 face rows.*1 of them"):
        read_mesh(path)
    vertices_only = tmp_path / "cut.ply"
    vertices_only.write_bytes(_binary_mesh(b"\n", [])[:-5].replace(b"face 0", b"face 0"))
    for reader in (read_point_file, read_scan, ScanChunks):
        with pytest.raises(DataFormatError, match=r"cut.ply: truncated"):
            reader(vertices_only)


@pytest.mark.parametrize("element", ["vertex", "face"])
def test_huge_element_counts_are_refused_at_once(tmp_path: Path, element: str) -> None:
    raw = _binary_mesh(b"\n", [[0, 1, 2]])
    huge = b"element %s 4000000000000" % element.encode()
    raw = raw.replace(b"element vertex 4" if element == "vertex" else b"element face 1", huge)
    path = tmp_path / "huge.ply"
    path.write_bytes(raw)
    readers = [read_mesh] + (
        [read_point_file, read_scan, ScanChunks] if element == "vertex" else []
    )
    for reader in readers:
        begin = time.perf_counter()
        with pytest.raises(DataFormatError, match=r"huge.ply: truncated"):
            reader(path)
        assert time.perf_counter() - begin < 2.0


def test_binary_vertex_with_a_repeated_property_name_reads_the_last(tmp_path: Path) -> None:
    header = "ply\nformat binary_little_endian 1.0\nelement vertex 2\nproperty float x\n"
    header += "property float y\nproperty float z\nproperty float z\nend_header\n"
    rows = np.array([[1, 2, 3, 4], [5, 6, 7, 8]], "<f4")
    path = tmp_path / "twice.ply"
    path.write_bytes(header.encode() + rows.tobytes())
    np.testing.assert_array_equal(read_point_file(path)["pos"], [[1, 2, 4], [5, 6, 8]])


@pytest.mark.parametrize(
    "raw",
    [
        b"ply\rformat binary_little_endian 1.0\relement vertex 2\rproperty float x\r"
        b"property float y\rproperty float z\rend_header\r" + bytes(24),  # lone CR breaks
        b"ply\nformat binary_little_endian 1.0\nelement vertex 2\nproperty float x\n"
        b"property float y\nproperty float z\nend_header",  # nothing after end_header
    ],
    ids=["cr", "no_break"],
)
def test_a_header_without_a_line_break_after_end_header_is_refused(
    tmp_path: Path, raw: bytes
) -> None:
    path = tmp_path / "odd.ply"  # fuzz finding F2 (FUZZ_FINDINGS.md)
    path.write_bytes(raw)
    for reader in (read_point_file, read_scan, ScanChunks):
        with pytest.raises(DataFormatError, match=r"odd.ply: truncated"):
            reader(path)


@pytest.mark.parametrize("length", [0, 2, 4])
def test_a_face_whose_list_length_is_wrong_is_refused_not_a_crash(
    tmp_path: Path, length: int
) -> None:
    path = tmp_path / "list.ply"  # fuzz finding F3: Open3D crashed on these
    raw = _binary_mesh(b"\n", [[0, 1, 2]])
    path.write_bytes(raw[:-13] + bytes([length]) + raw[-12:])
    with pytest.raises(DataFormatError, match=r"list.ply: (face 0 has|truncated)"):
        read_mesh(path)
