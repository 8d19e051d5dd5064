"""The broker goes away under a running worker (issue 7: broker outage).

- Frozen (SIGSTOP) for 20 s under load, then resumed: the worker keeps running (same process),
  logs the outage, /health is 503 while it lasts, and nothing is lost or doubled.
- Restarted with its in-memory log lost, while a group's committed offsets stay beyond the new
  log end: the worker reports it and, by the policy of `streams.offset_guard`, starts those
  partitions over from the earliest offset, so the new messages are not skipped.

Each test starts a broker of its own, so the session's broker is never frozen or restarted.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition

from agents.core.records import Trade
from agents.data.generate import DEFAULT_END, GenerateOptions, generate
from agents.store import connect, migrate
from config.settings import Settings
from streams.broker import EmbeddedBroker
from streams.health import Health
from streams.metrics import Metrics
from streams.offset_guard import EXIT_LOG_LOST, BrokerGuard, find_lost_offsets
from streams.ops.offsets import joined_member
from streams.topics import ensure_topics, stage_group
from tests.conftest import wait_until
from tests.integration.checks import count, prepare_scenario, wait_until_classified
from tests.integration.kafka import group_consumer, publish
from tests.integration.test_crash_safety import (
    assert_discoveries_classified_once,
    assert_trades_exactly_once,
)
from tests.integration.worker import WorkerProcess

pytestmark = pytest.mark.slow

FREEZE_S = 20.0
AS_OF = DEFAULT_END


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    broker = EmbeddedBroker(log_path=tmp_path / "own-broker.log")
    broker.start()
    try:
        yield broker
    finally:
        if broker.process is not None and broker.process.poll() is None:
            os.kill(broker.process.pid, signal.SIGCONT)
        broker.stop()


def health(port: int) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=3) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())
    except (OSError, ValueError):
        return 0, {}


def broker_problem(port: int) -> bool:
    status, body = health(port)
    return status == 503 and "broker" in body.get("problems", {})


def test_frozen_broker_under_load_loses_nothing_and_shows_in_health(
    own_broker: EmbeddedBroker, isolated_env: dict[str, str], tmp_path: Path
) -> None:
    from config.settings import load_settings

    bootstrap = own_broker.bootstrap
    env = {**isolated_env, "PERSONAS_WORKER__LAG_CHECK_INTERVAL_S": "2.0"}
    settings = load_settings(env=env)
    rng = random.Random(99)
    dataset, trades, discoveries, conn = prepare_scenario(
        bootstrap,
        settings,
        GenerateOptions(wallets=120, days=60, seed=99, end=AS_OF),
        "outage-test",
        rng,
    )
    topics = settings.topics
    assert own_broker.process is not None
    broker_pid = own_broker.process.pid
    chunks = [trades[i::12] for i in range(12)]
    errors: list[str] = []

    def keep_publishing() -> None:
        """Load through the outage: a chunk that fails is sent again (trade ids dedupe it)."""
        for chunk in chunks[2:]:
            while True:
                try:
                    publish(bootstrap, settings, topics.trades, chunk)
                    break
                except Exception as exc:
                    errors.append(repr(exc))
                    time.sleep(1.0)
            time.sleep(0.5)

    with closing(conn), WorkerProcess(env, bootstrap, tmp_path / "worker.log") as worker:
        assert worker.process is not None
        pid = worker.process.pid
        publish(bootstrap, settings, topics.trades, chunks[0] + chunks[1])
        wait_until(lambda: count(conn, "SELECT COUNT(*) FROM trades") > 0, 30, "ingest under way")
        wait_until(lambda: health(worker.port)[0] == 200, 30, "a healthy worker")
        loader = threading.Thread(target=keep_publishing, daemon=True)
        loader.start()
        time.sleep(0.5)

        os.kill(broker_pid, signal.SIGSTOP)
        frozen_at = time.monotonic()
        wait_until(lambda: broker_problem(worker.port), 15, "/health to report the outage")
        detected_s = time.monotonic() - frozen_at
        while time.monotonic() - frozen_at < FREEZE_S:
            assert worker.process.poll() is None, worker.log()[-3000:]
            assert broker_problem(worker.port), health(worker.port)
            time.sleep(1.0)
        os.kill(broker_pid, signal.SIGCONT)
        resumed_at = time.monotonic()
        wait_until(lambda: not broker_problem(worker.port), 20, "/health to clear the outage")
        cleared_s = time.monotonic() - resumed_at

        loader.join(120)
        assert not loader.is_alive()
        wait_until(lambda: count(conn, "SELECT COUNT(*) FROM trades") == len(trades), 90,
                   "every trade stored after the outage")  # fmt: skip
        publish(bootstrap, settings, topics.discovered, discoveries)
        wait_until_classified(conn, len(discoveries), 60)
        assert worker.process.poll() is None and worker.process.pid == pid, "worker restarted"
        assert worker.stop() == 0
        log_text = worker.log()
        assert_trades_exactly_once(conn, trades)
        classified, insufficient = assert_discoveries_classified_once(
            conn, settings, dataset.wallets, AS_OF
        )

    assert "broker outage" in log_text and "answers again after" in log_text
    assert "CRITICAL" not in log_text
    print(
        f"\nbroker outage: frozen {FREEZE_S:.0f}s, /health 503 after {detected_s:.1f}s, 200 again "
        f"{cleared_s:.1f}s after resume; worker pid {pid} kept running; {len(trades)} trades "
        f"stored once ({len(errors)} publish attempts failed during the freeze and were re-sent)"
        f"; {classified} classified, {insufficient} insufficient"
    )


def _commit(bootstrap: str, settings: Settings, group: str, offsets: dict[int, int]) -> None:
    async def commit() -> None:
        topic = settings.topics.trades
        async with joined_member(bootstrap, settings, group, [topic]) as member:
            await member.consumer.commit(
                {TopicPartition(topic, p): offset for p, offset in offsets.items()}
            )

    asyncio.run(commit())


def test_offsets_beyond_a_restarted_brokers_log_start_over_from_earliest(
    own_broker: EmbeddedBroker,
    isolated_env: dict[str, str],
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bootstrap = own_broker.bootstrap
    dataset = generate(GenerateOptions(wallets=20, days=60, seed=5, end=AS_OF))
    trades = [Trade.model_validate(row) for row in dataset.trades()]
    topics = settings.topics
    group = stage_group(settings.worker.app_id, "ingest")
    conn = connect(settings.database.url)
    migrate(conn)

    # The broker restarts (memory storage: every message and offset is gone) and the topics are
    # created again; the ingest group's positions from before, far ahead, are committed again,
    # as a consumer that kept them across the restart does.
    own_broker.stop()
    own_broker.start()
    asyncio.run(ensure_topics(bootstrap, settings))
    _commit(bootstrap, settings, group, dict.fromkeys(range(topics.trades_partitions), 50_000))
    publish(bootstrap, settings, topics.trades, trades)
    lost = asyncio.run(find_lost_offsets(bootstrap, settings))
    assert {(item.group, item.partition) for item in lost} == {
        (group, p) for p in range(topics.trades_partitions)
    }

    # A running worker's guard reports it (log, metric, /health) and exits for a restart.
    guard = BrokerGuard(bootstrap, settings, Metrics(), Health())

    def exit_(status: int) -> None:
        raise SystemExit(status)

    monkeypatch.setattr("streams.offset_guard.os._exit", exit_)
    monkeypatch.setattr("streams.offset_guard.logging.shutdown", lambda: None)
    with pytest.raises(SystemExit) as stopped:
        asyncio.run(guard.check_offsets())
    assert stopped.value.code == EXIT_LOG_LOST
    assert "offsets" in guard.health.report()["problems"]
    assert guard.lost_offsets.labels(group, topics.trades, "0")._value.get() == 1

    # The next start moves those offsets back to the log start before any agent joins.
    with closing(conn):
        worker = WorkerProcess(isolated_env, bootstrap, tmp_path / "worker.log")
        with worker:
            wait_until(lambda: count(conn, "SELECT COUNT(*) FROM trades") == len(trades), 60,
                       "the new trades stored, not skipped")  # fmt: skip
            assert worker.stop() == 0
        log_text = worker.log()
        assert_trades_exactly_once(conn, trades)
    assert "the broker lost its log" in log_text and "starting this partition over" in log_text
    assert asyncio.run(find_lost_offsets(bootstrap, settings)) == []


def test_a_group_committing_at_the_log_end_is_never_taken_for_lost(
    bootstrap: str, settings: Settings
) -> None:
    """Offsets committed while the guard looks are not past the log end it reads afterwards.

    Regression: the guard read log ends first, so an agent committing right after each batch
    could pass the end read a moment earlier, and a healthy worker was stopped (exit 71).
    """
    topic = settings.topics.features
    group = stage_group(settings.worker.app_id, "classifier")

    async def watch_while_committing() -> list[Any]:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
        consumer = group_consumer(bootstrap, settings, group, topic)
        await producer.start()
        await consumer.start()
        done = asyncio.Event()
        committed = 0

        async def follow_the_log_end() -> None:
            nonlocal committed
            while not done.is_set():
                await asyncio.gather(*[await producer.send(topic, b"{}") for _ in range(20)])
                if await consumer.getmany(timeout_ms=20):
                    await consumer.commit()
                    committed += 1

        follower = asyncio.create_task(follow_the_log_end())
        try:
            await asyncio.sleep(2)  # joined and committing
            found, checks = [], 0
            while checks < 25 or committed < 25:
                found += await find_lost_offsets(bootstrap, settings, [group])
                checks += 1
            return found
        finally:
            done.set()
            await follower
            await consumer.stop()
            await producer.stop()

    assert asyncio.run(watch_while_committing()) == []
