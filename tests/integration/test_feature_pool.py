"""The feature processes: same results as single-wallet reads, replaced when one dies, and gone
when the worker that started them is killed."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson
import pytest

from agents.compute.feature_pool import FeaturePool
from agents.compute.on_demand import Discovery, OnDemandJob, Outcome
from agents.core.features import DAY, wallet_features
from agents.store import connect, fills_for_wallet, migrate

pytestmark = pytest.mark.slow

AS_OF = 1_767_225_600  # 2026-01-01T00:00:00Z
WINDOW = 30
WALLETS = [f"0x{n:040x}" for n in range(1, 25)]
UNKNOWN = "0x" + "f" * 40  # no trades at all


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Path]:
    rng = random.Random(7)
    rows = [
        (f"t{w}-{n}", wallet, f"m{rng.randrange(6)}", rng.choice(["BUY", "BUY", "SELL"]),
         rng.uniform(1, 50), rng.uniform(0.05, 0.95), AS_OF - rng.randrange(60 * DAY))
        for w, wallet in enumerate(WALLETS)
        for n in range(rng.randrange(5, 60))
    ]  # fmt: skip
    path = tmp_path / "personas.db"
    with closing(connect(path)) as conn:
        migrate(conn)
        conn.executemany("INSERT INTO trades VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        conn.executemany(
            "INSERT INTO markets VALUES (?, ?)", [(f"m{n}", f"cat{n % 2}") for n in range(4)]
        )
    yield path


def discoveries() -> tuple[Discovery, ...]:
    # Discovery times differ: one read up to the latest must still cut each wallet at its own.
    return (
        *(Discovery(wallet, AS_OF - (n % 4) * 5 * DAY) for n, wallet in enumerate(WALLETS)),
        Discovery(UNKNOWN, AS_OF),
    )


def expected(db: Path, found: tuple[Discovery, ...]) -> list[tuple[int, dict[str, Any] | None]]:
    out = []
    with closing(connect(db)) as conn:
        for d in found:
            windows, lifetime = wallet_features(
                fills_for_wallet(conn, d.wallet, d.as_of), d.as_of, (WINDOW,)
            )
            window = windows[WINDOW]
            values = asdict(window) | asdict(lifetime) if window.round_trips >= 5 else None
            out.append((window.round_trips, values))
    return out


def observed(outcomes: list[Outcome]) -> list[tuple[int, dict[str, Any] | None]]:
    out = []
    for outcome in outcomes:
        assert outcome.error is None
        values = None
        if outcome.features is not None:
            message = orjson.loads(outcome.features)
            header = {
                "proxy_wallet",
                "window_days",
                "as_of",
                "feature_date",
                "source",
                "computed_at",
            }
            assert message["source"] == "on_demand" and message["window_days"] == WINDOW
            values = {k: v for k, v in message.items() if k not in header}
        out.append((outcome.round_trips, values))
    return out


def run_pool(db: Path, job: OnDemandJob, kill_one: bool = False) -> list[Outcome]:
    async def main() -> list[Outcome]:
        pool = FeaturePool(db, 10_000, processes=2)
        try:
            await pool.start()
            if kill_one:
                os.kill(next(iter(pool._pool._processes)), signal.SIGKILL)
                await asyncio.sleep(0.5)
            return await pool.compute(job)
        finally:
            await pool.close()

    return asyncio.run(main())


def test_pool_equals_single_wallet_reads_bit_for_bit(db: Path) -> None:
    found = discoveries()
    outcomes = run_pool(db, OnDemandJob(found, WINDOW, 5, computed_at=1.0))
    assert observed(outcomes) == expected(db, found)
    assert 3 < sum(o.features is not None for o in outcomes) < len(WALLETS) - 3  # a real mix
    assert outcomes[-1].insufficient and outcomes[-1].round_trips == 0  # the unknown wallet


def test_a_dead_process_is_replaced_and_the_job_still_computed(db: Path) -> None:
    found = discoveries()
    outcomes = run_pool(db, OnDemandJob(found, WINDOW, 5, computed_at=1.0), kill_one=True)
    assert observed(outcomes) == expected(db, found)


OWNER = """
import asyncio, sys
from agents.compute.feature_pool import FeaturePool

async def main():
    pool = FeaturePool(sys.argv[1], 10_000, processes=2)
    await pool.start()
    print(" ".join(str(pid) for pid in pool._pool._processes), flush=True)
    await asyncio.sleep(120)

asyncio.run(main())
"""


def test_pool_processes_end_when_their_worker_is_killed(db: Path) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", OWNER, str(db)], stdout=subprocess.PIPE, text=True
    ) as owner:
        assert owner.stdout is not None
        children = [int(pid) for pid in owner.stdout.readline().split()]
        assert len(children) == 2
        owner.kill()
    deadline = time.monotonic() + 10
    alive = children
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [pid for pid in children if Path(f"/proc/{pid}").exists() and not _zombie(pid)]
    assert alive == [], "pool processes outlived their worker"


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z"
    except OSError:
        return False
