"""10,000 malformed messages mixed with valid ones: each bad one dead-lettered naming its field,
every valid one processed, and the worker never restarts (issue 7: bad input)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from agents.core.codec import MAX_MESSAGE_BYTES, encode
from agents.core.records import Trade, WalletDiscovered
from agents.data.generate import DEFAULT_END, GenerateOptions
from agents.store import connect
from config.settings import Settings
from tests.conftest import wait_until
from tests.integration.checks import count, prepare_scenario, wait_until_classified
from tests.integration.test_crash_safety import (
    assert_dead_lettered,
    assert_discoveries_classified_once,
    assert_trades_exactly_once,
    dead_letters,
)
from tests.integration.worker import WorkerProcess

pytestmark = pytest.mark.slow

SEED = 1729
BAD = 10_000
TRADE_SHARE = 0.7  # of the bad ones on `trades`; the rest on `wallet-discovered`
AS_OF = DEFAULT_END
_HEX = "0123456789abcdef"

Case = tuple[bytes, str]  # (payload, the field its dead-letter reason must name)


def _wallet(rng: random.Random) -> str:
    return "0x" + "".join(rng.choice(_HEX) for _ in range(40))


def _trade(rng: random.Random, n: int) -> dict[str, Any]:
    return {
        "trade_id": f"fuzz-{n}", "proxy_wallet": _wallet(rng), "condition_id": f"m{n % 7}",
        "side": rng.choice(("BUY", "SELL")), "size": rng.uniform(0.1, 50),
        "price": rng.uniform(0.01, 0.99), "timestamp": AS_OF - rng.randrange(86_400 * 60),
    }  # fmt: skip


def _discovery(rng: random.Random, n: int) -> dict[str, Any]:
    return {"proxy_wallet": _wallet(rng), "discovered_at": AS_OF, "source": f"fuzz-{n}"}


def _changed(base: dict[str, Any], field: str, value: Any) -> bytes:
    return orjson.dumps({**base, field: value})


def _dropped(base: dict[str, Any], field: str) -> bytes:
    return orjson.dumps({k: v for k, v in base.items() if k != field})


def _not_finite(base: dict[str, Any], field: str, literal: bytes) -> bytes:
    # JSON has no NaN/Infinity: a producer that writes them writes invalid JSON (or 1e999).
    marker = b"__NOT_FINITE__"
    return _changed(base, field, "__NOT_FINITE__").replace(b'"' + marker + b'"', literal)


def _oversized(base: dict[str, Any]) -> bytes:
    return orjson.dumps({**base, "padding": "x" * (MAX_MESSAGE_BYTES + 10)})


def _truncated(base: dict[str, Any], rng: random.Random) -> bytes:
    raw = orjson.dumps(base)
    return raw[: rng.randrange(1, len(raw) - 1)]


TradeFuzz = Callable[[dict[str, Any], random.Random], Case]

TRADE_CASES: list[TradeFuzz] = [
    lambda t, r: (_truncated(t, r), "<json>"),
    lambda t, r: (b"\xff\xfe" + orjson.dumps(t), "<json>"),
    lambda t, r: (orjson.dumps([t]), "<json>"),
    lambda t, r: (b"", "<json>"),
    lambda t, r: (_changed(t, "size", str(t["size"])), "size"),
    lambda t, r: (_changed(t, "timestamp", "2026-01-01"), "timestamp"),
    lambda t, r: (_changed(t, "timestamp", 1.5), "timestamp"),
    lambda t, r: (_changed(t, "trade_id", 7), "trade_id"),
    lambda t, r: (_changed(t, "side", "buy"), "side"),
    lambda t, r: (_changed(t, "price", True), "price"),
    lambda t, r: (_dropped(t, r.choice(list(t))), "<dropped>"),
    lambda t, r: (_not_finite(t, "size", r.choice((b"NaN", b"Infinity", b"1e999"))), "<json>"),
    lambda t, r: (_changed(t, "size", None), "size"),
    lambda t, r: (_changed(t, "size", -r.uniform(0.001, 100)), "size"),
    lambda t, r: (_changed(t, "size", 0), "size"),
    lambda t, r: (_changed(t, "price", r.choice((0, 1, 1.0001, -0.2, 7))), "price"),
    lambda t, r: (_changed(t, "proxy_wallet", t["proxy_wallet"][:-1]), "proxy_wallet"),
    lambda t, r: (_changed(t, "proxy_wallet", "0x" + "g" * 40), "proxy_wallet"),
    lambda t, r: (_changed(t, "proxy_wallet", "'; DROP TABLE trades; --"), "proxy_wallet"),
    lambda t, r: (_changed(t, "proxy_wallet", "../" * 14), "proxy_wallet"),
    lambda t, r: (_changed(t, "condition_id", ""), "condition_id"),
    lambda t, r: (_changed(t, f"extra_{r.randrange(99)}", 1), "<extra>"),
]

DISCOVERY_CASES: list[TradeFuzz] = [
    lambda d, r: (_truncated(d, r), "<json>"),
    lambda d, r: (orjson.dumps(d["proxy_wallet"]), "<json>"),
    lambda d, r: (_changed(d, "proxy_wallet", d["proxy_wallet"].upper().replace("0X", "1x")),
                  "proxy_wallet"),
    lambda d, r: (_changed(d, "proxy_wallet", 12), "proxy_wallet"),
    lambda d, r: (_changed(d, "discovered_at", "last tuesday"), "discovered_at"),
    lambda d, r: (_changed(d, "discovered_at", -r.randrange(1, 10**9)), "discovered_at"),
    lambda d, r: (_changed(d, "discovered_at", True), "discovered_at"),
    lambda d, r: (_not_finite(d, "discovered_at", b"NaN"), "<json>"),
    lambda d, r: (_changed(d, "source", 3), "source"),
    lambda d, r: (_dropped(d, r.choice(list(d))), "<dropped>"),
    lambda d, r: (_changed(d, "colour", "red"), "colour"),
]  # fmt: skip


def _name_field(payload: bytes, field: str) -> str:
    """Resolve the placeholders: the dropped field, or the added unknown one."""
    if field == "<dropped>":
        return "<resolve-missing>"
    if field == "<extra>":
        keys: list[str] = list(orjson.loads(payload))
        return next(k for k in keys if k.startswith("extra_"))
    if len(payload) > MAX_MESSAGE_BYTES:
        return "<value>"
    return field


def fuzz_cases(
    rng: random.Random, n: int, make: Callable[[random.Random, int], dict[str, Any]],
    cases: Sequence[TradeFuzz], required: Sequence[str],
) -> list[Case]:  # fmt: skip
    out: list[Case] = []
    for i in range(n):
        base = make(rng, i)
        if i % 500 == 0:
            out.append((_oversized(base), "<value>"))
            continue
        payload, field = rng.choice(cases)(base, rng)
        if field == "<dropped>":
            field = next(k for k in required if k not in orjson.loads(payload))
        out.append((payload, _name_field(payload, field)))
    return out


async def _send_mixed(bootstrap: str, messages: Sequence[tuple[str, bytes | None, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5,
                                max_request_size=4 * MAX_MESSAGE_BYTES)  # fmt: skip
    await producer.start()
    try:
        pending = [await producer.send(topic, value, key=key) for topic, key, value in messages]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def test_ten_thousand_malformed_messages_are_dead_lettered_and_the_valid_ones_processed(
    bootstrap: str, isolated_env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    topics = settings.topics
    n_trades = int(BAD * TRADE_SHARE)
    bad_trades = fuzz_cases(rng, n_trades, _trade, TRADE_CASES, list(Trade.model_fields))
    bad_discoveries = fuzz_cases(
        rng, BAD - n_trades, _discovery, DISCOVERY_CASES, list(WalletDiscovered.model_fields)
    )
    options = GenerateOptions(wallets=25, days=60, seed=SEED, end=AS_OF)
    dataset, trades, discoveries, conn = prepare_scenario(
        bootstrap, settings, options, "fuzz-valid"
    )
    # Valid trades first (a discovery computed before its trades arrive would see fewer), each
    # stream shuffled with its bad messages; bad keys spread over every partition.
    first: list[tuple[str, bytes | None, bytes]] = [
        *((topics.trades, t.proxy_wallet.encode(), encode(t)) for t in trades),
        *((topics.trades, f"k{i}".encode(), p) for i, (p, _) in enumerate(bad_trades)),
    ]
    second: list[tuple[str, bytes | None, bytes]] = [
        *((topics.discovered, d.proxy_wallet.encode(), encode(d)) for d in discoveries),
        *((topics.discovered, f"k{i}".encode(), p) for i, (p, _) in enumerate(bad_discoveries)),
    ]
    rng.shuffle(first)
    rng.shuffle(second)

    with closing(conn), WorkerProcess(isolated_env, bootstrap, tmp_path / "worker.log") as worker:
        assert worker.process is not None
        pid = worker.process.pid
        asyncio.run(_send_mixed(bootstrap, first))
        wait_until(lambda: count(conn, "SELECT COUNT(*) FROM trades") == len(trades), 90,
                   "every valid trade stored")  # fmt: skip
        asyncio.run(_send_mixed(bootstrap, second))
        wait_until_classified(conn, len(discoveries), 60)
        trade_letters, trade_resent = dead_letters(bootstrap, topics.trades, len(bad_trades), 90)
        disc_letters, disc_resent = dead_letters(
            bootstrap, topics.discovered, len(bad_discoveries), 60
        )
        assert worker.process.poll() is None and worker.process.pid == pid, "worker restarted"
        assert worker.stop() == 0
        log_text = worker.log()

    assert "CRITICAL" not in log_text and "Traceback" not in log_text, log_text[-3000:]
    assert (trade_resent, disc_resent) == (0, 0)  # no restart, so nothing is sent twice
    assert_dead_lettered(trade_letters, bad_trades)
    assert_dead_lettered(disc_letters, bad_discoveries)
    with closing(connect(settings.database.url)) as check:
        assert_trades_exactly_once(check, trades)
        classified, insufficient = assert_discoveries_classified_once(
            check, settings, dataset.wallets, AS_OF
        )
        # Hostile strings never reached SQL as code, nor the file system.
        assert check.execute("SELECT COUNT(*) FROM trades").fetchone()[0] == len(trades)
    # Beside the database: only the worker's log and Faust's directory of the app.
    faust_dir = f"{settings.worker.app_id}-data"
    written = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("personas.db"))
    assert written == sorted(["worker.log", faust_dir])
    print(
        f"\nfuzz: {BAD} malformed dead-lettered {len(trade_letters) + len(disc_letters)} of {BAD}"
        f" (each naming its field); {len(trades)} valid trades and {len(discoveries)} valid "
        f"discoveries processed ({classified} classified, {insufficient} insufficient); "
        f"worker pid {pid} never restarted"
    )
