"""The synthetic generator: deterministic, SPEC §1-valid trades, labels for every planted wallet."""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path

import orjson
import pytest

from agents.core.records import Trade
from agents.data.generate import (
    BEHAVIOURS,
    DEFAULT_END,
    Dataset,
    GenerateOptions,
    generate,
    write_dataset,
)
from agents.data.generate.options import InvalidOption
from agents.store import connect, insert_trade_rows, migrate, trade_row

WALLET = re.compile(r"^0x[0-9a-f]{40}$")
FIELDS = {"trade_id", "proxy_wallet", "condition_id", "side", "size", "price", "timestamp"}


@pytest.fixture(scope="module")
def small() -> Dataset:
    return generate(GenerateOptions(wallets=300, days=90, seed=11))


def _files(tmp_path: Path, options: GenerateOptions, name: str) -> dict[str, bytes]:
    paths = write_dataset(generate(options), tmp_path / name / "trades.jsonl")
    return {kind: path.read_bytes() for kind, path in paths.items()}


def test_same_seed_same_bytes_and_different_seed_differs(tmp_path: Path) -> None:
    options = GenerateOptions(wallets=120, days=70, seed=3)
    first = _files(tmp_path, options, "a")
    again = _files(tmp_path, options, "b")
    other = _files(tmp_path, GenerateOptions(wallets=120, days=70, seed=4), "c")
    assert first == again
    assert all(first[kind] != other[kind] for kind in ("trades", "markets", "labels"))


def test_trades_streams_the_same_sequence_twice(small: Dataset) -> None:
    assert list(small.trades()) == list(small.trades())


def test_trade_rows_are_the_stores_rows_and_insert_once(small: Dataset) -> None:
    rows = list(small.trade_rows())
    assert rows == [trade_row(Trade.model_validate(t)) for t in small.trades()]
    conn = connect(":memory:")
    migrate(conn)
    assert insert_trade_rows(conn, rows) == len(rows)
    # Redelivered trades are ignored, not counted.
    assert insert_trade_rows(conn, rows[:10]) == 0
    assert conn.execute("SELECT count(*) FROM trades").fetchone()[0] == len(rows)


def test_write_dataset_places_files_beside_the_trades(tmp_path: Path, small: Dataset) -> None:
    paths = write_dataset(small, tmp_path / "out" / "trades.jsonl")
    assert paths == {
        "trades": tmp_path / "out" / "trades.jsonl",
        "markets": tmp_path / "out" / "trades.markets.jsonl",
        "labels": tmp_path / "out" / "trades.labels.jsonl",
    }
    markets = [orjson.loads(line) for line in paths["markets"].read_bytes().splitlines()]
    labels = [orjson.loads(line) for line in paths["labels"].read_bytes().splitlines()]
    trades = paths["trades"].read_bytes().splitlines()
    assert markets == small.markets
    assert len(labels) == len(small.labels)
    assert labels[0] == {
        "proxy_wallet": small.labels[0].proxy_wallet,
        "behaviour": small.labels[0].behaviour,
        "status": small.labels[0].status,
        "persona": small.labels[0].persona,
        "reason": small.labels[0].reason,
    }
    assert len(trades) == sum(1 for _ in small.trades())


def test_every_trade_is_valid_per_spec(small: Dataset) -> None:
    end = small.options.end
    start = end - small.options.days * 86_400
    ids: set[str] = set()
    for trade in small.trades():
        assert set(trade) == FIELDS
        assert isinstance(trade["trade_id"], str) and trade["trade_id"] not in ids
        ids.add(trade["trade_id"])
        assert WALLET.match(str(trade["proxy_wallet"]))
        assert isinstance(trade["condition_id"], str) and trade["condition_id"]
        assert trade["side"] in ("BUY", "SELL")
        size, price, ts = trade["size"], trade["price"], trade["timestamp"]
        assert isinstance(size, float) and math.isfinite(size) and size > 0
        assert isinstance(price, float) and 0.01 <= price <= 0.99
        assert type(ts) is int and start <= ts <= end


def test_wallets_labels_and_markets(small: Dataset) -> None:
    assert len(small.wallets) == 300 == len(set(small.wallets))
    assert all(WALLET.match(w) for w in small.wallets)
    traded = {str(t["proxy_wallet"]) for t in small.trades()}
    assert traded == set(small.wallets)

    labelled = [label.proxy_wallet for label in small.labels]
    assert len(labelled) == len(set(labelled)) and set(labelled) <= set(small.wallets)
    assert 0.25 <= len(labelled) / len(small.wallets) <= 0.35
    assert {label.behaviour for label in small.labels} == set(BEHAVIOURS)
    for label in small.labels:
        assert (label.status, label.persona, label.reason) == BEHAVIOURS[label.behaviour]

    categories = Counter(m["category"] for m in small.markets)
    assert set(categories) == {"Sports", "Politics", "Crypto", "Economics", "Culture"}
    assert 200 <= len(small.markets) <= 500
    known = {m["condition_id"] for m in small.markets}
    assert any(t["condition_id"] not in known for t in small.trades())  # some are "unknown"


def test_trade_count_scales_with_wallets() -> None:
    counts = {
        n: sum(1 for _ in generate(GenerateOptions(wallets=n, days=120, seed=5)).trades())
        for n in (500, 2_000)
    }
    per_wallet = {n: c / n for n, c in counts.items()}
    assert all(60 <= v <= 160 for v in per_wallet.values()), per_wallet
    assert 3.0 <= counts[2_000] / counts[500] <= 5.0


def test_default_end_is_fixed() -> None:
    assert GenerateOptions(wallets=1, days=60, seed=0).end == DEFAULT_END == 1_793_491_200


def test_tiny_runs_still_plant() -> None:
    one = generate(GenerateOptions(wallets=1, days=60, seed=0))
    assert len(one.wallets) == 1 and len(one.labels) == 1
    assert sum(1 for _ in one.trades()) > 0


@pytest.mark.parametrize(
    ("wallets", "days", "message"),
    [(0, 90, "wallets"), (-5, 90, "wallets"), (10, 59, "days"), (10, 0, "days")],
)
def test_bad_options_are_rejected_naming_the_option(wallets: int, days: int, message: str) -> None:
    with pytest.raises(InvalidOption, match=message) as raised:
        GenerateOptions(wallets=wallets, days=days, seed=1)
    assert raised.value.option == message
