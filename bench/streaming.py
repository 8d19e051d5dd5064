"""Streaming benchmarks through the embedded broker, on the cached bench database (SPEC §7, §10).

Every variant runs real `personas run` worker processes against a private copy of the database,
with their own topic prefix and consumer group, and records the peak RSS of the worker tree.

- `ingest`: trades from the bench database through the `trades` topic into an empty database,
  against `personas import` of the same trades from a JSONL file.
- `on-demand`: discoveries published as fast as possible, until the last one is accounted for
  (classified, or recorded `insufficient`); per-stage rates from each worker's /metrics; then the
  same with a second worker in the same group (partition split, one leader for the rebuild).
- `latency`: a warm start (the first discovery after /health says 200), then discoveries at
  fixed rates: publish → committed classification, per discovery, with the per-hop breakdown.
- `classifier`: FeatureSets straight onto `wallet-features`: batched transactions against one
  commit per message.
- `concurrency`: the feature agent at concurrency 1 / 4 / 10 / 32 / 100 / 200.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from bench import Context, Measurement, benchmark
from bench.dataset import BenchData, bench_database, fresh_copy
from bench.process import _tree_rss, run_measured

__all__ = ["classifier_benchmark", "concurrency_benchmark", "ingest_benchmark"]

POLL_S = 0.05
STARTUP_TIMEOUT_S = 60.0
STALL_TIMEOUT_S = 60.0
# Messages in flight per producer before awaiting their deliveries.
PUBLISH_WINDOW = 20_000
RSS_SAMPLE_S = 0.2
INGEST_TRADES = 500_000
SAMPLE_SEED = 20_261_125
PROFILE_DIR = os.environ.get("BENCH_PROFILE", "")

TRADES_SQL = """SELECT trade_id, proxy_wallet, condition_id, side, size, price, timestamp
FROM trades ORDER BY rowid"""


# --------------------------------------------------------------------------------------------
# Harness: a broker, database copies, worker processes, publishing, metrics


@dataclass
class Run:
    """One isolated run: its database, topic prefix and consumer group."""

    bootstrap: str
    db: Path
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def env(self, **overrides: Any) -> dict[str, str]:
        env = {
            "PERSONAS_DB": str(self.db),
            "PERSONAS_BROKER": self.bootstrap,
            "PERSONAS_TOPICS__PREFIX": f"bench-{self.tag}-",
            "PERSONAS_WORKER__APP_ID": f"bench-{self.tag}",
            # The bench measures throughput, not the lag monitor.
            "PERSONAS_WORKER__LAG_CHECK_INTERVAL_S": "30",
        }
        env.update({f"PERSONAS_{key.upper()}": str(value) for key, value in overrides.items()})
        return env

    def settings(self, **overrides: Any) -> Any:
        from config.settings import load_settings

        return load_settings(env=self.env(**overrides))


@contextmanager
def broker(workdir: Path) -> Iterator[str]:
    from streams.broker import EmbeddedBroker

    embedded = EmbeddedBroker(log_path=workdir / "broker.log")
    try:
        yield embedded.start()
    finally:
        embedded.stop()


@contextmanager
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="personas-bench-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def empty_db(target: Path) -> Path:
    from agents.store import connect, migrate

    with closing(connect(target)) as conn:
        migrate(conn)
    return target


class Worker:
    """A `personas run` process; its tree's RSS is sampled until it stops."""

    def __init__(self, run: Run, log_dir: Path, **overrides: Any) -> None:
        from streams.broker import free_port

        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PERSONAS_")}
        env.update(run.env(**overrides))
        env["PERSONAS_WORKER__WEB_PORT"] = str(self.port)
        self.log = log_dir / f"worker-{run.tag}-{self.port}.log"
        command = [sys.executable, "-m", "streams.cli", "run", "--no-rebuild"]
        if PROFILE_DIR:  # BENCH_PROFILE=DIR: a py-spy profile of every worker, for the record
            out_file = Path(PROFILE_DIR) / f"{self.log.stem}.txt"
            command = [str(Path(sys.executable).with_name("py-spy")), "record", "-f", "raw",
                       "-o", str(out_file), "--", *command]  # fmt: skip
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                command,
                env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.peak_rss = 0
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_rss = max(self.peak_rss, _tree_rss(self.process.pid))
            self._stop.wait(RSS_SAMPLE_S)

    @property
    def peak_rss_mb(self) -> float:
        return self.peak_rss / 2**20

    def alive(self) -> bool:
        return self.process.poll() is None

    def metrics(self) -> dict[str, float]:
        """The worker's /metrics samples, by `name{label=value,…}`."""
        url = f"http://127.0.0.1:{self.port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                out[f"{sample.name}{{{labels}}}"] = sample.value
        return out

    def health(self) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.port}/health"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return dict(orjson.loads(response.read()))
        except urllib.error.HTTPError as exc:  # 503 still carries the report
            return dict(orjson.loads(exc.read()))

    def stop(self) -> None:
        if self.alive():
            # py-spy writes its profile on SIGINT (and the worker stops on it too).
            self.process.send_signal(signal.SIGINT if PROFILE_DIR else signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._stop.set()
        self._sampler.join()


def metric_sum(samples: dict[str, float], name: str) -> float:
    return sum(v for k, v in samples.items() if k.startswith(name + "{"))


def histogram_quantile(samples: dict[str, float], name: str, q: float) -> float | None:
    """The q-quantile of a Prometheus histogram, interpolated inside its bucket."""
    buckets = sorted(
        (math.inf if key.endswith("le=+Inf}") else float(key.split("le=")[1].rstrip("}")), value)
        for key, value in samples.items()
        if key.startswith(f"{name}_bucket{{")
    )
    if not buckets or buckets[-1][1] == 0:
        return None
    rank, below, lower = q * buckets[-1][1], 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if math.isinf(upper):
                return lower
            return lower + (upper - lower) * (rank - below) / max(count - below, 1e-12)
        below, lower = count, upper
    return None


async def _publish(
    bootstrap: str,
    topic: str,
    messages: Iterable[tuple[bytes, bytes]],
    rate: float | None = None,
    on_send: Callable[[bytes], None] | None = None,
) -> int:
    # Paced, it stands for an event producer sending each event as it happens (no linger);
    # flat out, for a bulk load.
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=0 if rate else 5, acks="all",
        max_batch_size=512 * 1024, max_request_size=4 * 2**20,
    )  # fmt: skip
    await producer.start()
    sent, pending, started = 0, [], time.monotonic()
    try:
        for queued, (key, value) in enumerate(messages):
            if rate:
                ahead = started + queued / rate - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)
            if on_send is not None:
                on_send(key)
            pending.append(await producer.send(topic, value, key=key))
            if len(pending) >= (PUBLISH_WINDOW if rate is None else max(1, int(rate))):
                await asyncio.gather(*pending)
                sent += len(pending)
                pending.clear()
        await asyncio.gather(*pending)
        return sent + len(pending)
    finally:
        await producer.stop()


def publish(bootstrap: str, topic: str, messages: Iterable[tuple[bytes, bytes]], **kw: Any) -> int:
    return asyncio.run(_publish(bootstrap, topic, messages, **kw))


def ensure_topics(run: Run, **overrides: Any) -> Any:
    from streams.topics import ensure_topics as create

    settings = run.settings(**overrides)
    asyncio.run(create(run.bootstrap, settings))
    return settings


def wait_until(
    label: str,
    done: Callable[[], int],
    total: int,
    workers: list[Worker],
    poll: float = POLL_S,
    on_poll: Callable[[], None] | None = None,
) -> float:
    """Poll `done()` until it reaches `total`; return the monotonic time it did."""
    last, last_change = -1, time.monotonic()
    while True:
        current = done()
        now = time.monotonic()
        if on_poll is not None:
            on_poll()
        if current >= total:
            return now
        for worker in workers:
            if not worker.alive():
                raise RuntimeError(f"{label}: worker exited; see {worker.log}")
        if current != last:
            last, last_change = current, now
        elif now - last_change > STALL_TIMEOUT_S:
            raise RuntimeError(f"{label}: stuck at {current}/{total}; see {workers[0].log}")
        time.sleep(poll)


def count(db: Path, sql: str, *params: Any) -> int:
    with closing(sqlite3.connect(db, timeout=30)) as conn:
        return int(conn.execute(sql, params).fetchone()[0])


# --------------------------------------------------------------------------------------------
# Ingest: topic vs `personas import`


def _trade_messages(source: Path, limit: int) -> Iterator[tuple[bytes, bytes]]:
    with closing(sqlite3.connect(source)) as conn:
        for trade_id, wallet, market, side, size, price, ts in conn.execute(
            TRADES_SQL + " LIMIT ?", (limit,)
        ):
            value = orjson.dumps({
                "trade_id": trade_id, "proxy_wallet": wallet, "condition_id": market,
                "side": side, "size": size, "price": price, "timestamp": ts,
            })  # fmt: skip
            yield wallet.encode(), value


@benchmark("ingest")
def ingest_benchmark(context: Context) -> list[Measurement]:
    """Trades through the topic into SQLite, against `personas import` of the same trades."""
    data = bench_database(context.data_dir)
    # 500,000 of the 2,023,316 trades: the full set costs ~6.5 minutes here (publishing it alone
    # ~100 s, the import ~100 s), too much for `make bench` in under 10 minutes; said in the table.
    total = min(data.trades, 100_000 if context.quick else INGEST_TRADES)
    out = []
    with workdir() as tmp:
        jsonl = tmp / "trades.jsonl"
        with jsonl.open("wb") as handle:
            for _, value in _trade_messages(data.path, total):
                handle.write(value + b"\n")
        db = empty_db(tmp / "import.db")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PERSONAS_")}
        env["PERSONAS_DB"] = str(db)
        imported = _run_import(jsonl, env)
        stored = count(db, "SELECT COUNT(*) FROM trades")
        out.append(Measurement(
            "personas import (JSONL file)", imported.wall_s, stored, unit="trades",
            peak_rss_mb=imported.peak_rss_mb, note="process start to exit, one file",
        ))  # fmt: skip
        jsonl.unlink()
        db.unlink()
        with broker(tmp) as bootstrap:
            run = Run(bootstrap, empty_db(tmp / "topic.db"))
            settings = ensure_topics(run)
            began = time.monotonic()
            messages = _trade_messages(data.path, total)
            published = publish(bootstrap, settings.topics.trades, messages)
            publish_s = time.monotonic() - began
            worker = Worker(run, tmp)
            try:
                started = time.monotonic()
                first: list[tuple[float, int]] = []

                def stored_now() -> int:
                    n = count(run.db, "SELECT COUNT(*) FROM trades")
                    if n and not first:
                        first.append((time.monotonic(), n))
                    return n

                finished = wait_until("ingest", stored_now, published, [worker], poll=0.1)
                samples = worker.metrics()
            finally:
                worker.stop()
            (first_at, first_n) = first[0]
            steady_s = finished - first_at
            ingested = metric_sum(samples, "personas_trades_ingested_total")
            out.append(Measurement(
                "trades topic → SQLite", steady_s, published - first_n, unit="trades",
                peak_rss_mb=worker.peak_rss_mb, baseline="personas import (JSONL file)",
                note=(f"first to last stored; incl. worker start {finished - started:.1f}s; "
                      f"pre-published at {published / publish_s:,.0f}/s; target ≥ 20,000/s"),
                extra={"published": published, "publish_s": publish_s,
                       "with_startup_s": finished - started, "ingested_metric": ingested},
            ))  # fmt: skip
    if total < data.trades:
        for m in out:
            m.note += f"; scaled down: {total:,} of the {data.trades:,} bench trades"
    return out


def _run_import(jsonl: Path, env: dict[str, str]) -> Any:
    return run_measured(["-m", "streams.cli", "import", "trades", str(jsonl), "--json"], env=env)


# --------------------------------------------------------------------------------------------
# On demand: throughput, scale-out, latency, concurrency


def discovery_messages(wallets: list[str], as_of: int) -> Iterator[tuple[bytes, bytes]]:
    for wallet in wallets:
        value = orjson.dumps({"proxy_wallet": wallet, "discovered_at": as_of, "source": "bench"})
        yield wallet.encode(), value


ACCOUNTED_SQL = """SELECT (SELECT COUNT(*) FROM wallet_classifications)
     + (SELECT COUNT(*) FROM wallets WHERE on_demand_status = 'insufficient')"""


def all_wallets(data: BenchData) -> list[str]:
    with closing(sqlite3.connect(data.path)) as conn:
        return [row[0] for row in conn.execute(
            "SELECT DISTINCT proxy_wallet FROM trades ORDER BY proxy_wallet")]  # fmt: skip


def busy_wallets(data: BenchData, n: int) -> list[str]:
    """A fixed sample of wallets with ≥ 10 trades in the on-demand window: most get classified."""
    since = data.as_of - 30 * 86_400
    with closing(sqlite3.connect(data.path)) as conn:
        wallets = [row[0] for row in conn.execute(
            """SELECT proxy_wallet FROM trades WHERE timestamp BETWEEN ? AND ?
               GROUP BY proxy_wallet HAVING COUNT(*) >= 10 ORDER BY proxy_wallet""",
            (since, data.as_of))]  # fmt: skip
    return random.Random(SAMPLE_SEED).sample(wallets, min(n, len(wallets)))


@dataclass
class OnDemandResult:
    seconds: float
    discoveries: int
    peak_rss_mb: float
    per_worker: list[dict[str, float]]
    stage_rates: dict[str, float]
    leaders: int | None = None


def warm_up(run: Run, settings: Any, wallet: str, as_of: int, workers: list[Worker]) -> None:
    """One discovery through the pipeline: the groups have joined and the store is open."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    publish(run.bootstrap, settings.topics.discovered, discovery_messages([wallet], as_of))
    while count(run.db, ACCOUNTED_SQL) < 1:
        if time.monotonic() > deadline or not all(w.alive() for w in workers):
            raise RuntimeError(f"workers did not start; see {workers[0].log}")
        time.sleep(POLL_S)


def on_demand_run(
    data: BenchData, tmp: Path, bootstrap: str, wallets: list[str], workers: int = 1,
    **overrides: Any,
) -> OnDemandResult:  # fmt: skip
    """Publish discoveries as fast as possible; time until every one is accounted for."""
    run = Run(bootstrap, fresh_copy(data.path, tmp / f"od-{uuid.uuid4().hex[:6]}.db"))
    settings = ensure_topics(run, **overrides)
    procs = [Worker(run, tmp, **overrides) for _ in range(workers)]
    try:
        warm_up(run, settings, wallets[0], data.as_of, procs)
        if workers > 1:  # both members in the group: partitions split before we measure
            time.sleep(settings.broker.rebalance_timeout_s + 2)
        measured = wallets[1:]
        base = [p.metrics() for p in procs]
        timeline: list[tuple[float, float, float]] = []

        def sample() -> None:
            if len(timeline) == 0 or time.monotonic() - timeline[-1][0] >= 0.25:
                m = [p.metrics() for p in procs]
                timeline.append((
                    time.monotonic(),
                    sum(metric_sum(x, "personas_on_demand_features_total") for x in m),
                    sum(metric_sum(x, "personas_classifications_total") for x in m),
                ))  # fmt: skip

        started = time.monotonic()
        publish(bootstrap, settings.topics.discovered, discovery_messages(measured, data.as_of))
        finished = wait_until(
            "on-demand", lambda: count(run.db, ACCOUNTED_SQL) - 1, len(measured), procs,
            on_poll=sample,
        )  # fmt: skip
        sample()
        after = [p.metrics() for p in procs]
        leaders = sum(bool(p.health().get("leader")) for p in procs) if workers > 1 else None
    finally:
        for p in procs:
            p.stop()
        run.db.unlink(missing_ok=True)
    per_worker = [
        {
            "features": metric_sum(a, "personas_on_demand_features_total")
            - metric_sum(b, "personas_on_demand_features_total"),
            "classified": metric_sum(a, "personas_classifications_total")
            - metric_sum(b, "personas_classifications_total"),
            "p99_compute_s": histogram_quantile(
                a, "personas_on_demand_features_duration_seconds", 0.99) or 0.0,
        }
        for a, b in zip(after, base, strict=True)
    ]  # fmt: skip
    return OnDemandResult(
        finished - started,
        len(measured),
        sum(p.peak_rss_mb for p in procs),
        per_worker,
        {"features": _stage_rate(timeline, 1), "classifier": _stage_rate(timeline, 2)},
        leaders,
    )


def _stage_rate(timeline: list[tuple[float, float, float]], column: int) -> float:
    """A stage's own rate: counted items over the span from its first to its last increase."""
    points = [(row[0], row[column]) for row in timeline]
    if len(points) < 2:
        return 0.0
    start = next((i for i in range(1, len(points)) if points[i][1] > points[0][1]), None)
    end = next((i for i in range(len(points)) if points[i][1] >= points[-1][1]), None)
    if start is None or end is None or end <= start - 1:
        return 0.0
    t0, c0 = points[start - 1]
    t1, c1 = points[end]
    return (c1 - c0) / (t1 - t0) if t1 > t0 else 0.0


@benchmark("on-demand")
def on_demand_benchmark(context: Context) -> list[Measurement]:
    """20,000 discoveries end to end, one worker vs two in the same group."""
    data = bench_database(context.data_dir)
    wallets = all_wallets(data)[: (2_001 if context.quick else 20_001)]
    out = []
    with workdir() as tmp, broker(tmp) as bootstrap:
        for workers in (1, 2):
            result = on_demand_run(data, tmp, bootstrap, wallets, workers=workers)
            split = ", ".join(f"{w['features']:,.0f}" for w in result.per_worker)
            note = (f"stage rates: features {result.stage_rates['features']:,.0f}/s, "
                    f"classifier {result.stage_rates['classifier']:,.0f}/s")  # fmt: skip
            if workers == 1:
                name = "on-demand, 1 worker"
                note += f"; target ≥ {THROUGHPUT_TARGET:,.0f}/s"
            else:
                name = "on-demand, 2 workers (same group)"
                note += f"; discoveries per worker {split}; leaders {result.leaders}"
            out.append(Measurement(
                name, result.seconds, result.discoveries, unit="discoveries",
                peak_rss_mb=result.peak_rss_mb,
                baseline=None if workers == 1 else "on-demand, 1 worker", note=note,
                extra={"per_worker": result.per_worker, "stage_rates": result.stage_rates,
                       "leaders": result.leaders, "workers": workers,
                       "targets": [] if workers > 1 else [target(
                           "discoveries/s end to end, one worker",
                           result.discoveries / result.seconds, THROUGHPUT_TARGET, "/s",
                           at_least=True)]},
            ))  # fmt: skip
    return out


@benchmark("concurrency")
def concurrency_benchmark(context: Context) -> list[Measurement]:
    """The feature agent's concurrency: where more discoveries at once stop helping."""
    data = bench_database(context.data_dir)
    wallets = all_wallets(data)[: (1_001 if context.quick else 5_001)]
    out = []
    with workdir() as tmp, broker(tmp) as bootstrap:
        for level in (1, 4, 10, 32, 100, 200):
            result = on_demand_run(data, tmp, bootstrap, wallets, features__concurrency=level)
            p99 = result.per_worker[0]["p99_compute_s"]
            out.append(Measurement(
                f"feature agent concurrency {level}", result.seconds, result.discoveries,
                unit="discoveries", peak_rss_mb=result.peak_rss_mb,
                baseline=None if level == 1 else "feature agent concurrency 1",
                note=(f"p99 read+compute per wallet {p99 * 1000:.1f} ms; "
                      f"features stage {result.stage_rates['features']:,.0f}/s"),
                extra={"p99_compute_s": p99, "stage_rates": result.stage_rates},
            ))  # fmt: skip
    return out


#: The latency targets (issue: a person notices): p99 per rate, and p50 at the target rate.
P99_TARGET_MS = {200: 100.0, 500: 150.0}
P50_TARGET_MS = 30.0
P50_TARGET_RATE = 200
WARM_START_TARGET_S = 1.0
THROUGHPUT_TARGET = 1_500.0


@benchmark("latency")
def latency_benchmark(context: Context) -> list[Measurement]:
    """A warm start, then discoveries at fixed rates: publish → committed classification.

    Each rate prints where the time went, hop by hop, from the worker's
    `personas_on_demand_hop_seconds` histogram over the measured discoveries.
    """
    data = bench_database(context.data_dir)
    seconds = 10 if context.quick else 30
    return [_warm_start(data), *(_latency_at(data, rate, seconds) for rate in P99_TARGET_MS)]


def target(figure: str, value: float, limit: float, unit: str, *, at_least: bool = False) -> Any:
    """A figure against its target, as `python -m bench` summarises them at the end."""
    met = value >= limit if at_least else value <= limit
    return {"figure": figure, "value": value, "target": limit, "unit": unit,
            "at_least": at_least, "met": met}  # fmt: skip


def _warm_start(data: BenchData) -> Measurement:
    """A worker that just answered /health 200 gets one discovery: how long until it is stored."""
    wallet = busy_wallets(data, 1)[0]
    with workdir() as tmp, broker(tmp) as bootstrap:
        run = Run(bootstrap, fresh_copy(data.path, tmp / "warm.db"))
        settings = ensure_topics(run)
        began = time.monotonic()
        worker = Worker(run, tmp)
        try:
            healthy_after = _wait_healthy(worker)
            sent = time.monotonic()
            publish(bootstrap, settings.topics.discovered, discovery_messages([wallet], data.as_of))
            done = wait_until("warm start", lambda: count(run.db, ACCOUNTED_SQL), 1, [worker],
                              poll=0.005)  # fmt: skip
        finally:
            worker.stop()
    first_s = done - sent
    return Measurement(
        "warm start: first discovery after /health 200", first_s, 1, unit="discoveries",
        peak_rss_mb=worker.peak_rss_mb,
        note=(f"publish → stored {first_s * 1000:.0f} ms; /health 200 after "
              f"{healthy_after - began:.1f}s; target ≤ {WARM_START_TARGET_S:g} s"),
        extra={"first_s": first_s, "healthy_after_s": healthy_after - began,
               "targets": [target("warm start, first discovery after /health 200",
                                  first_s * 1000, WARM_START_TARGET_S * 1000, "ms")]},
    )  # fmt: skip


def _wait_healthy(worker: Worker) -> float:
    """Poll /health until it answers 200; return the monotonic time it did."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if not worker.alive():
            raise RuntimeError(f"worker exited; see {worker.log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{worker.port}/health", timeout=1):
                return time.monotonic()  # urlopen raises on 503
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.02)
    raise RuntimeError(f"worker never healthy; see {worker.log}")


def _latency_at(data: BenchData, rate: int, seconds: int) -> Measurement:
    wallets = busy_wallets(data, rate * seconds + 1)
    with workdir() as tmp, broker(tmp) as bootstrap:
        run = Run(bootstrap, fresh_copy(data.path, tmp / "latency.db"))
        settings = ensure_topics(run)
        worker = Worker(run, tmp)
        try:
            warm_up(run, settings, wallets[0], data.as_of, [worker])
            with closing(sqlite3.connect(run.db, timeout=30)) as conn:
                last_rowid = conn.execute(
                    "SELECT COALESCE(MAX(rowid), 0) FROM wallet_classifications"
                ).fetchone()[0]
            sent: dict[str, float] = {}
            committed: dict[str, float] = {}
            measured = wallets[1:]
            stop = threading.Event()

            def watch() -> None:  # sees each classification row as soon as it is committed
                nonlocal last_rowid
                with closing(sqlite3.connect(run.db, timeout=30)) as conn:
                    while not stop.is_set():
                        rows = conn.execute(
                            "SELECT rowid, proxy_wallet FROM wallet_classifications "
                            "WHERE rowid > ?", (last_rowid,)).fetchall()  # fmt: skip
                        now = time.time()
                        for rowid, wallet in rows:
                            committed.setdefault(wallet, now)
                            last_rowid = max(last_rowid, rowid)
                        time.sleep(0.002)

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            before = worker.metrics()
            started = time.monotonic()
            publish(
                bootstrap, settings.topics.discovered, discovery_messages(measured, data.as_of),
                rate=rate, on_send=lambda key: sent.__setitem__(key.decode(), time.time()),
            )  # fmt: skip
            wait_until("latency", lambda: count(run.db, ACCOUNTED_SQL) - 1, len(measured), [worker])
            wall = time.monotonic() - started
            time.sleep(0.05)
            stop.set()
            watcher.join()
            hops = hop_breakdown(before, worker.metrics())
        finally:
            worker.stop()
    latencies = sorted(committed[w] - sent[w] for w in committed if w in sent)
    pct = {q: _percentile(latencies, q) * 1000 for q in (50, 95, 99, 100)}
    mean = 1000 * sum(latencies) / len(latencies) if latencies else float("nan")
    print(format_hops(f"per-hop breakdown at {rate}/s", hops, mean, pct[50], pct[99]), flush=True)
    targets = [target(f"p99 at {rate}/s", pct[99], P99_TARGET_MS[rate], "ms")]
    if rate == P50_TARGET_RATE:
        targets.append(target(f"p50 at {rate}/s", pct[50], P50_TARGET_MS, "ms"))
    p50_target = f", p50 ≤ {P50_TARGET_MS:g} ms" if rate == P50_TARGET_RATE else ""
    return Measurement(
        f"on-demand latency at {rate}/s", wall, len(measured), unit="discoveries",
        peak_rss_mb=worker.peak_rss_mb,
        note=(f"publish → committed classification ({len(latencies):,} classified): "
              f"p50 {pct[50]:.0f} ms, p95 {pct[95]:.0f} ms, p99 {pct[99]:.0f} ms, "
              f"max {pct[100]:.0f} ms; target p99 ≤ {P99_TARGET_MS[rate]:g} ms{p50_target}"),
        extra={"rate": rate, "classified": len(latencies), "mean_ms": mean, "p50_ms": pct[50],
               "p95_ms": pct[95], "p99_ms": pct[99], "max_ms": pct[100], "hops": hops,
               "targets": targets},
    )  # fmt: skip


HOP_METRIC = "personas_on_demand_hop_seconds"


def hop_breakdown(before: dict[str, float], after: dict[str, float]) -> dict[str, dict[str, float]]:
    """Mean, p50 and p99 (ms) of each hop over the samples taken between two scrapes."""
    from agents.metrics import ON_DEMAND_HOPS

    out = {}
    for hop in ON_DEMAND_HOPS:
        delta = {
            key.replace(f"hop={hop},", "").replace(f"hop={hop}", ""): value - before.get(key, 0.0)
            for key, value in after.items()
            if key.startswith(HOP_METRIC) and f"hop={hop}" in key.split("{", 1)[1].split(",")[0]
        }
        n = delta.get(f"{HOP_METRIC}_count{{}}", 0.0)
        total = delta.get(f"{HOP_METRIC}_sum{{}}", 0.0)
        out[hop] = {
            "count": n,
            "mean_ms": 1000 * total / n if n else float("nan"),
            "p50_ms": 1000 * (histogram_quantile(delta, HOP_METRIC, 0.50) or float("nan")),
            "p99_ms": 1000 * (histogram_quantile(delta, HOP_METRIC, 0.99) or float("nan")),
        }
    return out


def format_hops(
    title: str, hops: dict[str, dict[str, float]], mean: float, p50: float, p99: float
) -> str:
    """The breakdown as a table; each hop's p50/p99 is interpolated inside its bucket."""
    lines = [title, f"  {'hop':<20}{'mean ms':>9}{'p50 ms':>9}{'p99 ms':>9}{'count':>9}"]
    for hop, row in hops.items():
        lines.append(f"  {hop:<20}{row['mean_ms']:>9.1f}{row['p50_ms']:>9.1f}"
                     f"{row['p99_ms']:>9.1f}{row['count']:>9,.0f}")  # fmt: skip
    summed = sum(row["mean_ms"] for row in hops.values() if row["count"])
    lines.append(f"  {'sum of hop means':<20}{summed:>9.1f}")
    lines.append(f"  {'end to end':<20}{mean:>9.1f}{p50:>9.1f}{p99:>9.1f}")
    return "\n".join(lines)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    index = min(len(values) - 1, max(0, math.ceil(q / 100 * len(values)) - 1))
    return values[index]


# --------------------------------------------------------------------------------------------
# Classifier: batched vs one commit per message


def feature_messages(
    data: BenchData, wallets: list[str], days: int = 1
) -> list[tuple[bytes, bytes]]:
    """30-day FeatureSets (on_demand) of the wallets that have enough settled trades, stamped on
    each of the last `days` days (one classification row each)."""
    from agents.core.codec import encode
    from agents.core.features import DAY, wallet_features
    from agents.core.records import build_feature_set
    from agents.store import connect, fills_for_wallet

    out = []
    with closing(connect(data.path)) as conn:
        for wallet in wallets:
            windows, lifetime = wallet_features(fills_for_wallet(conn, wallet, data.as_of),
                                                data.as_of, (30,))  # fmt: skip
            if windows[30].round_trips < 5:
                continue
            for day in range(days):
                fs = build_feature_set(wallet, 30, data.as_of - day * DAY, "on_demand",
                                       windows[30], lifetime, time.time())  # fmt: skip
                out.append((wallet.encode(), encode(fs)))
    return out


@benchmark("classifier")
def classifier_benchmark(context: Context) -> list[Measurement]:
    """FeatureSets/s into SQLite: one transaction per batch vs one per message."""
    data = bench_database(context.data_dir)
    # Enough FeatureSets that the batched run lasts long enough to time (≈ 1 s).
    wallets = busy_wallets(data, 1_000 if context.quick else 5_000)
    messages = feature_messages(data, wallets, days=1 if context.quick else 4)
    out = []
    with workdir() as tmp, broker(tmp) as bootstrap:
        for batch_max, name in ((1, "one commit per message"), (None, "batched (default)")):
            overrides = {} if batch_max is None else {"classifier__batch_max": batch_max}
            run = Run(bootstrap, fresh_copy(data.path, tmp / f"cls-{batch_max}.db"))
            settings = ensure_topics(run, **overrides)
            publish(bootstrap, settings.topics.features, messages)
            worker = Worker(run, tmp, **overrides)
            first: list[float] = []

            def done() -> int:
                n = count(run.db, "SELECT COUNT(*) FROM wallet_classifications")  # noqa: B023
                if n and not first:  # noqa: B023
                    first.append(time.monotonic())  # noqa: B023
                return n

            try:
                finished = wait_until("classifier", done, len(messages), [worker], poll=0.02)
                samples = worker.metrics()
            finally:
                worker.stop()
                run.db.unlink(missing_ok=True)
            batches = samples.get("personas_classifier_batch_size_count{}", 0.0)
            out.append(Measurement(
                f"classifier, {name}", finished - first[0], len(messages), unit="FeatureSets",
                peak_rss_mb=worker.peak_rss_mb,
                baseline=None if batch_max == 1 else "classifier, one commit per message",
                note=f"first to last committed; {batches:,.0f} transactions"
                + ("; target ≥ 10× baseline" if batch_max is None else ""),
                extra={"transactions": batches},
            ))  # fmt: skip
    return out
