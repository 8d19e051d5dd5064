"""The daily rebuild against the seed's approach, on 20,000 wallets / ~2,000,000 trades / 120 days.

Variants, each in its own process so that its peak RSS is its own:
- `naive`: the seed's approach: one query per wallet per window (plus one for lifetime stats),
  rows fetched and written one at a time, one commit per wallet, default connection settings. It
  runs on a fixed random sample of wallets and is extrapolated by rate (said in the table).
- `serial`: `run_rebuild` with `parallel=False`, with no checkpoint stored (the whole history).
- `parallel`: `run_rebuild` on a process pool (`rebuild.workers`, default the CPU count).
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import sqlite3
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import orjson

from bench import Context, Measurement, benchmark
from bench.dataset import bench_database, fresh_copy
from bench.process import run_measured

__all__ = ["naive_rebuild", "rebuild_benchmark"]

NAIVE_SAMPLE = 2_000
NAIVE_SEED = 20_260_213

_WINDOW_SQL = """
SELECT t.trade_id, t.condition_id, t.side, t.size, t.price, t.timestamp,
       COALESCE(m.category, 'unknown')
FROM trades AS t LEFT JOIN markets AS m ON m.condition_id = t.condition_id
WHERE t.proxy_wallet = ? AND t.timestamp BETWEEN ? AND ?"""


def naive_rebuild(db: Path, as_of: int, sample: int) -> dict[str, Any]:
    """The seed's per-wallet loop on a fixed random sample of the active wallets."""
    from agents.compute.rebuild import ACTIVE_WALLETS_SQL
    from agents.core.features import DAY, WINDOWS, Fill, wallet_features
    from agents.core.records import build_feature_set
    from agents.store import UPSERT_FEATURES_SQL, feature_row

    conn = sqlite3.connect(db)  # as a naive job opens it: implicit transactions, defaults
    wallets = [w for (w,) in conn.execute(ACTIVE_WALLETS_SQL, (as_of - max(WINDOWS) * DAY, as_of))]
    chosen = sorted(random.Random(NAIVE_SEED).sample(wallets, min(sample, len(wallets))))
    started = time.perf_counter()
    for wallet in chosen:
        windows = {}
        for days in WINDOWS:
            fills = []
            for row in conn.execute(_WINDOW_SQL, (wallet, as_of - days * 86_400, as_of)):
                fills.append(Fill(*row))
            windows[days] = wallet_features(fills, as_of, (days,))[0][days]
        history = [Fill(*row) for row in conn.execute(_WINDOW_SQL, (wallet, 0, as_of))]
        lifetime = wallet_features(history, as_of, (min(WINDOWS),))[1]
        computed_at = time.time()
        for days in WINDOWS:
            fs = build_feature_set(
                wallet, days, as_of, "batch", windows[days], lifetime, computed_at
            )
            conn.execute(UPSERT_FEATURES_SQL, feature_row(fs))
        conn.commit()
    seconds = time.perf_counter() - started
    conn.close()
    return {"wallets": len(chosen), "active_wallets": len(wallets), "seconds": seconds}


def _child(args: argparse.Namespace) -> dict[str, Any]:
    from agents.compute.rebuild import RebuildOptions, run_rebuild

    db = Path(args.db)
    with closing(sqlite3.connect(db)) as conn:  # every variant starts from no derived rows
        conn.execute("DELETE FROM wallet_features")
        conn.execute("DELETE FROM wallet_checkpoints")  # none: each wallet's whole history
        conn.commit()
    if args.variant == "naive":
        answer = naive_rebuild(db, args.as_of, args.sample)
    else:
        options = RebuildOptions(
            args.as_of, parallel=args.variant == "parallel", workers=args.workers
        )
        result = run_rebuild(db, options)
        answer = {**result.summary(), "seconds": result.duration_s}
    answer["self_maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    answer["children_maxrss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return answer


@benchmark("rebuild")
def rebuild_benchmark(context: Context) -> list[Measurement]:
    """Naive per-wallet loop vs serial vs parallel rebuild, on the cached 20k-wallet database."""
    data = bench_database(context.data_dir)
    workers = os.cpu_count() or 1
    sample = 200 if context.quick else NAIVE_SAMPLE
    # On a copy: the rebuilds write checkpoints, which the cached database must never hold (the
    # other benchmarks' on-demand reads would start from them).
    with tempfile.TemporaryDirectory(prefix="personas-bench-") as tmp:
        db = fresh_copy(data.path, Path(tmp) / "rebuild.db")
        base = ["-m", "bench.rebuild", "--db", str(db), "--as-of", str(data.as_of)]
        runs = {
            variant: run_measured(
                [*base, variant, "--workers", str(workers), "--sample", str(sample)]
            )
            for variant in ("naive", "serial", "parallel")
        }
    naive = runs["naive"].answer
    active = naive["active_wallets"]
    extrapolated = naive["seconds"] * active / naive["wallets"]
    dataset = f"{data.wallets:,} wallets, {data.trades:,} trades, {data.days} days"
    out = [
        Measurement(
            "naive (seed approach)", extrapolated, active, peak_rss_mb=runs["naive"].peak_rss_mb,
            note=f"timed on {naive['wallets']:,} sampled wallets, extrapolated; {dataset}",
            extra={"sampled_wallets": naive["wallets"], "sample_s": naive["seconds"]},
        ),
    ]  # fmt: skip
    for variant, label in (("serial", "rebuild serial"), ("parallel", f"rebuild {workers} procs")):
        answer = runs[variant].answer
        phases = answer["phases_s"]
        note = (
            f"{answer['rows_written']:,} rows; read+compute {phases['read_compute']:.1f}s, "
            f"write {phases['write']:.1f}s"
        )
        out.append(
            Measurement(
                label, answer["seconds"], answer["wallets"], peak_rss_mb=runs[variant].peak_rss_mb,
                baseline="naive (seed approach)", note=note, extra=answer,
            )
        )  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one measured rebuild variant (bench child)")
    parser.add_argument("--db", required=True)
    parser.add_argument("--as-of", type=int, required=True)
    parser.add_argument("variant", choices=["naive", "serial", "parallel"])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--sample", type=int, default=NAIVE_SAMPLE)
    answer = _child(parser.parse_args(argv))
    sys.stdout.buffer.write(orjson.dumps(answer) + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
