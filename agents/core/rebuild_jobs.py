"""A rebuild spread over the workers: its shards as jobs (`rebuild-jobs`), cut by the leader.

Every job carries what all shards of a run must share (as_of, windows, computed_at), so whoever
computes a shard writes the rows a single-host rebuild with the same options writes.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["MAX_JOB_WALLETS", "RebuildJob", "cut_jobs", "job_key"]

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
    """The job's message key: distinct per shard (the leader deals jobs round the partitions)."""
    return f"{job.run_id}:{job.shard}".encode()
