"""Records and codec: valid input parses, every kind of bad input is named by field."""

from __future__ import annotations

import dataclasses
import math

import orjson
import pytest

from agents.core.codec import MAX_MESSAGE_BYTES, decode
from agents.core.errors import InvalidMessage
from agents.core.features import LifetimeStats, WindowFeatures
from agents.core.records import FeatureSet, Trade, WalletDiscovered, parse_timestamp

WALLET = "0x" + "Ab" * 20
GOOD_TRADE = {
    "trade_id": "t1", "proxy_wallet": WALLET, "condition_id": "m1", "side": "BUY",
    "size": 10.0, "price": 0.4, "timestamp": 1_700_000_000,
}  # fmt: skip


def encoded(**changes: object) -> bytes:
    value = {**GOOD_TRADE, **changes}
    return orjson.dumps({k: v for k, v in value.items() if v is not ...})


def test_valid_trade_lowercases_wallet() -> None:
    trade = decode(Trade, encoded())
    assert trade.proxy_wallet == WALLET.lower()
    assert trade.size == 10.0


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"proxy_wallet": "0x123"}, "proxy_wallet"),
        ({"proxy_wallet": "0x" + "g" * 40}, "proxy_wallet"),
        ({"side": "HOLD"}, "side"),
        ({"size": 0}, "size"),
        ({"size": -1.5}, "size"),
        ({"size": "10"}, "size"),
        ({"price": 1.0}, "price"),
        ({"price": 0.0}, "price"),
        ({"price": 1.5}, "price"),
        ({"timestamp": "soon"}, "timestamp"),
        ({"timestamp": 1.5}, "timestamp"),
        ({"trade_id": ""}, "trade_id"),
        ({"condition_id": ...}, "condition_id"),
        ({"extra": 1}, "extra"),
    ],
)
def test_bad_trade_names_the_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidMessage) as caught:
        decode(Trade, encoded(**changes))
    assert caught.value.field == field
    assert field in str(caught.value)


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_numbers_are_rejected(value: float) -> None:
    raw = encoded().replace(
        b'"size":10.0', b'"size":' + (b"NaN" if math.isnan(value) else b"1e999")
    )
    with pytest.raises(InvalidMessage) as caught:
        decode(Trade, raw)
    assert caught.value.field in {"size", "<json>"}


@pytest.mark.parametrize(
    ("raw", "field"),
    [(b"{not json", "<json>"), (b"[1, 2]", "<json>"), (None, "<value>"),
     (b"x" * (MAX_MESSAGE_BYTES + 1), "<value>")],
)  # fmt: skip
def test_unparseable_payloads(raw: bytes | None, field: str) -> None:
    with pytest.raises(InvalidMessage) as caught:
        decode(Trade, raw)
    assert caught.value.field == field


def test_discovery_accepts_epoch_or_iso() -> None:
    iso = decode(WalletDiscovered, orjson.dumps(
        {"proxy_wallet": WALLET, "discovered_at": "2026-01-02T03:04:05Z", "source": "x"}
    ))  # fmt: skip
    epoch = decode(WalletDiscovered, orjson.dumps(
        {"proxy_wallet": WALLET, "discovered_at": iso.discovered_at, "source": "x"}
    ))  # fmt: skip
    assert iso == epoch
    assert iso.discovered_at == 1767323045


@pytest.mark.parametrize("value", ["yesterday", True, None, -5, "2026-13-01"])
def test_discovery_rejects_bad_times(value: object) -> None:
    raw = orjson.dumps({"proxy_wallet": WALLET, "discovered_at": value, "source": "x"})
    with pytest.raises(InvalidMessage) as caught:
        decode(WalletDiscovered, raw)
    assert caught.value.field == "discovered_at"


def test_parse_timestamp_treats_naive_iso_as_utc() -> None:
    assert parse_timestamp("1970-01-01T00:01:00") == 60
    assert parse_timestamp("60") == 60


def test_feature_set_carries_exactly_the_core_fields() -> None:
    # The topic schema is spelled out on purpose (it is a wire contract); this keeps it in step.
    core = [f.name for cls in (WindowFeatures, LifetimeStats) for f in dataclasses.fields(cls)]
    envelope = ["proxy_wallet", "window_days", "as_of", "feature_date", "source", "computed_at"]
    assert list(FeatureSet.model_fields) == envelope + core
