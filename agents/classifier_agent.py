"""Classifier agent: the single writer of stream features and classifications (SPEC §6, §8).

`wallet-features` has one partition, so one member of the classifier group sees every FeatureSet
in order. Each batch is classified by the pure rules and stored in one transaction, committed
before the batch's offsets.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING

import faust

from agents.personas import classify
from agents.store import Classified
from streams.codec import decode
from streams.consumer import register_consumer
from streams.records import FeatureSet, split_feature_set
from streams.runtime import Record, Runtime

if TYPE_CHECKING:
    from streams.app import AppTopics

__all__ = ["register"]


def register(app: faust.App, runtime: Runtime, topics: AppTopics, bootstrap: str) -> None:
    settings = runtime.settings
    config, metrics = settings.classifier, runtime.metrics
    rules = settings.rules
    known_bots = frozenset(rules.known_bots)
    classified_window = settings.features.window_days

    def handle(records: list[Record]) -> Awaitable[None]:
        # Classified now, while the previous batch is still being written.
        items: list[Classified] = []
        rejected: list[tuple[Record, BaseException]] = []
        for record in records:
            try:
                features = decode(FeatureSet, record.value)
                if features.window_days != classified_window:
                    raise ValueError(
                        f"window_days: classification needs the {classified_window}-day "
                        f"window (got {features.window_days})"
                    )
                window, lifetime = split_feature_set(features)
                result = classify(features.proxy_wallet, window, lifetime, rules, known_bots)
            except Exception as exc:  # one bad message must not stop the others
                rejected.append((record, exc))
                continue
            items.append(Classified(features, result))
        return write(items, rejected)

    async def write(items: list[Classified], rejected: list[tuple[Record, BaseException]]) -> None:
        store = await runtime.store()
        started = time.perf_counter()
        await runtime.retry("classifier", store.write_classified, items)
        metrics.classifier_commit_duration.observe(time.perf_counter() - started)
        metrics.classifier_batch_size.observe(len(items))
        for item in items:
            metrics.classifications.labels(item.result.status).inc()
        await runtime.dead_letter_all(rejected)

    register_consumer(app, runtime, "classifier", topics.features, bootstrap, handle, config)
