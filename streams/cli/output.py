"""What every command shares: JSON on stdout, tables, arguments that name the option."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agents.core.codec import dumps
from agents.core.errors import InvalidMessage, WalletError
from agents.core.records import normalise_wallet, parse_timestamp
from agents.data.generate.options import GenerateOptions, InvalidOption
from agents.store import Connection, open_reader
from agents.store.schema import SCHEMA_VERSION
from config.settings import Settings

__all__ = [
    "emit_json",
    "generate_options",
    "input_file",
    "open_existing",
    "print_table",
    "require_database",
    "timestamp_arg",
    "utc_time",
    "wallet_arg",
]


def utc_time(at: float | None, missing: str = "-") -> str:
    """A timestamp as commands print it, ISO-8601 in UTC to the second; `missing` for None."""
    if at is None:
        return missing
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")


def emit_json(value: Any) -> None:
    """Write `value` as one line of JSON on stdout (every `--json` output)."""
    sys.stdout.buffer.write(dumps(value) + b"\n")
    sys.stdout.flush()


def print_table(
    columns: Sequence[str], rows: Iterable[Sequence[object]], *, left: Sequence[str] = ()
) -> None:
    """Print `rows` under `columns`, indented by two; numbers right-aligned, `left` columns not."""
    cells = [[str(value) for value in row] for row in rows]
    widths = [max([len(name), *(len(row[i]) for row in cells)]) for i, name in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        return (
            "  "
            + "  ".join(
                value.ljust(width) if name in left else value.rjust(width)
                for name, value, width in zip(columns, values, widths, strict=True)
            ).rstrip()
        )

    print(line(columns))
    for row in cells:
        print(line(row))


def timestamp_arg(text: str | None, name: str, default: int | None = None) -> int:
    """Parse a command-line time (epoch or ISO-8601 UTC); bad input exits 2 naming the option."""
    if text is None:
        return default if default is not None else int(time.time())
    try:
        return parse_timestamp(text)
    except ValueError as exc:
        raise InvalidMessage(name, f"{exc} (got {text!r})") from None


def wallet_arg(text: str) -> str:
    """A wallet given on the command line, normalised; bad input exits 2."""
    try:
        return normalise_wallet(text)
    except ValueError as exc:
        raise InvalidMessage("WALLET", f"{exc} (got {text!r})") from None


def generate_options(wallets: int, days: int, seed: int, end: int) -> GenerateOptions:
    """GenerateOptions from the command line; an option out of range exits 2 naming it."""
    try:
        return GenerateOptions(wallets=wallets, days=days, seed=seed, end=end)
    except InvalidOption as exc:
        raise InvalidMessage(f"--{exc.option}", exc.reason) from None


def require_database(settings: Settings) -> str:
    """The configured database (a SQLite path that must exist, or a PostgreSQL URL)."""
    database = settings.database
    if not database.is_postgres and not database.path.exists():
        raise WalletError(
            f"no database at {database.path}: load trades with `personas import trades F`"
        )
    return database.url


def open_existing(settings: Settings) -> Connection:
    """A read-only connection to an existing database at this program's schema version.

    Read commands neither create a database nor migrate one: an older schema is an error that
    says which commands migrate it.
    """
    conn = open_reader(require_database(settings), settings.database.busy_timeout_ms)
    try:
        version = conn.schema_version()
    except BaseException:
        conn.close()
        raise
    if version == SCHEMA_VERSION:
        return conn
    conn.close()
    found = f"{settings.database.location} has schema version {version}"
    if version < SCHEMA_VERSION:
        raise WalletError(
            f"{found}, older than this program's {SCHEMA_VERSION}: `personas run` or "
            "`personas import trades F` migrates it"
        )
    raise WalletError(f"{found}, newer than this program's {SCHEMA_VERSION}")


def input_file(path: Path, name: str) -> Path:
    """A file to read, given as `name`; bad input exits 2 saying what is wrong with it."""
    if path.is_dir():
        raise InvalidMessage(name, f"{path} is a directory; give a JSONL or CSV file")
    if not path.exists():
        raise InvalidMessage(name, f"no such file: {path}")
    if not os.access(path, os.R_OK):
        raise InvalidMessage(name, f"{path} is not readable")
    return path
