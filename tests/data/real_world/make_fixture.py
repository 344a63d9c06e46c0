"""Write tiny files in the shapes other tools write, including their known defects.

Usage: ``python tests/data/real_world/make_fixture.py OUT_DIR``. Every file is written by
this script (no third-party file is copied); each mirrors a shape seen in the wild:

- ``quads.obj``: trimesh/libigl-style OBJ with ``mtllib``/``o``/``vt``/``vn``/``usemtl``
  lines, ``v/vt/vn`` quad faces, one pentagon and one face with negative (relative)
  indices: a unit cube, 6 quads = 12 triangles (+3 from the pentagon, +1 relative);
- ``face_colors.off``: a ModelNet/Princeton-style OFF whose faces are followed by
  per-face colours (integers on some faces, floats on others);
- ``noff.off``: ``NOFF`` as Open3D writes it (``x y z nx ny nz`` per vertex);
- ``coff.off``: ``COFF`` with ``x y z r g b a`` per vertex, counts glued to the header;
- ``faces_short_ascii.ply`` / ``faces_short_binary.ply``: the header declares 1000 faces,
  the body holds 2;
- ``kinect_nan.pcd``: an organised 4 x 3 PCL cloud (``WIDTH 4 HEIGHT 3``) whose pixels
  without depth are ``nan nan nan`` points;
- ``nan_normals.pcd``: finite points, one NaN normal (line 14 of the file).
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

CUBE = [(x, y, z) for x in (0, 1) for y in (0, 1) for z in (0, 1)]
CUBE_QUADS = [(1, 3, 4, 2), (5, 6, 8, 7), (1, 2, 6, 5), (3, 7, 8, 4), (1, 5, 7, 3), (2, 4, 8, 6)]


def write_all(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    obj = ["# exported by a mesh tool", "mtllib cube.mtl", "o cube"]
    obj += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in CUBE]
    obj += ["vt 0 0", "vt 1 0", "vt 1 1", "vt 0 1", "vn 0 0 1", "usemtl grey", "s off"]
    obj += [" ".join(["f"] + [f"{i}/{k % 4 + 1}/1" for k, i in enumerate(q)]) for q in CUBE_QUADS]
    obj += ["g extra", "v 2 0 0", "v 3 0 0", "v 3 1 0", "v 2.5 1.5 0", "v 2 1 0"]
    obj += ["f 9//1 10//1 11//1 12//1 13//1", "f -5 -4 -3", "l 1 2"]
    (out / "quads.obj").write_text("\n".join(obj) + "\n")

    tri = [(0, 1, 2), (0, 2, 3), (4, 5, 6), (4, 6, 7)]
    verts = [(0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0), (0, 0, 1), (1, 0, 1), (1, 1, 1), (0, 1, 1)]
    off = ["OFF", f"{len(verts)} {len(tri)} 0"] + [f"{x} {y} {z}" for x, y, z in verts]
    off += [f"3 {a} {b} {c} 255 0 0" for a, b, c in tri[:2]]
    off += [f"3 {a} {b} {c} 0.1 0.8 0.2 1.0" for a, b, c in tri[2:]]
    (out / "face_colors.off").write_text("\n".join(off) + "\n")

    noff = ["NOFF", f"{len(verts)} {len(tri)} 0"]
    noff += [f"{x} {y} {z} 0 0 1" for x, y, z in verts] + [f"3 {a} {b} {c}" for a, b, c in tri]
    (out / "noff.off").write_text("\n".join(noff) + "\n")

    coff = [f"COFF {len(verts)} {len(tri)} 0"]
    coff += [f"{x} {y} {z} 200 100 50 255" for x, y, z in verts]
    coff += [f"3 {a} {b} {c}" for a, b, c in tri]
    (out / "coff.off").write_text("\n".join(coff))  # no trailing newline either

    header = [
        "ply", "format {fmt} 1.0", "element vertex 4", "property float x", "property float y",
        "property float z", "element face 1000", "property list uchar int vertex_indices",
        "end_header",
    ]
    quad = [(0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0)]
    ascii_ply = [h.format(fmt="ascii") for h in header] + [f"{x} {y} {z}" for x, y, z in quad]
    ascii_ply += ["3 0 1 2", "3 0 2 3"]
    (out / "faces_short_ascii.ply").write_text("\n".join(ascii_ply) + "\n")
    body = b"".join(struct.pack("<3f", *p) for p in quad)
    body += struct.pack("<B3i", 3, 0, 1, 2) + struct.pack("<B3i", 3, 0, 2, 3)
    head = "\n".join(h.format(fmt="binary_little_endian") for h in header) + "\n"
    (out / "faces_short_binary.ply").write_bytes(head.encode() + body)

    pcd = [
        "# .PCD v0.7 - Point Cloud Data file format", "VERSION 0.7", "FIELDS x y z rgb",
        "SIZE 4 4 4 4", "TYPE F F F F", "COUNT 1 1 1 1", "WIDTH 4", "HEIGHT 3",
        "VIEWPOINT 0 0 0 1 0 0 0", "POINTS 12", "DATA ascii",
    ]
    rows = []
    for r in range(3):
        for c in range(4):
            if (r + c) % 3 == 0:
                rows.append("nan nan nan 4.2108e+06")
            else:
                rows.append(f"{c * 0.01:.3f} {r * 0.01:.3f} {1.0 + 0.01 * c:.3f} 4.2108e+06")
    (out / "kinect_nan.pcd").write_text("\n".join(pcd + rows) + "\n")

    normals = [
        "# .PCD v0.7 - Point Cloud Data file format", "VERSION 0.7",
        "FIELDS x y z normal_x normal_y normal_z", "SIZE 4 4 4 4 4 4", "TYPE F F F F F F",
        "COUNT 1 1 1 1 1 1", "WIDTH 4", "HEIGHT 1", "VIEWPOINT 0 0 0 1 0 0 0", "POINTS 4",
        "DATA ascii",
    ]
    rows = ["0 0 0 0 0 1", "1 0 0 0 0 1", "0 1 0 nan nan nan", "1 1 0 0 0 1"]
    (out / "nan_normals.pcd").write_text("\n".join(normals + rows) + "\n")
    return out


if __name__ == "__main__":
    write_all(Path(sys.argv[1] if len(sys.argv) > 1 else "real_world"))
