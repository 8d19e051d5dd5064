"""How the leader deals a run's jobs over `rebuild-jobs`: so that every worker ends together.

A run ends when its most loaded worker is done. Jobs dealt round the partitions load a worker
that owns more partitions than another (three workers on four partitions: one gets half the
jobs), and the worker that is also the classifier (the one holding `wallet-features`): it
classifies every FeatureSet the run publishes, from every worker, on top of its shards. So the
leader reads which worker holds which partition, as the workers' consumers recorded it in the
store (`agents.store.partition_owners`; the embedded broker describes no group's assignments),
gives each worker an equal share, the classifier's less by `rebuild.classifier_cost`
(`agents.core.rebuild_jobs.partition_weights`), and falls back to round robin when the records
cannot tell. Only the split changes: whoever computes a job, its rows are the same.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import closing

from agents import classifier_agent, rebuild_jobs_agent
from agents.core.rebuild_jobs import partition_weights
from agents.store import open_reader
from agents.store.partition_owners import partition_owners
from config.settings import Settings
from streams.topics import partition_count, stage_group

__all__ = ["job_weights", "recorded_holders"]

log = logging.getLogger("personas.rebuild")


async def job_weights(bootstrap: str, settings: Settings) -> list[float]:
    """Each partition of `rebuild-jobs`'s share of a run's jobs, one per partition the topic has
    on the broker (which may differ from the settings: a topic is not re-created when
    `topics.rebuild_jobs_partitions` changes)."""
    partitions = await partition_count(bootstrap, settings, settings.topics.rebuild_jobs)
    try:
        owners, classifiers = await asyncio.to_thread(recorded_holders, settings)
    except Exception as exc:  # any store failure: the jobs still go out, evenly
        log.warning("rebuild jobs dealt round robin: partition owners unreadable: %r", exc)
        return [1.0] * partitions
    owners = {p: worker for p, worker in owners.items() if p < partitions}
    if len(owners) < partitions:
        log.info("rebuild jobs dealt round robin: %d of %d partitions have a recorded holder "
                 "(the group may be rebalancing)", len(owners), partitions)  # fmt: skip
    classifier = classifiers.pop() if len(classifiers) == 1 else None
    # The cost is per FeatureSet against a wallet's work on one process; a worker's shards run
    # on `rebuild.workers` of them, the classifier on one.
    rebuild = settings.rebuild
    return partition_weights(
        partitions, owners, classifier, rebuild.classifier_cost / rebuild.worker_count
    )


def recorded_holders(settings: Settings) -> tuple[dict[int, str], set[str]]:
    """The workers holding each partition of `rebuild-jobs`, and those holding `wallet-features`."""
    database, topics, app_id = settings.database, settings.topics, settings.worker.app_id
    with closing(open_reader(database.url, database.busy_timeout_ms)) as conn:
        jobs_group = stage_group(app_id, rebuild_jobs_agent.STAGE)
        jobs = partition_owners(conn, jobs_group, topics.rebuild_jobs)
        features_group = stage_group(app_id, classifier_agent.STAGE)
        features = partition_owners(conn, features_group, topics.features)
    return jobs, set(features.values())
