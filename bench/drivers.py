"""psycopg 3 against asyncpg on the PostgreSQL store's two hot paths: same data, one run.

- **upsert**: ~200,000 trades COPYed into a temp staging table, then one
  `INSERT … SELECT … ON CONFLICT (trade_id) DO NOTHING` (the store's bulk write), into an empty
  `trades` table each time. psycopg `AsyncCursor.copy` in text and in binary format; asyncpg
  `copy_records_to_table` (binary). For reference, `executemany` of a one-row
  `INSERT … ON CONFLICT` (both drivers pipeline it).
- **read**: the set-based read of a job, one `proxy_wallet = ANY(…)` query for all the trades of
  2,000 wallets, fetched into Python tuples. psycopg with its default (text) cursor and with a
  binary one, async and sync (the feature processes read synchronously); asyncpg (binary; its
  `Record`s turned into tuples).

Each variant is timed 3 times and the median kept; ratios are to asyncpg's figure of the same
operation. The server is PERSONAS_TEST_POSTGRES (default postgresql://postgres@127.0.0.1:5432/test);
the bench creates a database of its own and drops it. No server, or a driver missing: the bench
prints why and measures nothing.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import statistics
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any
from urllib.parse import urlsplit

from bench import Context, Measurement, benchmark

__all__ = ["DEFAULT_URL", "drivers_benchmark"]

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
REPEATS = 3
SEED = 20_260_313

Trade = tuple[str, str, str, str, float, float, int]
COLUMNS = ("trade_id", "proxy_wallet", "condition_id", "side", "size", "price", "timestamp")
_COLS = ", ".join(COLUMNS)
_TYPES = ["text", "text", "text", "text", "float8", "float8", "int8"]

_SCHEMA = """
CREATE TABLE trades (
    trade_id TEXT PRIMARY KEY,
    proxy_wallet TEXT NOT NULL,
    condition_id TEXT NOT NULL,
    side TEXT NOT NULL,
    size DOUBLE PRECISION NOT NULL,
    price DOUBLE PRECISION NOT NULL,
    timestamp BIGINT NOT NULL
);
CREATE INDEX trades_wallet_time ON trades (proxy_wallet, timestamp)"""
_STAGING = "CREATE TEMP TABLE staging (LIKE trades) ON COMMIT DROP"
_MERGE = (
    f"INSERT INTO trades ({_COLS}) SELECT {_COLS} FROM staging ON CONFLICT (trade_id) DO NOTHING"
)
_INSERT_PG = (
    f"INSERT INTO trades ({_COLS}) VALUES (%s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (trade_id) DO NOTHING"
)
_INSERT_APG = (
    f"INSERT INTO trades ({_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7) "
    "ON CONFLICT (trade_id) DO NOTHING"
)
_READ = (
    f"SELECT {_COLS} FROM trades WHERE proxy_wallet = ANY({{}}) ORDER BY proxy_wallet, timestamp"
)


def _hex(rng: random.Random, digits: int) -> str:
    return f"0x{rng.getrandbits(digits * 4):0{digits}x}"


def make_trades(n: int, wallets: int, seed: int = SEED) -> tuple[list[Trade], list[str]]:
    """`n` trades spread over `wallets` wallets and 500 markets, as the ingest's rows."""
    rng = random.Random(seed)
    owners = [_hex(rng, 40) for _ in range(wallets)]
    markets = [_hex(rng, 64) for _ in range(500)]
    start = 1_780_000_000
    rows = [
        (
            f"{_hex(rng, 64)}-{i % 7}",
            owners[i % wallets],
            rng.choice(markets),
            "BUY" if rng.random() < 0.55 else "SELL",
            round(rng.uniform(1, 500), 2),
            round(rng.uniform(0.01, 0.99), 4),
            start + rng.randrange(120 * 86_400),
        )
        for i in range(n)
    ]
    return rows, owners


Timing = dict[str, float]  # phase → seconds; "total" always
Variant = Callable[[], Coroutine[Any, Any, Timing]]


def _medians(variants: Sequence[Variant], reset: Callable[[], None]) -> list[Timing]:
    """Each variant's median timings over `REPEATS` rounds. The rounds are interleaved (every
    variant once, then again) so that a drift of the machine is shared by all of them; `reset`
    (untimed) runs before each."""
    runs: list[list[Timing]] = [[] for _ in variants]
    for _ in range(REPEATS):
        for done, run in zip(runs, variants, strict=True):
            reset()
            done.append(asyncio.run(run()))
    return [{key: statistics.median(t[key] for t in done) for key in done[0]} for done in runs]


class _Bench:
    """One scratch database and the variants measured on it."""

    def __init__(self, url: str) -> None:
        self.url = url

    def truncate(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("TRUNCATE trades")

    def nothing(self) -> None:
        pass

    def load(self, rows: Sequence[Trade]) -> None:
        """Fill `trades` for the reads (untimed), and refresh the planner's statistics."""
        import psycopg

        self.truncate()
        with psycopg.connect(self.url, autocommit=True) as conn:
            with conn.cursor() as cur, cur.copy(f"COPY trades ({_COLS}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            conn.execute("VACUUM ANALYZE trades")

    # -- upsert -------------------------------------------------------------------------------
    # Each variant returns the seconds of its own work: connecting (once per job, as the store's
    # pool does) is not timed; the staging table, COPY, merge and commit are.

    async def psycopg_copy(self, rows: Sequence[Trade], binary: bool) -> Timing:
        import psycopg

        statement = f"COPY staging ({_COLS}) FROM STDIN" + (" (FORMAT BINARY)" if binary else "")
        async with await psycopg.AsyncConnection.connect(self.url) as conn:
            started = time.perf_counter()
            async with conn.transaction(), conn.cursor() as cur:
                await cur.execute(_STAGING)
                async with cur.copy(statement) as copy:
                    if binary:
                        copy.set_types(_TYPES)
                    for row in rows:
                        await copy.write_row(row)
                copied = time.perf_counter()
                await cur.execute(_MERGE)
            return _phases(started, copied)

    async def asyncpg_copy(self, rows: Sequence[Trade]) -> Timing:
        import asyncpg

        conn = await asyncpg.connect(self.url)
        try:
            started = time.perf_counter()
            async with conn.transaction():
                await conn.execute(_STAGING)
                await conn.copy_records_to_table("staging", records=rows, columns=COLUMNS)
                copied = time.perf_counter()
                await conn.execute(_MERGE)
            return _phases(started, copied)
        finally:
            await conn.close()

    async def psycopg_executemany(self, rows: Sequence[Trade]) -> Timing:
        import psycopg

        async with await psycopg.AsyncConnection.connect(self.url) as conn:
            started = time.perf_counter()
            async with conn.transaction(), conn.cursor() as cur:
                await cur.executemany(_INSERT_PG, rows)
            return {"total": time.perf_counter() - started}

    async def asyncpg_executemany(self, rows: Sequence[Trade]) -> Timing:
        import asyncpg

        conn = await asyncpg.connect(self.url)
        try:
            started = time.perf_counter()
            async with conn.transaction():
                await conn.executemany(_INSERT_APG, rows)
            return {"total": time.perf_counter() - started}
        finally:
            await conn.close()

    # -- read ---------------------------------------------------------------------------------
    # Timed: the query and turning every row into a tuple; the count is checked afterwards.

    async def psycopg_read(self, wallets: list[str], binary: bool, expected: int) -> Timing:
        import psycopg

        async with await psycopg.AsyncConnection.connect(self.url) as conn:
            started = time.perf_counter()
            async with conn.cursor(binary=binary) as cur:
                await cur.execute(_READ.format("%s"), (wallets,))
                fetched = await cur.fetchall()
            seconds = time.perf_counter() - started
        _check(fetched, expected)
        return {"total": seconds}

    async def psycopg_sync_read(self, wallets: list[str], binary: bool, expected: int) -> Timing:
        import psycopg

        with psycopg.connect(self.url) as conn:
            started = time.perf_counter()
            with conn.cursor(binary=binary) as cur:
                cur.execute(_READ.format("%s"), (wallets,))
                fetched = cur.fetchall()
            seconds = time.perf_counter() - started
        _check(fetched, expected)
        return {"total": seconds}

    async def asyncpg_read(self, wallets: list[str], expected: int) -> Timing:
        import asyncpg

        conn = await asyncpg.connect(self.url)
        try:
            started = time.perf_counter()
            records = await conn.fetch(_READ.format("$1::text[]"), wallets)
            fetched = [tuple(record) for record in records]
            seconds = time.perf_counter() - started
        finally:
            await conn.close()
        _check(fetched, expected)
        return {"total": seconds}


def _phases(started: float, copied: float) -> Timing:
    """An upsert's timings: the COPY (the driver's part: encoding and sending) and the whole."""
    return {"total": time.perf_counter() - started, "copy": copied - started}


def _check(fetched: list[Any], expected: int) -> None:
    if len(fetched) != expected or (fetched and len(fetched[0]) != len(COLUMNS)):
        raise AssertionError(f"read {len(fetched)} rows, expected {expected}")


def _scratch_database(url: str) -> tuple[str, Callable[[], None]] | str:
    """A fresh database on the server at `url` and its dropper, or why there is none."""
    try:
        import asyncpg  # noqa: F401  (both drivers, or no comparison)
        import psycopg
    except ImportError as error:
        return f"{error.name} is not installed (pip install -e '.[dev]')"
    name = f"personas_bench_{secrets.token_hex(4)}"
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=3) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as error:
        return f"no PostgreSQL at {url} ({str(error).strip().splitlines()[0]})"

    def drop() -> None:
        with psycopg.connect(url, autocommit=True, connect_timeout=3) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return urlsplit(url)._replace(path=f"/{name}").geturl(), drop


@benchmark("drivers")
def drivers_benchmark(context: Context) -> list[Measurement]:
    url = os.environ.get("PERSONAS_TEST_POSTGRES", DEFAULT_URL)
    scratch = _scratch_database(url)
    if isinstance(scratch, str):
        print(f"drivers: skipped, {scratch}", flush=True)
        return []
    bench_url, drop = scratch
    try:
        return _measure(_Bench(bench_url), context)
    finally:
        drop()


def _measure(b: _Bench, context: Context) -> list[Measurement]:
    import psycopg

    n, wallets, read_wallets = (20_000, 400, 200) if context.quick else (200_000, 4_000, 2_000)
    rows, owners = make_trades(n, wallets)
    with psycopg.connect(b.url, autocommit=True) as conn:
        conn.execute(_SCHEMA)

    out: list[Measurement] = []
    base = "upsert asyncpg copy_records_to_table"
    upserts: list[tuple[str, Variant, int, str]] = [
        (base, lambda: b.asyncpg_copy(rows), n,
         f"median of {REPEATS}; COPY → staging → INSERT … ON CONFLICT"),
        ("upsert psycopg copy text", lambda: b.psycopg_copy(rows, binary=False), n, ""),
        ("upsert psycopg copy binary", lambda: b.psycopg_copy(rows, binary=True), n, ""),
        ("upsert asyncpg executemany", lambda: b.asyncpg_executemany(rows), n,
         "reference: one INSERT … ON CONFLICT per row, pipelined"),
        ("upsert psycopg executemany", lambda: b.psycopg_executemany(rows), n, "reference"),
    ]  # fmt: skip
    timings = _medians([variant for _, variant, _, _ in upserts], b.truncate)
    base_copy = timings[0]["copy"]
    for (name, _, items, what), timing in zip(upserts, timings, strict=True):
        if "copy" in timing:  # the driver's own part, beside the whole
            copy = f"COPY {timing['copy']:.2f}s ({base_copy / timing['copy']:.2f}×)"
            what = f"{copy}; {what}" if what else copy
        extra = {f"{phase}_s": round(seconds, 4) for phase, seconds in timing.items()}
        out.append(
            Measurement(
                name,
                timing["total"],
                items,
                unit="trades",
                baseline=None if name == base else base,
                note=what,
                extra=extra,
            )
        )

    b.load(rows)
    chosen = random.Random(SEED).sample(owners, read_wallets)
    wanted = set(chosen)
    expected = sum(1 for row in rows if row[1] in wanted)
    base = "read asyncpg fetch"
    reads: list[tuple[str, Variant, str]] = [
        (base, lambda: b.asyncpg_read(chosen, expected),
         f"{read_wallets:,} wallets, one ANY(…) query → {expected:,} tuples"),
        ("read psycopg async text", lambda: b.psycopg_read(chosen, False, expected), ""),
        ("read psycopg async binary", lambda: b.psycopg_read(chosen, True, expected), ""),
        ("read psycopg sync text", lambda: b.psycopg_sync_read(chosen, False, expected),
         "psycopg.Connection, as a feature process reads"),
        ("read psycopg sync binary", lambda: b.psycopg_sync_read(chosen, True, expected), ""),
    ]  # fmt: skip
    timings = _medians([variant for _, variant, _ in reads], b.nothing)
    for (name, _, what), timing in zip(reads, timings, strict=True):
        out.append(Measurement(name, timing["total"], expected, unit="rows",
                               baseline=None if name == base else base, note=what))  # fmt: skip
    return out
