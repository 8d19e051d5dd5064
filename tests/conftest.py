"""Shared fixtures: a clean environment, isolated settings, and a real broker per session."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from config.settings import Settings, load_settings
from streams.broker import EmbeddedBroker
from tests.postgres import create_database, drop_database

# Read before any test cleans the environment: set it to run the suite against a real Kafka.
EXTERNAL_BROKER = os.environ.get("PERSONAS_BROKER", "")

# Group timings the embedded broker handles well (BROKER.md): joins take ≈ half the session.
TEST_GROUP_ENV = {
    "PERSONAS_BROKER__SESSION_TIMEOUT_S": "3.0",
    "PERSONAS_BROKER__HEARTBEAT_INTERVAL_S": "0.5",
    "PERSONAS_BROKER__REBALANCE_TIMEOUT_S": "3.0",
}


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's PERSONAS_* variables."""
    for name in list(os.environ):
        if name.startswith("PERSONAS_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The broker under test: PERSONAS_BROKER if set, else an embedded one for the session."""
    if EXTERNAL_BROKER:
        yield EXTERNAL_BROKER
        return
    broker = EmbeddedBroker(log_path=tmp_path_factory.mktemp("broker") / "broker.log")
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


BACKENDS = ("sqlite", "postgresql")
#: Runs a test once on each store: `@on_both_stores` before a test that takes `database_url`.
on_both_stores = pytest.mark.parametrize("database_url", BACKENDS, indirect=True)


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The test's own database: a SQLite file, or (parametrised so) a new PostgreSQL database,
    dropped afterwards."""
    if getattr(request, "param", "sqlite") == "sqlite":
        yield str(tmp_path / "personas.db")
        return
    url = create_database()
    try:
        yield url
    finally:
        drop_database(url)


@pytest.fixture
def isolated_env(database_url: str, tmp_path: Path) -> dict[str, str]:
    """Environment for one test: its own database, files, topic prefix and consumer group."""
    tag = uuid.uuid4().hex[:10]
    return {
        "PERSONAS_DB": database_url,
        "PERSONAS_WORKER__DATA_DIR": f'"{tmp_path}"',
        "PERSONAS_TOPICS__PREFIX": f'"t{tag}-"',
        "PERSONAS_WORKER__APP_ID": f'"personas-{tag}"',
        **TEST_GROUP_ENV,
    }


@pytest.fixture
def cli_env(isolated_env: dict[str, str], bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Export the test's environment, so in-process `personas` commands use its broker and DB."""
    for name, value in {**isolated_env, "PERSONAS_BROKER": bootstrap}.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def settings(isolated_env: dict[str, str]) -> Settings:
    return load_settings(env=isolated_env)


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, poll: float = 0.1) -> None:
    """Poll `predicate` until true; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(poll)
