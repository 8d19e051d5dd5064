"""`personas replay` against a real broker: dry-run changes nothing, execute commits the targets,
and a replay that is refused (live members, an unknown group, a topic the group does not read)
moves nothing and disturbs nobody."""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition

from config.settings import Settings
from streams.cli import main
from streams.ops.offsets import admin_client, committed_offsets, list_groups
from streams.topics import ensure_topics, stage_group
from tests.integration.kafka import consume_and_commit

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


def _replay(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any], str]:
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
    assert [p["target"] for p in plan["partitions"]] == [0] * PARTITIONS
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
    assert [p["target"] for p in plan["partitions"]] == [half] * PARTITIONS
    assert plan["reread"] == 0  # moving forward from 0 skips, re-reads nothing
    assert _committed(bootstrap, settings, group, topic) == [0] * PARTITIONS
    code, _, err = _replay(capsys, *base, "--to", "2023-11-15T22:13:20Z")  # == NEW_MS
    assert code == 0, err
    assert _committed(bootstrap, settings, group, topic) == [half] * PARTITIONS

    # Shift back by 2 on one partition only.
    code, plan, _ = _replay(capsys, *base, "--to", "shift:-2", "--partition", "1", "--dry-run")
    assert [(p["partition"], p["target"], p["reread"]) for p in plan["partitions"]] == [
        (1, half - 2, 2)
    ]
    code, _, err = _replay(capsys, *base, "--to", "shift:-2", "--partition", "1")
    assert code == 0, err
    assert _committed(bootstrap, settings, group, topic) == [half, half - 2, half, half]
    assert join_s < 20


@dataclass
class _Run:
    """One `personas replay` subprocess: exit status, stdout, and stderr lines with their times."""

    code: int
    out: str
    err: list[tuple[float, str]]
    ended: float

    @property
    def stderr(self) -> str:
        return "\n".join(line for _, line in self.err)

    def said_before_end(self, text: str) -> float:
        """How long before the end the first stderr line containing `text` came."""
        return next(self.ended - at for at, line in self.err if text in line)


class _Rebalances(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self) -> None:
        self.revoked = 0
        self.assigned: list[set[int]] = []

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        self.revoked += 1

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self.assigned.append({tp.partition for tp in assigned})


@dataclass
class _LiveMember:
    """What the group's live member went through while the replays ran."""

    runs: list[_Run] = field(default_factory=list)
    revoked: int = 0
    assignments: list[set[int]] = field(default_factory=list)


def _replays_beside_a_live_member(
    bootstrap: str,
    env: dict[str, str],
    settings: Settings,
    group: str,
    topic: str,
    *argvs: list[str],
) -> _LiveMember:
    """Run each `personas replay ARGV` as a process while a member of `group` keeps polling."""
    broker = settings.broker
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PERSONAS_")},
        **env, "PERSONAS_BROKER": bootstrap,
    }  # fmt: skip

    async def scenario() -> _LiveMember:
        listener = _Rebalances()
        live = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
            auto_offset_reset="earliest", session_timeout_ms=int(broker.session_timeout_s * 1000),
            heartbeat_interval_ms=int(broker.heartbeat_interval_s * 1000),
            rebalance_timeout_ms=int(broker.rebalance_timeout_s * 1000),
        )  # fmt: skip
        live.subscribe([topic], listener=listener)
        await live.start()
        seen = _LiveMember()
        try:
            async with asyncio.timeout(30):
                while not live.assignment():
                    await live.getmany(timeout_ms=200)
            revoked_before = listener.revoked
            for argv in argvs:
                seen.runs.append(await _run_polling(live, environ, argv))
            seen.revoked = listener.revoked - revoked_before
            seen.assignments = listener.assigned
        finally:
            await live.stop()
        return seen

    return asyncio.run(scenario())


async def _run_polling(live: AIOKafkaConsumer, environ: dict[str, str], argv: list[str]) -> _Run:
    """One replay process; the live member polls (stays live) until it has exited."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "streams.cli", "replay", *argv, env=environ,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    err: list[tuple[float, str]] = []

    async def read_err(stream: Any) -> None:
        async for line in stream:
            err.append((time.monotonic(), line.decode().rstrip()))

    reading = asyncio.gather(read_err(process.stderr), process.stdout.read())
    async with asyncio.timeout(60):
        while not reading.done():
            await live.getmany(timeout_ms=200)
        code = await process.wait()
    ended = time.monotonic()
    _, out = reading.result()
    return _Run(code, out.decode(), err, ended)


def test_replay_with_live_members_is_refused_without_joining(
    bootstrap: str, isolated_env: dict[str, str], settings: Settings
) -> None:
    """Refused (exit 1, dry run too) from a describe: the live member never rebalances."""
    topic, group = settings.topics.discovered, stage_group(settings.worker.app_id, "features")
    asyncio.run(ensure_topics(bootstrap, settings))
    _produce(bootstrap, topic)
    base = ["--group", group, "--topic", topic, "--to", "earliest"]

    seen = _replays_beside_a_live_member(
        bootstrap, isolated_env, settings, group, topic, [*base, "--dry-run"], base
    )

    dry, real = seen.runs
    assert seen.revoked == 0, f"the live member rebalanced: assignments {seen.assignments}"
    assert seen.assignments == [set(range(PARTITIONS))]
    assert (dry.code, real.code) == (1, 1), dry.stderr + real.stderr
    assert "would move 4 partition(s)" in dry.out
    assert "the real run would be refused (exit 1)" in dry.out and "live member" in dry.out
    assert "live member" in real.stderr and "nothing was moved" in real.stderr
    # Said at once what it checks, long before the answer (a stopped member gets a session).
    assert real.said_before_end(f"checking group {group}") > 1.5, real.err
    assert real.said_before_end("live members") > 1.5, real.err
    assert _committed(bootstrap, settings, group, topic) == [None] * PARTITIONS


def test_force_with_live_members_moves_nothing(
    bootstrap: str, isolated_env: dict[str, str], settings: Settings
) -> None:
    """With `--force` too nothing moves, exit 1, saying why; nobody rebalances."""
    topic, group = settings.topics.discovered, stage_group(settings.worker.app_id, "features")
    asyncio.run(ensure_topics(bootstrap, settings))
    _produce(bootstrap, topic)
    argv = ["--group", group, "--topic", topic, "--to", "latest", "--force"]

    seen = _replays_beside_a_live_member(bootstrap, isolated_env, settings, group, topic, argv)

    (run,) = seen.runs
    assert run.code == 1, run.stderr
    assert "nothing was moved" in run.stderr and "--force does not change this" in run.stderr
    assert "note: --force changes nothing" in run.stderr
    assert "moved 4" not in run.out
    assert _committed(bootstrap, settings, group, topic) == [None] * PARTITIONS
    assert seen.revoked == 0, f"the live member rebalanced: assignments {seen.assignments}"


def test_unknown_group_is_refused_unless_allowed(
    bootstrap: str,
    settings: Settings,
    cli_env: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A typo in --group: exit 2 naming the real groups, and no phantom group is left behind."""
    topic, group = settings.topics.discovered, stage_group(settings.worker.app_id, "features")
    asyncio.run(ensure_topics(bootstrap, settings))
    _produce(bootstrap, topic)
    consume_and_commit(bootstrap, settings, group, topic, PARTITIONS * PER_PARTITION)
    typo = group.removesuffix("s")

    code, _, err = _replay(capsys, "--group", typo, "--topic", topic, "--to", "earliest")
    assert code == 2, err
    assert f"--group: unknown group {typo!r}" in err
    assert f"{topic} is read by {group}" in err and "--allow-new-group" in err
    assert stage_group(settings.worker.app_id, "ingest") in err  # every group of ours is named

    code, plan, _ = _replay(
        capsys, "--group", typo, "--topic", topic, "--to", "earliest", "--dry-run"
    )
    assert code == 2
    assert plan["refused"]["reason"] == "unknown-group"
    assert len(plan["partitions"]) == PARTITIONS
    assert _committed(bootstrap, settings, typo, topic) == [None] * PARTITIONS
    assert typo not in asyncio.run(_groups(bootstrap, settings))

    new = f"{group}-backfill-{uuid.uuid4().hex[:6]}"
    argv = ["--group", new, "--topic", topic, "--to", "offset:3", "--allow-new-group"]
    code, _, err = _replay(capsys, *argv)
    assert code == 0, err
    assert _committed(bootstrap, settings, new, topic) == [3] * PARTITIONS


def test_topic_the_group_does_not_read_is_refused(
    bootstrap: str,
    settings: Settings,
    cli_env: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The ingest group on wallet-discovered: exit 2 naming the reader; offsets make it known."""
    topic = settings.topics.discovered
    ingest, features = (stage_group(settings.worker.app_id, s) for s in ("ingest", "features"))
    asyncio.run(ensure_topics(bootstrap, settings))
    _produce(bootstrap, topic)

    code, _, err = _replay(capsys, "--group", ingest, "--topic", topic, "--to", "earliest")
    assert code == 2, err
    assert f"--topic: {ingest} reads {settings.topics.trades}, not {topic}" in err
    assert f"{topic} is read by {features}" in err
    code, plan, _ = _replay(
        capsys, "--group", ingest, "--topic", topic, "--to", "earliest", "--dry-run"
    )
    assert code == 2 and plan["refused"]["reason"] == "topic-not-read"
    assert _committed(bootstrap, settings, ingest, topic) == [None] * PARTITIONS

    # A group that is none of ours but has offsets on the topic counts as known.
    other = f"tool-{uuid.uuid4().hex[:8]}"
    consume_and_commit(bootstrap, settings, other, topic, PARTITIONS * PER_PARTITION)
    code, _, err = _replay(capsys, "--group", other, "--topic", topic, "--to", "earliest")
    assert code == 0, err
    assert _committed(bootstrap, settings, other, topic) == [0] * PARTITIONS


async def _groups(bootstrap: str, settings: Settings) -> list[str]:
    async with admin_client(bootstrap, settings) as admin:
        return await list_groups(admin)
