"""Which worker holds each partition of a stage's topic, as the workers' consumers record it.

A consumer records the partitions it is assigned (`claim_partitions`) and, when they are revoked,
drops the ones still recorded as its own (`release_partitions`): in a rebalance every member gives
its partitions up before any is assigned, so a newer owner's claim is never dropped. A worker that
dies keeps its claims until the partitions are assigned to another. Read by the leader to deal a
rebuild's jobs (`streams.dealing`): a stale claim costs balance, never a row.
"""

from __future__ import annotations

from collections.abc import Sequence

from agents.store.connection import Connection, transaction

__all__ = ["claim_partitions", "partition_owners", "release_partitions"]

CLAIM_SQL = """
INSERT INTO partition_owners (consumer_group, topic, partition_number, worker, assigned_at)
VALUES (?, ?, ?, ?, ?)
ON CONFLICT (consumer_group, topic, partition_number)
DO UPDATE SET worker = excluded.worker, assigned_at = excluded.assigned_at"""

RELEASE_SQL = """
DELETE FROM partition_owners
WHERE consumer_group = ? AND topic = ? AND partition_number = ? AND worker = ?"""

OWNERS_SQL = """
SELECT partition_number, worker FROM partition_owners WHERE consumer_group = ? AND topic = ?"""


def claim_partitions(
    conn: Connection, group: str, worker: str, partitions: Sequence[tuple[str, int]], now: float
) -> None:
    """Record `worker` as the holder of `partitions` ((topic, partition) pairs) in `group`."""
    with transaction(conn):
        conn.executemany(CLAIM_SQL, [(group, t, p, worker, now) for t, p in partitions])


def release_partitions(
    conn: Connection, group: str, worker: str, partitions: Sequence[tuple[str, int]]
) -> None:
    """Drop the records of `partitions` that still name `worker`."""
    with transaction(conn):
        conn.executemany(RELEASE_SQL, [(group, t, p, worker) for t, p in partitions])


def partition_owners(conn: Connection, group: str, topic: str) -> dict[int, str]:
    """Each recorded partition of `topic` in `group` and the worker that holds it."""
    return {int(p): str(w) for p, w in conn.execute(OWNERS_SQL, (group, topic)).fetchall()}
