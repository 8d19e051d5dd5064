"""What the agents count: the Prometheus metrics of ingest, features, classifier and rebuild.

They live in the registry they are given: in a worker, the one of `streams.metrics.Metrics`,
which adds the lag monitor's, and to which the broker guard (`streams.offset_guard`) adds its
own; the README lists them all.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["ON_DEMAND_HOPS", "AgentMetrics"]

_FAST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)
# A hop of an on-demand discovery takes from under a millisecond to a few hundred under load.
_HOP_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1,
                0.15, 0.2, 0.3, 0.5, 1.0, 2.5)  # fmt: skip
#: The hops of a discovery from its publish to its committed classification, in order.
ON_DEMAND_HOPS = ("fetched", "queued", "computed", "published", "classifier_fetched", "committed")


class AgentMetrics:
    """The agents' counters, histograms and gauges, in a registry of their own by default."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry = registry if registry is not None else CollectorRegistry()
        self.on_demand_features = Counter(
            "personas_on_demand_features", "Discoveries handled by the feature agent, by outcome.",
            ["status"], registry=registry,
        )  # fmt: skip
        for status in ("success", "insufficient", "rejected", "error"):
            self.on_demand_features.labels(status)
        self.on_demand_duration = Histogram(
            "personas_on_demand_features_duration_seconds",
            "Time to read one wallet's trades and compute its features.",
            buckets=_FAST_BUCKETS, registry=registry,
        )  # fmt: skip
        # Where an on-demand discovery's latency goes (README, Performance): published → fetched by
        # the feature agent, queued for a feature process, computed there, its FeatureSet handed
        # to the producer, fetched by the classifier, committed in SQLite.
        self.on_demand_hops = Histogram(
            "personas_on_demand_hop_seconds",
            "Time a discovery spends in each hop from its publish to its committed classification.",
            ["hop"], buckets=_HOP_BUCKETS, registry=registry,
        )  # fmt: skip
        for hop in ON_DEMAND_HOPS:
            self.on_demand_hops.labels(hop)
        self.trades_ingested = Counter(
            "personas_trades_ingested", "Trades consumed by the ingest agent, by outcome.",
            ["result"], registry=registry,
        )  # fmt: skip
        self.classifier_batch_size = Histogram(
            "personas_classifier_batch_size", "FeatureSets per classifier transaction.",
            buckets=_BATCH_BUCKETS, registry=registry,
        )  # fmt: skip
        self.classifier_commit_duration = Histogram(
            "personas_classifier_commit_duration_seconds",
            "Time to write and commit one classifier batch to SQLite.",
            buckets=_FAST_BUCKETS, registry=registry,
        )  # fmt: skip
        self.classifications = Counter(
            "personas_classifications", "Classifications written, by status.",
            ["status"], registry=registry,
        )  # fmt: skip
        self.dead_letters = Counter(
            "personas_dead_letters", "Source messages dead-lettered (each once), by source topic.",
            ["topic"], registry=registry,
        )  # fmt: skip
        self.transient_retries = Counter(
            "personas_transient_retries", "Retries after a transient error, by operation.",
            ["operation"], registry=registry,
        )  # fmt: skip
        self.rebuild_duration = Gauge(
            "personas_rebuild_duration_seconds", "Duration of the last daily rebuild.",
            registry=registry,
        )  # fmt: skip
        self.rebuild_wallets = Gauge(
            "personas_rebuild_wallets", "Wallets in the last daily rebuild.", registry=registry
        )
        self.rebuild_rows = Gauge(
            "personas_rebuild_rows", "Feature rows written by the last daily rebuild.",
            registry=registry,
        )  # fmt: skip
        # Set by the worker when a daily rebuild succeeded (streams/app.py); the alert on a missed
        # rebuild compares it with the time (config/prometheus/alerts.yml).
        self.rebuild_last_success = Gauge(
            "personas_rebuild_last_success_timestamp_seconds",
            "Unix time the worker's last successful daily rebuild finished; 0 before its first.",
            registry=registry,
        )  # fmt: skip
        # A rebuild spread over the workers (agents/rebuild_jobs_agent.py): each worker sets these
        # from the store after each batch of jobs, so the freshest worker (max over workers)
        # tells the run's progress; the worker that records the last shard sets finished.
        self.rebuild_run_shards = Gauge(
            "personas_rebuild_run_shards",
            "Shards of the current or last rebuild run: done, and in total.",
            ["state"], registry=registry,
        )  # fmt: skip
        self.rebuild_run_wallets = Gauge(
            "personas_rebuild_run_wallets",
            "Wallets of the current or last rebuild run: done, and in total.",
            ["state"], registry=registry,
        )  # fmt: skip
        self.rebuild_run_started = Gauge(
            "personas_rebuild_run_started_timestamp_seconds",
            "Unix time the current or last rebuild run was started by the leader.",
            registry=registry,
        )  # fmt: skip
        self.rebuild_run_finished = Gauge(
            "personas_rebuild_run_finished_timestamp_seconds",
            "Unix time the current or last rebuild run's last shard was done; 0 while it runs.",
            registry=registry,
        )  # fmt: skip
        self.rebuild_shards_computed = Counter(
            "personas_rebuild_shards_computed",
            "Rebuild shards this worker computed, wrote and published.", registry=registry,
        )  # fmt: skip
        # The online/offline skew of the run so far (agents/compute/skew.py).
        self.rebuild_skew_wallets = Gauge(
            "personas_rebuild_skew_wallets",
            "Wallets discovered on the rebuilt day: compared with their on-demand row, "
            "differing, and with a changed classification.",
            ["state"], registry=registry,
        )  # fmt: skip
        self.rebuild_skew_feature_wallets = Gauge(
            "personas_rebuild_skew_feature_wallets",
            "Wallets whose on-demand value of a feature differs from its recomputation.",
            ["feature"], registry=registry,
        )  # fmt: skip
        for state in ("done", "total"):
            self.rebuild_run_shards.labels(state)
            self.rebuild_run_wallets.labels(state)
        for state in ("compared", "differing", "classification_changed"):
            self.rebuild_skew_wallets.labels(state)
