"""Classifier: the single writer of stream features and classifications (SPEC §6, §8).

`wallet-features` has one partition, so one member of the classifier group sees every FeatureSet
in order. Each batch is classified by the pure rules and stored in one transaction, committed
before the batch's offsets.

Batches follow the load (`Pending`): the consumer stores its batches one after another, and the
batches fetched while one is being stored wait for it; when their turn comes, the first of them
stores as many of them as `classifier.batch_max` allows in one transaction. An idle classifier
stores each FeatureSet as soon as it is fetched; a busy one, in transactions as large as the
backlog (up to `batch_max`), so a burst costs a few commits, not one per fetch.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field

from agents.context import AgentContext, Message, Rejected
from agents.core.codec import decode
from agents.core.records import FeatureSet, feature_set_metrics
from agents.core.rules import classify_metrics
from agents.store import Classified

__all__ = ["STAGE", "Pending", "handle"]

STAGE = "classifier"


@dataclass
class _Batch:
    items: list[Classified]
    fetched_at: float
    stored: bool = False


@dataclass
class Pending:
    """The classified batches not stored yet, in fetch order (one per classifier consumer)."""

    batches: list[_Batch] = field(default_factory=list)


def handle(
    batch: Sequence[Message], context: AgentContext, pending: Pending | None = None
) -> Awaitable[None]:
    """Classify now, beside the batch in flight; the awaitable stores the results (with those of
    the batches fetched after it that are waiting too, if given the consumer's `pending`)."""
    settings = context.settings
    fetched_at = context.clock()
    rules, window_days = settings.rules, settings.features.window_days
    known_bots = frozenset(rules.known_bots)
    items: list[Classified] = []
    rejected: list[Rejected] = []
    for message in batch:
        try:
            features = decode(FeatureSet, message.value)
            if features.window_days != window_days:
                raise ValueError(
                    f"window_days: classification needs the {window_days}-day window "
                    f"(got {features.window_days})"
                )
            metrics = feature_set_metrics(features)
            result = classify_metrics(features.proxy_wallet, metrics, rules, known_bots)
        except Exception as exc:  # one bad message must not stop the others
            rejected.append((message, exc))
            continue
        items.append(Classified(features, result))
    waiting = pending if pending is not None else Pending()
    this = _Batch(items, fetched_at)
    waiting.batches.append(this)
    return _store(this, waiting, rejected, context)


async def _store(
    this: _Batch, pending: Pending, rejected: list[Rejected], context: AgentContext
) -> None:
    if not this.stored:  # else an earlier batch's transaction stored it
        await _store_waiting(pending, context)
    await context.dead_letter(rejected)


def _oldest_fitting(pending: Pending, limit: int) -> list[_Batch]:
    """Take the oldest waiting batches that fit in `limit` FeatureSets (the first one always)."""
    size = taken = 0
    for batch in pending.batches:
        if taken and size + len(batch.items) > limit:
            break
        size += len(batch.items)
        taken += 1
    batches, pending.batches = pending.batches[:taken], pending.batches[taken:]
    return batches


async def _store_waiting(pending: Pending, context: AgentContext) -> None:
    """Store the oldest waiting batches in one transaction, in fetch order; the others are left
    for their own turn."""
    batches = _oldest_fitting(pending, context.settings.classifier.batch_max)
    items = [item for batch in batches for item in batch.items]
    metrics = context.metrics
    started = time.perf_counter()
    await context.retry(STAGE, context.store.write_classified, items, context.clock())
    metrics.classifier_commit_duration.observe(time.perf_counter() - started)
    now = context.clock()
    committed = metrics.on_demand_hops.labels("committed")
    for batch in batches:
        batch.stored = True
        since_fetch = now - batch.fetched_at
        for item in batch.items:
            if item.features.source == "on_demand":
                committed.observe(since_fetch)
    metrics.classifier_batch_size.observe(len(items))
    for item in items:
        metrics.classifications.labels(item.result.status).inc()
