"""Fixtures of the ops tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from lightning_pc.ops import _backend


@pytest.fixture
def ops_backend_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Sets ``LIGHTNING_PC_OPS_BACKEND`` for one test.

    The ops read the variable once per process, so setting it also makes them read it
    again; afterwards the next op call reads the restored environment.
    """

    def set_backend(value: str) -> None:
        monkeypatch.setenv(_backend.ENV_VAR, value)
        _backend.reload_environment()

    yield set_backend
    _backend.reload_environment()  # runs before monkeypatch restores the variable
