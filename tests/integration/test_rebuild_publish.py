"""`personas rebuild` that publishes: each wallet's 30-day FeatureSet sent once, the day marked."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from agents.compute.backfill import day_as_of
from config.settings import Settings
from streams.cli import main
from streams.topics import ensure_topics
from tests.integration.kafka import read_topic
from tests.unit.test_backfill import ACTIVE, DAYS, make_db, table, trades

pytestmark = pytest.mark.slow


def test_one_day_is_published_then_marked_published(
    bootstrap: str, settings: Settings, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(ensure_topics(bootstrap, settings))
    make_db(settings.database.path, trades())
    as_of = day_as_of(DAYS[-1])

    assert main(["rebuild", "--as-of", str(as_of), "--json"]) == 0

    summary = orjson.loads(capsys.readouterr().out)
    assert summary["wallets"] == summary["published"] == ACTIVE[-1]
    records = read_topic(bootstrap, settings.topics.features, ACTIVE[-1] + 1, timeout=5)
    values = [orjson.loads(record.value) for record in records]
    assert len(values) == ACTIVE[-1]
    assert {(v["source"], v["window_days"], v["as_of"]) for v in values} == {("batch", 30, as_of)}
    [run] = table(settings.database.path, "rebuild_runs")
    assert run[:2] == (DAYS[-1].isoformat(), as_of) and run[5] is not None  # published_at
