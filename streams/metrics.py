"""Prometheus metrics of one worker, in a registry of its own (several apps can share a process)."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Gauge

from agents.metrics import AgentMetrics
from streams.ops.lag import SEVERITY

__all__ = ["GROUP_STATUS_VALUES", "Metrics"]

#: `personas_consumer_group_status` encodes a group's status as its severity, the order
#: `streams.ops.lag` ranks statuses by. One number per group, so an alert is a threshold
#: (`>= 2`: STALL, STOP or ERR, what makes /health unhealthy) and `max` over workers that sample
#: the same group is the worst status any of them saw.
GROUP_STATUS_VALUES: dict[str, int] = SEVERITY


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
        self.consumer_group_status = Gauge(
            "personas_consumer_group_status",
            "Status of the group at the last lag sample: 0 OK, 1 WARN, 2 STALL, 3 STOP, 4 ERR.",
            ["group"], registry=registry,
        )  # fmt: skip
        # The daily-rebuild alert's grace period: a worker that has not rebuilt yet is judged
        # from its start, not from 1970.
        self.worker_start_time = Gauge(
            "personas_worker_start_time_seconds", "Unix time the worker started.",
            registry=registry,
        )  # fmt: skip
        self.worker_start_time.set_to_current_time()

    def expect_dead_letters(self, topics: Iterable[str]) -> None:
        """Export `personas_dead_letters_total` at 0 for each source topic.

        A labelled counter appears only at its first increment, and `rate()` cannot see the step
        from nothing to 1: the first dead letter of a topic would never fire the alert.
        """
        for topic in topics:
            self.dead_letters.labels(topic)
