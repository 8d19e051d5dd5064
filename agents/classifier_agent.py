"""Classifier agent: the single writer of stream features and classifications (SPEC §6, §8).

`wallet-features` has one partition, so one instance of this agent sees every FeatureSet in order.
Each batch is classified by the pure rules and stored in one transaction, committed before the
batch's offsets are acknowledged.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import faust

from agents.personas import classify
from agents.store import Classified
from streams.codec import decode
from streams.records import FeatureSet, split_feature_set
from streams.runtime import Runtime, acknowledge, event_batches

if TYPE_CHECKING:
    from streams.app import AppTopics

__all__ = ["register"]


def register(app: faust.App, runtime: Runtime, topics: AppTopics) -> None:
    settings = runtime.settings
    config, metrics = settings.classifier, runtime.metrics
    rules = settings.rules
    known_bots = frozenset(rules.known_bots)
    classified_window = settings.features.window_days

    @app.agent(topics.features, name="classifier")
    async def classifier(stream: faust.StreamT[bytes]) -> None:
        async for events in event_batches(stream, config.batch_max, config.batch_within_s):
            items, rejected = [], []
            for event in events:
                try:
                    features = decode(FeatureSet, event.value)
                    if features.window_days != classified_window:
                        raise ValueError(
                            f"window_days: classification needs the {classified_window}-day "
                            f"window (got {features.window_days})"
                        )
                    window, lifetime = split_feature_set(features)
                    result = classify(features.proxy_wallet, window, lifetime, rules, known_bots)
                except Exception as exc:  # one bad message must not stop the others
                    rejected.append((event, exc))
                    continue
                items.append(Classified(features, result))
            store = await runtime.store()
            started = time.perf_counter()
            await runtime.retry("classifier", store.write_classified, items)
            metrics.classifier_commit_duration.observe(time.perf_counter() - started)
            metrics.classifier_batch_size.observe(len(items))
            for item in items:
                metrics.classifications.labels(item.result.status).inc()
            await runtime.dead_letter_all(rejected)
            await acknowledge(stream, events)
            runtime.health.progressed("classifier")
