"""A backfill that publishes: each day's 30-day FeatureSets reach `wallet-features`, in order."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from config.settings import Settings
from streams.cli import main
from streams.topics import ensure_topics
from tests.integration.kafka import read_topic
from tests.unit.test_backfill import ACTIVE, make_db, table, trades

pytestmark = pytest.mark.slow


@pytest.fixture
def env(bootstrap: str, settings: Settings, cli_env: None) -> Settings:
    asyncio.run(ensure_topics(bootstrap, settings))
    make_db(settings.database.path, trades())
    return settings


def test_each_day_is_published_once(
    bootstrap: str, env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rebuild", "--from", "2026-01-01", "--to", "2026-01-04", "--json"]) == 0
    summary = orjson.loads(capsys.readouterr().out)
    assert summary["computed"] == 4 and summary["published"] == sum(ACTIVE[:4])
    records = read_topic(bootstrap, env.topics.features, sum(ACTIVE[:4]))
    values = [orjson.loads(record.value) for record in records]
    assert len(values) == sum(ACTIVE[:4])
    assert [v["feature_date"] for v in values] == sorted(v["feature_date"] for v in values)
    assert {(v["source"], v["window_days"]) for v in values} == {("batch", 30)}
    assert all(
        record.key == v["proxy_wallet"].encode() for record, v in zip(records, values, strict=True)
    )
    assert None not in {row[5] for row in table(env.database.path, "rebuild_runs")}

    # Written without publishing, then published (from the store) by the next run that does.
    assert main(["rebuild", "--from", "2026-01-05", "--to", "2026-01-06", "--no-publish"]) == 0
    assert main(["rebuild", "--from", "2026-01-01", "--to", "2026-01-06", "--json"]) == 0
    summary = orjson.loads(capsys.readouterr().out.splitlines()[-1])
    assert (summary["skipped"], summary["published_only"], summary["computed"]) == (4, 2, 0)
    assert summary["published"] == sum(ACTIVE[4:])
    records = read_topic(bootstrap, env.topics.features, sum(ACTIVE) + 1, timeout=5)
    assert len(records) == sum(ACTIVE)
