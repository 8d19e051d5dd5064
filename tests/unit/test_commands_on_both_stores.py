"""The operators' commands on either store: import, features, classify, rebuild and a backfill
give the same answers on PostgreSQL as on SQLite, from the same files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from agents.data.generate import DEFAULT_END
from agents.store import connect
from agents.store.schema import FEATURE_ROW_KEYS
from streams.cli import main
from tests.conftest import BACKENDS

AS_OF = str(DEFAULT_END)
# What may differ between two runs of the same command: when it ran and how long it took.
RUN_DEPENDENT = {"computed_at", "duration_s", "seconds", "wallets_per_s", "rows_per_s",
                 "read_compute_s", "write_s", "finished_at", "trades_per_s", "workers", "phases_s",
                 "s_per_day"}  # fmt: skip


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("data") / "trades.jsonl"
    assert main(["generate", "--wallets", "60", "--days", "90", "--seed", "8", "--out", str(out),
                 "--json"]) == 0  # fmt: skip
    return out


def steady(value: Any) -> Any:
    """`value` without what depends on the run rather than the data."""
    if isinstance(value, dict):
        return {k: steady(v) for k, v in value.items() if k not in RUN_DEPENDENT}
    if isinstance(value, list):
        return [steady(v) for v in value]
    return value


def journey(files: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[tuple[str, Any]]:
    """Each command of the journey with its JSON output (and exit status)."""
    wallet = json.loads(files.with_name("trades.labels.jsonl").read_text().split("\n")[0])
    markets = str(files.with_name("trades.markets.jsonl"))
    commands = [
        ["import", "trades", str(files), "--markets", markets],
        ["import", "trades", str(files), "--markets", markets],  # again: nothing new
        ["features", wallet["proxy_wallet"], "--as-of", AS_OF],
        ["classify", wallet["proxy_wallet"], "--as-of", AS_OF],
        ["rebuild", "--as-of", AS_OF, "--no-publish"],
        ["rebuild", "--from", "2026-10-29", "--to", "2026-10-30", "--no-publish", "--dry-run"],
        ["rebuild", "--from", "2026-10-29", "--to", "2026-10-30", "--no-publish"],
        ["rebuild", "--from", "2026-10-29", "--to", "2026-10-30", "--no-publish"],  # resumed
    ]
    capsys.readouterr()
    for argv in commands:
        code = main([*argv, "--json"])
        out = capsys.readouterr().out
        yield " ".join(argv[:2]), (code, [steady(json.loads(line)) for line in out.splitlines()])


def stored_features(url: str) -> list[tuple[Any, ...]]:
    columns = ", ".join(key for key in FEATURE_ROW_KEYS if key != "computed_at")
    with closing(connect(url)) as conn:
        rows = conn.execute(
            f"SELECT {columns} FROM wallet_features"
            " ORDER BY proxy_wallet, feature_date, window_days"
        ).fetchall()
    return [tuple(row) for row in rows]


def test_every_command_answers_the_same_on_both_stores(
    files: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    from tests.postgres import create_database, drop_database

    answers: dict[str, list[tuple[str, Any]]] = {}
    features: dict[str, list[tuple[Any, ...]]] = {}
    postgres = create_database()
    request.addfinalizer(lambda: drop_database(postgres))
    for backend, url in zip(BACKENDS, (str(tmp_path / "personas.db"), postgres), strict=True):
        monkeypatch.setenv("PERSONAS_DB", url)
        monkeypatch.setenv("PERSONAS_WORKER__DATA_DIR", f'"{tmp_path / backend}"')
        answers[backend] = list(journey(files, capsys))
        features[backend] = stored_features(url)

    sqlite, postgresql = answers["sqlite"], answers["postgresql"]
    assert [code for _, (code, _) in sqlite] == [0] * len(sqlite)
    for (command, on_sqlite), (_, on_postgresql) in zip(sqlite, postgresql, strict=True):
        assert on_postgresql == on_sqlite, command
    imported, again = sqlite[0][1][1][0], sqlite[1][1][1][0]
    assert imported["trades"]["inserted"] > 0 and again["trades"]["inserted"] == 0
    backfill, resumed = sqlite[6][1][1][-1], sqlite[7][1][1][-1]
    assert backfill["rows_written"] > 0 and resumed["skipped"] == 2
    assert features["sqlite"] and features["postgresql"] == features["sqlite"]  # to the last bit


def test_an_unreachable_server_is_one_line_naming_it_without_its_password(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from streams.broker import free_port

    monkeypatch.setenv("PERSONAS_DB", f"postgresql://personas:s3cret@127.0.0.1:{free_port()}/x")
    code = main(["features", "0x" + "a" * 40, "--as-of", AS_OF])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err.startswith("personas features: cannot connect to PostgreSQL at postgresql://")
    assert "personas:***@127.0.0.1" in err and "s3cret" not in err and "\n" not in err
