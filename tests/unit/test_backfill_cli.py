"""`personas rebuild --from D --to D`: validation, exit statuses, summary, --dry-run, --force."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import date
from pathlib import Path
from typing import Any

import orjson
import pytest

from agents.core.errors import BrokerError, InvalidMessage
from agents.store.dialect import SQLITE
from agents.store.schema import migration_statements
from streams.cli.main import main
from streams.cli.rebuild import backfill_range
from tests.unit.test_backfill import ACTIVE, DAYS, make_db, table, trades

NOW = 1_767_830_400.0  # 2026-01-08T00:00:00Z: the last day that has ended is Jan 7


@pytest.mark.parametrize(
    ("first", "last", "days"),
    [
        ("2026-01-01", "2026-01-06", (date(2026, 1, 1), date(2026, 1, 6))),
        ("2026-01-07", "2026-01-07", (date(2026, 1, 7), date(2026, 1, 7))),
        # a time means its UTC day; no zone means UTC
        ("2026-01-01T23:30:00", "2026-01-02T01:00:00+02:00", (date(2026, 1, 1), date(2026, 1, 1))),
        ("1767225600", "2026-01-03T00:00:00Z", (date(2026, 1, 1), date(2026, 1, 3))),
    ],
)
def test_backfill_range(first: str, last: str, days: tuple[date, date]) -> None:
    assert backfill_range(first, last, NOW) == days


@pytest.mark.parametrize(
    ("first", "last", "option", "reason"),
    [
        (None, "2026-01-06", "--from", "needs both --from and --to"),
        ("2026-01-01", None, "--to", "needs both --from and --to"),
        ("2026-01-05", "2026-01-04", "--to", "2026-01-04 is before --from 2026-01-05: the range"),
        ("2026-01-01", "2026-01-08", "--to", "2026-01-08 is today"),
        ("2026-01-01", "2026-02-01", "--to", "2026-02-01 is in the future"),
        ("2026-01-09", "2026-01-10", "--from", "2026-01-09 is in the future"),
        ("2026-13-01", "2026-01-10", "--from", "ISO-8601"),
        ("2026-01-01", "yesterday", "--to", "ISO-8601"),
    ],
)
def test_backfill_range_names_the_bad_option(
    first: str | None, last: str | None, option: str, reason: str
) -> None:
    with pytest.raises(InvalidMessage) as caught:
        backfill_range(first, last, NOW)
    assert caught.value.field == option and reason in str(caught.value)
    if "today" in reason or "future" in reason:
        assert "2026-01-07" in str(caught.value)  # the last day that can be backfilled


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = make_db(tmp_path / "personas.db", trades())
    monkeypatch.setenv("PERSONAS_DB", str(path))
    monkeypatch.setenv("PERSONAS_REBUILD__PARALLEL_ENABLED", "false")
    return path


def rebuild(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str]:
    status = main(["rebuild", *argv])
    out, err = capsys.readouterr()
    return status, orjson.loads(out) if "--json" in argv and out else out, err


RANGE = ("--from", "2026-01-01", "--to", "2026-01-06")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ((*RANGE, "--as-of", "2026-01-03"), "--as-of: not with --from/--to"),
        (("--from", "2026-01-06", "--to", "2026-01-01"), "--to: 2026-01-01 is before --from"),
        (("--from", "2026-01-01", "--to", "2099-01-01"), "--to: 2099-01-01 is in the future"),
        (("--from", "2026-01-01"), "--to: a backfill needs both --from and --to"),
        (("--dry-run",), "--dry-run: only for a backfill"),
        (("--force", "--as-of", "2026-01-03"), "--force: only for a backfill"),
    ],
)
def test_bad_usage_exits_2_naming_the_option(
    db: Path, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], message: str
) -> None:
    status, _, err = rebuild(capsys, *argv, "--no-publish")
    assert status == 2 and message in err
    assert table(db) == []


def test_a_backfill_prints_its_summary_and_a_rerun_skips_every_day(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, summary, _ = rebuild(capsys, *RANGE, "--no-publish", "--json")
    assert status == 0
    assert (summary["days"], summary["computed"], summary["skipped"]) == (6, 6, 0)
    assert summary["wallets"] == sum(ACTIVE) and summary["rows_written"] == 3 * sum(ACTIVE)
    assert [day["action"] for day in summary["per_day"]] == ["compute"] * 6
    assert summary["s_per_day"] > 0 and summary["published"] == 0
    rows = table(db)

    status, again, _ = rebuild(capsys, *RANGE, "--no-publish", "--json")
    assert status == 0 and (again["computed"], again["skipped"], again["rows_written"]) == (0, 6, 0)
    assert table(db) == rows
    status, forced, _ = rebuild(capsys, *RANGE, "--no-publish", "--json", "--force")
    assert status == 0 and forced["computed"] == 6 and forced["rows_written"] == len(rows)

    status, text, err = rebuild(
        capsys, "--from", "2026-01-05", "--to", "2026-01-07", "--no-publish"
    )
    assert status == 0
    assert "backfill 2026-01-05 … 2026-01-07 (3 days): 1 computed, 2 skipped (done)" in text
    assert "per day" in text and "days 1/1" in err  # the progress line


def test_a_dry_run_lists_the_days_and_writes_nothing(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert rebuild(capsys, "--from", "2026-01-01", "--to", "2026-01-02", "--no-publish")[0] == 0
    before = table(db), table(db, "rebuild_runs")
    status, plan, _ = rebuild(capsys, *RANGE, "--dry-run", "--json", "--no-publish")
    assert status == 0 and plan["dry_run"] is True
    assert [(d["feature_date"], d["wallets"], d["action"]) for d in plan["per_day"]] == [
        (day.isoformat(), n, "skip" if day.day <= 2 else "compute")
        for day, n in zip(DAYS, ACTIVE, strict=True)
    ]
    assert (plan["compute"], plan["skip"], plan["wallets"]) == (4, 2, sum(ACTIVE[2:]))
    # Publishing (and no broker needed to plan it): the days written unpublished get published.
    status, plan, _ = rebuild(capsys, *RANGE, "--dry-run", "--json")
    assert status == 0 and (plan["compute"], plan["publish"], plan["skip"]) == (4, 2, 0)
    status, forced, _ = rebuild(capsys, *RANGE, "--dry-run", "--json", "--force")
    assert forced["compute"] == 6
    status, text, _ = rebuild(capsys, *RANGE, "--dry-run")
    assert "2026-01-03    1767484799        3  compute" in text
    assert (table(db), table(db, "rebuild_runs")) == before


def test_a_dry_run_does_not_even_migrate_an_older_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "old.db"
    with closing(sqlite3.connect(path)) as conn:
        conn.executescript(";".join(migration_statements(0, SQLITE)) + "; PRAGMA user_version = 1;")
        conn.executemany("INSERT INTO trades VALUES (?, ?, ?, ?, ?, ?, ?)", trades())
        conn.commit()
    monkeypatch.setenv("PERSONAS_DB", str(path))
    status, plan, _ = rebuild(capsys, *RANGE, "--dry-run", "--json", "--no-publish")
    assert status == 0 and [d["wallets"] for d in plan["per_day"]] == ACTIVE
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1


def test_a_backfill_that_publishes_fails_before_computing_without_a_broker(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = rebuild(capsys, *RANGE)
    assert status == BrokerError.exit_code == 1 and "broker" in err.lower()
    assert table(db) == [] and table(db, "rebuild_runs") == []
