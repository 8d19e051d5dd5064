"""FIFO settlement (SPEC §4), checked against hand-computed round trips."""

import pytest

from agents.core.settlement import settle


def test_partial_fills_consume_lots_front_first() -> None:
    rows = [
        ("m", "BUY", 10.0, 0.40, 100),
        ("m", "BUY", 10.0, 0.50, 200),
        ("m", "SELL", 15.0, 0.60, 300),
    ]
    result = settle(rows)
    assert [(t.condition_id, t.sell_ts, t.hold_seconds) for t in result.round_trips] == [
        ("m", 300, 200),
        ("m", 300, 100),
    ]
    assert [t.pnl for t in result.round_trips] == pytest.approx([2.0, 0.5])  # (0.6-0.4)*10, …
    assert result.open_markets == frozenset({"m"})  # 5 shares of the second lot remain


def test_sell_before_any_buy_is_ignored() -> None:
    result = settle([("m", "SELL", 5.0, 0.5, 100), ("m", "BUY", 5.0, 0.4, 200)])
    assert result.round_trips == []
    assert result.open_markets == frozenset({"m"})


def test_excess_sell_is_ignored_and_market_closes() -> None:
    result = settle([("m", "BUY", 2.0, 0.5, 1), ("m", "SELL", 5.0, 0.4, 2)])
    assert [t.pnl for t in result.round_trips] == [pytest.approx(-0.2)]
    assert result.open_markets == frozenset()


def test_markets_do_not_cross() -> None:
    result = settle([("a", "BUY", 1.0, 0.5, 1), ("b", "SELL", 1.0, 0.9, 2)])
    assert result.round_trips == []
    assert result.open_markets == frozenset({"a"})


def test_dust_below_epsilon_counts_as_zero() -> None:
    result = settle([("m", "BUY", 1.0, 0.5, 1), ("m", "SELL", 1.0 - 1e-10, 0.6, 2)])
    assert len(result.round_trips) == 1
    assert result.open_markets == frozenset()  # the 1e-10 left over is removed
    tiny = settle([("m", "BUY", 1e-10, 0.5, 1), ("m", "SELL", 1.0, 0.6, 2)])
    assert tiny.round_trips == [] and tiny.open_markets == frozenset()


def test_zero_pnl_round_trip_is_reported() -> None:
    (trip,) = settle([("m", "BUY", 1.0, 0.5, 1), ("m", "SELL", 1.0, 0.5, 7201)]).round_trips
    assert trip.pnl == 0.0 and trip.hold_seconds == 7200
