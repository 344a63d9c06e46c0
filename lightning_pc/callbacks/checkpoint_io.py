"""Checkpoints written atomically, and a clear error for a damaged one.

Lightning's ``TorchCheckpointIO`` saves through an fsspec transaction whose temporary file
lies in the system temporary folder; committing it is ``shutil.move``, which across
filesystems (``/tmp`` on tmpfs, the run on a disk) copies into the destination itself, so a
kill or a full disk during that copy leaves a truncated ``last.ckpt`` (and nothing is
flushed to disk). :class:`SafeCheckpointIO` writes to a temporary file in the checkpoint's
own folder, flushes it to disk and renames it over the destination: a reader sees the old
checkpoint or the new one, never a part.

Loading a damaged file (truncated or overwritten) with torch gives "PytorchStreamReader
failed reading zip archive" or a bare ``EOFError``; :class:`SafeCheckpointIO` raises
:class:`DamagedCheckpointError` instead, naming the file and the checkpoints beside it that
do load, newest first, with the option to resume from.
"""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.fabric.utilities.types import _PATH

#: checkpoints beside a damaged one listed in the error at most
MAX_LISTED = 5


class DamagedCheckpointError(RuntimeError):
    """A checkpoint file exists but cannot be read (truncated or overwritten)."""


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a folder be opened
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save(obj, path)`` that never leaves a partial ``path``.

    Writes ``.<name>.<random>.tmp`` in the same folder, flushes it to disk, renames it over
    ``path`` (``os.replace``, atomic on POSIX and Windows) and flushes the folder. On any
    error, including ``KeyboardInterrupt``, the temporary file is removed and ``path`` is
    left as it was; temporary files of ``path`` left by a killed process go at the next
    successful save.

    Args:
        obj: what to save.
        path: the destination file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it 0600; a plain open would not
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    # temporary files of this name left by a process killed while saving
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        with contextlib.suppress(OSError):
            stale.unlink()


def checkpoint_problem(path: str | Path) -> str | None:
    """Why ``path`` is not a readable torch checkpoint (``None`` if its archive is whole).

    Checks the zip container torch writes: the central directory at the end (missing from
    a truncated file) and every member's CRC (a file overwritten in the middle).

    Args:
        path: a checkpoint file.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as error:
        return f"cannot be read ({error})"
    if size == 0:
        return "is empty (0 bytes)"
    if not zipfile.is_zipfile(path):
        return f"is cut short or not a checkpoint ({size} bytes, no complete archive)"
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        return f"is damaged ({size} bytes: {error})"
    if bad is not None:
        return f"is damaged ({size} bytes; member {bad!r} fails its checksum)"
    return None


def _describe(path: Path) -> str:
    """``path`` with its epoch and step (read memory-mapped) and its time of writing."""
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(path.stat().st_mtime))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        where = f"epoch {state.get('epoch')}, global step {state.get('global_step')}, "
    except Exception:  # noqa: BLE001 (listed without its position)
        where = ""
    return f"  {path}  ({where}written {when})"


def loadable_neighbours(path: str | Path) -> list[Path]:
    """The other ``*.ckpt`` files in ``path``'s folder whose archives are whole, newest first."""
    path = Path(path)
    others = [
        p for p in path.parent.glob("*.ckpt") if p.is_file() and p.resolve() != path.resolve()
    ]
    others.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    return [p for p in others if checkpoint_problem(p) is None]


def damaged_checkpoint_message(path: str | Path, problem: str) -> str:
    """The error text for a damaged checkpoint: what is wrong and what can be resumed instead."""
    path = Path(path)
    lines = [f"checkpoint {path} {problem}."]
    others = loadable_neighbours(path)
    if others:
        lines.append(f"Checkpoints in {path.parent} that load, newest first:")
        lines += [_describe(p) for p in others[:MAX_LISTED]]
        lines.append(f"Resume from one of them, e.g. --ckpt_path {others[0]}")
    else:
        lines.append(f"No other checkpoint in {path.parent} loads.")
    lines.append("The damaged file was left as it is.")
    return "\n".join(lines)


class SafeCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` with atomic local writes and a clear error for damaged files.

    Local paths are written with :func:`atomic_torch_save`; remote ones (``s3://``, ...) go
    through Lightning's own saving. ``lightning-pc`` installs it; with the ``Trainer`` API
    pass ``Trainer(plugins=[SafeCheckpointIO()])``.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None or not isinstance(get_filesystem(path), LocalFileSystem):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        atomic_torch_save(checkpoint, str(path).removeprefix("file://"))

    def load_checkpoint(
        self,
        path: _PATH,
        map_location: Callable | None = lambda storage, loc: storage,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        try:
            return super().load_checkpoint(path, map_location, weights_only)
        except FileNotFoundError:
            raise
        except Exception as error:
            if not isinstance(get_filesystem(path), LocalFileSystem):
                raise
            problem = checkpoint_problem(str(path).removeprefix("file://"))
            if problem is None:  # a whole archive: the error is about its content
                raise
            raise DamagedCheckpointError(damaged_checkpoint_message(path, problem)) from error
