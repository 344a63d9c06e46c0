"""Write a tiny ImageFolder-style point-cloud folder with every supported file type.

Usage: ``python tests/data/folder/make_fixture.py OUT_DIR``. Layout:
``OUT_DIR/{train,test}/{box,sphere}/<file>`` with PLY (points and a mesh), PCD, XYZ, PTS
(count line first), TXT, NPY, OFF, OBJ and STL files; point counts differ per file.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def _sphere(n: int, rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _box(n: int, rng: np.random.Generator) -> np.ndarray:
    p = rng.uniform(-1, 1, (n, 3))
    axis = rng.integers(0, 3, n)
    p[np.arange(n), axis] = np.sign(p[np.arange(n), axis])
    return p


def make_folder(root: Path) -> Path:
    import open3d as o3d

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for cls, fn in (("box", _box), ("sphere", _sphere)):
            d = root / split / cls
            d.mkdir(parents=True, exist_ok=True)
            pts = [fn(int(n), rng) * 5 for n in rng.integers(40, 90, 5)]
            cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts[0]))
            o3d.io.write_point_cloud(str(d / "a.ply"), cloud)
            o3d.io.write_point_cloud(str(d / "b.pcd"), cloud)
            np.savetxt(d / "c.xyz", pts[1], fmt="%.5f")
            (d / "d.pts").write_text(
                f"{len(pts[2])}\n"
                + "\n".join(f"{x:.5f} {y:.5f} {z:.5f} 100 10 20 30" for x, y, z in pts[2])
            )
            np.savetxt(d / "e.txt", pts[3], fmt="%.5f", delimiter=",")
            np.save(d / "f.npy", pts[4].astype(np.float32))
            if split == "train":
                mesh = (
                    o3d.geometry.TriangleMesh.create_box(2, 2, 2)
                    if cls == "box"
                    else o3d.geometry.TriangleMesh.create_sphere(1.0, 6)
                )
                for suffix in (".obj", ".stl", ".ply"):
                    if suffix == ".stl":
                        mesh.compute_triangle_normals()
                    o3d.io.write_triangle_mesh(str(d / f"mesh{suffix}"), mesh)
                verts, tris = np.asarray(mesh.vertices), np.asarray(mesh.triangles)
                (d / "mesh.off").write_text(
                    "OFF\n"
                    + f"{len(verts)} {len(tris)} 0\n"
                    + "\n".join(
                        [" ".join(map(str, v)) for v in verts]
                        + ["3 " + " ".join(map(str, t)) for t in tris]
                    )
                )
    return root


if __name__ == "__main__":
    make_folder(Path(sys.argv[1]))
