"""Assertions the integration tests share, read from the worker's SQLite file."""

from __future__ import annotations

import sqlite3

from tests.conftest import wait_until

__all__ = ["count", "wait_until_classified"]

HANDLED = "SELECT COUNT(*) FROM wallets WHERE on_demand_at IS NOT NULL"
SUCCEEDED = "SELECT COUNT(*) FROM wallets WHERE on_demand_status = 'success'"
CLASSIFIED = "SELECT COUNT(*) FROM wallet_classifications"


def count(conn: sqlite3.Connection, sql: str, *params: object) -> int:
    return int(conn.execute(sql, params).fetchone()[0])


def wait_until_classified(conn: sqlite3.Connection, discoveries: int, timeout: float = 60) -> None:
    """Wait until every discovery was handled and every on-demand success has its classification."""
    wait_until(lambda: count(conn, HANDLED) == discoveries, timeout, "every discovery handled")
    wait_until(
        lambda: count(conn, CLASSIFIED) == count(conn, SUCCEEDED),
        60, "a classification per successful discovery",
    )  # fmt: skip
