"""A rebuild spread over the workers: its shards as jobs (`rebuild-jobs`), cut by the leader.

Every job carries what all shards of a run must share (as_of, windows, computed_at), so whoever
computes a shard writes the rows a single-host rebuild with the same options writes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["MAX_JOB_WALLETS", "RebuildJob", "cut_jobs", "deal", "job_key", "partition_weights"]

#: Wallets per job at most: a job names its wallets (≈ 45 bytes each in JSON), and a message
#: above the codec's `MAX_MESSAGE_BYTES` (64 KiB) would be dead-lettered; 1000 leaves room.
MAX_JOB_WALLETS = 1000


class RebuildJob(BaseModel):
    """One shard of a run: its wallets (sorted) and the run's options."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    run_id: str = Field(min_length=1, max_length=64)
    shard: int = Field(ge=0)
    shards: int = Field(ge=1)
    as_of: int
    computed_at: float
    windows: tuple[int, ...] = Field(min_length=1)
    publish_window: int
    wallets: tuple[str, ...] = Field(min_length=1, max_length=MAX_JOB_WALLETS)

    @model_validator(mode="after")
    def _consistent(self) -> RebuildJob:
        if self.shard >= self.shards:
            raise ValueError(f"shard {self.shard} of a run of {self.shards} shards")
        if self.publish_window not in self.windows:
            raise ValueError(f"publish_window {self.publish_window} not in {self.windows}")
        return self


def cut_jobs(
    run_id: str,
    wallets: Sequence[str],
    shard_wallets: int,
    *,
    as_of: int,
    computed_at: float,
    windows: tuple[int, ...],
    publish_window: int,
) -> list[RebuildJob]:
    """`wallets` (sorted) cut into jobs of at most `shard_wallets` (and `MAX_JOB_WALLETS`)."""
    if shard_wallets < 1:
        raise ValueError("shard_wallets must be ≥ 1")
    shard_wallets = min(shard_wallets, MAX_JOB_WALLETS)
    cuts = [tuple(wallets[start : start + shard_wallets])
            for start in range(0, len(wallets), shard_wallets)]  # fmt: skip
    options = {"as_of": as_of, "computed_at": computed_at, "windows": windows,
               "publish_window": publish_window}  # fmt: skip
    return [
        RebuildJob(run_id=run_id, shard=n, shards=len(cuts), wallets=shard, **options)
        for n, shard in enumerate(cuts)
    ]


def job_key(job: RebuildJob) -> bytes:
    """The job's message key: distinct per shard (the leader deals the jobs over the partitions,
    `deal`, rather than hashing their keys)."""
    return f"{job.run_id}:{job.shard}".encode()


def partition_weights(
    partitions: int, owners: Mapping[int, str], classifier: str | None, classifier_cost: float
) -> list[float]:
    """Each partition's share of a run's jobs: its worker's share, split over the partitions it
    owns (a worker that owns more partitions gets no more jobs).

    `owners` names each partition's worker; `classifier` is the worker that also classifies every
    FeatureSet the run publishes, at `classifier_cost` of a wallet's shard work each. With n ≥ 2
    workers it takes 1 − (n−1)·cost shares (none below 0) and every other worker 1 + cost, so
    all of them finish together; without it among them, each takes 1. Equal weights per
    partition (round robin) unless every partition has an owner.
    """
    if set(owners) != set(range(partitions)):
        return [1.0] * partitions
    workers = set(owners.values())
    share = dict.fromkeys(workers, 1.0)
    if classifier in workers and len(workers) > 1:
        share = dict.fromkeys(workers, 1.0 + classifier_cost)
        share[classifier] = max(0.0, 1.0 - (len(workers) - 1) * classifier_cost)
    owned = Counter(owners.values())
    return [share[owners[p]] / owned[owners[p]] for p in range(partitions)]


def deal(jobs: int, weights: Sequence[float]) -> list[int]:
    """The partition of each of `jobs` jobs, in proportion to `weights` and spread out in order:
    each job goes to the partition furthest behind its share of the jobs dealt so far (the lowest
    on a tie), as smooth weighted round robin does; equal weights deal round robin."""
    total = sum(weights)
    if not total > 0 or min(weights) < 0:
        raise ValueError(f"weights must be ≥ 0 and not all 0: {list(weights)}")
    shares = [w / total for w in weights]
    dealt = [0] * len(weights)
    out: list[int] = []
    for n in range(1, jobs + 1):
        partition = min(range(len(weights)), key=lambda p: dealt[p] - n * shares[p])
        dealt[partition] += 1
        out.append(partition)
    return out
