"""The schema (SPEC §6) as versioned migrations, for both stores; feature columns come from the
core. Column types are `{integer}` and `{real}`, filled in by each store's dialect."""

from __future__ import annotations

import dataclasses
from typing import get_args, get_type_hints

from agents.core.features import LifetimeStats, WindowFeatures
from agents.store.dialect import Dialect

__all__ = [
    "FEATURE_COLUMNS",
    "FEATURE_NAMES",
    "FEATURE_ROW_KEYS",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "migration_statements",
]


def _sql_type(annotation: object) -> str:
    # `int | None` → int: nullable columns take their non-null type.
    base = next((arg for arg in get_args(annotation) if arg is not type(None)), annotation)
    if base is int:
        return "{integer}"
    return "{real}" if base is float else "TEXT"


def _columns(*classes: type) -> tuple[tuple[str, str], ...]:
    return tuple(
        (field.name, _sql_type(get_type_hints(cls)[field.name]))
        for cls in classes
        for field in dataclasses.fields(cls)
    )


# Every SPEC §5 feature, then the lifetime stats, in the order of the core's dataclasses.
FEATURE_COLUMNS: tuple[tuple[str, str], ...] = _columns(WindowFeatures, LifetimeStats)
FEATURE_NAMES: tuple[str, ...] = tuple(name for name, _ in FEATURE_COLUMNS)
#: Column order of a `wallet_features` row: its key and provenance, then every feature.
FEATURE_ROW_KEYS: tuple[str, ...] = (
    "proxy_wallet", "feature_date", "window_days", "as_of", "source", "computed_at", *FEATURE_NAMES,
)  # fmt: skip

_FEATURE_DDL = ",\n    ".join(f"{name} {sql_type}" for name, sql_type in FEATURE_COLUMNS)
# The templates below are f-strings that keep {integer} and {real} for `migration_statements`.

MIGRATIONS: tuple[str, ...] = (
    f"""
CREATE TABLE trades (
    trade_id     TEXT PRIMARY KEY,
    proxy_wallet TEXT NOT NULL,
    condition_id TEXT NOT NULL,
    side         TEXT NOT NULL CHECK (side IN ('BUY', 'SELL')),
    size         {{real}} NOT NULL CHECK (size > 0),
    price        {{real}} NOT NULL CHECK (price > 0 AND price < 1),
    timestamp    {{integer}} NOT NULL
);
CREATE INDEX trades_wallet_time ON trades (proxy_wallet, timestamp);
CREATE INDEX trades_time ON trades (timestamp);

CREATE TABLE markets (
    condition_id TEXT PRIMARY KEY,
    category     TEXT NOT NULL
);

CREATE TABLE wallets (
    proxy_wallet     TEXT PRIMARY KEY,
    discovered_at    {{integer}} NOT NULL,
    source           TEXT NOT NULL,
    first_seen_at    {{real}} NOT NULL,
    on_demand_status TEXT CHECK (on_demand_status IN ('success', 'insufficient', 'error')),
    on_demand_at     {{real}}
);

CREATE TABLE wallet_features (
    proxy_wallet TEXT NOT NULL,
    feature_date TEXT NOT NULL,
    window_days  {{integer}} NOT NULL,
    as_of        {{integer}} NOT NULL,
    source       TEXT NOT NULL CHECK (source IN ('on_demand', 'batch')),
    computed_at  {{real}} NOT NULL,
    {_FEATURE_DDL},
    UNIQUE (proxy_wallet, feature_date, window_days)
);

CREATE TABLE wallet_classifications (
    proxy_wallet    TEXT NOT NULL,
    feature_date    TEXT NOT NULL,
    status          TEXT NOT NULL
                    CHECK (status IN ('followable', 'excluded', 'unclassified', 'pending')),
    persona         TEXT,
    reason          TEXT,
    stage           TEXT,
    metric_value    {{real}},
    threshold       {{real}},
    confidence      {{real}},
    features_source TEXT NOT NULL CHECK (features_source IN ('on_demand', 'batch')),
    rules_version   TEXT NOT NULL,
    as_of           {{integer}} NOT NULL,
    classified_at   {{real}} NOT NULL,
    UNIQUE (proxy_wallet, feature_date)
);

CREATE TABLE wallet_traits (
    proxy_wallet TEXT NOT NULL,
    feature_date TEXT NOT NULL,
    trait        TEXT NOT NULL,
    value        TEXT,
    UNIQUE (proxy_wallet, feature_date, trait)
);
""",
    # 2: what each rebuilt feature_date was rebuilt as of, written in the transaction of its rows,
    # so a backfill (SPEC §9) knows which days are done; published_at: its FeatureSets were sent.
    """
CREATE TABLE rebuild_runs (
    feature_date TEXT PRIMARY KEY,
    as_of        {integer} NOT NULL,
    wallets      {integer} NOT NULL,
    rows_written {integer} NOT NULL,
    finished_at  {real} NOT NULL,
    published_at {real}
);
""",
    # 3: per wallet, its lifetime state as of its last rebuild (issue 14): lifetime stats then
    # need only the trades since. open_lots is JSON, [[market, [[size, price, timestamp], …]], …]
    # (shortest round-trip floats: exact); total_trades tells a checkpoint a late trade made stale.
    """
CREATE TABLE wallet_checkpoints (
    proxy_wallet   TEXT PRIMARY KEY,
    as_of          {integer} NOT NULL,
    total_trades   {integer} NOT NULL,
    first_trade_at {integer},
    last_trade_at  {integer},
    buy_cost       {real} NOT NULL,
    realized_pnl   {real} NOT NULL,
    open_lots      TEXT NOT NULL,
    computed_at    {real} NOT NULL
);
""",
    # 4: a rebuild spread over the workers (issue 14): each run the leader started, and each of its
    # shards once a worker has written and published it; the run is finished by the transaction
    # that records its last shard. skew is the shard's online/offline skew report, as JSON.
    """
CREATE TABLE rebuild_job_runs (
    run_id        TEXT PRIMARY KEY,
    feature_date  TEXT NOT NULL,
    as_of         {integer} NOT NULL,
    shards        {integer} NOT NULL,
    wallets       {integer} NOT NULL,
    started_at    {real} NOT NULL,
    started_by    TEXT NOT NULL,
    last_shard_at {real},
    finished_at   {real}
);
CREATE INDEX rebuild_job_runs_started ON rebuild_job_runs (started_at);

CREATE TABLE rebuild_job_shards (
    run_id       TEXT NOT NULL,
    shard        {integer} NOT NULL,
    wallets      {integer} NOT NULL,
    rows_written {integer} NOT NULL,
    failed       {integer} NOT NULL,
    skew         TEXT NOT NULL,
    worker       TEXT NOT NULL,
    finished_at  {real} NOT NULL,
    PRIMARY KEY (run_id, shard)
);
""",
    # 5: which worker holds each partition of a stage's topic, as its consumer was last assigned
    # it: the leader deals a run's jobs by it (`streams.dealing`), on any broker.
    """
CREATE TABLE partition_owners (
    consumer_group   TEXT NOT NULL,
    topic            TEXT NOT NULL,
    partition_number {integer} NOT NULL,
    worker           TEXT NOT NULL,
    assigned_at      {real} NOT NULL,
    PRIMARY KEY (consumer_group, topic, partition_number)
);
""",
)

SCHEMA_VERSION = len(MIGRATIONS)


def migration_statements(version: int, dialect: Dialect) -> list[str]:
    """The statements that take a database from `version` to `version + 1`."""
    script = MIGRATIONS[version].format(integer=dialect.integer, real=dialect.real)
    return [part.strip() for part in script.split(";") if part.strip()]
