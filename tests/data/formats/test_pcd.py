"""PCD: counts checked against the file before any reader allocates, bytes after the
declared points read as PCL reads them (with one warning)."""

from __future__ import annotations

import struct
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from lightning_pc.data.errors import DataFormatError
from lightning_pc.data.io import ScanChunks, read_point_file, read_scan

XYZ = np.arange(30, dtype="<f4").reshape(10, 3)


def _header(points: int, data: str, width: int | None = None) -> bytes:
    return (
        "VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\n"
        f"WIDTH {points if width is None else width}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\n"
        f"POINTS {points}\nDATA {data}\n"
    ).encode()


@pytest.mark.parametrize("data", ["binary", "ascii", "binary_compressed"])
def test_a_point_count_the_file_cannot_hold_is_refused_before_reading(
    tmp_path: Path, data: str
) -> None:
    path = tmp_path / "huge.pcd"
    if data == "binary":
        body = XYZ.tobytes()
    elif data == "ascii":
        body = b"".join(b"%g %g %g\n" % tuple(r) for r in XYZ)
    else:  # sizes that promise 4e9 points' bytes from 120 compressed ones
        body = struct.pack("<II", 120, 4_000_000_000 * 12 % (1 << 32)) + bytes(120)
    path.write_bytes(_header(4_000_000_000, data, width=10) + body)
    for reader in (read_point_file, read_scan, ScanChunks):
        begin = time.perf_counter()
        with pytest.raises(DataFormatError, match=r"huge.pcd: .*4000000000 points"):
            reader(path)
        assert time.perf_counter() - begin < 2.0


def test_compressed_sizes_beyond_the_file_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "packed.pcd"
    path.write_bytes(_header(10, "binary_compressed") + struct.pack("<II", 5000, 120) + bytes(40))
    with pytest.raises(DataFormatError, match=r"packed.pcd: truncated: 5000 compressed bytes"):
        read_point_file(path)


def test_binary_pcd_with_trailing_bytes_reads_the_declared_points(tmp_path: Path) -> None:
    path = tmp_path / "tail.pcd"
    path.write_bytes(_header(10, "binary") + XYZ.tobytes() + b"\x00\x07garbage")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = read_point_file(path)
        parts = list(ScanChunks(path, chunk=4))
    said = [str(w.message) for w in caught if "ignored" in str(w.message)]
    assert len(said) == 2 and all("9 bytes after them are ignored" in m for m in said)  # 1 each
    np.testing.assert_array_equal(out["pos"], XYZ)
    np.testing.assert_array_equal(np.concatenate([p["pos"] for p in parts]), XYZ)


def test_a_field_size_larger_than_any_record_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "wide.pcd"
    head = _header(10, "binary").replace(b"SIZE 4 4 4", b"SIZE 4 4 4000000000")
    path.write_bytes(head + XYZ.tobytes())
    for reader in (read_point_file, read_scan, ScanChunks):
        with pytest.raises(DataFormatError, match=r"wide.pcd: truncated: header declares 10"):
            reader(path)


def test_a_header_cut_before_its_data_line_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cut.pcd"  # fuzz finding F5: Open3D returned uninitialised points
    path.write_bytes(b"VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\n")
    for reader in (read_point_file, read_scan, ScanChunks):
        with pytest.raises(DataFormatError, match=r"cut.pcd: PCD header without a DATA line"):
            reader(path)


def test_a_compressed_size_that_disagrees_with_the_points_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "lzf.pcd"  # fuzz finding F6: Open3D allocated 4 GiB
    packed = bytes([35]) + bytes(36)  # one LZF literal run of 36 bytes
    path.write_bytes(_header(3, "binary_compressed") + struct.pack("<II", 37, 0xFFFFFFFF) + packed)
    with pytest.raises(DataFormatError, match=r"lzf.pcd: .*compressed data says 4294967295"):
        read_point_file(path)


def test_a_header_cut_inside_its_data_line_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cut.pcd"  # Open3D allocated POINTS for this one
    path.write_bytes(_header(2_147_483_647, "binary")[:-5])  # "DATA bi"
    for reader in (read_point_file, read_scan, ScanChunks):
        with pytest.raises(DataFormatError, match=r"cut.pcd: unknown PCD DATA kind 'bi'"):
            reader(path)
