"""`personas broker`: a broker that outlives the worker, found by every command through the
run file, and stopped by SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from config.settings import Settings, load_settings
from streams.broker import find_running_broker, run_file_path, running_broker
from streams.producer import discovery, publish_discoveries
from tests.conftest import wait_until
from tests.integration.worker import WorkerProcess

pytestmark = pytest.mark.slow

WALLET = "0x" + "d" * 40


@pytest.fixture
def own_env(isolated_env: dict[str, str]) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PERSONAS_")}
    return {**base, **isolated_env}


@pytest.fixture
def broker(own_env: dict[str, str], tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    log = (tmp_path / "broker-command.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "broker"], env=own_env, stdout=log, stderr=log
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            # SIGTERM: it stops its broker (a SIGKILL would leave the broker process behind).
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


async def topics(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


def test_topics_outlive_a_worker_and_sigterm_stops_the_broker(
    broker: subprocess.Popen[bytes], own_env: dict[str, str], tmp_path: Path
) -> None:
    settings: Settings = load_settings(env=own_env)
    wait_until(lambda: find_running_broker(settings) is not None, 20, "the broker's run file")
    bootstrap = running_broker(settings)

    # The worker finds the broker through the run file, and starts none of its own.
    worker_env = {k: v for k, v in own_env.items() if k != "PERSONAS_BROKER"}
    worker = WorkerProcess(worker_env, bootstrap, tmp_path / "worker.log")
    worker.env.pop("PERSONAS_BROKER")
    with worker:
        sent = asyncio.run(
            publish_discoveries(bootstrap, settings, [discovery(WALLET, 1_767_225_600, "test")])
        )
        assert sent == 1
        # The end of Faust's startup, where its spinner wrote a terminal escape into the log.
        wait_until(lambda: "Ready" in worker.log() or "\x1b[" in worker.log(), 60, "startup")
    assert "embedded broker listening" not in worker.log()
    assert "\x1b[" not in worker.log()  # no terminal escapes in a log file

    # The worker is gone; the broker and its topics are not.
    assert settings.topics.discovered in asyncio.run(topics(bootstrap))
    assert running_broker(settings) == bootstrap

    broker.send_signal(signal.SIGTERM)
    assert broker.wait(15) == 0
    assert not run_file_path(settings).exists()
    assert find_running_broker(settings) is None


def test_a_second_broker_is_refused(
    broker: subprocess.Popen[bytes], own_env: dict[str, str]
) -> None:
    settings = load_settings(env=own_env)
    wait_until(lambda: find_running_broker(settings) is not None, 20, "the broker's run file")
    second = subprocess.run(
        [sys.executable, "-m", "streams.cli", "broker"], env=own_env, capture_output=True,
        text=True, timeout=30,
    )  # fmt: skip
    assert second.returncode == 1
    assert "a broker is already there" in second.stderr


def test_a_broker_that_dies_ends_the_command_and_frees_the_run_file(
    broker: subprocess.Popen[bytes], own_env: dict[str, str]
) -> None:
    settings = load_settings(env=own_env)
    wait_until(lambda: find_running_broker(settings) is not None, 20, "the broker's run file")
    tansu = subprocess.run(
        ["pgrep", "-P", str(broker.pid)], capture_output=True, text=True, check=True
    ).stdout.split()
    assert len(tansu) == 1
    os.kill(int(tansu[0]), signal.SIGKILL)
    assert broker.wait(15) == 1
    assert not run_file_path(settings).exists()
