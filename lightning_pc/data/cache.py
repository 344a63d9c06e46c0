"""The preprocessing cache: fingerprinted folders built once, atomically, under a file lock.

A dataset describes its preprocessing with a :class:`CacheRecipe` (raw files, parameters,
a build function). :func:`ensure_cache` builds ``<cache_root>/<name>/<fingerprint>/`` once:
in a temporary sibling folder, moved into place with :func:`os.replace` while holding a
:class:`filelock.FileLock`, so concurrent processes build it once and a killed build leaves
only a ``.tmp-*`` folder that is never read and is removed by the next build.
:func:`locate_cache` only reads: it is what ``setup`` calls.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from filelock import FileLock, Timeout

T = TypeVar("T")
R = TypeVar("R")

META_FILE = "meta.json"
BUILD_LOG = "builds.log"


def default_cache_dir() -> Path:
    """Per-user cache root: ``$LIGHTNING_PC_CACHE``, else ``$XDG_CACHE_HOME/lightning_pc``,
    else ``~/.cache/lightning_pc``."""
    env = os.environ.get("LIGHTNING_PC_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "lightning_pc"


def fingerprint(root: Path, files: Sequence[Path], params: dict[str, Any], version: int) -> str:
    """Hash raw files' relative names, sizes and mtimes, the parameters and a format version.

    Args:
        root: dataset root (names are hashed relative to it, so moving the whole dataset
            keeps the key only if mtimes survive the move).
        files: raw files the cache is built from.
        params: every preprocessing parameter (JSON-serialisable).
        version: format version of the cache writer.

    Returns:
        A 20-hex-digit key.
    """
    h = hashlib.sha256()
    h.update(json.dumps({"version": version, "params": params}, sort_keys=True).encode())
    for path in sorted(files):
        st = path.stat()
        try:
            rel = path.relative_to(root).as_posix()
        except ValueError:
            rel = path.as_posix()
        h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
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

    def key(self) -> str:
        """The cache fingerprint for the current raw files and parameters."""
        return fingerprint(self.root, self.raw_files(), self.params(), self.version)


def _is_complete(folder: Path, key: str) -> bool:
    meta = folder / META_FILE
    if not meta.is_file():
        return False
    try:
        return json.loads(meta.read_text()).get("fingerprint") == key
    except (OSError, ValueError):
        return False


def _remove_debris(parent: Path, held_key: str) -> None:
    """Delete ``.tmp-*`` folders of killed builds: ours (we hold its lock) and any other
    key whose lock nobody holds (a build in progress keeps its lock, so it is left alone)."""
    for stale in parent.glob(".tmp-*"):
        key = stale.name.split("-")[1]
        if key == held_key:
            shutil.rmtree(stale, ignore_errors=True)
            continue
        try:
            with FileLock(str(parent / f".{key}.lock"), timeout=0):
                shutil.rmtree(stale, ignore_errors=True)
        except Timeout:
            pass


def ensure_cache(recipe: CacheRecipe, cache_dir: str | Path | None = None) -> Path:
    """Return the recipe's cache folder, building it first if needed (the ``prepare_data`` side).

    Args:
        recipe: what to build.
        cache_dir: cache root; ``None`` for :func:`default_cache_dir`.

    Returns:
        The completed cache folder.
    """
    base = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    parent = base / recipe.name
    parent.mkdir(parents=True, exist_ok=True)
    key = recipe.key()
    final = parent / key
    if _is_complete(final, key):
        return final
    with FileLock(str(parent / f".{key}.lock")):
        if _is_complete(final, key):
            return final
        _remove_debris(parent, key)
        if final.exists():  # not complete: never serve it
            shutil.rmtree(final)
        tmp = parent / f".tmp-{key}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        start = time.time()
        try:
            recipe.build(tmp)
            meta = {
                "fingerprint": key,
                "dataset": recipe.name,
                "version": recipe.version,
                "params": recipe.params(),
                "num_raw_files": len(recipe.raw_files()),
                "root": str(recipe.root),
                "build_seconds": round(time.time() - start, 3),
            }
            (tmp / META_FILE).write_text(json.dumps(meta, indent=1))
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        with open(parent / BUILD_LOG, "a") as log:
            log.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} pid={os.getpid()} built {key}\n")
    return final


def locate_cache(recipe: CacheRecipe, cache_dir: str | Path | None = None) -> Path:
    """Return the recipe's completed cache folder without building (the ``setup`` side).

    Raises:
        FileNotFoundError: no complete cache for the current raw files and parameters.
    """
    base = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    key = recipe.key()
    final = base / recipe.name / key
    if not _is_complete(final, key):
        raise FileNotFoundError(
            f"{recipe.name}: no cache at {final} for the current raw files and parameters; "
            "call prepare_data() first (the Trainer does this before setup())."
        )
    return final


def num_workers_for(n_items: int, min_items: int = 16) -> int:
    """Processes to parse ``n_items`` files with: the usable cores, 0 for small jobs."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return 0 if n_items < min_items or cores < 2 else min(cores, n_items)


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
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
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
