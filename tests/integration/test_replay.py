"""`personas replay` against a real broker: dry-run changes nothing, execute commits the targets."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition

from config.settings import Settings
from streams.cli import main
from streams.ops.offsets import committed_offsets
from streams.topics import ensure_topics, stage_group
from tests.integration.kafka import consume_and_commit, group_consumer

pytestmark = pytest.mark.slow

PARTITIONS = 4
PER_PARTITION = 10
OLD_MS = 1_700_000_000_000  # the first half of each partition
NEW_MS = 1_700_086_400_000  # one day later: the second half


def _produce(bootstrap: str, topic: str) -> None:
    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
        await producer.start()
        try:
            sends = []
            for partition in range(PARTITIONS):
                for i in range(PER_PARTITION):
                    stamp = (OLD_MS if i < PER_PARTITION // 2 else NEW_MS) + i * 1000
                    value = orjson.dumps({"i": i})
                    sends.append(await producer.send(
                        topic, value, key=b"k", partition=partition, timestamp_ms=stamp
                    ))  # fmt: skip
            await asyncio.gather(*sends)
        finally:
            await producer.stop()

    asyncio.run(send())


def _committed(bootstrap: str, settings: Settings, group: str, topic: str) -> list[int | None]:
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    found = asyncio.run(committed_offsets(bootstrap, settings, group, tps))
    return [found[tp] for tp in tps]


def _replay(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, object], str]:
    code = main(["replay", *args, "--json"])
    out = capsys.readouterr()
    return code, (orjson.loads(out.out) if out.out.strip() else {}), out.err


def test_replay_earliest_datetime_shift(
    bootstrap: str,
    settings: Settings,
    cli_env: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    topic, group = settings.topics.discovered, stage_group(settings.worker.app_id, "features")
    asyncio.run(ensure_topics(bootstrap, settings))
    _produce(bootstrap, topic)
    consume_and_commit(bootstrap, settings, group, topic, PARTITIONS * PER_PARTITION)
    assert _committed(bootstrap, settings, group, topic) == [PER_PARTITION] * PARTITIONS
    base = ["--group", group, "--topic", topic]

    # Dry-run to earliest: everything would be re-read, nothing changes.
    code, plan, _ = _replay(capsys, *base, "--to", "earliest", "--dry-run")
    assert code == 0 and plan["dry_run"] is True
    assert plan["reread"] == PARTITIONS * PER_PARTITION
    assert [p["target"] for p in plan["partitions"]] == [0] * PARTITIONS  # type: ignore[index,union-attr]
    assert _committed(bootstrap, settings, group, topic) == [PER_PARTITION] * PARTITIONS

    started = time.monotonic()
    code, _, err = _replay(capsys, *base, "--to", "earliest")
    assert code == 0, err
    assert _committed(bootstrap, settings, group, topic) == [0] * PARTITIONS
    join_s = time.monotonic() - started

    # To a datetime: the first message at or after it, found by record timestamp.
    when = str(NEW_MS // 1000)
    code, plan, _ = _replay(capsys, *base, "--to", when, "--dry-run")
    half = PER_PARTITION // 2
    assert [p["target"] for p in plan["partitions"]] == [half] * PARTITIONS  # type: ignore[index,union-attr]
    assert plan["reread"] == 0  # moving forward from 0 skips, re-reads nothing
    assert _committed(bootstrap, settings, group, topic) == [0] * PARTITIONS
    code, _, err = _replay(capsys, *base, "--to", "2023-11-15T22:13:20Z")  # == NEW_MS
    assert code == 0, err
    assert _committed(bootstrap, settings, group, topic) == [half] * PARTITIONS

    # Shift back by 2 on one partition only.
    code, plan, _ = _replay(capsys, *base, "--to", "shift:-2", "--partition", "1", "--dry-run")
    assert [(p["partition"], p["target"], p["reread"]) for p in plan["partitions"]] == [  # type: ignore[index,union-attr]
        (1, half - 2, 2)
    ]
    code, _, err = _replay(capsys, *base, "--to", "shift:-2", "--partition", "1")
    assert code == 0, err
    assert _committed(bootstrap, settings, group, topic) == [half, half - 2, half, half]
    assert join_s < 20


def test_replay_refuses_live_members(
    bootstrap: str,
    settings: Settings,
    cli_env: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    topic, group = settings.topics.discovered, stage_group(settings.worker.app_id, "features")
    asyncio.run(ensure_topics(bootstrap, settings))
    _produce(bootstrap, topic)

    async def scenario() -> tuple[int, str]:
        live = group_consumer(bootstrap, settings, group, topic)
        await live.start()
        try:
            async with asyncio.timeout(30):
                while not live.assignment():
                    await live.getmany(timeout_ms=200)  # keeps the member polling and alive
            # The replay runs in a thread while this member keeps polling (and rejoining).
            task = asyncio.create_task(asyncio.to_thread(
                main, ["replay", "--group", group, "--topic", topic, "--to", "earliest"]
            ))  # fmt: skip
            async with asyncio.timeout(40):
                while not task.done():
                    await live.getmany(timeout_ms=200)
            return task.result(), ""
        finally:
            await live.stop()

    code, _ = asyncio.run(scenario())
    err = capsys.readouterr().err
    assert code == 1
    assert "live member" in err
    assert _committed(bootstrap, settings, group, topic) == [None] * PARTITIONS
