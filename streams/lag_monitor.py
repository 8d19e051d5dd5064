"""A periodic lag check inside the worker: fills the lag gauges and flags stalled groups in Health.

Independent of Faust: it measures from the outside exactly what `personas lag` shows (same code,
same status rule, see `streams.ops.lag`), so /metrics, /health and the command line agree. STOP
is judged by the members' sessions, as there: a worker that exited is STOP within its session
timeout, also when the broker still lists it. Each group's status is also a gauge
(`personas_consumer_group_status`, encoded by `streams.metrics.GROUP_STATUS_VALUES`), which the
shipped alert rules (config/prometheus/alerts.yml) read.
"""

from __future__ import annotations

import asyncio
import logging

from config.settings import Settings
from streams.health import Health
from streams.metrics import GROUP_STATUS_VALUES, Metrics
from streams.ops.lag import GroupLag, collect_lag
from streams.topics import worker_groups

__all__ = ["monitor_lag", "record_lag"]

log = logging.getLogger("personas.lag")

# Statuses that make /health unhealthy, with what each tells the operator; WARN is only reported.
MEANING = {
    "STALL": "a live member is not moving the committed offset",
    "STOP": "no live member: nobody is consuming",
    "ERR": "committed offset beyond the log end: the log was lost, replay the group",
}
_UNHEALTHY = frozenset(MEANING)


def record_lag(groups: list[GroupLag], metrics: Metrics, health: Health) -> None:
    """Publish one sample: the lag and status gauges, a Health problem per unhealthy group."""
    for group in groups:
        metrics.consumer_group_status.labels(group.group).set(GROUP_STATUS_VALUES[group.status])
        for part in group.partitions:
            labels = (group.group, part.topic, str(part.partition))
            metrics.consumer_lag_messages.labels(*labels).set(part.lag_messages)
            metrics.consumer_lag_seconds.labels(*labels).set(part.lag_seconds)
        component = f"lag:{group.group}"
        if group.status in _UNHEALTHY:
            worst = max(group.partitions, key=lambda p: p.lag_seconds, default=None)
            detail = "" if worst is None else (
                f" ({worst.topic}[{worst.partition}] committed {worst.committed}, "
                f"end {worst.log_end}, oldest unconsumed {worst.lag_seconds:.0f}s)"
            )  # fmt: skip
            health.problem(
                component, f"consumer group {group.status}, {MEANING[group.status]}{detail}"
            )
        else:
            health.clear(component)


async def monitor_lag(
    bootstrap: str, settings: Settings, metrics: Metrics, health: Health, interval: float
) -> None:
    """Sample the worker's consumer groups (one per agent) every `interval` s.

    A failed sample (broker unreachable) is logged and marked in Health; the loop keeps going.
    """
    previous: dict[str, GroupLag] = {}
    own = worker_groups(settings)
    # The dead-letter alert needs every topic's counter from the start (see the method).
    metrics.expect_dead_letters(settings.topics.partitions())
    while True:
        try:
            groups = await collect_lag(bootstrap, settings, own, previous)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("lag check failed: %s", exc)
            health.problem("lag-monitor", f"cannot measure consumer lag: {exc}")
        else:
            health.clear("lag-monitor")
            record_lag(groups, metrics, health)
            for sample in groups:
                before = previous.get(sample.group)
                changed = before is None or before.status != sample.status
                if sample.status != "OK" and changed:
                    log.warning("consumer group %s is %s: %d messages, %.0fs behind",
                                sample.group, sample.status, sample.lag_messages,
                                sample.lag_seconds)  # fmt: skip
            previous = {sample.group: sample for sample in groups}
        await asyncio.sleep(interval)
