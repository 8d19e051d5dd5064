"""The metrics the shipped alerts read: each group's status as a number, dead-letter counters at 0
from the start, the worker's start time and the last successful daily rebuild."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import generate_latest

from agents import rebuild_jobs_agent
from config.settings import Settings
from streams.app import build_app
from streams.health import Health
from streams.lag_monitor import record_lag
from streams.metrics import GROUP_STATUS_VALUES, Metrics
from streams.ops.lag import SEVERITY, GroupLag, PartitionLag, Status


def _group(name: str, status: Status) -> GroupLag:
    part = PartitionLag("wallet-discovered", 0, 5, 0, 9, 4, 75.0, status)
    return GroupLag(name, "Stable", 1, status, (part,), 0.0)


def test_the_status_encoding_is_the_order_of_severity() -> None:
    # The alert rules and the dashboard's value mappings depend on these very numbers.
    assert GROUP_STATUS_VALUES == {"OK": 0, "WARN": 1, "STALL": 2, "STOP": 3, "ERR": 4}
    assert GROUP_STATUS_VALUES == SEVERITY


@pytest.mark.parametrize("status", list(GROUP_STATUS_VALUES))
def test_each_sample_sets_the_group_status(status: Status) -> None:
    metrics = Metrics()
    record_lag([_group("personas-features", "OK"), _group("personas-ingest", status)],
               metrics, Health())  # fmt: skip
    gauge = metrics.consumer_group_status
    assert gauge.labels("personas-ingest")._value.get() == GROUP_STATUS_VALUES[status]
    assert gauge.labels("personas-features")._value.get() == 0
    record_lag([_group("personas-ingest", "OK")], metrics, Health())
    assert gauge.labels("personas-ingest")._value.get() == 0


def test_dead_letter_counters_are_exported_at_zero_before_the_first_letter(
    settings: Settings,
) -> None:
    metrics = Metrics()
    metrics.expect_dead_letters(settings.topics.partitions())
    text = generate_latest(metrics.registry).decode()
    for topic in settings.topics.partitions():
        assert f'personas_dead_letters_total{{topic="{topic}"}} 0.0' in text


def test_the_worker_start_is_exported_and_no_rebuild_yet() -> None:
    before = time.time()
    metrics = Metrics()
    assert before - 1 <= metrics.worker_start_time._value.get() <= time.time()
    assert metrics.rebuild_last_success._value.get() == 0


def _daily_rebuild(settings: Settings) -> tuple[Callable[[], Any], Any]:
    """The body of the app's daily-rebuild crontab (unwrapped from Faust's task), its runtime."""
    app = build_app(settings, "127.0.0.1:9")
    [task] = [task for task in app._app_tasks if inspect.unwrap(task).__name__ == "daily_rebuild"]
    return inspect.unwrap(task), app.personas_runtime  # type: ignore[attr-defined]


@pytest.mark.parametrize("outcome", ["starts", "raises"])
def test_the_daily_rebuild_starts_a_run_and_reports_a_failure_to_start(
    settings: Settings,
    loop: asyncio.AbstractEventLoop,
    monkeypatch: pytest.MonkeyPatch,
    outcome: str,
) -> None:
    daily_rebuild, runtime = _daily_rebuild(settings)
    now = 1_767_225_600.0
    started: list[int] = []

    async def context() -> object:
        return SimpleNamespace(clock=lambda: now, sender=object())

    async def job_weights(bootstrap: str, settings: Settings) -> list[float]:
        return [1.0] * 4

    async def start_run(
        settings: Settings, sender: object, as_of: int, *_: object, weights: list[float]
    ) -> None:
        if outcome == "raises":
            raise RuntimeError("disk full")
        started.append(as_of)

    monkeypatch.setattr(runtime, "context", context)
    monkeypatch.setattr("streams.app.job_weights", job_weights)
    monkeypatch.setattr(rebuild_jobs_agent, "start_run", start_run)
    loop.run_until_complete(daily_rebuild())
    problems = runtime.health.report()["problems"]  # the app never started: it is "starting"
    # Whichever worker records the run's last shard sets the success time, not the leader here
    # (tests/agents/test_rebuild_jobs_agent.py).
    assert runtime.metrics.rebuild_last_success._value.get() == 0
    if outcome == "starts":
        assert started == [int(now)]
        assert "rebuild" not in problems
    else:
        assert "could not start" in problems["rebuild"]["reason"]
