"""The store: SQLite schema, connections and the idempotent, precedence-aware writes (SPEC §6)."""

from agents.store.sqlite import (
    INSERT_MARKET_SQL,
    INSERT_TRADE_SQL,
    UPSERT_FEATURES_SQL,
    Classified,
    Store,
    connect,
    feature_row,
    fills_by_wallet,
    fills_for_wallet,
    insert_markets,
    migrate,
    open_reader,
    trade_row,
    transaction,
    upsert_feature_rows,
    write_classified,
)

__all__ = [
    "INSERT_MARKET_SQL",
    "INSERT_TRADE_SQL",
    "UPSERT_FEATURES_SQL",
    "Classified",
    "Store",
    "connect",
    "feature_row",
    "fills_by_wallet",
    "fills_for_wallet",
    "insert_markets",
    "migrate",
    "open_reader",
    "trade_row",
    "transaction",
    "upsert_feature_rows",
    "write_classified",
]
