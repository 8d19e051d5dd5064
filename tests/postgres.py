"""PostgreSQL for the tests: the server they use, and a database of their own per test.

The server is `PERSONAS_TEST_POSTGRES` (a URL to a database the tests may create databases from),
else the local one at 127.0.0.1:5432. Where no server answers, the PostgreSQL tests skip, saying
so, except under CI=true, where an unreachable server fails the run: CI must run them.
"""

from __future__ import annotations

import os
import uuid
from functools import cache

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

__all__ = ["SERVER_URL", "create_database", "drop_database", "require_server"]

# Read at import, before any test cleans the environment of PERSONAS_* variables.
SERVER_URL = os.environ.get("PERSONAS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
# Every database a run creates starts with this and the run's id, so leftovers are recognisable.
PREFIX = "personas_test_"
RUN = uuid.uuid4().hex[:8]


@cache
def _server_error() -> str | None:
    try:
        with psycopg.connect(SERVER_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return None


def require_server() -> str:
    """The server's URL; skip the test when none answers, fail it under CI=true."""
    error = _server_error()
    if error is None:
        return SERVER_URL
    why = f"no PostgreSQL server answers at {SERVER_URL} ({error}); set PERSONAS_TEST_POSTGRES"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{why} (CI=true: the PostgreSQL tests must run)")
    pytest.skip(why)


def _admin() -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(require_server(), autocommit=True)


def create_database() -> str:
    """A new, empty database on the server; its URL."""
    name = f"{PREFIX}{RUN}_{uuid.uuid4().hex[:8]}"
    with _admin() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return _url_of(name)


def _url_of(name: str) -> str:
    """The server's URL with another database; a URL, since PERSONAS_DB tells the stores apart
    by its scheme."""
    params = conninfo_to_dict(SERVER_URL)
    password = f":{params['password']}" if params.get("password") else ""
    user, host = params.get("user") or "postgres", params.get("host") or "127.0.0.1"
    return f"postgresql://{user}{password}@{host}:{params.get('port') or 5432}/{name}"


def drop_database(url: str) -> None:
    """Drop the database at `url`, closing whatever still holds a connection to it."""
    name = str(conninfo_to_dict(url)["dbname"])
    with _admin() as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
