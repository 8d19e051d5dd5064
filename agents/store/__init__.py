"""The store: SQLite (embedded, the default) or PostgreSQL (shared by several hosts).

`connection` opens either kind and migrates it, `tables` holds the reads and writes that are the
same on both, `writer` the agents' asynchronous writer; `schema` is the schema and its
migrations, `dialect` what differs in SQL, `sqlite` and `postgres` each store's own code.
"""

from agents.store.connection import (
    Connection,
    connect,
    is_postgres,
    migrate,
    open_reader,
    transaction,
)
from agents.store.tables import (
    UPSERT_FEATURES_SQL,
    Classified,
    feature_row,
    fills_by_wallet,
    fills_for_wallet,
    insert_markets,
    insert_trade_rows,
    trade_row,
    upsert_feature_rows,
    write_classified,
)
from agents.store.writer import Store, open_store

__all__ = [
    "UPSERT_FEATURES_SQL",
    "Classified",
    "Connection",
    "Store",
    "connect",
    "feature_row",
    "fills_by_wallet",
    "fills_for_wallet",
    "insert_markets",
    "insert_trade_rows",
    "is_postgres",
    "migrate",
    "open_reader",
    "open_store",
    "trade_row",
    "transaction",
    "upsert_feature_rows",
    "write_classified",
]
