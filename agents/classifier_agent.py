"""Classifier: the single writer of stream features and classifications (SPEC §6, §8).

`wallet-features` has one partition, so one member of the classifier group sees every FeatureSet
in order. Each batch is classified by the pure rules and stored in one transaction, committed
before the batch's offsets.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Sequence

from agents.context import AgentContext, Message, Rejected
from agents.core.codec import decode
from agents.core.records import FeatureSet, split_feature_set
from agents.core.rules import classify
from agents.store import Classified

__all__ = ["STAGE", "handle"]

STAGE = "classifier"


def handle(batch: Sequence[Message], context: AgentContext) -> Awaitable[None]:
    """Classify now, beside the batch in flight; the awaitable stores the results."""
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
            window, lifetime = split_feature_set(features)
            result = classify(features.proxy_wallet, window, lifetime, rules, known_bots)
        except Exception as exc:  # one bad message must not stop the others
            rejected.append((message, exc))
            continue
        items.append(Classified(features, result))
    return _store(items, rejected, context, fetched_at)


async def _store(
    items: list[Classified], rejected: list[Rejected], context: AgentContext, fetched_at: float
) -> None:
    metrics = context.metrics
    started = time.perf_counter()
    await context.retry(STAGE, context.store.write_classified, items, context.clock())
    metrics.classifier_commit_duration.observe(time.perf_counter() - started)
    committed = metrics.on_demand_hops.labels("committed")
    since_fetch = context.clock() - fetched_at
    for item in items:
        if item.features.source == "on_demand":
            committed.observe(since_fetch)
    metrics.classifier_batch_size.observe(len(items))
    for item in items:
        metrics.classifications.labels(item.result.status).inc()
    await context.dead_letter(rejected)
