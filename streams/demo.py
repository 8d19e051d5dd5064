"""`personas demo`: generated wallets through the real pipeline, end to end, with a summary.

Trades go through the `trades` topic and discoveries through `wallet-discovered` to a worker
process, exactly as in production. The data set is deterministic for a seed (its as_of is fixed),
so running the demo again rewrites the same rows instead of adding any.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from contextlib import closing
from pathlib import Path
from typing import Any

from agents.core.codec import dumps
from agents.core.errors import WalletError
from agents.core.features import feature_date
from agents.core.records import Market, Trade, WalletDiscovered
from agents.data.generate import Dataset, GenerateOptions, generate
from agents.store import connect, insert_markets
from config.settings import Settings, load_settings
from streams.broker import broker_for, free_port
from streams.producer import publisher
from streams.progress import Progress
from streams.worker import prepare

__all__ = ["command_demo", "run_demo"]

POLL_S = 0.2
STALL_TIMEOUT_S = 60.0
WORKER_STOP_TIMEOUT_S = 20.0


def _count(conn: sqlite3.Connection, sql: str, *params: Any) -> int:
    return int(conn.execute(sql, params).fetchone()[0])


def _wait_for(
    label: str, total: int, done: Any, worker: subprocess.Popen[bytes], quiet: bool
) -> float:
    """Poll `done()` until it reaches total; fail if the worker dies or progress stalls."""
    progress = Progress(label, total, enabled=not quiet)
    last, last_change = -1, time.monotonic()
    while (current := done()) < total:
        if worker.poll() is not None:
            raise WalletError(f"{label}: the worker exited with status {worker.returncode}")
        if current != last:
            last, last_change = current, time.monotonic()
        elif time.monotonic() - last_change > STALL_TIMEOUT_S:
            raise WalletError(f"{label}: stuck at {current}/{total} for {STALL_TIMEOUT_S:.0f}s")
        progress.update(current)
        time.sleep(POLL_S)
    return progress.finish(total)


def _start_worker(
    settings: Settings, bootstrap: str, config: Path | None, log_path: Path
) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update({
        "PERSONAS_BROKER": bootstrap,
        "PERSONAS_DB": str(settings.database.path),
        "PERSONAS_WORKER__WEB_PORT": str(free_port()),
    })  # fmt: skip
    command = [sys.executable, "-m", "streams.cli", "run", "--no-rebuild"]
    if config is not None:
        command += ["--config", str(config)]
    with log_path.open("ab") as log_file:
        return subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT)


def _stop_worker(worker: subprocess.Popen[bytes]) -> int:
    worker.send_signal(signal.SIGTERM)
    try:
        return worker.wait(WORKER_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        worker.kill()
        return worker.wait()


async def _publish(bootstrap: str, settings: Settings, records: list[Any], topic: str) -> None:
    async with publisher(bootstrap, settings) as pub:
        await pub.send_many(topic, records)


def run_demo(
    settings: Settings, options: GenerateOptions, config: Path | None, quiet: bool
) -> dict[str, Any]:
    """Run the demo and return its summary."""
    started = time.monotonic()
    dataset = generate(options)
    trades = [Trade.model_validate(row) for row in dataset.trades()]
    as_of = options.end
    discoveries = [
        WalletDiscovered(proxy_wallet=wallet, discovered_at=as_of, source="demo")
        for wallet in dataset.wallets
    ]
    log_path = settings.database.path.parent / "demo-worker.log"
    with broker_for(settings) as bootstrap:
        prepare(settings, bootstrap)
        with closing(connect(settings.database.path)) as conn:
            insert_markets(conn, (Market.model_validate(m) for m in dataset.markets))
            _stage_wallets(conn, dataset)
            demo_start = time.time()
            worker = _start_worker(settings, bootstrap, config, log_path)
            try:
                asyncio.run(_publish(bootstrap, settings, trades, settings.topics.trades))
                ingest_s = _wait_for("trades stored", len(trades), lambda: _count(
                    conn, "SELECT COUNT(*) FROM trades JOIN temp.demo USING (proxy_wallet)"
                ), worker, quiet)  # fmt: skip
                asyncio.run(_publish(bootstrap, settings, discoveries, settings.topics.discovered))
                classify_s = _wait_for("wallets done", len(discoveries), lambda: _accounted(
                    conn, demo_start, feature_date(as_of)
                ), worker, quiet)  # fmt: skip
            finally:
                if _stop_worker(worker) != 0:
                    print(f"worker exited uncleanly; see {log_path}", file=sys.stderr)
            summary = _summary(conn, dataset, feature_date(as_of), demo_start)
    summary.update({
        "wallets": len(dataset.wallets), "trades": len(trades),
        "ingest_s": round(ingest_s, 2), "trades_per_s": round(len(trades) / ingest_s),
        "classify_s": round(classify_s, 2),
        "discoveries_per_s": round(len(discoveries) / classify_s),
        "elapsed_s": round(time.monotonic() - started, 2),
        "database": str(settings.database.path), "worker_log": str(log_path),
    })  # fmt: skip
    return summary


def _stage_wallets(conn: sqlite3.Connection, dataset: Dataset) -> None:
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS demo (proxy_wallet TEXT PRIMARY KEY)")
    conn.execute("DELETE FROM temp.demo")
    conn.executemany("INSERT INTO temp.demo VALUES (?)", ((w,) for w in dataset.wallets))


def _accounted(conn: sqlite3.Connection, since: float, date: str) -> int:
    """Demo wallets whose discovery finished: insufficient, or classified."""
    return _count(
        conn,
        """
        SELECT COUNT(*) FROM wallets AS w JOIN temp.demo USING (proxy_wallet)
        LEFT JOIN wallet_classifications AS c
               ON c.proxy_wallet = w.proxy_wallet AND c.feature_date = ?
        WHERE w.on_demand_at >= ?
          AND (w.on_demand_status = 'insufficient' OR c.classified_at >= ?)""",
        date,
        since,
        since,
    )


def _summary(conn: sqlite3.Connection, dataset: Dataset, date: str, since: float) -> dict[str, Any]:
    rows = conn.execute(
        """
        SELECT c.proxy_wallet, c.status, c.persona, c.reason FROM wallet_classifications AS c
        JOIN temp.demo USING (proxy_wallet) WHERE c.feature_date = ?""",
        (date,),
    ).fetchall()
    by_wallet = {wallet: (status, persona, reason) for wallet, status, persona, reason in rows}
    outcomes = dict(
        conn.execute(
            """
        SELECT on_demand_status, COUNT(*) FROM wallets JOIN temp.demo USING (proxy_wallet)
        WHERE on_demand_at >= ? GROUP BY on_demand_status""",
            (since,),
        ).fetchall()
    )
    # Planted wallets with too few settled trades get no on-demand row: the rebuild has them.
    classified = [label for label in dataset.labels if label.proxy_wallet in by_wallet]
    reproduced = sum(
        by_wallet[label.proxy_wallet] == (label.status, label.persona, label.reason)
        for label in classified
    )
    return {
        "by_status": dict(Counter(status for status, _, _ in by_wallet.values()).most_common()),
        "by_persona": dict(Counter(p for s, p, _ in by_wallet.values() if p).most_common()),
        "by_reason": dict(Counter(r for _, _, r in by_wallet.values() if r).most_common()),
        "on_demand": {"success": outcomes.get("success", 0),
                      "insufficient": outcomes.get("insufficient", 0)},
        "planted_labels_reproduced": f"{reproduced}/{len(classified)}",
        "planted_left_to_rebuild": len(dataset.labels) - len(classified),
        "feature_date": date,
    }  # fmt: skip


def _print_summary(summary: dict[str, Any]) -> None:
    print("\nwallet-personas demo")
    print(f"  {summary['wallets']:,} wallets, {summary['trades']:,} trades, feature date "
          f"{summary['feature_date']}")  # fmt: skip
    print(f"  ingest      {summary['ingest_s']:>7.2f}s  {summary['trades_per_s']:>9,} trades/s")
    print(f"  on-demand   {summary['classify_s']:>7.2f}s  "
          f"{summary['discoveries_per_s']:>9,} discoveries/s")  # fmt: skip
    print(
        f"  on-demand outcomes: {summary['on_demand']['success']:,} success, "
        f"{summary['on_demand']['insufficient']:,} insufficient (left to the daily rebuild)"
    )
    for title, key in (("status", "by_status"), ("persona", "by_persona"), ("reason", "by_reason")):
        print(f"  by {title}:")
        for name, count in summary[key].items():
            print(f"    {name:<24} {count:>7,}")
    print(
        f"  planted labels reproduced on demand: {summary['planted_labels_reproduced']} "
        f"({summary['planted_left_to_rebuild']} planted wallets left to the daily rebuild)"
    )
    print(f"  elapsed {summary['elapsed_s']:.1f}s; database {summary['database']}")


def command_demo(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    from agents.data.generate import DEFAULT_END

    options = GenerateOptions(wallets=args.wallets, days=args.days, seed=args.seed, end=DEFAULT_END)
    summary = run_demo(settings, options, args.config, quiet=args.json)
    if args.json:
        sys.stdout.buffer.write(dumps(summary) + b"\n")
    else:
        _print_summary(summary)
    return 0
