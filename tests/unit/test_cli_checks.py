"""Bad input exits 2 naming the option; read commands neither create nor migrate a database."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from agents.store.dialect import SQLITE
from agents.store.schema import SCHEMA_VERSION, migration_statements
from streams.cli import main

WALLET = "0x" + "ab" * 20


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (("demo", "--days", "10"), "--days"),
        (("demo", "--wallets", "0"), "--wallets"),
        (("generate", "--wallets", "5", "--days", "59", "--out", "t.jsonl"), "--days"),
        (("generate", "--wallets", "-1", "--days", "90", "--out", "t.jsonl"), "--wallets"),
        (("broker", "--port", "65536"), "--port"),
        (("broker", "--port", "-1"), "--port"),
    ],
)
def test_an_option_out_of_range_exits_2_naming_it(
    db: Path, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], option: str
) -> None:
    code, err = run(capsys, *argv)
    assert code == 2
    assert f"personas {argv[0]}: {option}: " in err and "Traceback" not in err
    assert not db.exists()


@pytest.mark.parametrize("command", ["features", "classify"])
def test_a_read_command_refuses_an_older_database_and_leaves_it_as_it_is(
    db: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    with closing(sqlite3.connect(db)) as conn:
        conn.executescript(";".join(migration_statements(0, SQLITE)) + "; PRAGMA user_version = 1;")
    code, err = run(capsys, command, WALLET)
    assert code == 1
    assert f"schema version 1, older than this program's {SCHEMA_VERSION}" in err
    assert "`personas run`" in err
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1


@pytest.mark.parametrize("command", ["features", "classify", "rebuild"])
def test_without_a_database_a_command_says_how_to_get_one(
    db: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    code, err = run(capsys, command, *([WALLET] if command != "rebuild" else ["--no-publish"]))
    assert code == 1 and f"no database at {db}" in err
    assert not db.exists()
