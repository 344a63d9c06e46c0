"""Fault injection on the data layer: damaged caches, hostile raw files, killed builds.

Every test writes its raw files with the scripts under ``tests/data/`` (or inline), breaks
one thing, and asserts two things: the user's raw files are byte-for-byte unchanged, and
nothing wrong is served (the damage is repaired and the served samples equal a clean
build's, or the run stops with an error naming the file).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lightning_pc.data import (
    DataFormatError,
    MissingDataError,
    ModelNetDataModule,
    PointCloudFolderDataModule,
)
from lightning_pc.data import cache as cache_mod
from lightning_pc.data.cache import BUILD_LOG, ensure_cache, fingerprint, verify_cache
from lightning_pc.data.cache_admin import scan, select_prunable
from lightning_pc.data.errors import CacheCorruptedError
from lightning_pc.data.io import read_mesh, read_off, read_point_file
from lightning_pc.data.packed import PackedArrays
from tests.data import load_fixture

faults = load_fixture("faults", "make_faults.py")
modelnet_fx = load_fixture("modelnet")
folder_fx = load_fixture("folder")


# --- helpers ---------------------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, tuple[str, int, int]]:
    """Every file under ``root``: content hash, size, mtime."""
    return {
        str(p): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def datamodule(root: Path, cache: Path, **kwargs: Any) -> ModelNetDataModule:
    """ModelNet10 (resampled text layout) with every point served, in file order."""
    return ModelNetDataModule(
        str(root),
        10,
        num_points=None,
        batch_size=4,
        num_workers=0,
        cache_dir=str(cache),
        train_transforms=[],
        eval_transforms=[],
        **kwargs,
    )


def served(dm: ModelNetDataModule) -> dict[str, list[tuple[np.ndarray, int]]]:
    """What the data module hands to a model: ``(pos, label)`` of every sample of every split."""
    dm.setup("fit")
    out = {}
    for split in ("train", "test"):
        ds = dm.datasets[split]
        out[split] = [(ds[i].pos.numpy().copy(), int(ds[i].y)) for i in range(len(ds))]
    return out


def same(a: dict[str, list[tuple[np.ndarray, int]]], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(
        len(a[s]) == len(b[s])
        and all(np.array_equal(p, q) and x == y for (p, x), (q, y) in zip(a[s], b[s]))
        for s in a
    )


def builds(cache: Path) -> int:
    log = cache / "modelnet" / BUILD_LOG
    return len(log.read_text().splitlines()) if log.is_file() else 0


@pytest.fixture
def mn(tmp_path: Path) -> dict[str, Any]:
    """A ModelNet10 fixture, a built cache, and what a clean build serves."""
    root = modelnet_fx.make_resampled(tmp_path / "mn10")
    cache = tmp_path / "cache"
    dm = datamodule(root, cache)
    dm.prepare_data()
    folder = dm.cache_folder()
    reference = served(dm)
    for split, samples in reference.items():  # the reference is the raw files' content
        names = dm.datasets[split].names
        assert len(names) == len(samples) == {"train": 20, "test": 10}[split]
        for name, (pos, label) in zip(names, samples):
            raw = np.loadtxt(root / name, delimiter=",", dtype=np.float32)
            assert np.array_equal(pos, raw[:, :3])
            assert dm.class_names[label] == Path(name).parent.name
    return {
        "root": root,
        "cache": cache,
        "folder": folder,
        "reference": reference,
        "before": snapshot(root),
    }


def repaired_by_prepare(mn: dict[str, Any], **kwargs: Any) -> None:
    """``setup`` refuses the damaged cache (naming it); ``prepare_data`` warns once and
    rebuilds; then the clean data is served and the raw files are untouched."""
    dm = datamodule(mn["root"], mn["cache"], **kwargs)
    with pytest.raises(CacheCorruptedError) as info:
        dm.setup("fit")  # another rank's view: refuses, does not rebuild
    assert str(mn["folder"]) in str(info.value)
    n = builds(mn["cache"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dm.prepare_data()
    damaged = [w for w in caught if "damaged" in str(w.message)]
    assert len(damaged) == 1 and str(mn["folder"]) in str(damaged[0].message)
    assert builds(mn["cache"]) == n + 1
    assert same(served(dm), mn["reference"])
    assert not verify_cache(mn["folder"], "full")
    assert not [p for p in (mn["cache"] / "modelnet").iterdir() if p.name.startswith(".damaged")]
    assert snapshot(mn["root"]) == mn["before"]


# --- a damaged cache is never served ------------------------------------------------------


def test_flipped_bytes_in_pos_are_caught_and_rebuilt(mn: dict[str, Any]) -> None:
    faults.flip_bytes(mn["folder"] / "train" / "pos.npy", row=5)
    repaired_by_prepare(mn)


def test_nan_in_pos_is_caught_and_rebuilt(mn: dict[str, Any]) -> None:
    faults.put_value(mn["folder"] / "train" / "pos.npy", 7, float("nan"))
    repaired_by_prepare(mn)


def test_label_99_is_caught_and_rebuilt(mn: dict[str, Any]) -> None:
    faults.put_value(mn["folder"] / "train" / "sample_label.npy", 3, 99)
    repaired_by_prepare(mn)


def test_deleted_split_folder_is_caught_and_rebuilt(mn: dict[str, Any]) -> None:
    shutil.rmtree(mn["folder"] / "test")
    repaired_by_prepare(mn)


def test_truncated_array_is_caught_and_rebuilt(mn: dict[str, Any]) -> None:
    pos = mn["folder"] / "train" / "pos.npy"
    faults.truncate(pos, pos.stat().st_size // 2)
    repaired_by_prepare(mn)


@pytest.mark.parametrize("name", ["pos.npy", "offsets.npy", "sample_label.npy", "names.json"])
def test_truncated_file_read_directly_names_it(mn: dict[str, Any], name: str) -> None:
    """Below the checks (a store opened without them): an error naming the file, not a bare
    EOFError / mmap error."""
    path = mn["folder"] / "train" / name
    faults.truncate(path, 70)  # inside the header
    with pytest.raises(CacheCorruptedError, match=str(path)):
        store = PackedArrays(mn["folder"] / "train")
        store.points(0, "pos")
        store.sample("label")
    assert snapshot(mn["root"]) == mn["before"]


@pytest.fixture
def big_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """Behave as on a cache whose arrays are too big to checksum on every open."""
    monkeypatch.setattr(cache_mod, "QUICK_HASH_BYTES", 0)


def test_big_cache_quick_check_catches_label_and_structure_damage(
    mn: dict[str, Any], big_cache: None
) -> None:
    """Without checksums, the quick check still sees labels out of the built range,
    non-increasing offsets and an array header that disagrees with the offsets."""
    train = mn["folder"] / "train"
    faults.put_value(train / "sample_label.npy", 0, 99)
    problems = verify_cache(mn["folder"], "quick")
    assert any("sample_label.npy" in p and "out of range" in p for p in problems)
    repaired_by_prepare(mn)
    offsets = np.load(train / "offsets.npy")
    faults.put_value(train / "offsets.npy", 2, int(offsets[3]) + 1)
    assert any("offsets" in p for p in verify_cache(mn["folder"], "quick"))
    repaired_by_prepare(mn)
    pos = train / "pos.npy"  # 20 samples x 64 points; the header now says one row less
    pos.write_bytes(pos.read_bytes().replace(b"(1280, 3)", b"(1279, 3)", 1))
    assert "train/pos.npy: array (1279, 3) float32, expected (1280, 3) float32" in (
        verify_cache(mn["folder"], "quick")
    )
    repaired_by_prepare(mn)


def test_big_cache_nan_is_refused_at_read_and_found_by_full(
    mn: dict[str, Any], big_cache: None
) -> None:
    """Quick mode does not read big arrays: a NaN there is refused when its sample is read
    (naming the cache and the sample), and ``cache_verify="full"`` finds and rebuilds it."""
    faults.put_value(mn["folder"] / "train" / "pos.npy", 64 * 3 * 2 + 1, float("nan"))
    dm = datamodule(mn["root"], mn["cache"])
    dm.prepare_data()  # quick: not seen
    dm.setup("fit")
    ds = dm.datasets["train"]
    with pytest.raises(CacheCorruptedError, match="sample 2 .* non-finite pos"):
        ds[2]
    repaired_by_prepare(mn, cache_verify="full")


def test_big_cache_finite_flip_needs_full(mn: dict[str, Any], big_cache: None) -> None:
    """A flipped sign in a big array keeps sizes and headers: only ``full`` sees it."""
    faults.flip_bytes(mn["folder"] / "train" / "pos.npy", row=9)
    assert verify_cache(mn["folder"], "quick") == []  # the documented limit of quick
    assert any("pos.npy" in p for p in verify_cache(mn["folder"], "full"))
    repaired_by_prepare(mn, cache_verify="full")


def test_garbled_index_and_meta(mn: dict[str, Any]) -> None:
    (mn["folder"] / "train" / "names.json").write_text("[")
    repaired_by_prepare(mn)
    meta = mn["folder"] / "meta.json"
    meta.write_text(meta.read_text()[:-20])  # not complete: rebuilt without a warning
    dm = datamodule(mn["root"], mn["cache"])
    with pytest.raises(FileNotFoundError, match="prepare_data"):
        dm.setup("fit")
    dm.prepare_data()
    assert same(served(dm), mn["reference"])
    assert snapshot(mn["root"]) == mn["before"]


def test_damaged_cache_with_raw_files_gone_is_refused(mn: dict[str, Any]) -> None:
    faults.put_value(mn["folder"] / "train" / "sample_label.npy", 3, 99)
    gone = mn["root"].rename(mn["root"].with_name("moved"))
    dm = datamodule(mn["root"], mn["cache"])
    with pytest.raises(MissingDataError, match=str(mn["root"])):
        dm.prepare_data()
    with pytest.raises(MissingDataError, match=str(mn["root"])):
        dm.setup("fit")
    gone.rename(mn["root"])
    assert snapshot(mn["root"]) == mn["before"]


def _prepare(args: tuple[str, str]) -> None:
    root, cache = args
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        datamodule(Path(root), Path(cache)).prepare_data()


def test_two_processes_rebuild_a_damaged_cache_once(mn: dict[str, Any]) -> None:
    faults.put_value(mn["folder"] / "test" / "pos.npy", 5, float("nan"))
    n = builds(mn["cache"])
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_prepare, args=((str(mn["root"]), str(mn["cache"])),))]
    procs.append(ctx.Process(target=_prepare, args=((str(mn["root"]), str(mn["cache"])),)))
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    assert builds(mn["cache"]) == n + 1
    assert same(served(datamodule(mn["root"], mn["cache"])), mn["reference"])
    assert snapshot(mn["root"]) == mn["before"]


def test_same_size_edit_with_mtime_restored(mn: dict[str, Any]) -> None:
    """The default key hashes names, sizes and mtimes: this edit keeps all three, so the
    old cache's key is unchanged. ``cache_fingerprint="content"`` hashes the bytes and
    serves the edited value."""
    shape = sorted((mn["root"] / "bed").glob("*.txt"))[0]
    text = shape.read_text()
    first = text.split(",")[0]
    edited = first[1:] + "1" if first.startswith("-") else "-" + first[:-1]
    assert len(edited) == len(first)
    faults.same_size_edit(shape, first.encode(), edited.encode())
    st = shape.stat()
    dm = datamodule(mn["root"], mn["cache"])
    assert dm.recipe().key() == mn["folder"].name  # the documented limit of "stat"
    content = datamodule(mn["root"], mn["cache"], cache_fingerprint="content")
    content.prepare_data()
    assert content.cache_folder() != mn["folder"]
    got = served(content)
    rel = shape.relative_to(mn["root"]).as_posix()
    split = "train" if rel in content.datasets["train"].names else "test"
    index = content.datasets[split].names.index(rel)
    assert got[split][index][0][0, 0] == pytest.approx(float(edited), abs=1e-6)
    assert shape.stat().st_mtime_ns == st.st_mtime_ns and shape.read_text() != text


def test_content_fingerprint_key_depends_on_bytes_only(tmp_path: Path) -> None:
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("1 2 3")
    b.write_text("1 2 3")
    key = fingerprint(tmp_path, [a], {}, 1, "content")
    os.utime(a, ns=(1, 10**18))
    assert fingerprint(tmp_path, [a], {}, 1, "content") == key  # a touch: same bytes, same key
    assert fingerprint(tmp_path, [a], {}, 1, "stat") != key
    a.write_text("1 2 4")
    assert fingerprint(tmp_path, [a], {}, 1, "content") != key
    with pytest.raises(ValueError, match="stat.*content"):
        fingerprint(tmp_path, [a], {}, 1, "mtime")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cache_verify must be 'quick' or 'full'"):
        datamodule(tmp_path, tmp_path, cache_verify="fast")
    with pytest.raises(ValueError, match="cache_fingerprint must be 'stat' or 'content'"):
        datamodule(tmp_path, tmp_path, cache_fingerprint="mtime")


# --- readers that used to drop data silently ------------------------------------------------


def folder_with(tmp_path: Path, name: str, write: Any) -> tuple[Path, Path]:
    """A one-class folder dataset with a good file and ``write(path)``'s bad one."""
    root = tmp_path / "clouds"
    (root / "train" / "a").mkdir(parents=True)
    np.savetxt(root / "train" / "a" / "good.xyz", np.ones((5, 3)))
    write(root / "train" / "a" / name)
    return root, tmp_path / "cache"


def refused_by_folder(tmp_path: Path, name: str, write: Any, message: str) -> None:
    root, cache = folder_with(tmp_path, name, write)
    before = snapshot(root)
    dm = PointCloudFolderDataModule(str(root), cache_dir=str(cache), num_workers=0)
    with pytest.raises(DataFormatError, match=message) as info:
        dm.prepare_data()
    assert info.value.path == str(root / "train" / "a" / name)
    assert not any(p.name == "meta.json" or p.name.startswith(".tmp") for p in cache.rglob("*"))
    assert snapshot(root) == before


def test_ply_with_more_rows_than_declared(tmp_path: Path) -> None:
    refused_by_folder(
        tmp_path,
        "extra.ply",
        faults.ply_extra_rows,
        r"extra.ply, line 68: header declares 60 vertex rows, but 40 more data line",
    )


def test_binary_ply_with_more_rows_than_declared(tmp_path: Path) -> None:
    refused_by_folder(
        tmp_path,
        "extra.ply",
        faults.ply_binary_extra_rows,
        r"extra.ply: header declares 60 vertices \(720 bytes\), the file holds 480 more bytes",
    )


def test_ascii_pcd_with_more_points_than_declared(tmp_path: Path) -> None:
    """Open3D reads the declared 60 of 100 points without a word."""
    refused_by_folder(
        tmp_path,
        "extra.pcd",
        lambda p: faults.pcd_extra_rows(p, binary=False),
        r"extra.pcd, line 72: header declares 60 points \(POINTS\), but 40 more",
    )


def test_binary_pcd_with_bytes_after_the_declared_points_reads_them_with_a_warning(
    tmp_path: Path,
) -> None:
    """PCL and pypcd read the declared points of such a file; so do we, warning once."""
    import warnings

    from lightning_pc.data.io import ScanChunks, read_scan

    path = faults.pcd_extra_rows(tmp_path / "extra.pcd", binary=True)
    expected = np.fromfile(path, dtype="<f4", offset=path.stat().st_size - 1200).reshape(-1, 3)
    for read in (read_point_file, read_scan, lambda p: {"pos": np.concatenate(
            [c["pos"] for c in ScanChunks(p, chunk=7)])}):  # fmt: skip
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = read(path)
        said = [str(w.message) for w in caught if "ignored" in str(w.message)]
        assert len(said) == 1 and "read the 60 points" in said[0] and "480 bytes" in said[0]
        np.testing.assert_array_equal(out["pos"], expected[:60].astype(out["pos"].dtype))


def test_off_with_more_faces_than_declared(tmp_path: Path) -> None:
    refused_by_folder(
        tmp_path,
        "extra.off",
        faults.off_extra_faces,
        r"extra.off, line 9: header declares 4 vertices and 2 faces, but 1 more line",
    )
    path = faults.off_extra_faces(tmp_path / "direct.off")
    with pytest.raises(DataFormatError, match="line 9"):
        read_off(path)


def test_ply_mesh_face_index_past_its_vertices(tmp_path: Path) -> None:
    refused_by_folder(
        tmp_path,
        "mesh.ply",
        faults.ply_mesh_bad_index,
        r"mesh.ply: face 1 \(\[0, 1, 7\]\) indexes a vertex outside \[0, 4\)",
    )
    with pytest.raises(DataFormatError, match="mesh.ply"):
        read_mesh(faults.ply_mesh_bad_index(tmp_path / "mesh.ply"))


def test_hdf5_fractional_labels_are_refused(tmp_path: Path) -> None:
    root = faults.hdf5_labels(tmp_path / "h5", [3.7, 2.0])
    before = snapshot(root)
    dm = ModelNetDataModule(str(root), 40, num_workers=0, cache_dir=str(tmp_path / "cache"))
    with pytest.raises(DataFormatError, match=r"ply_data_train0.h5: label 3.7 at index 0 is not"):
        dm.prepare_data()
    assert snapshot(root) == before
    ok = faults.hdf5_labels(tmp_path / "h5ok", [3.0, 2.0])  # whole floats are fine
    dm = ModelNetDataModule(
        str(ok), 40, num_points=None, num_workers=0, cache_dir=str(tmp_path / "cache")
    )
    dm.prepare_data()
    dm.setup("fit")
    assert [int(dm.datasets["train"][i].y) for i in range(2)] == [3, 2]


def test_sparse_npy_declaring_2_gib_is_refused(tmp_path: Path) -> None:
    path = faults.sparse_npy(tmp_path / "sparse.npy")
    st = path.stat()
    if st.st_blocks * 512 > 1 << 20:
        pytest.skip("this filesystem does not keep sparse files sparse")
    with pytest.raises(DataFormatError, match="sparse file: header declares 2147483640 bytes"):
        read_point_file(path)  # refused from its header and stat: nothing is loaded
    assert path.stat().st_mtime_ns == st.st_mtime_ns and path.stat().st_blocks == st.st_blocks
    refused_by_folder(  # the same through a data module (64 MiB declared: cheap to hash)
        tmp_path,
        "sparse.npy",
        lambda p: faults.sparse_npy(p, 64 << 20),
        r"sparse.npy: sparse file: header declares 67108860 bytes of data, only",
    )


@pytest.mark.parametrize(
    ("writer", "message"),
    [
        ("truncated_npy", r"truncated: header declares shape \(100, 3\) float32 = 1200 bytes"),
        ("overlong_npy", r"extra bytes after the array: .* the file holds 1200"),
    ],
    ids=["truncated", "overlong"],
)
def test_npy_size_differs_from_header(tmp_path: Path, writer: str, message: str) -> None:
    refused_by_folder(tmp_path, "bad.npy", getattr(faults, writer), message)
    with pytest.raises(DataFormatError, match=message):
        read_point_file(getattr(faults, writer)(tmp_path / "direct.npy"))


def test_empty_class_folder(tmp_path: Path) -> None:
    root = folder_fx.make_folder(tmp_path / "clouds")
    (root / "train" / "cat").mkdir()
    (root / "train" / "cat" / ".DS_Store").write_bytes(b"\0\1")
    (root / "train" / "cat" / "scan.e57").write_bytes(b"ASTM-E57")  # a format not read
    before = snapshot(root)
    cache = tmp_path / "cache"
    dm = PointCloudFolderDataModule(str(root), cache_dir=str(cache), num_workers=0)
    with pytest.raises(MissingDataError, match="class 'cat' would have no training samples"):
        dm.prepare_data()
    assert not any(p.name == "meta.json" for p in cache.rglob("*"))
    # a class missing from test/ only: served, with a warning naming the folder
    (root / "train" / "cat" / "scan.xyz").write_text("1 2 3\n4 5 6\n")
    (root / "test" / "cat").mkdir()
    dm = PointCloudFolderDataModule(str(root), cache_dir=str(cache), num_workers=0)
    with pytest.warns(UserWarning) as record:
        dm.prepare_data()
    text = [str(w.message) for w in record]
    assert any(str(root / "test" / "cat") in t and "no test samples" in t for t in text)
    assert any("unsupported types (1 .e57)" in t for t in text)
    dm.setup("fit")
    assert dm.num_classes == 3 and dm.class_names[1] == "cat"
    train = dm.datasets["train"]
    assert sorted({int(train[i].y) for i in range(len(train))}) == [0, 1, 2]
    (root / "train" / "cat" / "scan.xyz").unlink()
    (root / "test" / "cat").rmdir()
    assert snapshot(root) == before


# --- killed builds: no orphaned workers ---------------------------------------------------------

_BUILD_SCRIPT = """
import os, sys, time
from pathlib import Path
import numpy as np
from lightning_pc.data.cache import CacheRecipe, ensure_cache, parallel_map
from lightning_pc.data.packed import PackedWriter

marks = Path(sys.argv[3])

def slow(path):
    (marks / str(os.getpid())).touch()
    time.sleep(0.3)
    return float(Path(path).read_text())

class Slow(CacheRecipe):
    name = "slow"
    root = Path(sys.argv[1])
    def raw_files(self):
        return sorted(self.root.glob("*.txt"))
    def params(self):
        return {}
    def build(self, out):
        writer = PackedWriter(out / "train")
        files = [str(p) for p in self.raw_files()]
        for f, v in zip(files, parallel_map(slow, files, "slow", workers=3)):
            writer.append(f, {"v": np.full((1, 1), v)})
        writer.close()

if __name__ == "__main__":
    ensure_cache(Slow(), sys.argv[2])
"""


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_during_build_leaves_no_workers(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    for i in range(60):
        (raw / f"{i:03d}.txt").write_text(str(i))
    before = snapshot(raw)
    marks = tmp_path / "marks"
    marks.mkdir()
    script = tmp_path / "build.py"
    script.write_text(textwrap.dedent(_BUILD_SCRIPT))
    cache = tmp_path / "cache"
    proc = subprocess.Popen([sys.executable, str(script), str(raw), str(cache), str(marks)])
    deadline = time.monotonic() + 120
    while len(list(marks.iterdir())) < 3 and time.monotonic() < deadline:
        assert proc.poll() is None, "the build ended before it was killed"
        time.sleep(0.1)
    workers = [int(p.name) for p in marks.iterdir()]
    assert len(workers) == 3 and all(_alive(pid) for pid in workers)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    survivors = [pid for pid in workers if _alive(pid)]
    for pid in survivors:  # do not leave them behind if the test fails
        os.kill(pid, signal.SIGKILL)
    assert survivors == []
    entries = scan(cache)
    assert [e.state for e in entries] == ["debris"]  # half-written, never served
    assert snapshot(raw) == before


# --- lightning-pc cache list | size | verify | prune -----------------------------------------


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    from lightning_pc.cli import main

    with pytest.raises(SystemExit) as info:
        main(["cache", *args])
    return int(info.value.code or 0), capsys.readouterr().out


@pytest.fixture
def populated(tmp_path: Path) -> dict[str, Any]:
    """Two ModelNet caches (an old one and a new one), killed-build debris, a folder set
    aside as damaged, an unrelated file and a symlink to a folder outside the cache root."""
    root = modelnet_fx.make_resampled(tmp_path / "mn10")
    cache = tmp_path / "cache"
    old_dm = datamodule(root, cache)  # two keys for one dataset: stat and content
    old_dm.prepare_data()
    old_folder = old_dm.cache_folder()
    new_dm = datamodule(root, cache, cache_fingerprint="content")
    new_dm.prepare_data()
    new_folder = new_dm.cache_folder()
    long_ago = time.time() - 40 * 86400
    os.utime(old_folder, (long_ago, long_ago))
    parent = cache / "modelnet"
    debris = parent / f".tmp-{'a' * 20}-123-deadbeef"
    (debris / "train").mkdir(parents=True)
    (debris / "train" / "pos.npy").write_bytes(b"x" * 1000)
    damaged = parent / f".damaged-{'b' * 20}-1-cafecafe"
    damaged.mkdir()
    (damaged / "meta.json").write_text("{}")
    outdated = parent / ("d" * 20)  # a cache of the previous layout (meta without "format")
    (outdated / "train").mkdir(parents=True)
    (outdated / "meta.json").write_text(json.dumps({"fingerprint": "d" * 20}))
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    (parent / ("c" * 20)).symlink_to(outside, target_is_directory=True)
    (cache / "notes.txt").write_text("user notes")
    return {
        "root": root,
        "cache": cache,
        "old": old_folder,
        "new": new_folder,
        "debris": debris,
        "damaged": damaged,
        "outdated": outdated,
        "outside": outside,
        "before": snapshot(root),
    }


def test_cache_list_and_size(populated: dict[str, Any], capsys: pytest.CaptureFixture) -> None:
    code, out = _cli(capsys, "list", "--cache-root", str(populated["cache"]))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == [
        "dataset",
        "fingerprint",
        "state",
        "size",
        "last",
        "used",
        "raw",
        "data",
    ]
    states = {line.split()[1]: line.split()[2] for line in lines[1:]}
    assert states == {
        populated["old"].name: "ready",
        populated["new"].name: "ready",
        "a" * 20: "debris",
        "b" * 20: "damaged",
        "d" * 20: "outdated",
    }
    assert str(populated["root"]) in out
    code, out = _cli(capsys, "list", "--cache-root", str(populated["cache"]), "--dataset", "s3dis")
    assert code == 0 and out.startswith("no caches")
    code, out = _cli(capsys, "size", "--cache-root", str(populated["cache"]))
    total = sum(e.size for e in scan(populated["cache"]))
    assert code == 0 and out.splitlines()[1].split()[:2] == ["modelnet", "5"]
    assert total > 1000 and out.splitlines()[-1].split()[:2] == ["total", "5"]
    assert snapshot(populated["root"]) == populated["before"]


def test_cache_prune(populated: dict[str, Any], capsys: pytest.CaptureFixture) -> None:
    cache = populated["cache"]
    everything = snapshot(cache)
    code, out = _cli(capsys, "prune", "--cache-root", str(cache), "--older-than", "30")
    assert code == 0 and "dry run" in out and populated["old"].name in out
    assert snapshot(cache) == everything  # dry run: nothing deleted
    # a build in progress holds its lock: never removed
    from filelock import FileLock

    lock = FileLock(str(cache / "modelnet" / f".{'a' * 20}.lock"))
    with lock:
        assert [e.state for e in scan(cache) if e.key == "a" * 20] == ["building"]
        code, out = _cli(capsys, "prune", "--cache-root", str(cache), "--older-than", "30", "--yes")
    assert code == 0
    assert populated["debris"].is_dir()  # building: kept
    assert not populated["damaged"].exists() and not populated["old"].exists()
    assert not populated["outdated"].exists()
    assert populated["new"].is_dir()  # used today
    code, out = _cli(capsys, "prune", "--cache-root", str(cache), "--keep-latest", "1", "--yes")
    assert not populated["debris"].exists()  # lock released: debris goes now
    assert populated["new"].is_dir()  # the latest is kept
    # nothing outside the cache root, no symlink target, no stray file is touched
    assert (populated["outside"] / "keep.txt").read_text() == "mine"
    assert (cache / "modelnet" / ("c" * 20)).is_symlink()
    assert (cache / "notes.txt").read_text() == "user notes"
    dm = datamodule(populated["root"], cache, cache_fingerprint="content")
    dm.setup("fit")  # the kept cache is still served
    assert snapshot(populated["root"]) == populated["before"]


def test_prune_selection_rules(populated: dict[str, Any]) -> None:
    entries = scan(populated["cache"])
    names = lambda sel: sorted(e.path.name for e, _ in sel)  # noqa: E731
    always = sorted(populated[k].name for k in ("debris", "damaged", "outdated"))
    assert names(select_prunable(entries)) == always
    assert names(select_prunable(entries, keep_latest=0)) == sorted(
        always + [populated["old"].name, populated["new"].name]
    )
    assert names(select_prunable(entries, older_than_days=30, keep_latest=0)) == sorted(
        always + [populated["old"].name]
    )
    assert names(select_prunable(entries, older_than_days=30, keep_latest=2)) == always
    assert names(select_prunable(entries, older_than_days=60)) == always
    assert snapshot(populated["root"]) == populated["before"]


def test_cache_verify_sets_damage_aside(
    populated: dict[str, Any], capsys: pytest.CaptureFixture
) -> None:
    cache = populated["cache"]
    code, out = _cli(capsys, "verify", "--cache-root", str(cache), "--full")
    assert code == 0 and out.count("ok ") == 2
    faults.flip_bytes(populated["new"] / "test" / "pos.npy", row=3)
    code, out = _cli(capsys, "verify", "--cache-root", str(cache), "--full")
    assert code == 1 and f"DAMAGED  modelnet/{populated['new'].name}" in out
    assert "test/pos.npy" in out and not populated["new"].exists()
    dm = datamodule(populated["root"], cache, cache_fingerprint="content")
    with pytest.raises(FileNotFoundError):
        dm.setup("fit")  # set aside: never served again
    dm.prepare_data()  # rebuilt
    assert not verify_cache(dm.cache_folder(), "full")
    assert snapshot(populated["root"]) == populated["before"]


def test_rebuilt_cache_meta_records_every_file(mn: dict[str, Any]) -> None:
    meta = json.loads((mn["folder"] / "meta.json").read_text())
    on_disk = {
        p.relative_to(mn["folder"]).as_posix(): p.stat().st_size
        for p in mn["folder"].rglob("*")
        if p.is_file() and p.name != "meta.json"
    }
    assert {k: v["size"] for k, v in meta["files"].items()} == on_disk
    assert meta["int_ranges"]["train/sample_label.npy"] == [0, 9]
    assert ensure_cache(datamodule(mn["root"], mn["cache"]).recipe(), mn["cache"]) == mn["folder"]
    assert snapshot(mn["root"]) == mn["before"]
