"""Fixtures of the ops tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from lightning_pc.ops import _backend


@pytest.fixture
def ops_backend_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Sets ``LIGHTNING_PC_OPS_BACKEND`` for one test (read at each choice; monkeypatch
    restores it afterwards)."""

    def set_backend(value: str) -> None:
        monkeypatch.setenv(_backend.ENV_VAR, value)

    yield set_backend
