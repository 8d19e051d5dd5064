"""The demo's pipeline: generated wallets through the real topics and worker, timed per stage.

Trades go through the `trades` topic and discoveries through `wallet-discovered` to a worker
process, exactly as in production. The worker is started first and timed on its own; then each
stage is timed from its first publish to its last row committed in SQLite, the worker consuming
while the demo publishes. That is the end-to-end rate, publisher included (`make bench` times
the worker alone, on trades published before it starts).

The data set is deterministic for a seed (its as_of is fixed). A new run first deletes the demo
wallets' trades, so that the worker stores every one of them again and the count of stored rows
measures this run; it ends with the same rows. `streams.cli.demo` is the command: it parses the
options and prints the summary.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.core.errors import WalletError
from agents.core.features import feature_date
from agents.core.records import Trade, WalletDiscovered
from agents.data.generate import GenerateOptions, generate
from agents.store import Connection, connect
from config.settings import Settings
from streams.broker import EmbeddedBroker, free_port
from streams.demo.summary import accounted, count, last_accounted_at, stage_data, summarise
from streams.ops.offsets import admin_client, describe_group
from streams.producer import publisher
from streams.progress import Progress, format_duration
from streams.topics import worker_groups
from streams.worker import prepare

__all__ = ["StageTiming", "run_demo", "say", "warn"]

#: Prepended to the topic names when the demo runs on a configured broker, shared with others.
DEMO_TOPIC_PREFIX = "demo-"
# Each poll counts the demo's rows, a query over the whole data set: often enough for a live line
# and a precise end, rarely enough to leave the worker its CPU.
POLL_S = 0.25
STALL_TIMEOUT_S = 60.0
WORKER_START_TIMEOUT_S = 60.0
WORKER_STOP_TIMEOUT_S = 20.0
PUBLISH_STOP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class StageTiming:
    """One stage's wall-clock times: first publish, last message sent, last row committed."""

    items: int
    first_publish_at: float
    published_at: float
    stored_at: float

    @property
    def seconds(self) -> float:
        """First publish to last committed row: what the pipeline took for the stage."""
        return max(self.stored_at - self.first_publish_at, 0.0)

    @property
    def publish_seconds(self) -> float:
        return max(self.published_at - self.first_publish_at, 0.0)

    @property
    def per_second(self) -> int | None:
        """Items per second over `seconds`; None when the span is empty."""
        return round(self.items / self.seconds) if self.seconds > 0 else None


def say(message: str, quiet: bool) -> None:
    """One of the demo's own messages, on stderr (stdout is the summary's)."""
    if not quiet:
        print(message, file=sys.stderr, flush=True)


def warn(message: str) -> None:
    """A warning, on stderr even when quiet, as every command writes them."""
    print(f"personas demo: warning: {message}", file=sys.stderr, flush=True)


class _Sender(threading.Thread):
    """Publishes records on its own event loop, so that the caller can watch the store meanwhile."""

    def __init__(
        self, bootstrap: str, settings: Settings, topic: str, records: Sequence[Any]
    ) -> None:
        super().__init__(name=f"demo-publish-{topic}", daemon=True)
        self._broker, self._settings, self._topic = bootstrap, settings, topic
        self._records = records
        self.sent = 0
        self.first_publish_at = self.published_at = 0.0
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[Any] | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._publish())
        except BaseException as exc:  # handed over to the watching thread, which raises it
            self.error = exc

    async def _publish(self) -> None:
        self._loop, self._task = asyncio.get_running_loop(), asyncio.current_task()
        async with publisher(self._broker, self._settings) as pub:
            self.first_publish_at = time.time()
            await pub.send_many(self._topic, self._records, on_progress=self._progress)
        self.published_at = time.time()

    def _progress(self, sent: int) -> None:
        self.sent = sent

    def stop(self) -> None:
        """Cancel what is left to send (after a failure elsewhere) and wait for the thread."""
        if self.is_alive() and self._loop is not None and self._task is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self._loop.call_soon_threadsafe(self._task.cancel)
        self.join(PUBLISH_STOP_TIMEOUT_S)


@dataclass(frozen=True)
class _Run:
    """What the stages share: where to publish, the store to watch, the worker to check on."""

    settings: Settings
    bootstrap: str
    conn: Connection
    worker: subprocess.Popen[bytes]
    log_path: Path
    quiet: bool

    def check_worker(self, label: str) -> None:
        if self.worker.poll() is not None:
            raise WalletError(
                f"{label}: the worker exited with status {self.worker.returncode}; "
                f"see {self.log_path}"
            )


def _watch(
    run: _Run, label: str, total: int, sender: _Sender, stored: Callable[[], int],
    progress: Progress,
) -> float:  # fmt: skip
    """Poll until everything is sent and `stored()` reaches total; return the time it did."""
    seen, changed_at = (-1, -1), time.monotonic()
    while True:
        current, now = stored(), time.time()
        if sender.error is not None:
            raise WalletError(f"{label}: publishing failed: {sender.error!r}") from sender.error
        if current >= total and not sender.is_alive():
            return now
        run.check_worker(label)
        if (sender.sent, current) != seen:
            seen, changed_at = (sender.sent, current), time.monotonic()
        elif time.monotonic() - changed_at > STALL_TIMEOUT_S:
            raise WalletError(
                f"{label}: stuck at {current:,}/{total:,} for {STALL_TIMEOUT_S:.0f}s; "
                f"see {run.log_path}"
            )
        progress.update(current, sent=sender.sent)
        time.sleep(POLL_S)


def _stage(
    run: _Run, label: str, noun: str, topic: str, records: Sequence[Any],
    stored: Callable[[], int], last_commit: Callable[[float], float | None] | None = None,
) -> StageTiming:  # fmt: skip
    """Publish `records` while the worker consumes them; time it to the last committed row.

    `last_commit(since)` gives the store's own time of its last row when it keeps one; else the
    poll that saw the last row is the end (at most POLL_S late).
    """
    progress = Progress(label, len(records), noun=noun, enabled=not run.quiet)
    sender = _Sender(run.bootstrap, run.settings, topic, records)
    sender.start()
    try:
        seen_at = _watch(run, label, len(records), sender, stored, progress)
        progress.finish(len(records), sent=sender.sent)
    finally:
        sender.stop()
        progress.end()  # a failure's message starts on a line of its own
    committed_at = last_commit(sender.first_publish_at) if last_commit is not None else None
    return StageTiming(
        len(records), sender.first_publish_at, sender.published_at, committed_at or seen_at
    )


async def _await_consumers(run: _Run, progress: Progress) -> bool:
    """Wait until every agent's group has its partitions; False after the timeout."""
    deadline = time.monotonic() + WORKER_START_TIMEOUT_S
    async with admin_client(run.bootstrap, run.settings) as admin:
        while time.monotonic() < deadline:
            run.check_worker("worker start")
            groups = [await describe_group(admin, g) for g in worker_groups(run.settings)]
            # Stable with members: the group has synced its assignment. (The embedded broker
            # sends no assignments to decode, so `topics` stays empty there.)
            if all(group.state == "Stable" and group.members for group in groups):
                return True
            progress.update(0)
            await asyncio.sleep(POLL_S)
    return False


def _start_worker(
    settings: Settings, bootstrap: str, config: Path | None, log_path: Path
) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update({
        "PERSONAS_BROKER": bootstrap,
        "PERSONAS_DB": settings.database.url,
        "PERSONAS_WORKER__APP_ID": json.dumps(settings.worker.app_id),
        "PERSONAS_TOPICS__PREFIX": json.dumps(settings.topics.prefix),
        "PERSONAS_WORKER__WEB_PORT": str(free_port()),
    })  # fmt: skip
    command = [sys.executable, "-m", "streams.cli", "run", "--no-rebuild"]
    if config is not None:
        command += ["--config", str(config)]
    with log_path.open("wb") as log_file:  # this run's log only
        return subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT)


def _stop_worker(run: _Run) -> None:
    say("stopping the worker", run.quiet)
    run.worker.send_signal(signal.SIGTERM)
    try:
        status = run.worker.wait(WORKER_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        run.worker.kill()
        status = run.worker.wait()
    if status != 0:
        warn(f"the worker exited with status {status}; see {run.log_path}")


def _run_stages(
    run: _Run, trades: list[Trade], discoveries: list[WalletDiscovered], date: str, since: float
) -> dict[str, Any]:
    """Worker start, ingest, on-demand: each with its progress line; their times."""
    progress = Progress("worker start", 0, enabled=not run.quiet)
    try:
        consuming = asyncio.run(_await_consumers(run, progress))
        worker_start_s = progress.finish(0)
    finally:
        progress.end()
    if not consuming:
        warn(f"the worker's consumers are not confirmed after {WORKER_START_TIMEOUT_S:.0f}s; "
             "the ingest time includes its start")  # fmt: skip
    topics, conn = run.settings.topics, run.conn
    ingest = _stage(run, "ingest", "stored", topics.trades, trades, lambda: count(
        conn, "SELECT COUNT(*) FROM trades WHERE proxy_wallet IN (SELECT * FROM demo_wallets)"
    ))  # fmt: skip
    on_demand = _stage(
        run, "on-demand", "done", topics.discovered, discoveries,
        lambda: accounted(conn, since, date), lambda start: last_accounted_at(conn, start, date),
    )  # fmt: skip
    return {
        "worker_start_s": round(worker_start_s, 2),
        "ingest_s": round(ingest.seconds, 2), "trades_per_s": ingest.per_second,
        "trades_publish_s": round(ingest.publish_seconds, 2),
        "classify_s": round(on_demand.seconds, 2), "discoveries_per_s": on_demand.per_second,
        "discoveries_publish_s": round(on_demand.publish_seconds, 2),
    }  # fmt: skip


def demo_settings(settings: Settings) -> Settings:
    """The demo's own consumer groups, and on a configured (shared) broker its own topics too:
    it never joins a running worker's groups or publishes into its topics."""
    update: dict[str, Any] = {
        "worker": settings.worker.model_copy(update={"app_id": settings.worker.app_id + "-demo"})
    }
    if settings.broker.bootstrap:
        prefix = DEMO_TOPIC_PREFIX + settings.topics.prefix
        update["topics"] = settings.topics.model_copy(update={"prefix": prefix})
    return settings.model_copy(update=update)


@contextlib.contextmanager
def _demo_broker(settings: Settings, log_path: Path, *, embedded: bool) -> Iterator[str]:
    """An embedded broker of the demo's own, logging to `log_path`; else the configured one.

    Not the one in the run file (a `personas broker` or a worker's): the demo would share it
    with whatever else runs. Nor is its own recorded there: other commands keep finding theirs.
    """
    if not embedded:
        yield ",".join(settings.broker.bootstrap)
        return
    broker = EmbeddedBroker(log_path=log_path)
    try:
        yield broker.start()
    finally:
        broker.stop()


def run_demo(
    settings: Settings, options: GenerateOptions, config: Path | None, quiet: bool
) -> dict[str, Any]:
    """Run the demo and return its summary; progress and notes on stderr unless `quiet`."""
    started = time.monotonic()
    say(f"generating {options.wallets:,} wallets over {options.days} days (seed {options.seed})",
        quiet)  # fmt: skip
    dataset = generate(options)
    trades = [Trade.model_validate(row) for row in dataset.trades()]
    discoveries = [
        WalletDiscovered(proxy_wallet=wallet, discovered_at=options.end, source="demo")
        for wallet in dataset.wallets
    ]
    generate_s = time.monotonic() - started
    say(f"generated {len(trades):,} trades in {format_duration(generate_s)}", quiet)
    settings = demo_settings(settings)
    date, data_dir = feature_date(options.end), settings.data_dir
    log_path = data_dir / "demo-worker.log"
    embedded, broker_log = not settings.broker.bootstrap, data_dir / "demo-broker.log"
    with _demo_broker(settings, broker_log, embedded=embedded) as bootstrap:
        say(f"broker {bootstrap}" + (f", embedded (log {broker_log})" if embedded else ""),
            quiet)  # fmt: skip
        prepare(settings, bootstrap)
        with closing(connect(settings.database.url)) as conn:
            if deleted := stage_data(conn, dataset):
                say(f"deleted the {deleted:,} trades of an earlier demo run", quiet)
            demo_start = time.time()
            say(f"starting the worker (log {log_path})", quiet)
            worker = _start_worker(settings, bootstrap, config, log_path)
            run = _Run(settings, bootstrap, conn, worker, log_path, quiet)
            try:
                times = _run_stages(run, trades, discoveries, date, demo_start)
            finally:
                _stop_worker(run)
            summary = summarise(conn, dataset, date, demo_start)
    return summary | times | {
        "wallets": len(dataset.wallets), "trades": len(trades),
        "generate_s": round(generate_s, 2), "elapsed_s": round(time.monotonic() - started, 2),
        "database": settings.database.location, "worker_log": str(log_path),
        "broker": bootstrap, "broker_log": str(broker_log) if embedded else None,
    }  # fmt: skip
