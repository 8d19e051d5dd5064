"""PostgreSQL sessions of a hung host: the server ends one idle inside a transaction, its row
locks go, the worker that took over writes the same rows, and the woken host's error is one the
retry policy runs its batch again after. The rebuild's Arrow reads run in sessions set up alike,
and a read after a lost session opens a new one."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import adbc_driver_manager.dbapi
import psycopg
import pytest

from agents.retry import is_transient
from agents.store import Connection, connect, insert_trade_rows, migrate, postgres, transaction
from agents.store.arrow import ArrowStore
from agents.store.postgres import IDLE_IN_TRANSACTION_TIMEOUT
from agents.store.tables import TRADES

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)

TRADE = ("t1", "0x" + "1" * 40, "m1", "BUY", 10.0, 0.5, 1_767_225_600)


@pytest.fixture
def conn(database_url: str) -> Iterator[Connection]:
    with closing(connect(database_url)) as connection:
        migrate(connection)
        yield connection


def test_every_session_bounds_its_idle_time_inside_a_transaction(conn: Connection) -> None:
    row = conn.execute("SHOW idle_in_transaction_session_timeout").fetchone()
    assert row is not None and row[0] == IDLE_IN_TRANSACTION_TIMEOUT


def test_a_hung_session_s_row_locks_are_released(conn: Connection, database_url: str) -> None:
    conn.execute("SET idle_in_transaction_session_timeout = 200")  # ms: the test's hung host
    conn.begin()
    conn.bulk_upsert(TRADES, [TRADE])  # holds the row's lock, then hangs (never commits)
    written: list[int] = []
    with closing(connect(database_url)) as other:
        taker = threading.Thread(target=lambda: written.append(insert_trade_rows(other, [TRADE])))
        taker.start()
        taker.join(timeout=30)
        assert not taker.is_alive(), "the other session still waits for the hung one's lock"
    assert written == [1]  # the hung transaction was rolled back: the row is the other's
    with pytest.raises(Exception) as woken:
        conn.end(commit=True)
    assert is_transient(woken.value), repr(woken.value)
    with transaction(conn):  # the next transaction runs on a new connection
        assert conn.execute("SELECT COUNT(*) FROM trades").fetchone() == (1,)


def test_a_session_that_fails_its_settings_is_closed(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[psycopg.Connection[Any]] = []
    real_connect = psycopg.connect

    def recorded(*args: Any, **kwargs: Any) -> psycopg.Connection[Any]:
        opened.append(real_connect(*args, **kwargs))
        return opened[-1]

    monkeypatch.setattr(psycopg, "connect", recorded)
    monkeypatch.setattr(postgres, "SESSION_SETTINGS", ("SET no_such_setting_here = 1",))
    with pytest.raises(psycopg.Error):
        connect(database_url)
    assert len(opened) == 1 and opened[0].closed


def _session(store: ArrowStore) -> tuple[Any, ...]:
    with store.snapshot() as read:
        [row] = read.rows(
            "SELECT pg_backend_pid(), current_setting('jit'), "
            "current_setting('idle_in_transaction_session_timeout'), "
            "current_setting('transaction_read_only'), current_setting('transaction_isolation')",
            (),
        )
    return row


def test_an_arrow_read_after_its_session_was_lost_opens_a_new_one(
    conn: Connection, database_url: str
) -> None:
    store = ArrowStore(database_url, 5_000)
    pid, *settings = _session(store)
    assert settings == ["off", IDLE_IN_TRANSACTION_TIMEOUT, "on", "repeatable read"]
    assert _session(store)[0] == pid  # one session, kept between snapshots
    conn.execute("SELECT pg_terminate_backend(?)", (pid,))
    with pytest.raises(adbc_driver_manager.dbapi.Error), store.snapshot() as read:
        read.rows("SELECT 1", ())
    new_pid, *_ = _session(store)
    assert new_pid != pid
    store.close()
