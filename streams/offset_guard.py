"""Broker guard inside the worker: notices a broker outage, and a broker that lost its log.

**Outage.** Every `PROBE_INTERVAL_S` the guard sends the broker a Kafka ApiVersions request with a
short timeout (a frozen or dead broker still accepts TCP connections: only a protocol answer
counts). After `OUTAGE_AFTER` failures in a row it logs an ERROR naming the broker, sets
`personas_broker_up` to 0 and marks the `broker` component unhealthy, so /health answers 503 for
as long as it lasts. The agents themselves only wait and retry: nothing is committed that was
not stored, so nothing is lost. When the broker answers again the guard logs how long the outage
lasted, clears the problem, and checks the offsets at once.

**Lost log (policy).** A restarted in-memory broker has lost every message, while consumers can
keep (and commit) their old positions, silently skipping new messages until the log grows past
them (`../shared/BROKER.md`). The guard compares each of the worker's groups' committed offsets
with the log end of every source topic, at start and every `OFFSET_CHECK_S` (and right after an
outage). A committed offset beyond the log end means the log was lost: the guard logs an ERROR
per partition, counts `personas_offsets_beyond_log_end` and marks `offsets` unhealthy. The policy
is then to **start over from the earliest offset**: the worker exits with status
`EXIT_LOG_LOST` (71) without committing anything, and the next start (the supervisor's
restart, or `personas run` again) moves every offset that is beyond its log end back to the log
start before any agent joins (`reset_lost_offsets`). Replaying from the start is safe because
every write is idempotent (INSERT OR IGNORE, upserts keyed by wallet and day).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import TopicPartition
from prometheus_client import Counter, Gauge

from config.settings import Settings
from streams.broker import _api_versions_answers
from streams.health import Health
from streams.metrics import Metrics
from streams.ops.offsets import committed_offsets, joined_member, log_ranges, reader
from streams.topics import worker_groups

__all__ = [
    "EXIT_LOG_LOST",
    "BrokerGuard",
    "LostOffset",
    "find_lost_offsets",
    "reset_lost_offsets",
]

log = logging.getLogger("personas.broker_guard")

PROBE_INTERVAL_S = 1.0
PROBE_TIMEOUT_S = 1.0
# Two misses in a row (≈ 2-4 s): one slow answer under load is not an outage.
OUTAGE_AFTER = 2
OFFSET_CHECK_S = 15.0
# "The broker lost its log; restart me": the next start resets the offsets (module docstring).
EXIT_LOG_LOST = 71


@dataclass(frozen=True)
class LostOffset:
    """A group's committed offset that is beyond its partition's log end."""

    group: str
    topic: str
    partition: int
    committed: int
    log_start: int
    log_end: int

    def __str__(self) -> str:
        return (f"group {self.group} committed {self.committed} on {self.topic}[{self.partition}]"
                f" but the log ends at {self.log_end}")  # fmt: skip


async def find_lost_offsets(
    bootstrap: str, settings: Settings, groups: Sequence[str] | None = None
) -> list[LostOffset]:
    """Every committed offset of `groups` (default: the worker's) beyond its log end."""
    groups = list(groups or worker_groups(settings))
    async with reader(bootstrap, settings) as consumer:
        existing = await consumer.topics()
        tps = [
            TopicPartition(topic, p)
            for topic in settings.topics.partitions()
            if topic in existing
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        # Committed offsets first, the log ends after: a log end only grows, so an offset read
        # earlier that is past it is truly lost, not just committed since the end was read.
        committed = {
            group: await committed_offsets(bootstrap, settings, group, tps) for group in groups
        }
        ranges = await log_ranges(consumer, tps)
    lost = []
    for group, offsets in committed.items():
        for tp, offset in offsets.items():
            span = ranges[tp]
            if offset is not None and offset > span.end:
                lost.append(LostOffset(group, tp.topic, tp.partition, offset, span.start, span.end))
    return lost


async def reset_lost_offsets(bootstrap: str, settings: Settings) -> list[LostOffset]:
    """Move every offset beyond its log end back to the log start; run before the agents join.

    Returns what was moved (and logs it). Offsets that are fine are left where they are.
    """
    lost = await find_lost_offsets(bootstrap, settings)
    by_group: dict[str, list[LostOffset]] = {}
    for item in lost:
        log.error("%s: the broker lost its log; starting this partition over from offset %d",
                  item, item.log_start)  # fmt: skip
        by_group.setdefault(item.group, []).append(item)
    for group, items in by_group.items():
        topics = sorted(settings.topics.partitions())
        async with joined_member(bootstrap, settings, group, topics) as member:
            await member.consumer.commit(
                {TopicPartition(i.topic, i.partition): i.log_start for i in items}
            )
    return lost


class BrokerGuard:
    """The periodic probe and offset check of one worker (see the module docstring)."""

    def __init__(
        self, bootstrap: str, settings: Settings, metrics: Metrics, health: Health
    ) -> None:
        self.bootstrap, self.settings, self.health = bootstrap, settings, health
        host, _, port = bootstrap.split(",")[0].rpartition(":")
        self._host, self._port = host, int(port)
        self.broker_up = Gauge(
            "personas_broker_up", "1 while the broker answers the worker's probe, else 0.",
            registry=metrics.registry,
        )  # fmt: skip
        self.broker_up.set(1)
        self.lost_offsets = Counter(
            "personas_offsets_beyond_log_end",
            "Committed offsets found beyond their log end (the broker lost its log).",
            ["group", "topic", "partition"], registry=metrics.registry,
        )  # fmt: skip
        self._misses = 0
        self._down_since: float | None = None

    async def probe(self) -> bool:
        """One probe; updates the outage state. True when the broker answered."""
        answered = await asyncio.to_thread(
            _api_versions_answers, self._host, self._port, PROBE_TIMEOUT_S
        )
        if answered:
            self._misses = 0
            if self._down_since is not None:
                lasted = time.time() - self._down_since
                log.warning("broker %s:%d answers again after a %.1fs outage; resuming",
                            self._host, self._port, lasted)  # fmt: skip
                self._down_since = None
                self.health.clear("broker")
                self.broker_up.set(1)
            return True
        self._misses += 1
        if self._misses >= OUTAGE_AFTER and self._down_since is None:
            self._down_since = time.time() - self._misses * PROBE_INTERVAL_S
            log.error("broker outage: %s:%d has not answered for %d probes; agents are waiting "
                      "(nothing is committed until it is stored)",
                      self._host, self._port, self._misses)  # fmt: skip
            self.health.problem("broker", f"broker {self._host}:{self._port} not answering")
            self.broker_up.set(0)
        return False

    async def check_offsets(self) -> list[LostOffset]:
        """Report committed offsets beyond the log end; apply the policy if there are any."""
        lost = await find_lost_offsets(self.bootstrap, self.settings)
        if not lost:
            self.health.clear("offsets")
            return lost
        for item in lost:
            self.lost_offsets.labels(item.group, item.topic, str(item.partition)).inc()
            log.error("%s: the broker lost its log (an in-memory broker restarted?)", item)
        self.health.problem("offsets", "; ".join(map(str, lost)))
        self.exit_to_start_over(lost)
        return lost

    def exit_to_start_over(self, lost: Sequence[LostOffset]) -> None:
        """The policy: stop uncommitted; the next start resets these offsets to the log start."""
        log.error("policy: stopping the worker (exit %d) so that its next start replays %d "
                  "partition(s) from the earliest offset; writes are idempotent",
                  EXIT_LOG_LOST, len(lost))  # fmt: skip
        logging.shutdown()
        os._exit(EXIT_LOG_LOST)

    async def run(self) -> None:
        """Probe every second and check offsets every `OFFSET_CHECK_S`, until cancelled."""
        next_check = time.monotonic() + OFFSET_CHECK_S
        while True:
            was_down = self._down_since is not None
            up = await self.probe()
            if up and (was_down or time.monotonic() >= next_check):
                try:
                    await self.check_offsets()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a failed check is retried on the next round
                    log.warning("offset check failed: %s", exc)
                next_check = time.monotonic() + OFFSET_CHECK_S
            await asyncio.sleep(PROBE_INTERVAL_S)
