"""kill -9 at random moments, restart, and nothing is lost or doubled (issue 7: crash safety).

A seeded harness runs `personas run` as a subprocess, feeds it generated trades and discoveries
mixed with bad messages, SIGKILLs it at random moments (mid-batch, mid-startup, between the DLQ
send and the ack) and restarts it. At the end every valid trade is stored exactly once, every valid
discovery has exactly one classification row for its date (or is `insufficient`), every feature
row equals a fresh recomputation, and every bad message is in the DLQ.

Dead letters are at-least-once: a kill between the DLQ send and the offset commit re-sends one.
The assertion identifies a dead letter by its source (topic, partition, offset), as
`personas dlq list` does, so a re-sent letter is one letter, not two.

The rebuild is killed too (`personas rebuild --no-publish` as a subprocess, its whole process
group): re-running it gives the same rows as an uninterrupted run.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from contextlib import closing
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import pytest

from agents.core.features import WINDOWS, feature_date, wallet_features
from agents.core.records import Market, Trade
from agents.core.rules import classify
from agents.data.generate import DEFAULT_END, GenerateOptions, generate
from agents.store import (
    Connection,
    connect,
    fills_for_wallet,
    insert_markets,
    insert_trade_rows,
    migrate,
)
from agents.store.schema import FEATURE_NAMES, FEATURE_ROW_KEYS
from config.settings import Settings
from streams.ops.dlq import list_dead_letters
from streams.topics import dlq_name
from tests.conftest import wait_until
from tests.integration.checks import count, grew, prepare_scenario, wait_until_classified
from tests.integration.kafka import publish, publish_raw, read_topic
from tests.integration.worker import WorkerProcess

pytestmark = pytest.mark.slow

SEED = 20261125
WALLETS = 90
KILLS = 10
AS_OF = DEFAULT_END
_OK_WALLET = "0x" + "ab" * 20


# --- bad messages: each names the field it breaks, and carries a marker to find it again ---------


def bad_trades(tag: str, n: int) -> list[tuple[bytes, str]]:
    """`n` invalid trades (payload, field the reason must name), each unique by `tag`."""

    def trade(**changes: Any) -> dict[str, Any]:
        base = {"trade_id": f"bad-{tag}", "proxy_wallet": _OK_WALLET, "condition_id": "m",
                "side": "BUY", "size": 1.0, "price": 0.5, "timestamp": 1_700_000_000}  # fmt: skip
        base.update(changes)
        return {k: v for k, v in base.items() if v is not _DROP}

    kinds: list[tuple[bytes, str]] = [
        (f"{{not json {tag}".encode(), "<json>"),
        (orjson.dumps(trade(proxy_wallet=f"0x12{tag}")), "proxy_wallet"),
        (orjson.dumps(trade(price=1.5)), "price"),
        (orjson.dumps(trade(price=0)), "price"),
        (orjson.dumps(trade(size=-3.0)), "size"),
        (orjson.dumps(trade(side="HOLD")), "side"),
        (orjson.dumps(trade(timestamp="yesterday")), "timestamp"),
        (orjson.dumps(trade(condition_id=_DROP)), "condition_id"),
        (orjson.dumps(trade(colour="red")), "colour"),
        (orjson.dumps(trade(size="1.0")), "size"),
        (b'{"trade_id": "bad-' + tag.encode() + b'", "size": NaN}', "<json>"),
        (b"\xff\xfe" + tag.encode(), "<json>"),
    ]
    return [kinds[i % len(kinds)] for i in range(n)]


def bad_discoveries(tag: str, n: int) -> list[tuple[bytes, str]]:
    def disc(**changes: Any) -> dict[str, Any]:
        base = {"proxy_wallet": _OK_WALLET, "discovered_at": AS_OF, "source": f"bad-{tag}"}
        base.update(changes)
        return {k: v for k, v in base.items() if v is not _DROP}

    kinds: list[tuple[bytes, str]] = [
        (orjson.dumps(disc(proxy_wallet="0xnothex" + tag)), "proxy_wallet"),
        (orjson.dumps(disc(discovered_at="not a date")), "discovered_at"),
        (orjson.dumps(disc(discovered_at=-5)), "discovered_at"),
        (orjson.dumps(disc(source=_DROP)), "source"),
        (orjson.dumps(disc(extra=1)), "extra"),
        (f"[1, 2, {tag!r}]".replace("'", '"').encode(), "<json>"),
    ]
    return [kinds[i % len(kinds)] for i in range(n)]


class _Drop:
    pass


_DROP: Any = _Drop()


# --- reading the outcome ----------------------------------------------------------------------


def dead_letters(
    bootstrap: str, topic: str, at_least: int, timeout: float = 30.0
) -> tuple[dict[tuple[str, int, int], dict[str, Any]], int]:
    """Dead letters of `topic` by source (topic, partition, offset), and how many were re-sent."""
    records = read_topic(bootstrap, dlq_name(topic), expected=at_least, timeout=timeout)
    letters: dict[tuple[str, int, int], dict[str, Any]] = {}
    for record in records:
        envelope = orjson.loads(record.value)
        letters[(envelope["topic"], envelope["partition"], envelope["offset"])] = envelope
    return letters, len(records) - len(letters)


def original_bytes(envelope: dict[str, Any]) -> bytes:
    import base64

    if "value_base64" in envelope:
        return base64.b64decode(envelope["value_base64"])
    return str(envelope["value"]).encode()


def assert_dead_lettered(
    letters: dict[tuple[str, int, int], dict[str, Any]], expected: Sequence[tuple[bytes, str]]
) -> None:
    """Each bad payload is in the DLQ as often as it was sent, with a reason naming its field."""
    got = Counter((original_bytes(e), e["reason"].split(":")[0]) for e in letters.values())
    want = Counter(expected)
    assert got == want, {"missing": want - got, "unexpected": got - want}


def assert_trades_exactly_once(conn: Connection, trades: Sequence[Trade]) -> None:
    stored = conn.execute(
        "SELECT trade_id, proxy_wallet, condition_id, side, size, price, timestamp FROM trades"
    ).fetchall()
    assert len(stored) == len(trades)
    want = {(t.trade_id, t.proxy_wallet, t.condition_id, t.side, t.size, t.price, t.timestamp)
            for t in trades}  # fmt: skip
    assert set(stored) == want


def assert_discoveries_classified_once(
    conn: Connection, settings: Settings, wallets: Iterable[str], as_of: int
) -> tuple[int, int]:
    """One classification and one 30-day feature row per successful wallet, equal to a fresh
    recomputation; none for an insufficient one. Returns (classified, insufficient)."""
    rules = settings.rules
    window = settings.features.window_days
    date = feature_date(as_of)
    classified = insufficient = 0
    columns = ", ".join(FEATURE_NAMES)
    for wallet in wallets:
        status = conn.execute(
            "SELECT on_demand_status FROM wallets WHERE proxy_wallet = ?", (wallet,)
        ).fetchone()
        assert status is not None, f"discovery of {wallet} not recorded"
        windows, lifetime = wallet_features(fills_for_wallet(conn, wallet, as_of), as_of, (window,))
        found = conn.execute(
            f"SELECT source, {columns} FROM wallet_features WHERE proxy_wallet = ?"
            " AND feature_date = ? AND window_days = ?",
            (wallet, date, window),
        ).fetchall()
        features = [row[1:] for row in found]
        recomputed = tuple(
            getattr(windows[window], name) if hasattr(windows[window], name)
            else getattr(lifetime, name)
            for name in FEATURE_NAMES
        )  # fmt: skip
        rows = conn.execute(
            "SELECT status, persona, reason FROM wallet_classifications"
            " WHERE proxy_wallet = ? AND feature_date = ?",
            (wallet, date),
        ).fetchall()
        if status[0] == "insufficient":
            assert windows[window].round_trips < settings.features.min_settled_trades
            # Nothing on demand; a rebuild (batch) row, if any, is still the recomputation.
            assert rows == [] and {row[0] for row in found} <= {"batch"}
            assert all(row == recomputed for row in features), wallet
            insufficient += 1
            continue
        assert status[0] == "success", (wallet, status)
        assert len(features) == 1
        assert features[0] == recomputed, wallet
        assert len(rows) == 1
        result = classify(wallet, windows[window], lifetime, rules, frozenset(rules.known_bots))
        assert rows[0] == (result.status, result.persona, result.reason), wallet
        classified += 1
    return classified, insufficient


# --- the harness ------------------------------------------------------------------------------


class KillHarness:
    """Restarts the worker after each kill and keeps score."""

    def __init__(self, env: dict[str, str], bootstrap: str, log: Path, rng: random.Random) -> None:
        self.env, self.bootstrap, self.log, self.rng = env, bootstrap, log, rng
        self.worker: WorkerProcess | None = None
        self.kills = 0
        self.pids: list[int] = []

    def start(self) -> WorkerProcess:
        self.worker = WorkerProcess(self.env, self.bootstrap, self.log).start()
        assert self.worker.process is not None
        self.pids.append(self.worker.process.pid)
        return self.worker

    def kill_soon(self, progressed: Callable[[], bool], timeout: float = 25.0) -> None:
        """SIGKILL at a random moment: either blind (maybe mid-startup) or just after progress."""
        assert self.worker is not None
        if self.rng.random() < 0.25:
            time.sleep(self.rng.uniform(0.5, 4.0))
        else:
            wait_until(progressed, timeout, "the worker to make progress", poll=0.02)
            time.sleep(self.rng.uniform(0.0, 0.6))
        self.worker.kill()
        self.kills += 1

    def stop(self) -> int:
        assert self.worker is not None
        return self.worker.stop()


def test_kill9_at_random_moments_loses_nothing_doubles_nothing(
    bootstrap: str, isolated_env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    dataset, trades, discoveries, conn = prepare_scenario(
        bootstrap,
        settings,
        GenerateOptions(wallets=WALLETS, days=90, seed=SEED % 1000, end=AS_OF),
        "crash-test",
        rng,
    )
    topics = settings.topics
    harness = KillHarness(isolated_env, bootstrap, tmp_path / "worker.log", rng)
    sent_bad_trades: list[tuple[bytes, str]] = []
    sent_bad_discoveries: list[tuple[bytes, str]] = []
    trade_kills, discovery_kills = KILLS * 6 // 10, KILLS - KILLS * 6 // 10

    with closing(conn):
        # Phase 1: trades in chunks, a kill after each; discoveries wait for their trades, else a
        # discovery computed before its wallet's trades arrive would (rightly) differ from the end.
        chunks = [trades[i::trade_kills] for i in range(trade_kills)]
        for n, chunk in enumerate(chunks):
            harness.start()
            bad = bad_trades(f"t{n}", 4)
            sent_bad_trades += bad
            before = count(conn, "SELECT COUNT(*) FROM trades")
            publish(bootstrap, settings, topics.trades, chunk[: len(chunk) // 2])
            publish_raw(bootstrap, settings, topics.trades, [payload for payload, _ in bad])
            publish(bootstrap, settings, topics.trades, chunk[len(chunk) // 2 :])
            harness.kill_soon(partial(grew, conn, "SELECT COUNT(*) FROM trades", before))

        harness.start()
        wait_until(lambda: count(conn, "SELECT COUNT(*) FROM trades") == len(trades), 90,
                   "every trade stored after the kills")  # fmt: skip

        # Phase 2: discoveries (each wallet twice: a replay must not double anything) and bad ones.
        per_kill = [discoveries[i::discovery_kills] for i in range(discovery_kills)]
        done = "SELECT COUNT(*) FROM wallets WHERE on_demand_at IS NOT NULL"
        for n, found in enumerate(per_kill):
            if n:
                harness.start()
            bad = bad_discoveries(f"d{n}", 3)
            sent_bad_discoveries += bad
            before = count(conn, done)
            publish(bootstrap, settings, topics.discovered, found)
            publish_raw(bootstrap, settings, topics.discovered, [payload for payload, _ in bad])
            publish(bootstrap, settings, topics.discovered, found)
            harness.kill_soon(partial(grew, conn, done, before))

        # Drain: one last worker runs until everything is done, then stops cleanly.
        harness.start().wait_ready()
        wait_until_classified(conn, len(discoveries), 90)
        trade_letters, trade_resent = dead_letters(
            bootstrap, topics.trades, len(sent_bad_trades), timeout=60
        )
        disc_letters, disc_resent = dead_letters(
            bootstrap, topics.discovered, len(sent_bad_discoveries), timeout=60
        )
        assert harness.stop() == 0, harness.log.read_text()[-3000:]
        # `personas dlq list` counts a letter re-sent after a kill once.
        for topic, sent in ((topics.trades, sent_bad_trades),
                            (topics.discovered, sent_bad_discoveries)):  # fmt: skip
            _, listed = asyncio.run(list_dead_letters(bootstrap, settings, topic))
            assert listed == len(sent)

        assert harness.kills == KILLS
        assert_trades_exactly_once(conn, trades)
        classified, insufficient = assert_discoveries_classified_once(
            conn, settings, dataset.wallets, AS_OF
        )
        assert classified + insufficient == len(discoveries)
        assert classified > 0 and count(conn, "SELECT COUNT(*) FROM wallet_features") == classified
        assert_dead_lettered(trade_letters, sent_bad_trades)
        assert_dead_lettered(disc_letters, sent_bad_discoveries)
        log_text = harness.log.read_text()
        assert "database is locked" not in log_text
        print(
            f"\ncrash safety: {harness.kills} kills survived; {len(trades)} trades and "
            f"{len(discoveries)} wallets (x2 discoveries) checked: {classified} classified, "
            f"{insufficient} insufficient; lost 0, duplicated 0; dead-lettered "
            f"{len(trade_letters) + len(disc_letters)} of "
            f"{len(sent_bad_trades) + len(sent_bad_discoveries)} "
            f"(re-sent after a kill: {trade_resent + disc_resent})"
        )


# --- the rebuild, killed ----------------------------------------------------------------------

REBUILD_WALLETS = 1500
REBUILD_KILLS = 2


def _rebuild_rows(path: Path) -> dict[tuple[str, int], tuple[Any, ...]]:
    keys = [k for k in FEATURE_ROW_KEYS if k != "computed_at"]
    with closing(connect(path)) as conn:
        rows = conn.execute(f"SELECT {', '.join(keys)} FROM wallet_features")
        return {(row[0], row[2]): tuple(row) for row in rows}


def _start_rebuild(env: dict[str, str], db: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "rebuild", "--no-publish", "--json",
         "--as-of", str(AS_OF)],
        env={**env, "PERSONAS_DB": str(db)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True,  # its process pool too: the kill takes the whole group
    )  # fmt: skip


def test_rebuild_killed_midway_reruns_to_the_same_rows(tmp_path: Path) -> None:
    rng = random.Random(SEED + 1)
    dataset = generate(GenerateOptions(wallets=REBUILD_WALLETS, days=60, seed=3, end=AS_OF))
    base = tmp_path / "trades.db"
    with closing(connect(base)) as conn:
        migrate(conn)
        insert_markets(conn, (Market.model_validate(m) for m in dataset.markets))
        insert_trade_rows(conn, dataset.trade_rows())
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERSONAS_")}
    reference, killed = tmp_path / "reference.db", tmp_path / "killed.db"
    shutil.copy(base, reference)
    shutil.copy(base, killed)

    started = time.monotonic()
    proc = _start_rebuild(env, reference)
    out, _ = proc.communicate(timeout=120)
    full_s = time.monotonic() - started
    assert proc.returncode == 0, out.decode()
    expected = _rebuild_rows(reference)
    assert len(expected) >= len(WINDOWS) * REBUILD_WALLETS // 2

    # A kill lands at a random point of a run; on a busy machine a run can finish sooner than
    # the reference did, so a run that completes first is not counted and the next one is cut
    # earlier. Every run, completed or killed, must leave all of its rows or none.
    kills, attempts = 0, 0
    while kills < REBUILD_KILLS:
        attempts += 1
        assert attempts <= 4 * REBUILD_KILLS, "every rebuild finished before its kill"
        proc = _start_rebuild(env, killed)
        try:
            proc.wait(timeout=rng.uniform(0.2, 0.9) * full_s / attempts)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            assert proc.returncode == -signal.SIGKILL
            kills += 1
        else:
            proc.communicate()
            assert proc.returncode == 0
        partial = _rebuild_rows(killed)
        # One transaction: a killed run leaves all of its rows or none.
        assert partial in ({}, expected), len(partial)
    proc = _start_rebuild(env, killed)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out.decode()
    assert _rebuild_rows(killed) == expected
    with closing(sqlite3.connect(killed)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
