"""The format table: a new format is one module (here: this test's few lines) plus one
registry line, and every reader path finds it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from lightning_pc.data import PointCloudFolderDataModule, formats
from lightning_pc.data.errors import DataFormatError
from lightning_pc.data.formats.base import Arrays, ChunkSource, Format
from lightning_pc.data.io import ScanChunks, read_point_file, read_scan

# --- the "module" of a toy format: ``.xyzn``, one point a line, ``x y z nx ny nz`` -------


def _read_xyzn(path: Path) -> Arrays:
    try:
        arr = np.loadtxt(path, ndmin=2, dtype=np.float64)
    except ValueError as err:
        raise DataFormatError(path, f"not x y z nx ny nz rows ({err})") from err
    if arr.shape[1] != 6 or len(arr) == 0:
        raise DataFormatError(path, f"expected 6 columns, found {arr.shape[1]}")
    return {"pos": arr[:, :3].astype(np.float32), "normal": arr[:, 3:].astype(np.float32)}


def _read_xyzn_scan(path: Path) -> Arrays:
    out = _read_xyzn(path)
    out["pos"] = np.loadtxt(path, ndmin=2, dtype=np.float64)[:, :3]  # full precision
    return out


class _XyznChunks(ChunkSource):
    kind = "xyzn"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.rows = _read_xyzn_scan(path)
        self.num_points = len(self.rows["pos"])
        self.coord_dtype = np.dtype(np.float64)
        self.keys = {"pos": 3, "normal": 3}

    def chunks(self, chunk: int) -> Iterator[Arrays]:
        return self.sliced(chunk, lambda a, b: {k: v[a:b] for k, v in self.rows.items()})


XYZN = Format(
    "xyzn", (".xyzn",), read_points=_read_xyzn, read_scan=_read_xyzn_scan, open_chunks=_XyznChunks
)

# -----------------------------------------------------------------------------------------


@pytest.fixture
def xyzn() -> Iterator[Format]:
    formats.register(XYZN)  # the one registry line (FORMAT_MODULES += ("xyzn",) in-tree)
    try:
        yield XYZN
    finally:
        formats.unregister(XYZN)


def _write(path: Path, rows: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(path, rows, fmt="%.10g")
    return path


def _rows(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    normal = rng.normal(size=(n, 3))
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    return np.hstack([rng.normal(size=(n, 3)) * 10 + 1e5, normal])


def test_a_registered_format_is_read_by_every_reader(tmp_path: Path, xyzn: Format) -> None:
    rows = _rows(25, 0)
    path = _write(tmp_path / "scan.XYZN", rows)  # any case
    assert formats.lookup(path) is xyzn and ".xyzn" in formats.suffixes(points=True)
    points = read_point_file(path)
    assert points["pos"].dtype == np.float32
    np.testing.assert_allclose(points["pos"], rows[:, :3], rtol=1e-6)
    np.testing.assert_allclose(points["normal"], rows[:, 3:], rtol=1e-6, atol=1e-7)
    scan = read_scan(path)
    assert scan["pos"].dtype == np.float64
    np.testing.assert_allclose(scan["pos"], rows[:, :3], rtol=1e-9)  # 10 digits written
    reader = ScanChunks(path, chunk=10)
    assert reader._kind == "xyzn" and reader.num_points == 25  # type: ignore[attr-defined]
    parts = list(reader)
    assert [len(p["pos"]) for p in parts] == [10, 10, 5]
    np.testing.assert_array_equal(np.concatenate([p["pos"] for p in parts]), scan["pos"])


def test_a_registered_format_is_read_by_the_folder_dataset(tmp_path: Path, xyzn: Format) -> None:
    root = tmp_path / "clouds"
    _write(root / "train" / "a" / "one.xyzn", _rows(7, 1))
    _write(root / "train" / "b" / "two.xyzn", _rows(9, 2))
    dm = PointCloudFolderDataModule(
        str(root),
        features=["normal"],
        num_points=None,
        batch_size=2,
        num_workers=0,
        cache_dir=str(tmp_path / "cache"),
    )
    dm.prepare_data()
    dm.setup("fit")
    train = dm.datasets["train"]
    assert train.names == ["train/a/one.xyzn", "train/b/two.xyzn"]
    i = train.names.index("train/b/two.xyzn")
    np.testing.assert_allclose(train.store.points(i, "normal"), _rows(9, 2)[:, 3:], atol=1e-6)


def test_unregistered_format_is_refused_again(tmp_path: Path) -> None:
    formats.register(XYZN)
    formats.unregister(".xyzn")
    assert formats.lookup("a.xyzn") is None
    path = _write(tmp_path / "scan.xyzn", _rows(3, 0))
    with pytest.raises(DataFormatError, match="unsupported point file suffix '.xyzn'"):
        read_point_file(path)


def test_register_refuses_a_taken_or_malformed_suffix() -> None:
    with pytest.raises(ValueError, match="'.ply' is 'ply'"):
        formats.register(Format("other", (".ply",)))
    with pytest.raises(ValueError, match="not like"):
        formats.register(Format("caps", (".XYZN",)))
    assert formats.for_suffix(".ply").name == "ply"


def test_every_format_module_is_registered_and_stays_below_the_data_modules() -> None:
    import ast
    import importlib

    package = Path(formats.__file__).parent
    for module in formats.FORMAT_MODULES:
        found = importlib.import_module(f"lightning_pc.data.formats.{module}").FORMATS
        assert all(formats.lookup(f"x{f.suffixes[0]}") is f for f in found)
    for source in package.glob("*.py"):
        tree = ast.parse(source.read_text())
        for node in ast.walk(tree):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            for name in names:
                assert not name.startswith(
                    (
                        "lightning_pc.data.datasets",
                        "lightning_pc.data.modules",
                        "lightning_pc.callbacks",
                        "lightning_pc.tasks",
                        "lightning_pc.models",
                    )
                ), f"{source.name} imports {name} (imports point downwards only)"
        assert len(source.read_text().splitlines()) <= 800, f"{source.name} is over 800 lines"
