"""The metrics the shipped alerts read: each group's status as a number, dead-letter counters at 0
from the start, the worker's start time and the last successful daily rebuild."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import generate_latest

from agents import rebuild_agent
from agents.compute.rebuild import RebuildResult
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


@pytest.mark.parametrize("outcome", ["succeeds", "raises", "wallets failed"])
def test_the_daily_rebuild_sets_its_success_time_only_when_it_succeeded(
    settings: Settings,
    loop: asyncio.AbstractEventLoop,
    monkeypatch: pytest.MonkeyPatch,
    outcome: str,
) -> None:
    daily_rebuild, runtime = _daily_rebuild(settings)

    async def context() -> object:
        return object()

    async def rebuild(context: object) -> RebuildResult:
        if outcome == "raises":
            raise RuntimeError("disk full")
        result = RebuildResult(1_767_225_600, "2026-01-01", wallets=3)
        if outcome == "wallets failed":  # written, but the day is not recorded: not a success
            result.failed_wallets = ["0x" + "a" * 40, "0x" + "b" * 40]
        return result

    monkeypatch.setattr(runtime, "context", context)
    monkeypatch.setattr(rebuild_agent, "daily_rebuild", rebuild)
    before = time.time()
    loop.run_until_complete(daily_rebuild())
    value = runtime.metrics.rebuild_last_success._value.get()
    problems = runtime.health.report()["problems"]  # the app never started: it is "starting"
    if outcome == "succeeds":
        assert before <= value <= time.time()
        assert "rebuild" not in problems
    else:
        assert value == 0
        assert "rebuild" in problems
    if outcome == "wallets failed":
        reason = runtime.health.report()["problems"]["rebuild"]["reason"]
        assert "2 wallets failed" in reason
