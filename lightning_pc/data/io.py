"""Readers for raw point-cloud and mesh files, and area-weighted mesh sampling.

A public facade: the readers live in :mod:`lightning_pc.data.formats`, one module per
format behind one suffix table (add formats there). Every reader raises
:class:`~lightning_pc.data.errors.DataFormatError` naming the file (and the 1-based line,
for text formats) when the input is malformed; none modifies the file it reads.
"""

from __future__ import annotations

from lightning_pc.data.formats import (
    SCAN_CHUNK,
    ScanChunks,
    read_mesh,
    read_point_file,
    read_scan,
    suffixes,
)
from lightning_pc.data.formats._common import TEXT_BLOCK
from lightning_pc.data.formats.base import Mesh, integer_labels
from lightning_pc.data.formats.las import read_las
from lightning_pc.data.formats.mesh import normalize_vertices, read_obj, read_off, sample_mesh
from lightning_pc.data.formats.npy import SPARSE_MIN_BYTES, check_npy_size
from lightning_pc.data.formats.pcd import PCD_BLOCK, check_pcd_counts, check_pcd_normals
from lightning_pc.data.formats.ply import check_ply_counts, ply_has_faces, read_ply_vertices
from lightning_pc.data.formats.text import read_table

POINT_SUFFIXES = suffixes(points=True)  # as registered when this module was imported
MESH_SUFFIXES = suffixes(meshes=True)

__all__ = [
    "MESH_SUFFIXES",
    "PCD_BLOCK",
    "POINT_SUFFIXES",
    "SCAN_CHUNK",
    "SPARSE_MIN_BYTES",
    "TEXT_BLOCK",
    "Mesh",
    "ScanChunks",
    "check_npy_size",
    "check_pcd_counts",
    "check_pcd_normals",
    "check_ply_counts",
    "integer_labels",
    "normalize_vertices",
    "ply_has_faces",
    "read_las",
    "read_mesh",
    "read_obj",
    "read_off",
    "read_ply_vertices",
    "read_point_file",
    "read_scan",
    "read_table",
    "sample_mesh",
]
