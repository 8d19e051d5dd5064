"""Prometheus metrics of one worker, in a registry of its own (several apps can share a process)."""

from __future__ import annotations

from prometheus_client import Gauge

from agents.metrics import AgentMetrics

__all__ = ["Metrics"]


class Metrics(AgentMetrics):
    """Every metric the worker exports on /metrics: the agents' and the lag monitor's."""

    def __init__(self) -> None:
        super().__init__()
        registry = self.registry
        self.consumer_lag_messages = Gauge(
            "personas_consumer_lag_messages", "Messages not yet consumed, per group and partition.",
            ["group", "topic", "partition"], registry=registry,
        )  # fmt: skip
        self.consumer_lag_seconds = Gauge(
            "personas_consumer_lag_seconds",
            "Age of the oldest unconsumed message, per group and partition.",
            ["group", "topic", "partition"], registry=registry,
        )  # fmt: skip
