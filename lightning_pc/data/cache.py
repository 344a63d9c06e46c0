"""The preprocessing cache: fingerprinted folders built once, atomically, under a file lock.

A dataset describes its preprocessing with a :class:`CacheRecipe` (raw files, parameters,
a build function). :func:`ensure_cache` builds ``<cache_root>/<name>/<fingerprint>/`` once:
in a temporary sibling folder, moved into place with :func:`os.replace` while holding a
:class:`filelock.FileLock`, so concurrent processes build it once and a killed build leaves
only a ``.tmp-*`` folder that is never read and is removed by the next build.
:func:`locate_cache` only reads: it is what ``setup`` calls.

Every build records each file's size and checksum in ``meta.json``. Opening a cache checks
it (:func:`verify_cache`): ``"quick"`` compares sizes, the checksums of the small files
(offsets, per-sample labels, names), the ``.npy`` headers against the offsets and the range
of every 1-D integer array (labels) against the one recorded at build; ``"full"`` also
checksums every array and checks that float arrays are finite. A damaged cache is set aside
and rebuilt by :func:`ensure_cache` (one warning) and refused, naming it, by
:func:`locate_cache`.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import sys
import threading
import time
import uuid
import warnings
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
from filelock import FileLock, Timeout

from lightning_pc.data.errors import CacheCorruptedError
from lightning_pc.data.packed import read_npy_header

T = TypeVar("T")
R = TypeVar("R")

META_FILE = "meta.json"
BUILD_LOG = "builds.log"
#: Layout of a cache folder; part of every fingerprint (2: meta.json records sizes, checksums).
CACHE_FORMAT = 2
#: Files up to this size are checksummed on every open, larger ones by ``verify="full"``.
QUICK_HASH_BYTES = 4 << 20
VerifyLevel = Literal["quick", "full"]
FingerprintMode = Literal["stat", "content"]


def default_cache_dir() -> Path:
    """Per-user cache root: ``$LIGHTNING_PC_CACHE``, else ``$XDG_CACHE_HOME/lightning_pc``,
    else ``~/.cache/lightning_pc``."""
    env = os.environ.get("LIGHTNING_PC_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "lightning_pc"


def file_digest(path: Path) -> str:
    """BLAKE2b (128-bit) of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.blake2b(digest_size=16)
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def file_crc32(path: Path) -> str:
    """CRC-32 of a file's bytes (8 hex digits): the cache's damage check. CRC-32 detects
    every burst error up to 32 bits and misses random damage with probability 2**-32; it
    runs about 4x faster than BLAKE2b."""
    crc = 0
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            crc = zlib.crc32(view[:n], crc)
    return f"{crc:08x}"


# Content digests of raw files already hashed by this process, keyed by what a write would
# change: ``st_ctime_ns`` moves on every write and every utime, and cannot be set back.
_CONTENT_DIGESTS: dict[tuple[str, int, int, int, int], str] = {}


def _content_digest(path: Path, st: os.stat_result) -> str:
    memo = (str(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    digest = _CONTENT_DIGESTS.get(memo)
    if digest is None:
        digest = _CONTENT_DIGESTS[memo] = file_digest(path)
    return digest


def fingerprint(
    root: Path,
    files: Sequence[Path],
    params: dict[str, Any],
    version: int,
    mode: FingerprintMode = "stat",
) -> str:
    """Hash the raw files, the parameters, the recipe's version and the cache layout.

    Args:
        root: dataset root (names are hashed relative to it, so moving the whole dataset
            keeps the key only if mtimes survive the move).
        files: raw files the cache is built from.
        params: every preprocessing parameter (JSON-serialisable).
        version: format version of the cache writer.
        mode: ``"stat"`` hashes each file's relative name, size and modification time (an
            edit that keeps the size and restores the mtime goes unnoticed); ``"content"``
            hashes each file's name and bytes (reads every raw file once per process).

    Returns:
        A 20-hex-digit key.
    """
    if mode not in ("stat", "content"):
        raise ValueError(f"fingerprint mode must be 'stat' or 'content', got {mode!r}")
    h = hashlib.sha256()
    head = {"version": version, "params": params, "format": CACHE_FORMAT, "mode": mode}
    h.update(json.dumps(head, sort_keys=True).encode())
    for path in sorted(files):
        st = path.stat()
        try:
            rel = path.relative_to(root).as_posix()
        except ValueError:
            rel = path.as_posix()
        stamp = _content_digest(path, st) if mode == "content" else str(st.st_mtime_ns)
        h.update(f"{rel}\0{st.st_size}\0{stamp}\n".encode())
    return h.hexdigest()[:20]


class CacheRecipe(ABC):
    """What a dataset's cache is built from and how.

    Subclasses set ``name`` and ``version`` and implement the three methods; :func:`ensure_cache`
    does the rest.
    """

    name: str = "dataset"
    version: int = 1

    @property
    @abstractmethod
    def root(self) -> Path:
        """Dataset root the raw files live under."""

    @abstractmethod
    def raw_files(self) -> list[Path]:
        """Sorted raw files the cache depends on (raises MissingDataError when absent)."""

    @abstractmethod
    def params(self) -> dict[str, Any]:
        """Every preprocessing parameter, as plain JSON types."""

    @abstractmethod
    def build(self, out: Path) -> None:
        """Write the cache into the (temporary) folder ``out``."""

    def key(self, mode: FingerprintMode = "stat") -> str:
        """The cache fingerprint for the current raw files and parameters (see
        :func:`fingerprint` for ``mode``)."""
        return fingerprint(self.root, self.raw_files(), self.params(), self.version, mode)


def read_meta(folder: Path) -> dict[str, Any] | None:
    """A cache folder's ``meta.json``, or ``None`` when it is missing or unreadable."""
    try:
        meta = json.loads((folder / META_FILE).read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _is_complete(folder: Path, key: str) -> bool:
    meta = read_meta(folder)
    return meta is not None and meta.get("fingerprint") == key


def _inventory(folder: Path) -> tuple[dict[str, dict[str, Any]], dict[str, list[int]]]:
    """Size and checksum of every file of a freshly built cache, and the value range of
    every 1-D integer ``.npy`` array: labels, per-sample values, offsets (1 byte per point
    for S3DIS's labels: 30 ms per 273 M points from the page cache)."""
    files: dict[str, dict[str, Any]] = {}
    ranges: dict[str, list[int]] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        files[rel] = {"size": path.stat().st_size, "crc32": file_crc32(path)}
        if path.suffix == ".npy":
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
            if np.issubdtype(arr.dtype, np.integer) and arr.ndim == 1 and arr.size:
                ranges[rel] = [int(arr.min()), int(arr.max())]
    return files, ranges


def _check_split(folder: Path, split: str, ranges: dict[str, list[int]], full: bool) -> list[str]:
    """Structural checks of one packed split (see :mod:`lightning_pc.data.packed`)."""
    base = folder / split
    prefix = f"{split}/" if split != "." else ""
    try:
        offsets = np.load(base / "offsets.npy", allow_pickle=False)
        fields = json.loads((base / "fields.json").read_text())
        names = json.loads((base / "names.json").read_text())
    except (OSError, ValueError, EOFError) as err:
        return [f"{prefix or './'}: unreadable index ({err})"]
    if offsets.ndim != 1 or len(offsets) == 0 or offsets.dtype != np.int64:
        return [f"{prefix}offsets.npy: bad array {offsets.dtype} {offsets.shape}"]
    if offsets[0] != 0 or (np.diff(offsets) < 0).any():
        return [f"{prefix}offsets.npy: offsets do not start at 0 and increase"]
    samples, rows = len(offsets) - 1, int(offsets[-1])
    problems = []
    if not isinstance(names, list) or len(names) != samples:
        problems.append(f"{prefix}names.json: does not list {samples} samples")
    arrays: dict[str, tuple[int, tuple[int, ...], str | None]] = {}
    for key, (dtype, tail) in dict(fields).items():
        arrays[f"{key}.npy"] = (rows, tuple(tail), dtype)
    for path in sorted(base.glob("sample_*.npy")):
        arrays[path.name] = (samples, (), None)
    for name, (length, tail, dtype) in arrays.items():
        path = base / name
        try:
            shape, got, fortran, data_at = read_npy_header(path)
        except (OSError, ValueError, EOFError) as err:
            problems.append(f"{prefix}{name}: unreadable .npy header ({err})")
            continue
        if fortran:
            problems.append(f"{prefix}{name}: Fortran-ordered array")
            continue
        if shape[:1] != (length,) or (
            dtype is not None and (shape[1:] != tail or str(got) != dtype)
        ):
            want = f"({length}, ...)" if dtype is None else f"{(length, *tail)} {dtype}"
            problems.append(f"{prefix}{name}: array {shape} {got}, expected {want}")
            continue
        if path.stat().st_size != data_at + int(np.prod(shape)) * got.itemsize:
            problems.append(f"{prefix}{name}: file size does not match its header {shape}")
            continue
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
        recorded = ranges.get(prefix + name)
        if recorded is not None and arr.size:
            lo, hi = int(arr.min()), int(arr.max())
            if lo < recorded[0] or hi > recorded[1]:
                problems.append(
                    f"{prefix}{name}: values in [{lo}, {hi}], built with [{recorded[0]}, "
                    f"{recorded[1]}] (labels out of range)"
                )
        if full and np.issubdtype(arr.dtype, np.floating):
            flat = arr.reshape(-1)
            step = 1 << 24
            for start in range(0, flat.size, step):
                if not np.isfinite(flat[start : start + step]).all():
                    problems.append(f"{prefix}{name}: non-finite values")
                    break
    return problems


def verify_cache(folder: str | Path, level: VerifyLevel = "quick") -> list[str]:
    """Check a completed cache folder against what its build recorded.

    Args:
        folder: the cache folder (``<cache_root>/<dataset>/<fingerprint>``).
        level: ``"quick"``: every file present with its recorded size, small files
            (up to ``QUICK_HASH_BYTES``: offsets, per-sample labels, names) checksummed,
            ``.npy`` headers consistent with the offsets, offsets increasing, integer
            arrays (labels) within the range recorded at build. ``"full"``: also checksums
            every file and checks that float arrays are finite.

    Returns:
        The problems found, each naming the file relative to ``folder``; empty when sound.
    """
    if level not in ("quick", "full"):
        raise ValueError(f"verify level must be 'quick' or 'full', got {level!r}")
    folder = Path(folder)
    meta = read_meta(folder)
    if meta is None:
        return [f"{META_FILE}: missing or unreadable"]
    files = meta.get("files")
    if meta.get("format") != CACHE_FORMAT or not isinstance(files, dict):
        return [f"{META_FILE}: not written by this version (format {meta.get('format')})"]
    problems = []
    for rel, info in sorted(files.items()):
        path = folder / rel
        try:
            size = path.stat().st_size
        except OSError:
            problems.append(f"{rel}: missing")
            continue
        if size != info["size"]:
            problems.append(f"{rel}: {size} bytes, {info['size']} when built")
        elif (level == "full" or size <= QUICK_HASH_BYTES) and file_crc32(path) != info["crc32"]:
            problems.append(f"{rel}: contents differ from the checksum recorded at build")
    if problems:
        return problems
    ranges = meta.get("int_ranges", {})
    for split in sorted(
        {str(Path(rel).parent) for rel in files if Path(rel).name == "offsets.npy"}
    ):
        problems += _check_split(folder, split, ranges, level == "full")
    return problems


def _remove_debris(parent: Path, held_key: str, keep: Path | None = None) -> None:
    """Delete ``.tmp-*`` folders of killed builds and ``.damaged-*`` folders set aside (but
    ``keep``): ours (we hold its lock) and any other key whose lock nobody holds (a build in
    progress keeps its lock, so it is left alone)."""
    for stale in [*parent.glob(".tmp-*"), *parent.glob(".damaged-*")]:
        if stale == keep:
            continue
        key = stale.name.split("-")[1]
        if key == held_key:
            shutil.rmtree(stale, ignore_errors=True)
            continue
        try:
            with FileLock(str(parent / f".{key}.lock"), timeout=0):
                shutil.rmtree(stale, ignore_errors=True)
        except Timeout:
            pass


def _mark_used(folder: Path) -> None:
    """Record a use in the folder's mtime (what ``lightning-pc cache prune`` goes by)."""
    try:
        os.utime(folder)
    except OSError:  # a read-only cache is still served
        pass


def _describe(problems: list[str]) -> str:
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return "; ".join(problems[:3]) + more


def _cache_base(cache_dir: str | Path | None) -> Path:
    return Path(cache_dir).expanduser() if cache_dir else default_cache_dir()


def ensure_cache(
    recipe: CacheRecipe,
    cache_dir: str | Path | None = None,
    verify: VerifyLevel = "quick",
    fingerprint_mode: FingerprintMode = "stat",
) -> Path:
    """Return the recipe's cache folder, building it first if needed (the ``prepare_data`` side).

    A complete folder that fails :func:`verify_cache` is set aside (renamed ``.damaged-*``,
    removed once the rebuild succeeds) and rebuilt, with one warning.

    Args:
        recipe: what to build.
        cache_dir: cache root; ``None`` for :func:`default_cache_dir`.
        verify: how thoroughly to check an existing cache (see :func:`verify_cache`).
        fingerprint_mode: what the key hashes of the raw files (see :func:`fingerprint`).

    Returns:
        The completed, verified cache folder.
    """
    parent = _cache_base(cache_dir) / recipe.name
    parent.mkdir(parents=True, exist_ok=True)
    key = recipe.key(fingerprint_mode)
    final = parent / key
    if _is_complete(final, key) and not verify_cache(final, verify):
        _mark_used(final)
        return final
    with FileLock(str(parent / f".{key}.lock")):
        set_aside = None
        if _is_complete(final, key):
            problems = verify_cache(final, verify)
            if not problems:
                _mark_used(final)
                return final
            set_aside = parent / f".damaged-{key}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            os.replace(final, set_aside)
            warnings.warn(
                f"{recipe.name}: the cache {final} is damaged ({_describe(problems)}); "
                f"rebuilding it from {recipe.root}",
                stacklevel=2,
            )
        _remove_debris(parent, key, keep=set_aside)
        if final.exists():  # not complete: never serve it
            shutil.rmtree(final)
        tmp = parent / f".tmp-{key}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        start = time.time()
        try:
            recipe.build(tmp)
            files, ranges = _inventory(tmp)
            meta = {
                "fingerprint": key,
                "fingerprint_mode": fingerprint_mode,
                "format": CACHE_FORMAT,
                "dataset": recipe.name,
                "version": recipe.version,
                "params": recipe.params(),
                "num_raw_files": len(recipe.raw_files()),
                "root": str(recipe.root),
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "build_seconds": round(time.time() - start, 3),
                "files": files,
                "int_ranges": ranges,
            }
            (tmp / META_FILE).write_text(json.dumps(meta, indent=1))
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if set_aside is not None:
            shutil.rmtree(set_aside, ignore_errors=True)
        with open(parent / BUILD_LOG, "a") as log:
            log.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} pid={os.getpid()} built {key}\n")
    return final


def locate_cache(
    recipe: CacheRecipe,
    cache_dir: str | Path | None = None,
    verify: VerifyLevel = "quick",
    fingerprint_mode: FingerprintMode = "stat",
) -> Path:
    """Return the recipe's completed cache folder without building (the ``setup`` side).

    Args:
        recipe: what to look up.
        cache_dir: cache root; ``None`` for :func:`default_cache_dir`.
        verify: how thoroughly to check it (see :func:`verify_cache`).
        fingerprint_mode: what the key hashes of the raw files (see :func:`fingerprint`).

    Raises:
        FileNotFoundError: no complete cache for the current raw files and parameters.
        CacheCorruptedError: the cache fails :func:`verify_cache` (``prepare_data`` rebuilds it).
    """
    key = recipe.key(fingerprint_mode)
    final = _cache_base(cache_dir) / recipe.name / key
    if not _is_complete(final, key):
        raise FileNotFoundError(
            f"{recipe.name}: no cache at {final} for the current raw files and parameters; "
            "call prepare_data() first (the Trainer does this before setup())."
        )
    problems = verify_cache(final, verify)
    if problems:
        raise CacheCorruptedError(
            final,
            f"{_describe(problems)}. Not served: prepare_data() (the Trainer calls it) sets it "
            "aside and rebuilds it from the raw files.",
        )
    _mark_used(final)
    return final


def num_workers_for(n_items: int, min_items: int = 16) -> int:
    """Processes to parse ``n_items`` files with: the usable cores, 0 for small jobs."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return 0 if n_items < min_items or cores < 2 else min(cores, n_items)


_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int, start_method: str = "fork") -> None:
    """Pool-worker initializer: end this process when the process that started it dies.

    A pool worker blocks reading its task queue; if its parent is killed (``kill -9``, the
    out-of-memory killer) nothing else ends it. On Linux the kernel sends ``SIGKILL`` when
    the parent exits (``prctl(PR_SET_PDEATHSIG)``); elsewhere, and as a fallback, a daemon
    thread checks once a second whether the worker has been re-parented.

    Args:
        parent: pid of the process creating the pool (``os.getpid()`` there).
        start_method: the pool's multiprocessing start method (a ``forkserver`` worker's
            parent is the fork server, which ends with the pool's creator).
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - no usable libc
            pass
    ppid = os.getppid()
    if ppid != parent and start_method != "forkserver":  # died before the signal was armed
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(ppid,), daemon=True).start()


def _watch_parent(ppid: int) -> None:
    while os.getppid() == ppid:
        time.sleep(1.0)
    os._exit(1)


def parallel_map(
    fn: Callable[[T], R], items: Sequence[T], desc: str, workers: int | None = None
) -> Iterator[R]:
    """Map ``fn`` over ``items`` in order, on the available cores, with a progress bar.

    Args:
        fn: a picklable (module-level) function.
        items: its inputs.
        desc: progress-bar label.
        workers: processes; ``None`` picks from :func:`num_workers_for`, 0 runs inline.

    Yields:
        ``fn(item)`` for each item, in order.
    """
    from tqdm.auto import tqdm

    workers = num_workers_for(len(items)) if workers is None else workers
    bar = tqdm(total=len(items), desc=desc, unit="file", disable=None, leave=False)
    try:
        if workers <= 1:
            for item in items:
                yield fn(item)
                bar.update()
            return
        ctx = multiprocessing.get_context()
        chunk = max(1, min(16, len(items) // (workers * 8)))
        with ProcessPoolExecutor(
            workers,
            mp_context=ctx,
            initializer=die_with_parent,
            initargs=(os.getpid(), ctx.get_start_method()),
        ) as pool:
            results: Iterable[R] = pool.map(fn, items, chunksize=chunk)
            try:
                for result in results:
                    yield result
                    bar.update()
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    finally:
        bar.close()
