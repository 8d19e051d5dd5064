"""On-demand features of a batch of discoveries (SPEC §7): one set-based read, then the kernel.

Synchronous and Faust-free, so the feature agent can run it in worker processes (`FeaturePool`),
each with its own read-only connection. A batch's wallets are read as the rebuild reads a shard
(`checkpointed_fills`: two queries, up to the latest discovery time among them): a wallet whose
valid checkpoint was taken at or before its (earliest) discovery is read from the earlier of the
window's start and that checkpoint on, any other wholly. The kernel then cuts each wallet's
trades at its own `discovered_at` and continues the checkpoint to it, so the result is the one a
single-wallet read of the whole history would give, bit for bit.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from agents.core.checkpoint import Checkpoint, wallet_features_since
from agents.core.codec import encode
from agents.core.features import DAY, Fill, wallet_features
from agents.core.records import build_feature_set
from agents.store import Connection
from agents.store.checkpoints import checkpointed_fills

__all__ = ["Discovery", "OnDemandJob", "Outcome", "compute_discoveries"]


@dataclass(frozen=True, slots=True)
class Discovery:
    """A wallet to compute, as of its discovery time."""

    wallet: str
    as_of: int


@dataclass(frozen=True, slots=True)
class OnDemandJob:
    """Discoveries computed together, and the window they are computed for."""

    discoveries: tuple[Discovery, ...]
    window_days: int
    min_settled_trades: int
    #: stamped on every FeatureSet of the job (the worker's clock, not the process's)
    computed_at: float


@dataclass(frozen=True, slots=True)
class Outcome:
    """One discovery's result: its encoded FeatureSet, or why there is none."""

    round_trips: int
    #: the `wallet-features` message; None when insufficient or failed
    features: bytes | None
    #: what went wrong computing this wallet; None when it was computed
    error: str | None
    #: read (this discovery's share of the batch query) plus compute
    seconds: float
    #: wall-clock times its job started and finished in its process (the latency breakdown)
    job_started_at: float = 0.0
    job_finished_at: float = 0.0

    @property
    def insufficient(self) -> bool:
        return self.error is None and self.features is None


def compute_discoveries(conn: Connection, job: OnDemandJob) -> list[Outcome]:
    """One Outcome per discovery, in order; a failing wallet fails alone."""
    discoveries = job.discoveries
    if not discoveries:
        return []
    started_at, started = time.time(), time.perf_counter()
    latest = max(d.as_of for d in discoveries)
    span = job.window_days * DAY
    # Per wallet, its earliest discovery: a checkpoint after it is of no use to that one.
    needs: dict[str, tuple[int, int]] = {}
    for d in sorted(discoveries, key=lambda d: d.as_of, reverse=True):
        needs[d.wallet] = (d.as_of, d.as_of - span)
    checkpoints, fills = checkpointed_fills(conn, needs, latest)
    read_share = (time.perf_counter() - started) / len(discoveries)
    outcomes = [
        _compute(d, fills.get(d.wallet, []), checkpoints.get(d.wallet), job, read_share)
        for d in discoveries
    ]
    finished_at = time.time()
    return [replace(o, job_started_at=started_at, job_finished_at=finished_at) for o in outcomes]


def _compute(
    discovery: Discovery,
    fills: Sequence[Fill],
    checkpoint: Checkpoint | None,
    job: OnDemandJob,
    read_s: float,
) -> Outcome:
    started = time.perf_counter()
    days = job.window_days
    try:
        if checkpoint is None:
            windows, lifetime = wallet_features(fills, discovery.as_of, (days,))
        else:
            windows, lifetime, _ = wallet_features_since(
                checkpoint, fills, discovery.as_of, (days,)
            )
        window = windows[days]
        encoded = None
        if window.round_trips >= job.min_settled_trades:
            features = build_feature_set(
                discovery.wallet,
                days,
                discovery.as_of,
                "on_demand",
                window,
                lifetime,
                job.computed_at,
            )
            encoded = encode(features)
    except Exception as exc:  # a bug for this wallet must not fail the others
        return Outcome(0, None, f"{type(exc).__name__}: {exc}", read_s)
    return Outcome(window.round_trips, encoded, None, read_s + time.perf_counter() - started)
