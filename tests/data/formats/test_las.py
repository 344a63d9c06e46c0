"""LAS/LAZ: header counts checked before laspy reads, a panicking LAZ decoder never
escapes (another backend reads the file, or a DataFormatError names it)."""

from __future__ import annotations

import struct
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

laspy = pytest.importorskip("laspy")
pytest.importorskip("lazrs")

from lightning_pc.data.errors import DataFormatError  # noqa: E402
from lightning_pc.data.formats import las as las_format  # noqa: E402
from lightning_pc.data.io import ScanChunks, read_point_file, read_scan  # noqa: E402


def _write(path: Path, n: int = 300, fmt: int = 3) -> Path:
    header = laspy.LasHeader(point_format=fmt, version="1.2")
    header.scales, header.offsets = [0.001] * 3, [5e5, 4e6, 0.0]
    las = laspy.LasData(header)
    i = np.arange(n)
    las.x, las.y, las.z = 5e5 + i * 0.25, 4e6 + (i % 17), (i % 5) * 0.1
    las.intensity, las.classification = i % 1000, i % 7
    if fmt in (2, 3):
        las.red, las.green, las.blue = i * 100, i, i % 255
    las.write(path)
    return path


def test_a_billion_vlrs_in_a_14_kb_file_is_refused_in_milliseconds(tmp_path: Path) -> None:
    path = _write(tmp_path / "vlrs.las", n=500)
    raw = bytearray(path.read_bytes())
    struct.pack_into("<I", raw, 100, 1_069_128_089)  # number of VLRs (LAS 1.2 header)
    path.write_bytes(bytes(raw))
    assert 10_000 < path.stat().st_size < 20_000
    for reader in (read_point_file, read_scan, ScanChunks):
        begin = time.perf_counter()
        with pytest.raises(DataFormatError, match=r"vlrs.las: header declares 1,069,128,089 VLRs"):
            reader(path)
        assert time.perf_counter() - begin < 1.0


def test_point_data_shorter_than_the_header_declares_is_refused_before_reading(
    tmp_path: Path,
) -> None:
    path = _write(tmp_path / "cut.las", n=100, fmt=0)
    raw = bytearray(path.read_bytes())
    struct.pack_into("<I", raw, 107, 4_000_000_000)  # legacy point count
    path.write_bytes(bytes(raw))
    with pytest.raises(DataFormatError, match=r"cut.las: truncated: header declares 4,000,000,000"):
        read_scan(path)
    raw = bytearray(path.read_bytes())
    struct.pack_into("<I", raw, 96, 10**9)  # offset to point data beyond the file
    path.write_bytes(bytes(raw))
    with pytest.raises(DataFormatError, match="point data starts at byte 1000000000"):
        ScanChunks(path)


class PanicException(BaseException):
    """What lazrs raises (``pyo3_runtime.PanicException`` derives from BaseException)."""


def _panic_when(monkeypatch: pytest.MonkeyPatch, parallel_only: bool, at_call: int = 0) -> None:
    """Make lazrs's decoder panic (the parallel one only, or both), at reader creation
    (``at_call=0``) or at its ``at_call``-th ``read_n_points``."""
    from laspy._compression import lazrsbackend

    real_init = lazrsbackend.LazrsPointReader.__init__
    real_read = lazrsbackend.LazrsPointReader.read_n_points

    def init(self: Any, source: Any, vlr: Any, parallel: bool, **kwargs: Any) -> None:
        if at_call == 0 and (parallel or not parallel_only):
            raise PanicException("Variable-size chunks, but no chunk table")
        real_init(self, source, vlr, parallel, **kwargs)
        self.calls, self.parallel = 0, parallel

    def read(self: Any, n: int) -> bytearray:
        self.calls += 1
        if self.calls == at_call and (self.parallel or not parallel_only):
            raise PanicException("Variable-size chunks, but no chunk table")
        return real_read(self, n)

    monkeypatch.setattr(lazrsbackend.LazrsPointReader, "__init__", init)
    monkeypatch.setattr(lazrsbackend.LazrsPointReader, "read_n_points", read)


@pytest.mark.parametrize("at_call", [0, 2])
def test_a_laz_the_parallel_decoder_panics_on_is_read_by_the_other_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, at_call: int
) -> None:
    path = _write(tmp_path / "old.laz", n=2500)
    expected = read_scan(path)
    chunks_expected = [dict(c) for c in ScanChunks(path, chunk=1000)]
    _panic_when(monkeypatch, parallel_only=True, at_call=at_call)
    got = read_scan(path)
    assert set(got) == set(expected)
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key])
    chunks = list(ScanChunks(path, chunk=1000))  # a panic after the first chunk resumes
    assert [len(c["pos"]) for c in chunks] == [1000, 1000, 500]
    for a, b in zip(chunks, chunks_expected):
        np.testing.assert_array_equal(a["pos"], b["pos"])
    target = tmp_path / "labelled.laz"
    las_format.write_las_labels(path, target, np.arange(2500) % 3, chunk=1000)
    written = laspy.read(target, laz_backend=laspy.LazBackend.Lazrs)  # the one left working
    np.testing.assert_array_equal(written.classification, np.arange(2500) % 3)


@pytest.mark.parametrize("at_call", [0, 1])
def test_a_laz_every_decoder_panics_on_is_a_data_format_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, at_call: int
) -> None:
    path = _write(tmp_path / "bad.laz", n=50)
    _panic_when(monkeypatch, parallel_only=False, at_call=at_call)
    if not any(b.name == "Laszip" for b in laspy.LazBackend.detect_available()):
        for reader in (read_point_file, read_scan, lambda p: list(ScanChunks(p))):
            with pytest.raises(DataFormatError, match=r"bad.laz: .*LAZ decoder crashed"):
                reader(path)
        with pytest.raises(DataFormatError, match=r"bad.laz: .*LAZ decoder crashed"):
            las_format.write_las_labels(path, tmp_path / "out.laz", np.zeros(50, dtype=int))
        assert not (tmp_path / "out.laz").exists() and not (tmp_path / "out.laz.tmp").exists()
    with pytest.raises(KeyboardInterrupt):  # an interrupt still goes through

        def interrupted(*args: object) -> None:
            raise KeyboardInterrupt

        monkeypatch.setattr(las_format, "_las_records", interrupted)
        read_scan(path)


def test_a_laz_chunk_table_offset_off_by_one_is_refused_before_lazrs(tmp_path: Path) -> None:
    path = _write(tmp_path / "ok.laz", n=12)  # fuzz finding F8: lazrs asked for 15 GB
    raw = bytearray(path.read_bytes())
    (offset,) = struct.unpack_from("<I", raw, 96)
    (table,) = struct.unpack_from("<q", raw, offset)
    struct.pack_into("<q", raw, offset, table + 1)
    path.write_bytes(bytes(raw))
    for reader in (read_point_file, read_scan, ScanChunks):
        with pytest.raises(DataFormatError, match=r"ok.laz: damaged LAZ chunk table"):
            reader(path)
    struct.pack_into("<q", raw, offset, 10**12)
    path.write_bytes(bytes(raw))
    with pytest.raises(DataFormatError, match=r"damaged LAZ chunk table offset 1000000000000"):
        read_scan(path)


def test_a_laz_point_count_beyond_its_chunk_table_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "count.laz", n=12)  # lazrs would size a buffer from the count
    raw = bytearray(path.read_bytes())
    struct.pack_into("<I", raw, 107, 2**31)
    path.write_bytes(bytes(raw))
    for reader in (read_point_file, read_scan, ScanChunks):
        with pytest.raises(DataFormatError, match=r"count.laz: header declares 2,147,483,648"):
            reader(path)


def test_coordinates_beyond_float32_are_refused_by_read_point_file_kept_by_read_scan(
    tmp_path: Path,
) -> None:
    path = _write(tmp_path / "far.las", n=10, fmt=0)
    raw = bytearray(path.read_bytes())
    struct.pack_into("<d", raw, 131, 1e300)  # the x scale factor
    path.write_bytes(bytes(raw))
    assert np.isfinite(read_scan(path)["pos"]).all()
    with pytest.raises(DataFormatError, match=r"far.las: point coordinates beyond float32"):
        read_point_file(path)
