"""SPEC §5 features and lifetime stats, each checked against a value worked out by hand."""

import math
import statistics

import pytest

from agents.core.features import (
    DAY,
    Fill,
    LifetimeStats,
    WindowFeatures,
    feature_date,
    lifetime_stats,
    wallet_features,
    window_features,
)

AS_OF = 10 * DAY


def fill(
    tid: str, market: str, side: str, size: float, price: float, ts: int, cat: str = "c"
) -> Fill:
    return Fill(tid, market, side, size, price, ts, cat)


# Window of 7 days ending at AS_OF: [3·DAY, 10·DAY], both edges included.
SCENARIO = [
    fill("z", "m1", "BUY", 100.0, 0.5, 3 * DAY - 1, "Sports"),  # one second too early
    fill("a", "m1", "BUY", 10.0, 0.40, 3 * DAY, "Sports"),  # on the lower edge
    fill("b", "m1", "BUY", 10.0, 0.50, 3 * DAY + 100, "Sports"),
    fill("c", "m1", "SELL", 15.0, 0.60, 4 * DAY, "Sports"),  # partial: 10 of a, 5 of b
    fill("d", "m2", "SELL", 4.0, 0.95, 5 * DAY, "Politics"),  # nothing to match: ignored
    fill("e", "m2", "BUY", 4.0, 0.05, 5 * DAY + 10, "Politics"),
    fill("f", "m2", "SELL", 4.0, 0.02, AS_OF, "Politics"),  # on the upper edge
    fill("y", "m2", "BUY", 1.0, 0.5, AS_OF + 1, "Politics"),  # after as_of
]


@pytest.fixture(scope="module")
def golden() -> WindowFeatures:
    return window_features(list(reversed(SCENARIO)), AS_OF, 7)


def test_counts_and_volume(golden: WindowFeatures) -> None:
    w = golden
    assert (w.trade_count, w.buy_count, w.sell_count, w.unique_markets) == (6, 3, 3, 2)
    assert w.volume_usdc == pytest.approx(4.0 + 5.0 + 9.0 + 3.8 + 0.2 + 0.08)
    assert w.avg_trade_size_usdc == pytest.approx(22.08 / 6)
    notionals = [4.0, 5.0, 9.0, 3.8, 0.2, 0.08]
    assert w.size_cv == pytest.approx(statistics.pstdev(notionals) / statistics.fmean(notionals))
    assert w.buy_cost_usdc == pytest.approx(9.2)
    assert w.sell_proceeds_usdc == pytest.approx(12.88)
    assert w.cashflow_pnl == pytest.approx(3.68)


def test_round_trips(golden: WindowFeatures) -> None:
    w = golden
    # trips: +2.0 (a), +0.5 (b), -0.12 (e); the early sell d matched nothing
    assert (w.round_trips, w.win_count, w.loss_count) == (3, 2, 1)
    assert w.win_rate == pytest.approx(2 / 3)
    assert w.realized_pnl == pytest.approx(2.38)
    assert w.roi == pytest.approx(2.38 / 9.2)
    assert w.avg_win_pnl == pytest.approx(1.25)
    assert w.max_single_loss == pytest.approx(0.12)
    assert w.profitable_markets == 1
    assert w.pnl_top1_share == pytest.approx(1.0)
    assert w.open_positions == 1  # 5 shares of lot b remain in m1
    assert w.avg_hold_hours == pytest.approx((86_400 + 86_300 + (5 * DAY - 10)) / 3 / 3600)


def test_daily_series(golden: WindowFeatures) -> None:
    # day 4: +2.5, day 10: -0.12 → drawdown 0.12 / 2.5; one return only → sharpe 0
    assert golden.max_drawdown_pct == pytest.approx(4.8)
    assert golden.sharpe == 0.0


def test_shape_features(golden: WindowFeatures) -> None:
    w = golden
    assert w.trades_per_week == pytest.approx(6.0)
    assert w.trades_per_day == pytest.approx(6 / 7)
    assert w.concentration_ratio == pytest.approx(1.0)
    assert w.buy_sell_balance == pytest.approx(1.0)
    assert w.mid_fill_ratio == pytest.approx(1 / 6)  # only 0.50
    assert w.extreme_price_ratio == pytest.approx(0.5)  # 0.95, 0.05, 0.02
    assert w.burstiness_top_1h_ratio == pytest.approx(2 / 6)
    assert w.top_domain == "Sports"
    assert w.top_domain_ratio == pytest.approx(18.0 / 22.08)


def test_empty_window_is_all_zero() -> None:
    w = window_features([fill("a", "m", "BUY", 1.0, 0.5, 0)], AS_OF, 7)
    assert w.top_domain is None
    for name in w.__slots__:
        if name != "top_domain":
            assert getattr(w, name) == 0, name


def test_same_timestamp_orders_by_trade_id() -> None:
    sell_first = [fill("b", "m", "BUY", 1.0, 0.4, AS_OF), fill("a", "m", "SELL", 1.0, 0.6, AS_OF)]
    buy_first = [fill("a", "m", "BUY", 1.0, 0.4, AS_OF), fill("b", "m", "SELL", 1.0, 0.6, AS_OF)]
    assert window_features(sell_first, AS_OF, 7).round_trips == 0
    w = window_features(buy_first, AS_OF, 7)
    assert (w.round_trips, w.open_positions) == (1, 0)
    assert w.realized_pnl == pytest.approx(0.2)


def test_zero_denominators() -> None:
    w = window_features([fill("a", "m", "SELL", 2.0, 0.5, AS_OF)], AS_OF, 7)
    assert (w.round_trips, w.win_rate, w.roi, w.avg_win_pnl, w.avg_hold_hours) == (
        1 - 1,
        0,
        0,
        0,
        0,
    )
    assert w.buy_sell_balance == 0.0
    assert w.pnl_top1_share == 0.0


def test_zero_pnl_is_a_loss_of_zero() -> None:
    w = window_features(
        [fill("a", "m", "BUY", 1.0, 0.5, AS_OF - 10), fill("b", "m", "SELL", 1.0, 0.5, AS_OF)],
        AS_OF,
        7,
    )
    assert (w.win_count, w.loss_count, w.max_single_loss) == (0, 1, 0.0)


@pytest.mark.parametrize(
    ("price", "mid", "extreme"),
    [
        (0.44, 0, 0),
        (0.45, 1, 0),
        (0.5, 1, 0),
        (0.55, 1, 0),
        (0.56, 0, 0),
        (0.1, 0, 1),
        (0.11, 0, 0),
        (0.89, 0, 0),
        (0.9, 0, 1),
    ],
)
def test_price_bands_are_closed(price: float, mid: int, extreme: int) -> None:
    w = window_features([fill("a", "m", "BUY", 1.0, price, AS_OF)], AS_OF, 7)
    assert (w.mid_fill_ratio, w.extreme_price_ratio) == (mid, extreme)


@pytest.mark.parametrize(("gap", "burst"), [(3599, 1.0), (3600, 1.0), (3601, 0.5)])
def test_burstiness_window_is_closed(gap: int, burst: float) -> None:
    fs = [fill("a", "m", "BUY", 1.0, 0.5, AS_OF - gap), fill("b", "m", "BUY", 1.0, 0.5, AS_OF)]
    assert window_features(fs, AS_OF, 7).burstiness_top_1h_ratio == burst


def test_top_domain_tie_takes_name_ascending() -> None:
    fs = [
        fill("a", "m1", "BUY", 1.0, 0.5, AS_OF, "Zeta"),
        fill("b", "m2", "BUY", 1.0, 0.5, AS_OF, "Alpha"),
    ]
    w = window_features(fs, AS_OF, 7)
    assert (w.top_domain, w.top_domain_ratio) == ("Alpha", 0.5)


def test_concentration_takes_top_three_markets() -> None:
    sizes = [4.0, 3.0, 2.0, 1.0]  # notionals at price 0.5: 2, 1.5, 1, 0.5
    fs = [fill(str(i), f"m{i}", "BUY", s, 0.5, AS_OF) for i, s in enumerate(sizes)]
    assert window_features(fs, AS_OF, 7).concentration_ratio == pytest.approx(4.5 / 5.0)


def _daily(pnls: list[float]) -> list[Fill]:
    """One round trip per day; pnl = 0.1 · size."""
    out = []
    for day, pnl in enumerate(pnls):
        size = abs(pnl) / 0.1
        sell = 0.6 if pnl > 0 else 0.4
        ts = (day + 1) * DAY
        out += [
            fill(f"{day}b", "m", "BUY", size, 0.5, ts),
            fill(f"{day}s", "m", "SELL", size, sell, ts + 60),
        ]
    return out


@pytest.mark.parametrize(
    ("pnls", "drawdown", "sharpe"),
    [
        ([1.0, 2.0, 1.0], 0.0, 7 / 5 * math.sqrt(252)),  # r = 2, 1/3
        ([-1.0, 2.0, -1.0], 100.0, -3 * math.sqrt(252)),  # r = -2, -1; peak stays 0 on day 1
        ([1.0, -1.0, 1.0], 100.0, -math.sqrt(252)),  # r = -1, then 0 (equity 0)
        ([1.0], 0.0, 0.0),  # fewer than two days
        ([1.0, 1.0, 2.0], 0.0, 0.0),  # r = 1, 1: std 0
    ],
)
def test_drawdown_and_sharpe(pnls: list[float], drawdown: float, sharpe: float) -> None:
    w = window_features(_daily(pnls), 30 * DAY, 30)
    assert w.max_drawdown_pct == pytest.approx(drawdown, abs=1e-9)
    assert w.sharpe == pytest.approx(sharpe, abs=1e-6)


def test_rates_use_window_length() -> None:
    fs = [fill(str(i), "m", "BUY", 1.0, 0.5, AS_OF - i) for i in range(60)]
    w = window_features(fs, AS_OF, 30)
    assert [w.trades_per_week, w.trades_per_day] == pytest.approx([14.0, 2.0])


def test_lifetime_empty() -> None:
    assert lifetime_stats([], AS_OF) == LifetimeStats(None, None, 0, 0, 0, 0.0)


def test_lifetime_over_all_trades_up_to_as_of() -> None:
    fs = [
        fill("a", "m", "BUY", 10.0, 0.5, 0),
        fill("b", "m", "SELL", 10.0, 0.4, DAY - 1),
        fill("c", "m", "BUY", 1.0, 0.5, AS_OF + 1),  # after as_of
    ]
    life = lifetime_stats(fs, AS_OF)
    assert (life.first_trade_at, life.last_trade_at, life.total_trades) == (0, DAY - 1, 2)
    assert (life.wallet_age_days, life.days_since_last_trade) == (10, 9)  # floor of 9.00001
    assert life.lifetime_roi == pytest.approx(-1.0 / 5.0)


def test_wallet_features_matches_single_window_calls() -> None:
    windows, life = wallet_features(SCENARIO, AS_OF, (7, 30, 90))
    for w in (7, 30, 90):
        assert windows[w] == window_features(SCENARIO, AS_OF, w)
    assert life == lifetime_stats(SCENARIO, AS_OF)
    assert windows[30].trade_count == 7 and windows[90].trades_per_day == pytest.approx(7 / 90)


def test_feature_date_is_utc() -> None:
    assert feature_date(0) == "1970-01-01"
    assert feature_date(DAY - 1) == "1970-01-01"
    assert feature_date(DAY) == "1970-01-02"


def test_negative_window_is_rejected() -> None:
    with pytest.raises(ValueError, match="window_days"):
        window_features([], AS_OF, -1)
