"""``lightning-pc cache``: list, size, verify and prune the preprocessing cache folders.

A cache root holds ``<dataset>/<fingerprint>/`` folders (see :mod:`lightning_pc.data.cache`),
plus ``.tmp-*`` folders of builds in progress or killed, ``.damaged-*`` folders set aside by a
failed check, ``.<fingerprint>.lock`` files and a ``builds.log``. Nothing here builds a cache
(that needs the dataset's configuration: ``prepare_data`` does it). Every removal is confined
to direct children of ``<cache_root>/<dataset>/``, never follows a symbolic link, and is done
under the folder's build lock, so a build in progress is never touched.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from lightning_pc.data.cache import (
    CACHE_FORMAT,
    VerifyLevel,
    default_cache_dir,
    read_meta,
    verify_cache,
)

_KEY = re.compile(r"^[0-9a-f]{20}$")


@dataclass
class CacheEntry:
    """One folder under ``<cache_root>/<dataset>/``.

    Attributes:
        dataset: the dataset folder's name (``modelnet``, ``s3dis``...).
        key: the fingerprint the folder belongs to.
        path: the folder.
        state: ``"ready"`` (complete), ``"outdated"`` (complete, but written by a version
            of lightning_pc with another cache layout: never read by this one),
            ``"incomplete"`` (no valid ``meta.json``; never served), ``"building"`` (a
            ``.tmp-*`` folder whose build holds its lock), ``"debris"`` (a ``.tmp-*`` folder
            of a killed build) or ``"damaged"`` (set aside by a failed check).
        size: bytes in its files.
        last_used: when it was last opened or built (its mtime), seconds since the epoch.
        root: the raw dataset folder it was built from (``""`` when unknown).
    """

    dataset: str
    key: str
    path: Path
    state: str
    size: int
    last_used: float
    root: str


def _size(folder: Path) -> int:
    total = 0
    for base, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(base, name)).st_size
            except OSError:
                pass
    return total


def _lock_of(entry_parent: Path, key: str) -> FileLock:
    return FileLock(str(entry_parent / f".{key}.lock"), timeout=0)


@contextmanager
def _holding(parent: Path, key: str) -> Iterator[bool]:
    """Hold the key's build lock if nobody else does; yields whether it is held."""
    lock = _lock_of(parent, key)
    try:
        lock.acquire()
    except Timeout:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


def _is_locked(parent: Path, key: str) -> bool:
    if not (parent / f".{key}.lock").exists():
        return False
    with _holding(parent, key) as held:
        return not held


def scan(cache_root: str | Path, dataset: str | None = None) -> list[CacheEntry]:
    """Every cache folder under ``cache_root`` (optionally of one dataset), sorted.

    Args:
        cache_root: the cache root.
        dataset: only this dataset's folders.

    Returns:
        One :class:`CacheEntry` per folder; symbolic links and unrelated files are skipped.
    """
    root = Path(cache_root).expanduser()
    out: list[CacheEntry] = []
    if not root.is_dir():
        return out
    for parent in sorted(root.iterdir()):
        if parent.is_symlink() or not parent.is_dir():
            continue
        if dataset is not None and parent.name != dataset:
            continue
        for path in sorted(parent.iterdir()):
            if path.is_symlink() or not path.is_dir():
                continue
            name = path.name
            if _KEY.match(name):
                key = name
                meta = read_meta(path)
                if meta is None or meta.get("fingerprint") != key:
                    state = "incomplete"
                elif meta.get("format") != CACHE_FORMAT:
                    state = "outdated"
                else:
                    state = "ready"
            elif name.startswith((".tmp-", ".damaged-")) and _KEY.match(name.split("-")[1]):
                key = name.split("-")[1]
                meta = None
                if name.startswith(".damaged-"):
                    state = "damaged"
                else:
                    state = "building" if _is_locked(parent, key) else "debris"
            else:
                continue
            try:
                used = path.stat().st_mtime
            except FileNotFoundError:  # removed meanwhile (a build or prune finished)
                continue
            root_of = str(meta.get("root", "")) if meta else ""
            out.append(CacheEntry(parent.name, key, path, state, _size(path), used, root_of))
    return out


def select_prunable(
    entries: Sequence[CacheEntry],
    older_than_days: float | None = None,
    keep_latest: int | None = None,
    now: float | None = None,
) -> list[tuple[CacheEntry, str]]:
    """Which folders ``prune`` removes, and why.

    Debris of killed builds, folders set aside as damaged and caches of another layout
    (which this version never reads) always go. A ready (or incomplete) cache goes only when
    a criterion is given and it meets every one given:
    not used for ``older_than_days`` days, and not among the ``keep_latest`` most recently
    used of its dataset. Builds in progress never go.

    Args:
        entries: from :func:`scan`.
        older_than_days: only caches unused for this many days.
        keep_latest: always keep this many most recently used caches per dataset.
        now: the current time (seconds since the epoch; ``None``: now).

    Returns:
        ``(entry, reason)`` pairs.
    """
    now = time.time() if now is None else now
    out: list[tuple[CacheEntry, str]] = []
    latest: dict[str, set[Path]] = {}
    if keep_latest is not None:
        by_dataset: dict[str, list[CacheEntry]] = {}
        for e in entries:
            if e.state in ("ready", "incomplete"):
                by_dataset.setdefault(e.dataset, []).append(e)
        for name, group in by_dataset.items():
            group.sort(key=lambda e: e.last_used, reverse=True)
            latest[name] = {e.path for e in group[:keep_latest]}
    for e in entries:
        if e.state == "building":
            continue
        always = {
            "debris": "killed build",
            "damaged": "set aside as damaged",
            "outdated": "another cache layout, never read by this version",
        }
        if e.state in always:
            out.append((e, always[e.state]))
            continue
        if older_than_days is None and keep_latest is None:
            continue
        reasons = []
        if older_than_days is not None:
            idle = (now - e.last_used) / 86400
            if idle < older_than_days:
                continue
            reasons.append(f"unused for {idle:.1f} days")
        if keep_latest is not None:
            if e.path in latest.get(e.dataset, set()):
                continue
            reasons.append(f"not among the {keep_latest} latest")
        out.append((e, ", ".join(reasons)))
    return out


def remove_entry(cache_root: str | Path, entry: CacheEntry) -> bool:
    """Delete one cache folder, under its build lock.

    The folder is first renamed to a ``.tmp-*`` name (a reader never sees a half-deleted
    cache; a prune killed half-way leaves debris the next build removes), then deleted.

    Returns:
        ``False`` when its lock is held (a build in progress): nothing was touched.

    Raises:
        ValueError: the folder is not a direct child of ``<cache_root>/<dataset>/``, or is a
            symbolic link.
    """
    root = Path(cache_root).expanduser().resolve()
    path = entry.path
    if path.is_symlink() or path.resolve().parent.parent != root:
        raise ValueError(f"{path} is not a cache folder of {root}")
    parent = path.parent
    with _holding(parent, entry.key) as held:
        if not held:
            return False
        if not path.exists():
            return True
        doomed = path
        if not path.name.startswith(".tmp-"):
            doomed = parent / f".tmp-{entry.key}-prune-{uuid.uuid4().hex[:8]}"
            os.replace(path, doomed)
        shutil.rmtree(doomed)
    return True


def set_aside(entry: CacheEntry) -> Path | None:
    """Rename a ready cache ``.damaged-*`` (under its lock) so it is never served again.

    Returns:
        The new path, or ``None`` when its lock is held by a build.
    """
    parent = entry.path.parent
    with _holding(parent, entry.key) as held:
        if not held:
            return None
        target = parent / f".damaged-{entry.key}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        os.replace(entry.path, target)
        return target


def _human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"  # pragma: no cover - unreachable


def _when(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp))


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def _cmd_list(args: argparse.Namespace) -> int:
    entries = scan(args.cache_root, args.dataset)
    if not entries:
        print(f"no caches under {args.cache_root}")
        return 0
    rows = [["dataset", "fingerprint", "state", "size", "last used", "raw data"]]
    for e in entries:
        rows.append([e.dataset, e.key, e.state, _human(e.size), _when(e.last_used), e.root])
    print(_table(rows))
    return 0


def _cmd_size(args: argparse.Namespace) -> int:
    entries = scan(args.cache_root, args.dataset)
    totals: dict[str, list[int]] = {}
    for e in entries:
        t = totals.setdefault(e.dataset, [0, 0])
        t[0] += 1
        t[1] += e.size
    rows = [["dataset", "folders", "size"]]
    rows += [[name, str(n), _human(size)] for name, (n, size) in sorted(totals.items())]
    rows.append(["total", str(len(entries)), _human(sum(e.size for e in entries))])
    print(_table(rows))
    return 0


def _cmd_prune(args: argparse.Namespace) -> int:
    entries = scan(args.cache_root, args.dataset)
    doomed = select_prunable(entries, args.older_than, args.keep_latest)
    if not doomed:
        print("nothing to prune")
        return 0
    verb = "removing" if args.yes else "would remove"
    freed = 0
    for entry, reason in doomed:
        label = f"{entry.dataset}/{entry.path.name}"
        if args.yes and not remove_entry(args.cache_root, entry):
            print(f"skipped {label}: a build holds its lock")
            continue
        freed += entry.size
        print(f"{verb} {label} ({_human(entry.size)}; {reason})")
    if args.yes:
        print(f"freed {_human(freed)}")
    else:
        print(f"dry run: {_human(freed)} would be freed; pass --yes to delete")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    entries = [e for e in scan(args.cache_root, args.dataset) if e.state == "ready"]
    level: VerifyLevel = "full" if args.full else "quick"
    damaged = 0
    for entry in entries:
        label = f"{entry.dataset}/{entry.key}"
        problems = verify_cache(entry.path, level)
        if not problems:
            print(f"ok       {label}")
            continue
        damaged += 1
        moved = set_aside(entry)
        print(f"DAMAGED  {label}: " + "; ".join(problems[:5]))
        if moved is None:
            print("         (a build holds its lock: left in place)")
        else:
            print(f"         set aside as {moved.name}; the next prepare_data() rebuilds it")
    print(f"{len(entries)} cache(s) checked ({level}), {damaged} damaged")
    return 1 if damaged else 0


def build_parser() -> argparse.ArgumentParser:
    """The ``lightning-pc cache`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="lightning-pc cache",
        description="List, measure, verify and prune lightning_pc's preprocessing caches.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--cache-root",
        type=Path,
        default=default_cache_dir(),
        help="cache root (default: $LIGHTNING_PC_CACHE, else ~/.cache/lightning_pc)",
    )
    common.add_argument("--dataset", help="only this dataset's folders (e.g. modelnet)")
    sub.add_parser("list", parents=[common], help="one line per cache folder")
    sub.add_parser("size", parents=[common], help="disk use per dataset")
    verify = sub.add_parser(
        "verify",
        parents=[common],
        help="check every ready cache; set damaged ones aside (exit status 1 if any)",
    )
    verify.add_argument(
        "--full", action="store_true", help="checksum every array and check finiteness"
    )
    prune = sub.add_parser(
        "prune",
        parents=[common],
        help="delete debris of killed builds, damaged folders and (with criteria) old caches",
    )
    prune.add_argument(
        "--older-than", type=float, metavar="DAYS", help="caches not used for DAYS days"
    )
    prune.add_argument(
        "--keep-latest",
        type=int,
        metavar="N",
        help="keep the N most recently used caches of each dataset",
    )
    prune.add_argument(
        "--yes", action="store_true", help="delete (without it: only print what would go)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``lightning-pc cache ...``.

    Args:
        argv: the arguments after ``cache`` (``None``: ``sys.argv[2:]``).

    Returns:
        The exit status.
    """
    args = build_parser().parse_args(list(sys.argv[2:] if argv is None else argv))
    if args.command == "prune":
        if args.keep_latest is not None and args.keep_latest < 0:
            raise SystemExit("--keep-latest must be >= 0")
        if args.older_than is not None and args.older_than < 0:
            raise SystemExit("--older-than must be >= 0")
    commands = {"list": _cmd_list, "size": _cmd_size, "prune": _cmd_prune, "verify": _cmd_verify}
    return commands[args.command](args)
