"""The topology (SPEC §2): every topic and its partition count, created before any worker."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from config.settings import Settings, dlq_name

__all__ = [
    "STAGES",
    "TopicSpec",
    "dlq_name",
    "ensure_topics",
    "partition_count",
    "redrive_group",
    "stage_group",
    "stage_topics",
    "topic_specs",
    "worker_groups",
]

log = logging.getLogger("personas.topics")

#: The agents that consume a topic, each in its own consumer group `<app_id>-<stage>`.
STAGES = ("ingest", "features", "classifier", "rebuild")


def stage_group(app_id: str, stage: str) -> str:
    """The consumer group of one agent."""
    return f"{app_id}-{stage}"


def stage_topics(settings: Settings) -> dict[str, str]:
    """The topic each agent consumes, by stage, in the order of STAGES."""
    topics = settings.topics
    by_stage = {
        "ingest": topics.trades, "features": topics.discovered, "classifier": topics.features,
        "rebuild": topics.rebuild_jobs,
    }  # fmt: skip
    return {stage: by_stage[stage] for stage in STAGES}


def worker_groups(settings: Settings) -> list[str]:
    """Every consumer group a worker commits offsets in: one per agent."""
    return [stage_group(settings.worker.app_id, stage) for stage in STAGES]


def redrive_group(settings: Settings) -> str:
    """The consumer group that remembers which dead letters `personas dlq redrive` sent back."""
    return f"{settings.worker.app_id}-dlq-redrive"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Source topics with their partition counts, then one single-partition DLQ per source."""
    sources = [TopicSpec(name, count) for name, count in settings.topics.partitions().items()]
    return sources + [TopicSpec(dlq_name(spec.name), 1) for spec in sources]


async def ensure_topics(bootstrap: str, settings: Settings) -> list[str]:
    """Create missing topics (explicitly: auto-created ones get the wrong partition count).

    Returns the names created. An existing topic with another partition count is logged loudly:
    the single-partition `wallet-features` is what makes the classifier the only writer.
    """
    specs = topic_specs(settings)
    admin = _admin(bootstrap, settings)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [spec for spec in specs if spec.name not in existing]
        for spec in missing:
            try:
                await admin.create_topics(
                    [NewTopic(spec.name, spec.partitions, settings.topics.replication_factor)]
                )
            except TopicAlreadyExistsError:
                continue
        for described in await admin.describe_topics([spec.name for spec in specs]):
            want = next(spec.partitions for spec in specs if spec.name == described["topic"])
            have = len(described.get("partitions") or [])
            if have and have != want:
                log.error(
                    "topic %s has %d partitions, the design needs %d: recreate it",
                    described["topic"], have, want,
                )  # fmt: skip
    finally:
        await admin.close()
    if missing:
        log.info("created topics: %s", ", ".join(spec.name for spec in missing))
    return [spec.name for spec in missing]


async def partition_count(bootstrap: str, settings: Settings, topic: str) -> int:
    """How many partitions `topic` has on the broker, whatever the settings say (0: no topic)."""
    admin = _admin(bootstrap, settings)
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return len(described.get("partitions") or [])


def _admin(bootstrap: str, settings: Settings) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, client_id=f"{settings.broker.client_id}-admin"
    )
