"""Fixtures of the unit tier: a current event loop for Faust, a database path for commands."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A current event loop: Faust wants one when an app is built."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield loop
    asyncio.set_event_loop(None)
    loop.close()


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The database path the in-process `personas` commands use (PERSONAS_DB)."""
    path = tmp_path / "personas.db"
    monkeypatch.setenv("PERSONAS_DB", str(path))
    return path
