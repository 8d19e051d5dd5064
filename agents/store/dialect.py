"""What differs between the two stores' SQL: column types, the wallet-set read, placeholders.

Every other statement is written once, in SQLite's `?` style, and runs on both: upserts use
`ON CONFLICT … DO UPDATE … WHERE`, which both databases share.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson

__all__ = ["POSTGRES", "SQLITE", "Dialect", "format_style"]


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str
    integer: str
    real: str
    #: (wallet, trade…) rows of a set of wallets up to an as_of: one query for any number
    wallet_fills_sql: str
    #: the wallet set as that query's first parameter
    wallet_set: Callable[[list[str]], Any]
    #: `proxy_wallet` of a row in a wallet set given as one `wallet_set` parameter
    in_wallet_set: str
    #: a table `bounds (w, s)` of (wallet, since) from one parameter: a JSON array of
    #: `{"w": wallet, "s": since}`, so each wallet of a set is read from a time of its own
    wallet_bounds: str


# Ordered by wallet only (the index order, no sort): the core orders each wallet's trades by
# (timestamp, trade_id) itself.
_FILLS_SELECT = """
SELECT proxy_wallet, trade_id, condition_id, side, size, price, timestamp
FROM trades"""

SQLITE = Dialect(
    name="sqlite",
    integer="INTEGER",
    real="REAL",
    # The wallets arrive as one JSON array: no per-wallet query, no limit on bound variables.
    wallet_fills_sql=_FILLS_SELECT
    + """
WHERE proxy_wallet IN (SELECT value FROM json_each(?)) AND timestamp <= ?
ORDER BY proxy_wallet""",
    wallet_set=lambda wallets: orjson.dumps(wallets).decode(),
    in_wallet_set="IN (SELECT value FROM json_each(?))",
    wallet_bounds="(SELECT value ->> '$.w' AS w, value ->> '$.s' AS s FROM json_each(?)) AS bounds",
)

POSTGRES = Dialect(
    name="postgresql",
    integer="BIGINT",  # timestamps and counts; SQLite's INTEGER is 64-bit too
    real="DOUBLE PRECISION",  # PostgreSQL's REAL is 32-bit: features must round-trip exactly
    wallet_fills_sql=_FILLS_SELECT
    + """
WHERE proxy_wallet = ANY(?) AND timestamp <= ?
ORDER BY proxy_wallet""",
    wallet_set=list,
    in_wallet_set="= ANY(?)",
    wallet_bounds="jsonb_to_recordset(?::jsonb) AS bounds(w TEXT, s BIGINT)",
)

_INDEX_HINT = re.compile(r"\s+INDEXED BY \w+", re.IGNORECASE)


@lru_cache(maxsize=256)
def format_style(sql: str) -> str:
    """SQLite-style SQL for psycopg: `?` → `%s` (a literal `%` doubled), index hints dropped.

    SQLite needs `INDEXED BY` where its planner picks a worse index; PostgreSQL plans by itself.
    """
    return _INDEX_HINT.sub("", sql).replace("%", "%%").replace("?", "%s")
