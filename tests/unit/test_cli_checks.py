"""Bad input exits 2 naming the option; read commands neither create nor migrate a database."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from agents.store.dialect import SQLITE
from agents.store.schema import SCHEMA_VERSION, migration_statements
from streams.cli import main
from streams.cli.main import EXIT_BROKEN_PIPE

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


def test_a_reader_that_stops_early_ends_the_command_quietly() -> None:
    """`personas … | head`: no traceback, the status of a program killed by SIGPIPE."""
    chatty = (
        "import importlib, sys\n"
        "cli = importlib.import_module('streams.cli.main')\n"
        "def endless(args):\n"
        "    while True:\n"
        "        print('a line of output')\n"
        "cli._handler = lambda name: endless\n"
        "sys.exit(cli.main(['lag']))\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", chatty], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        assert process.stdout.readline() == b"a line of output\n"
        process.stdout.close()  # as `head -1` does once it has its line
        errors = process.stderr.read().decode()
        assert process.wait(timeout=30) == EXIT_BROKEN_PIPE == 141
    assert "Traceback" not in errors and "BrokenPipe" not in errors
