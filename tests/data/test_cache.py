"""The cache: fingerprinting, atomic build once under a lock, nothing half-written served."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lightning_pc.data.cache import (
    BUILD_LOG,
    CacheRecipe,
    default_cache_dir,
    ensure_cache,
    locate_cache,
    parallel_map,
)
from lightning_pc.data.errors import DataFormatError
from lightning_pc.data.packed import PackedArrays, PackedWriter


class SumRecipe(CacheRecipe):
    """Packs each raw text file's numbers; ``mode`` makes builds slow, fail or die."""

    name = "toy"

    def __init__(self, root: Path, scale: float = 1.0, mode: str = "ok") -> None:
        self._root, self.scale, self.mode = root, scale, mode

    @property
    def root(self) -> Path:
        return self._root

    def raw_files(self) -> list[Path]:
        return sorted(self._root.glob("*.txt"))

    def params(self) -> dict[str, Any]:
        return {"scale": self.scale}

    def build(self, out: Path) -> None:
        writer = PackedWriter(out / "train")
        for i, f in enumerate(self.raw_files()):
            values = np.array(f.read_text().split(), dtype=np.float32) * self.scale
            writer.append(f.name, {"v": values.reshape(-1, 1)}, {"label": i})
            if self.mode == "slow":
                time.sleep(0.3)
            if self.mode == "die":
                os._exit(3)  # a build killed half-way
            if self.mode == "fail":
                raise DataFormatError(f, "boom", 1)
        writer.close()


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    root = tmp_path / "raw"
    root.mkdir()
    (root / "a.txt").write_text("1 2 3")
    (root / "b.txt").write_text("4 5")
    return root


def test_build_and_read(raw: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    folder = ensure_cache(SumRecipe(raw), cache)
    assert folder.parent == cache / "toy"
    store = PackedArrays(folder / "train")
    assert len(store) == 2 and store.names == ["a.txt", "b.txt"]
    assert store.points(1, "v").ravel().tolist() == [4, 5]
    assert store.points(0, "v", np.array([0, 2])).ravel().tolist() == [1, 3]
    assert store.sample("label").tolist() == [0, 1]
    # plain .npy, memory-mapped, no pickle anywhere
    arr = np.load(folder / "train" / "v.npy", mmap_mode="r", allow_pickle=False)
    assert isinstance(arr, np.memmap) and arr.shape == (5, 1)
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["params"] == {"scale": 1.0} and meta["fingerprint"] == folder.name
    assert locate_cache(SumRecipe(raw), cache) == folder
    # second call: no rebuild
    ensure_cache(SumRecipe(raw), cache)
    assert len((cache / "toy" / BUILD_LOG).read_text().splitlines()) == 1


def test_key_changes_with_params_and_raw_files(raw: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = ensure_cache(SumRecipe(raw), cache)
    with pytest.raises(FileNotFoundError, match="prepare_data"):
        locate_cache(SumRecipe(raw, scale=2.0), cache)  # new parameter: not served the old one
    second = ensure_cache(SumRecipe(raw, scale=2.0), cache)
    assert second != first
    assert PackedArrays(second / "train").points(1, "v").ravel().tolist() == [8, 10]
    (raw / "b.txt").write_text("4 6")  # a raw file changed: the stale cache is never served
    os.utime(raw / "b.txt", ns=(time.time_ns(), time.time_ns() + 10**9))
    with pytest.raises(FileNotFoundError):
        locate_cache(SumRecipe(raw), cache)
    third = ensure_cache(SumRecipe(raw), cache)
    assert third not in (first, second)
    assert PackedArrays(third / "train").points(1, "v").ravel().tolist() == [4, 6]


def test_failed_build_leaves_nothing(raw: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(DataFormatError, match="a.txt, line 1: boom"):
        ensure_cache(SumRecipe(raw, mode="fail"), cache)
    leftovers = [p.name for p in (cache / "toy").iterdir() if not p.name.endswith(".lock")]
    assert leftovers == []


def _build(args: tuple[str, str, str], scale: float = 1.0) -> None:
    raw, cache, mode = args
    ensure_cache(SumRecipe(Path(raw), scale=scale, mode=mode), cache)


def test_killed_build_is_never_read(raw: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    proc = mp.get_context("fork").Process(target=_build, args=((str(raw), str(cache), "die"),))
    proc.start()
    proc.join(30)
    assert proc.exitcode == 3
    assert any(p.name.startswith(".tmp-") for p in (cache / "toy").iterdir())  # half-written
    with pytest.raises(FileNotFoundError):
        locate_cache(SumRecipe(raw), cache)
    folder = ensure_cache(SumRecipe(raw), cache)  # rebuilds, removes the debris
    assert not any(p.name.startswith(".tmp-") for p in (cache / "toy").iterdir())
    assert len(PackedArrays(folder / "train")) == 2
    # debris of another parameter set is removed too by the next build
    proc = mp.get_context("fork").Process(target=_build, args=((str(raw), str(cache), "die"), 5.0))
    proc.start()
    proc.join(30)
    assert any(p.name.startswith(".tmp-") for p in (cache / "toy").iterdir())
    ensure_cache(SumRecipe(raw, scale=3.0), cache)
    assert not any(p.name.startswith(".tmp-") for p in (cache / "toy").iterdir())


def test_concurrent_processes_build_once(raw: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_build, args=((str(raw), str(cache), "slow"),)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    assert len((cache / "toy" / BUILD_LOG).read_text().splitlines()) == 1
    assert locate_cache(SumRecipe(raw), cache).is_dir()


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LIGHTNING_PC_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("LIGHTNING_PC_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "lightning_pc"


def _square(x: int) -> int:
    if x == -13:
        raise DataFormatError(f"file{x}.txt", "unlucky", 2)
    return x * x


def test_parallel_map_order_and_errors() -> None:
    assert list(parallel_map(_square, list(range(40)), "t", workers=2)) == [
        x * x for x in range(40)
    ]
    with pytest.raises(DataFormatError, match="file-13.txt, line 2: unlucky"):
        list(parallel_map(_square, [*range(20), -13, 5], "t", workers=2))


def test_writer_rejects_inconsistent_fields(tmp_path: Path) -> None:
    writer = PackedWriter(tmp_path / "s")
    writer.append("a", {"pos": np.zeros((2, 3), np.float32), "x": np.zeros((2, 1))}, {"label": 0})
    with pytest.raises(ValueError, match="fields"):
        writer.append("b", {"pos": np.zeros((2, 3))}, {"label": 1})
    with pytest.raises(ValueError, match="different lengths"):
        writer.append("c", {"pos": np.zeros((2, 3)), "x": np.zeros((3, 1))}, {"label": 1})
    with pytest.raises(ValueError, match="row shape"):
        writer.append("d", {"pos": np.zeros((2, 4)), "x": np.zeros((2, 1))}, {"label": 1})
