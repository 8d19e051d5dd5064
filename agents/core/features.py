"""Per-wallet window features and lifetime stats (SPEC §3, §5); pure, stdlib only."""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any, NamedTuple

from agents.core.settlement import Queues, settle_fills

__all__ = [
    "WINDOWS",
    "Fill",
    "LifetimeStats",
    "WindowFeatures",
    "WindowFolds",
    "feature_date",
    "feature_values",
    "lifetime_stats",
    "many_wallet_features",
    "sorted_fills",
    "wallet_features",
    "window_features",
    "windows_of_sorted",
]

WINDOWS: tuple[int, ...] = (7, 30, 90)

DAY = 86_400
HOUR = 3_600
# Mid fill: |price − 0.5| ≤ 0.05, written as a closed interval so 0.45 and 0.55 count
# (0.55 − 0.5 in floats is 0.05000000000000004, which would wrongly exclude it).
_MID_LOW, _MID_HIGH = 0.45, 0.55
_EXTREME_LOW, _EXTREME_HIGH = 0.1, 0.9
_SHARPE_EPS = 1e-12  # SPEC §5: equity or std this close to 0 is treated as 0
_ANNUALISE = math.sqrt(252)


class Fill(NamedTuple):
    """One trade of one wallet, already validated."""

    trade_id: str
    condition_id: str
    side: str
    size: float
    price: float
    timestamp: int
    category: str


@dataclass(frozen=True, slots=True)
class WindowFeatures:
    """Every SPEC §5 feature of one window; field names are the SPEC column names, in SPEC order."""

    trade_count: int
    buy_count: int
    sell_count: int
    unique_markets: int
    volume_usdc: float
    avg_trade_size_usdc: float
    size_cv: float
    buy_cost_usdc: float
    sell_proceeds_usdc: float
    cashflow_pnl: float
    round_trips: int
    win_count: int
    loss_count: int
    win_rate: float
    realized_pnl: float
    roi: float
    avg_win_pnl: float
    max_single_loss: float
    profitable_markets: int
    pnl_top1_share: float
    open_positions: int
    avg_hold_hours: float
    max_drawdown_pct: float
    sharpe: float
    trades_per_week: float
    trades_per_day: float
    concentration_ratio: float
    buy_sell_balance: float
    mid_fill_ratio: float
    extreme_price_ratio: float
    burstiness_top_1h_ratio: float
    top_domain: str | None
    top_domain_ratio: float


@dataclass(frozen=True, slots=True)
class LifetimeStats:
    """Stats over every trade up to as_of, carried so the classifier never reads trades."""

    first_trade_at: int | None
    last_trade_at: int | None
    total_trades: int
    wallet_age_days: int
    days_since_last_trade: int
    lifetime_roi: float


def feature_date(as_of: int) -> str:
    """UTC date of `as_of` as YYYY-MM-DD."""
    return datetime.fromtimestamp(as_of, tz=UTC).date().isoformat()


def _sort_key(fill: Fill) -> tuple[int, str, Fill]:
    # The whole fill breaks a (timestamp, trade_id) tie: even duplicate ids sort deterministically.
    return (fill.timestamp, fill.trade_id, fill)


_timestamp = itemgetter(5)  # Fill.timestamp, without a Python call per fill


def _sorted_upto(fills: Iterable[Fill], as_of: int) -> list[Fill]:
    # Every sum runs in this canonical order, so no result depends on the input order by one bit.
    fs = list(fills)
    if fs and max(map(_timestamp, fs)) > as_of:
        fs = [f for f in fs if f.timestamp <= as_of]
    # By time alone first (the store reads in time order, so this is nearly free); only a wallet
    # with two trades in one second needs the whole (timestamp, trade_id, fill) key.
    fs.sort(key=_timestamp)
    if len(set(map(_timestamp, fs))) < len(fs):
        fs.sort(key=_sort_key)
    return fs


def _div(num: float, den: float) -> float:
    return num / den if den else 0.0


def _ratio(num: float, den: float) -> float:
    # Clamped: a part summed in another order than its whole may exceed it by one ulp.
    return min(1.0, num / den) if den else 0.0


def _rates(trade_count: int, window_days: int) -> tuple[float, float]:
    return _div(trade_count, window_days / 7), _div(trade_count, window_days)


class _FillStats(NamedTuple):  # what one pass over the window's fills gives
    buy_count: int
    volume: float
    buy_cost: float
    sell_proceeds: float
    size_cv: float
    mid_fills: int
    extreme_fills: int
    market_volume: dict[str, float]
    category_volume: dict[str, float]


class _TripStats(NamedTuple):  # what the window's settled round trips give (SPEC §4)
    round_trips: int
    wins: int
    realized: float
    win_pnl: float
    hold_seconds: int
    max_loss: float
    market_pnl: dict[str, float]
    day_pnl: dict[int, float]
    open_positions: int


def _fill_stats(fs: Sequence[Fill]) -> _FillStats:
    buy_count = mid = extreme = 0
    volume = buy_cost = sell_proceeds = 0.0
    market_volume: dict[str, float] = {}
    category_volume: dict[str, float] = {}
    notionals: list[float] = []
    # Locals and tuple unpacking, not attribute and global lookups: this loop is the hottest of
    # the rebuild after settlement (see make bench and the profile in issue 14).
    mid_low, mid_high, extreme_low, extreme_high = _MID_LOW, _MID_HIGH, _EXTREME_LOW, _EXTREME_HIGH
    for _, market, side, size, price, _, category in fs:
        v = size * price
        notionals.append(v)
        volume += v
        if side == "BUY":
            buy_count += 1
            buy_cost += v
        else:
            sell_proceeds += v
        market_volume[market] = market_volume.get(market, 0.0) + v
        category_volume[category] = category_volume.get(category, 0.0) + v
        if mid_low <= price <= mid_high:
            mid += 1
        if price >= extreme_high or price <= extreme_low:
            extreme += 1
    mean = _div(volume, len(fs))
    size_cv = _std(notionals, mean) / mean if notionals and mean else 0.0
    return _FillStats(
        buy_count, volume, buy_cost, sell_proceeds, size_cv, mid, extreme,
        market_volume, category_volume,
    )  # fmt: skip


def _std(values: list[float], mean: float) -> float:
    """Population standard deviation of `values` (not empty) around their `mean`."""
    var = 0.0
    for v in values:
        var += (v - mean) * (v - mean)
    return math.sqrt(var / len(values))


def _trip_stats(fs: Sequence[Fill]) -> _TripStats:
    queues: Queues = {}
    trips = settle_fills(queues, fs)
    wins = hold_seconds = 0
    realized = win_pnl = max_loss = 0.0
    market_pnl: dict[str, float] = {}
    day_pnl: dict[int, float] = {}
    for market, sell_ts, pnl, hold in trips:
        realized += pnl
        hold_seconds += hold
        if pnl > 0:
            wins += 1
            win_pnl += pnl
        elif -pnl > max_loss:
            max_loss = -pnl
        market_pnl[market] = market_pnl.get(market, 0.0) + pnl
        day = sell_ts // DAY
        day_pnl[day] = day_pnl.get(day, 0.0) + pnl
    return _TripStats(
        len(trips), wins, realized, win_pnl, hold_seconds, max_loss, market_pnl, day_pnl,
        sum(1 for queue in queues.values() if queue),
    )  # fmt: skip


def _profitable_markets(market_pnl: dict[str, float]) -> tuple[int, float, float]:
    """How many markets made money, their summed pnl and the largest one's."""
    profitable = 0
    positive = top1 = 0.0
    for pnl in market_pnl.values():
        if pnl > 0:
            profitable += 1
            positive += pnl
            top1 = max(top1, pnl)
    return profitable, positive, top1


def _top3_volume(market_volume: dict[str, float]) -> float:
    top3 = 0.0
    for v in sorted(market_volume.values(), reverse=True)[:3]:
        top3 += v
    return top3


def _top_domain(category_volume: dict[str, float]) -> tuple[str | None, float]:
    """The category with the most volume, the alphabetically first on a tie."""
    top: str | None = None
    top_volume = 0.0
    for cat in sorted(category_volume):
        if top is None or category_volume[cat] > top_volume:
            top, top_volume = cat, category_volume[cat]
    return top, top_volume


class WindowFolds(NamedTuple):
    """What a window's features are made of: the folds over its fills and its round trips.

    `_folds` computes them in Python; `agents.core.shard_kernel` computes the same folds, in the
    same order, for a whole shard at once. `feature_values` turns either into features.
    """

    trade_count: int
    buy_count: int
    unique_markets: int
    mid_fills: int
    extreme_fills: int
    round_trips: int
    wins: int
    hold_seconds: int
    profitable_markets: int
    open_positions: int
    burst: int
    volume: float
    buy_cost: float
    sell_proceeds: float
    size_cv: float
    top3_volume: float
    top_domain_volume: float
    realized: float
    win_pnl: float
    max_loss: float
    positive_pnl: float
    top1_pnl: float
    max_drawdown_pct: float
    sharpe: float
    top_domain: str | None


def _folds(fs: Sequence[Fill], stamps: Sequence[int]) -> WindowFolds:
    """The folds of trades already sorted and restricted to the window (`stamps`: their times)."""
    flow, trips = _fill_stats(fs), _trip_stats(fs)
    profitable, positive, top1 = _profitable_markets(trips.market_pnl)
    max_dd, sharpe = _drawdown_and_sharpe(list(trips.day_pnl.values()))
    top_domain, top_domain_volume = _top_domain(flow.category_volume)
    return WindowFolds(
        trade_count=len(fs),
        buy_count=flow.buy_count,
        unique_markets=len(flow.market_volume),
        mid_fills=flow.mid_fills,
        extreme_fills=flow.extreme_fills,
        round_trips=trips.round_trips,
        wins=trips.wins,
        hold_seconds=trips.hold_seconds,
        profitable_markets=profitable,
        open_positions=trips.open_positions,
        burst=_burst(stamps),
        volume=flow.volume,
        buy_cost=flow.buy_cost,
        sell_proceeds=flow.sell_proceeds,
        size_cv=flow.size_cv,
        top3_volume=_top3_volume(flow.market_volume),
        top_domain_volume=top_domain_volume,
        realized=trips.realized,
        win_pnl=trips.win_pnl,
        max_loss=trips.max_loss,
        positive_pnl=positive,
        top1_pnl=top1,
        max_drawdown_pct=max_dd,
        sharpe=sharpe,
        top_domain=top_domain,
    )


def feature_values(folds: WindowFolds, window_days: int) -> tuple[Any, ...]:
    """A window's features (SPEC §5) from its folds, as a plain tuple in `WindowFeatures` field
    order: the rebuild writes them so, without a dataclass per window (issue 14's profile)."""
    n, buy_count, volume, buy_cost = (
        folds.trade_count, folds.buy_count, folds.volume, folds.buy_cost
    )  # fmt: skip
    sell_count, rt, wins = n - buy_count, folds.round_trips, folds.wins
    per_week, per_day = _rates(n, window_days)
    return (
        n,  # trade_count
        buy_count,
        sell_count,
        folds.unique_markets,
        volume,  # volume_usdc
        _div(volume, n),  # avg_trade_size_usdc
        folds.size_cv,
        buy_cost,  # buy_cost_usdc
        folds.sell_proceeds,  # sell_proceeds_usdc
        folds.sell_proceeds - buy_cost,  # cashflow_pnl
        rt,  # round_trips
        wins,  # win_count
        rt - wins,  # loss_count
        _ratio(wins, rt),  # win_rate
        folds.realized,  # realized_pnl
        _div(folds.realized, buy_cost),  # roi
        _div(folds.win_pnl, wins),  # avg_win_pnl
        folds.max_loss,  # max_single_loss
        folds.profitable_markets,
        _ratio(folds.top1_pnl, folds.positive_pnl),  # pnl_top1_share
        folds.open_positions,
        _div(folds.hold_seconds, rt) / HOUR,  # avg_hold_hours
        folds.max_drawdown_pct,
        folds.sharpe,
        per_week,  # trades_per_week
        per_day,  # trades_per_day
        _ratio(folds.top3_volume, volume),  # concentration_ratio
        _ratio(n - abs(buy_count - sell_count), n),  # buy_sell_balance
        _ratio(folds.mid_fills, n),  # mid_fill_ratio
        _ratio(folds.extreme_fills, n),  # extreme_price_ratio
        _ratio(folds.burst, n),  # burstiness_top_1h_ratio
        folds.top_domain,
        _ratio(folds.top_domain_volume, volume),  # top_domain_ratio
    )


def _compute(fs: Sequence[Fill], stamps: Sequence[int], window_days: int) -> WindowFeatures:
    """Features of trades already sorted and restricted to the window (`stamps`: their times)."""
    return WindowFeatures(*feature_values(_folds(fs, stamps), window_days))


def _burst(stamps: Sequence[int]) -> int:
    """Most trades inside any closed span [t, t + 3600], from the sorted trade times."""
    best = lo = 0
    for hi, ts in enumerate(stamps):
        start = ts - HOUR
        while stamps[lo] < start:
            lo += 1
        if hi - lo >= best:
            best = hi - lo + 1
    return best


def _drawdown_and_sharpe(daily: list[float]) -> tuple[float, float]:
    """Max drawdown % and annualised Sharpe of the daily pnl series (days with round trips only)."""
    equity = peak = max_dd = 0.0
    returns: list[float] = []
    for i, pnl in enumerate(daily):
        if i >= 1:
            returns.append(pnl / equity if abs(equity) > _SHARPE_EPS else 0.0)
        equity += pnl
        peak = max(peak, equity)
        if peak > 0:
            max_dd = max(max_dd, 100.0 * (peak - equity) / peak)
    if len(daily) < 2:
        return max_dd, 0.0
    mean = 0.0
    for r in returns:
        mean += r
    mean /= len(returns)
    std = _std(returns, mean)
    return max_dd, (mean / std * _ANNUALISE if std > _SHARPE_EPS else 0.0)


def _window_start(timestamps: list[int], as_of: int, window_days: int) -> int:
    if window_days < 0:
        raise ValueError(f"window_days must be >= 0, got {window_days}")
    return bisect_left(timestamps, as_of - window_days * DAY)


def _lifetime(fs: Sequence[Fill], as_of: int, roi: float) -> LifetimeStats:
    if not fs:
        return LifetimeStats(None, None, 0, 0, 0, 0.0)
    first, last = fs[0].timestamp, fs[-1].timestamp
    return LifetimeStats(
        first_trade_at=first,
        last_trade_at=last,
        total_trades=len(fs),
        wallet_age_days=(as_of - first) // DAY,
        days_since_last_trade=(as_of - last) // DAY,
        lifetime_roi=roi,
    )


def _lifetime_roi(fs: Sequence[Fill]) -> float:
    # Sums in _fill_stats' and _trip_stats' order, so a window of every trade gives the same bits.
    buy_cost = 0.0
    for f in fs:
        if f.side == "BUY":
            buy_cost += f.size * f.price
    realized = 0.0
    for _, _, pnl, _ in settle_fills({}, fs):
        realized += pnl
    return _div(realized, buy_cost)


def window_features(fills: Iterable[Fill], as_of: int, window_days: int) -> WindowFeatures:
    """Features of the window `as_of − window_days·86400 ≤ timestamp ≤ as_of`."""
    fs = _sorted_upto(fills, as_of)
    stamps = [f.timestamp for f in fs]
    lo = _window_start(stamps, as_of, window_days)
    return _compute(fs[lo:], stamps[lo:], window_days)


def lifetime_stats(fills: Iterable[Fill], as_of: int) -> LifetimeStats:
    """Lifetime stats over every fill with timestamp ≤ as_of."""
    fs = _sorted_upto(fills, as_of)
    return _lifetime(fs, as_of, _lifetime_roi(fs))


def wallet_features(
    fills: Iterable[Fill], as_of: int, windows: Sequence[int] = WINDOWS
) -> tuple[dict[int, WindowFeatures], LifetimeStats]:
    """The kernel, for the stream and the rebuild alike: one wallet's windows and lifetime stats."""
    fs = _sorted_upto(fills, as_of)
    out, whole = windows_of_sorted(fs, as_of, windows)
    roi = whole.roi if whole is not None else _lifetime_roi(fs)
    return out, _lifetime(fs, as_of, roi)


def windows_of_sorted(
    fs: Sequence[Fill], as_of: int, windows: Sequence[int]
) -> tuple[dict[int, WindowFeatures], WindowFeatures | None]:
    """Each window's features from trades ≤ as_of in canonical order (`sorted_fills`), which
    must hold every trade of the longest window; and the features of a window that holds all
    of `fs`, if one does (its roi is then the lifetime roi of `fs`, to the bit)."""
    stamps = list(map(_timestamp, fs))
    by_start: dict[int, WindowFeatures] = {}
    out: dict[int, WindowFeatures] = {}
    for w in windows:
        lo = _window_start(stamps, as_of, w)
        cached = by_start.get(lo)
        if cached is None:
            cached = by_start[lo] = _compute(fs[lo:], stamps[lo:], w)
            out[w] = cached
        else:
            # Same trades: only the per-time rates depend on the window length.
            per_week, per_day = _rates(cached.trade_count, w)
            out[w] = replace(cached, trades_per_week=per_week, trades_per_day=per_day)
    return out, by_start.get(0)


def sorted_fills(fills: Iterable[Fill], as_of: int) -> list[Fill]:
    """The fills with timestamp ≤ as_of in the canonical (timestamp, trade_id) order."""
    return _sorted_upto(fills, as_of)


def many_wallet_features(
    fills_by_wallet: Iterable[tuple[str, Sequence[Fill]]],
    as_of: int,
    windows: Sequence[int] = WINDOWS,
) -> Iterator[tuple[str, dict[int, WindowFeatures], LifetimeStats]]:
    """The many-wallet form used by the daily rebuild: the kernel per wallet, so bit-equal to it."""
    for wallet, fills in fills_by_wallet:
        per_window, lifetime = wallet_features(fills, as_of, windows)
        yield wallet, per_window, lifetime
