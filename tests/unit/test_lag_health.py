"""The worker's lag monitor: an unhealthy status is a /health problem saying what it means."""

from __future__ import annotations

from streams.health import Health
from streams.lag_monitor import record_lag
from streams.metrics import Metrics
from streams.ops.lag import GroupLag, PartitionLag, Status


def _group(status: Status, members: int) -> GroupLag:
    part = PartitionLag("wallet-discovered", 2, 5, 0, 9, 4, 75.0, status)
    return GroupLag("personas-features", "Empty" if not members else "Stable", members, status,
                    (part,), 0.0)  # fmt: skip


def test_stop_is_a_problem_naming_the_missing_consumer_and_clears_once_consumed() -> None:
    metrics, health = Metrics(), Health()
    record_lag([_group("STOP", 0)], metrics, health)
    reason = health.report()["problems"]["lag:personas-features"]["reason"]
    assert reason == (
        "consumer group STOP, no live member: nobody is consuming (wallet-discovered[2] "
        "committed 5, end 9, oldest unconsumed 75s)"
    )
    assert (
        metrics.consumer_lag_messages.labels(
            "personas-features", "wallet-discovered", "2"
        )._value.get()
        == 4
    )
    record_lag([_group("OK", 1)], metrics, health)
    assert health.healthy


def test_warn_is_only_reported() -> None:
    health = Health()
    record_lag([_group("WARN", 1)], Metrics(), health)
    assert health.healthy


def test_a_worker_is_healthy_only_once_everything_it_starts_is_ready() -> None:
    health = Health()
    health.starting("store")
    health.starting("features consumer group")
    health.ready("store")
    assert not health.healthy
    assert health.report()["starting"] == ["features consumer group"]
    health.ready("features consumer group")
    assert health.healthy and health.report()["starting"] == []
