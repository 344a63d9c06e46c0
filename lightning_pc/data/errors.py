"""Errors raised by the data layer: every one names the file (and line) it is about."""

from __future__ import annotations

from pathlib import Path


class DataFormatError(ValueError):
    """A raw data file could not be parsed.

    Args:
        path: the offending file.
        reason: what is wrong with it.
        line: 1-based line number, where there is one.
    """

    def __init__(self, path: str | Path, reason: str, line: int | None = None) -> None:
        self.path = str(path)
        self.reason = reason
        self.line = line
        where = f"{self.path}, line {line}" if line is not None else self.path
        super().__init__(f"{where}: {reason}")

    def __reduce__(self):  # keep picklable across process pools
        return (type(self), (self.path, self.reason, self.line))


class MissingDataError(FileNotFoundError):
    """The expected dataset layout was not found.

    Args:
        dataset: dataset name.
        path: the folder that was looked at.
        layout: a description of the layout(s) that were expected.
    """

    def __init__(self, dataset: str, path: str | Path, layout: str) -> None:
        self.dataset = dataset
        self.path = str(path)
        self.layout = layout
        super().__init__(
            f"{dataset}: no dataset found at {self.path!r}. Expected layout:\n{layout}\n"
            "Nothing is downloaded at run time: place the files there or pass root=..."
        )

    def __reduce__(self):
        return (type(self), (self.dataset, self.path, self.layout))


class CacheCorruptedError(RuntimeError):
    """A preprocessing cache folder failed its checks (or could not be read).

    Args:
        path: the cache folder or file.
        reason: what is wrong and what to do about it.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: damaged cache: {reason}")

    def __reduce__(self):
        return (type(self), (self.path, self.reason))
