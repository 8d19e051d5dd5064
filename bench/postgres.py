"""PostgreSQL rows beside SQLite's, in the same run: ingest, on-demand throughput, rebuild.

Each row joins its SQLite table (`bench.extends`) and is compared with the SQLite figure measured
just before it in the same run:
- `ingest`: the same trades through the `trades` topic into an empty PostgreSQL database;
  target ≥ 20,000 trades/s.
- `on-demand`: the same discoveries end to end, one worker, the features read from and the
  classifications written to PostgreSQL; target ≥ 0.7× SQLite's discoveries/s.
- `rebuild`: the parallel daily rebuild (same processes, same as_of) reading from and writing to
  PostgreSQL; target ≥ 0.7× SQLite's wallets/s (its seconds ≤ SQLite's / 0.7).

The server is PERSONAS_TEST_POSTGRES (default postgresql://postgres@127.0.0.1:5432/test). Each
run creates databases of its own (`personas_bench_<random>`) and drops them: an empty one per
ingest, and one loaded once with the bench database's markets and trades (through the store's
own bulk write) for the on-demand and rebuild rows, its derived rows cleared before each. Where
no server answers, each PostgreSQL row prints "skipped: <why>" and the bench goes on. Peak RSS is
the worker's or the rebuild's process tree; the server's own memory is not in it.
"""

from __future__ import annotations

import argparse
import atexit
import os
import secrets
import sqlite3
import sys
import time
from contextlib import closing
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

# Imported for their benchmarks too: `extends` adds rows to benchmarks registered before it.
import bench.rebuild
import bench.streaming
from bench import Context, Measurement, extends
from bench.dataset import BenchData, bench_database
from bench.drivers import DEFAULT_URL
from bench.process import run_measured
from bench.streaming import (
    ACCOUNTED_SQL,
    INGEST_TRADES,
    Run,
    Worker,
    _stage_rate,
    _trade_messages,
    all_wallets,
    broker,
    discovery_messages,
    ensure_topics,
    metric_sum,
    publish,
    wait_until,
    workdir,
)

__all__ = ["ingest_postgres", "on_demand_postgres", "rebuild_postgres"]

SERVER_URL = os.environ.get("PERSONAS_TEST_POSTGRES", DEFAULT_URL)
INGEST_TARGET = 20_000.0
RATIO_TARGET = 0.7
LOAD_BATCH = 50_000
#: what the bench database holds; every other table is derived, cleared before each workload
#: (as the SQLite rows start from a copy without derived rows)
SOURCE_TABLES = ("trades", "markets", "schema_version")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


@cache
def server_error() -> str | None:
    """Why the bench cannot use the server (None: it can)."""
    try:
        import psycopg
    except ImportError as error:
        return f"{error.name} is not installed (pip install -e '.[dev]')"
    try:
        with psycopg.connect(SERVER_URL, autocommit=True, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as error:
        return f"no PostgreSQL at {SERVER_URL} ({_first_line(error)})"
    return None


_created: list[str] = []


def create_database() -> str:
    """A new, empty, migrated database on the server; its URL. Dropped at exit at the latest."""
    import psycopg

    from agents.store import connect, migrate

    name = f"personas_bench_{secrets.token_hex(4)}"
    with psycopg.connect(SERVER_URL, autocommit=True, connect_timeout=3) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = urlsplit(SERVER_URL)._replace(path=f"/{name}").geturl()
    _created.append(url)
    with closing(connect(url)) as conn:
        migrate(conn)
    return url


def drop_database(url: str) -> None:
    import psycopg

    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(SERVER_URL, autocommit=True, connect_timeout=3) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    if url in _created:
        _created.remove(url)


@atexit.register
def _drop_all() -> None:
    for url in list(_created):
        try:
            drop_database(url)
        except Exception as error:  # at exit: say so, drop the others
            print(f"could not drop {url}: {_first_line(error)}", file=sys.stderr)


_loaded: dict[Path, str] = {}


def loaded_database(data: BenchData) -> str:
    """The bench database's markets and trades in a PostgreSQL database: loaded once per run."""
    if data.path in _loaded:
        return _loaded[data.path]
    from agents.core.records import Market
    from agents.store import connect, insert_markets, insert_trade_rows

    started = time.perf_counter()
    url = create_database()
    with closing(sqlite3.connect(data.path)) as source, closing(connect(url)) as conn:
        markets = source.execute("SELECT condition_id, category FROM markets")
        insert_markets(conn, (Market(condition_id=c, category=k) for c, k in markets))
        trades = source.execute(bench.streaming.TRADES_SQL)
        while rows := trades.fetchmany(LOAD_BATCH):
            insert_trade_rows(conn, rows)
        conn.execute("VACUUM ANALYZE")
        stored = int(conn.execute("SELECT count(*) FROM trades").fetchone()[0])
    if stored != data.trades:
        raise RuntimeError(
            f"PostgreSQL holds {stored:,} trades, the bench database {data.trades:,}"
        )
    print(f"loaded {stored:,} trades into PostgreSQL in {time.perf_counter() - started:.0f}s "
          "(once per run)", flush=True)  # fmt: skip
    _loaded[data.path] = url
    return url


def clear_derived(url: str) -> None:
    from agents.store import connect

    with closing(connect(url)) as conn:
        tables = [name for (name,) in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
            if name not in SOURCE_TABLES]  # fmt: skip
        if tables:
            conn.execute(f"TRUNCATE {', '.join(tables)}")


@dataclass
class PostgresRun(Run):
    """A run whose workers use the PostgreSQL database at `url` (`db` is unused)."""

    url: str = ""

    def env(self, **overrides: Any) -> dict[str, str]:
        return {**super().env(**overrides), "PERSONAS_DB": self.url}


def _skipped(label: str, why: str) -> list[Measurement]:
    print(f"{label}: skipped: {why}", flush=True)
    return []


def _find(measurements: list[Measurement], prefix: str) -> Measurement | None:
    return next((m for m in measurements if m.name.startswith(prefix)), None)


def _versus(row: Measurement, base: Measurement | None) -> str:
    if base is None or base.rate <= 0:
        return "no SQLite figure in this run"
    return f"{row.rate / base.rate:.2f}× SQLite's {base.rate:,.0f}/s"


def _target(figure: str, value: float, limit: float) -> dict[str, Any]:
    return {"figure": figure, "value": value, "target": limit, "unit": "/s", "at_least": True,
            "met": value >= limit}  # fmt: skip


# --------------------------------------------------------------------------------------------
# Ingest


@extends("ingest")
def ingest_postgres(context: Context, sqlite: list[Measurement]) -> list[Measurement]:
    """The trades topic into an empty PostgreSQL database, like SQLite's row before it."""
    label = "trades topic → PostgreSQL"
    why = server_error()
    if why is not None:
        return _skipped(label, why)
    from agents.store import connect

    began = time.monotonic()
    data = bench_database(context.data_dir)
    total = min(data.trades, 100_000 if context.quick else INGEST_TRADES)
    url = create_database()
    try:
        with workdir() as tmp, broker(tmp) as bootstrap, closing(connect(url)) as conn:
            run = PostgresRun(bootstrap, tmp / "unused.db", url=url)
            settings = ensure_topics(run)
            published = publish(
                bootstrap, settings.topics.trades, _trade_messages(data.path, total)
            )
            first: list[tuple[float, int]] = []

            def stored_now() -> int:
                n = int(conn.execute("SELECT count(*) FROM trades").fetchone()[0])
                if n and not first:
                    first.append((time.monotonic(), n))
                return n

            worker = Worker(run, tmp)
            try:
                started = time.monotonic()
                finished = wait_until("ingest (PostgreSQL)", stored_now, published, [worker],
                                      poll=0.1)  # fmt: skip
                ingested = metric_sum(worker.metrics(), "personas_trades_ingested_total")
            finally:
                worker.stop()
    finally:
        drop_database(url)
    first_at, first_n = first[0]
    base = _find(sqlite, "trades topic")
    row = Measurement(
        label, finished - first_at, published - first_n, unit="trades",
        peak_rss_mb=worker.peak_rss_mb, baseline=base.name if base else None,
        extra={"published": published, "with_startup_s": finished - started,
               "ingested_metric": ingested, "bench_s": time.monotonic() - began},
    )  # fmt: skip
    row.note = (f"first to last stored; {_versus(row, base)}; target ≥ {INGEST_TARGET:,.0f}/s; "
                f"{total:,} trades")  # fmt: skip
    row.extra["targets"] = [_target("ingest trades/s, PostgreSQL", row.rate, INGEST_TARGET)]
    return [row]


# --------------------------------------------------------------------------------------------
# On demand


@extends("on-demand")
def on_demand_postgres(context: Context, sqlite: list[Measurement]) -> list[Measurement]:
    """SQLite's one-worker run again, on the loaded PostgreSQL database."""
    label = "on-demand, 1 worker, PostgreSQL"
    why = server_error()
    if why is not None:
        return _skipped(label, why)
    began = time.monotonic()
    data = bench_database(context.data_dir)
    url = loaded_database(data)
    clear_derived(url)
    wallets = all_wallets(data)[: (2_001 if context.quick else 20_001)]
    with workdir() as tmp, broker(tmp) as bootstrap:
        seconds, stage_rates, peak_rss_mb = _on_demand_run(url, tmp, bootstrap, wallets, data)
    base = _find(sqlite, "on-demand, 1 worker")
    row = Measurement(
        label, seconds, len(wallets) - 1, unit="discoveries", peak_rss_mb=peak_rss_mb,
        baseline=base.name if base else None,
        extra={"stage_rates": stage_rates, "bench_s": time.monotonic() - began},
    )  # fmt: skip
    row.note = (f"stage rates: features {stage_rates['features']:,.0f}/s, classifier "
                f"{stage_rates['classifier']:,.0f}/s; {_versus(row, base)}; "
                f"target ≥ {RATIO_TARGET}×")  # fmt: skip
    if base is not None:
        limit = RATIO_TARGET * base.rate
        row.extra["targets"] = [_target("on-demand discoveries/s, PostgreSQL", row.rate, limit)]
    return [row]


def _on_demand_run(
    url: str, tmp: Path, bootstrap: str, wallets: list[str], data: BenchData
) -> tuple[float, dict[str, float], float]:
    """Discoveries published flat out until each is accounted for: seconds, stage rates, RSS."""
    from agents.store import connect

    run = PostgresRun(bootstrap, tmp / "unused.db", url=url)
    settings = ensure_topics(run)
    worker = Worker(run, tmp)
    try:
        with closing(connect(url)) as conn:

            def accounted() -> int:
                return int(conn.execute(ACCOUNTED_SQL).fetchone()[0])

            # One discovery first: the groups have joined and the store is open.
            first = discovery_messages(wallets[:1], data.as_of)
            publish(bootstrap, settings.topics.discovered, first)
            wait_until("on-demand warm-up (PostgreSQL)", accounted, 1, [worker])
            timeline: list[tuple[float, float, float]] = []

            def sample() -> None:
                if not timeline or time.monotonic() - timeline[-1][0] >= 0.25:
                    m = worker.metrics()
                    timeline.append((
                        time.monotonic(), metric_sum(m, "personas_on_demand_features_total"),
                        metric_sum(m, "personas_classifications_total"),
                    ))  # fmt: skip

            measured = wallets[1:]
            started = time.monotonic()
            publish(bootstrap, settings.topics.discovered, discovery_messages(measured, data.as_of))
            finished = wait_until("on-demand (PostgreSQL)", lambda: accounted() - 1,
                                  len(measured), [worker], on_poll=sample)  # fmt: skip
            sample()
    finally:
        worker.stop()
    rates = {"features": _stage_rate(timeline, 1), "classifier": _stage_rate(timeline, 2)}
    return finished - started, rates, worker.peak_rss_mb


# --------------------------------------------------------------------------------------------
# Rebuild


@extends("rebuild")
def rebuild_postgres(context: Context, sqlite: list[Measurement]) -> list[Measurement]:
    """SQLite's parallel rebuild again, on the loaded PostgreSQL database."""
    workers = os.cpu_count() or 1
    label = f"rebuild {workers} procs, PostgreSQL"
    why = server_error()
    if why is not None:
        return _skipped(label, why)
    began = time.monotonic()
    data = bench_database(context.data_dir)
    url = loaded_database(data)
    clear_derived(url)
    run = run_measured(["-m", "bench.postgres", "--db", url, "--as-of", str(data.as_of),
                        "--workers", str(workers)])  # fmt: skip
    answer = run.answer
    base = _find(sqlite, f"rebuild {workers} procs")
    phases = answer["phases_s"]
    row = Measurement(
        label, answer["seconds"], answer["wallets"], peak_rss_mb=run.peak_rss_mb,
        baseline=base.name if base else None,
        extra={**answer, "bench_s": time.monotonic() - began},
    )  # fmt: skip
    row.note = (
        f"{answer['rows_written']:,} rows; read+compute {phases['read_compute']:.1f}s, "
        f"write {phases['write']:.1f}s; {_versus(row, base)}; target ≥ {RATIO_TARGET}×"
    )
    if base is not None:
        limit = RATIO_TARGET * base.rate
        row.extra["targets"] = [_target("rebuild wallets/s, PostgreSQL", row.rate, limit)]
    return [row]


def _rebuild_child(url: str, as_of: int, workers: int) -> dict[str, Any]:
    from agents.compute.rebuild import RebuildOptions, run_rebuild

    result = run_rebuild(url, RebuildOptions(as_of, parallel=True, workers=workers))
    return {**result.summary(), "seconds": result.duration_s}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one rebuild on PostgreSQL (bench child)")
    parser.add_argument("--db", required=True, help="a postgresql:// URL")
    parser.add_argument("--as-of", type=int, required=True)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    answer = _rebuild_child(args.db, args.as_of, args.workers)
    sys.stdout.buffer.write(orjson.dumps(answer) + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
