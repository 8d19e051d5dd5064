"""The window kernel over a whole shard of wallets at once, compiled (issue 14); pure.

`windows_of_columns` gives, for many wallets and as_ofs, what `features.windows_of_sorted` gives
for one: the same features, to the last bit. The shard's fills come as columns
(`columns.FillColumns`, as the store reads them: no `Fill` per trade), and one compiled loop
(numba) computes every window's folds (`features.WindowFolds`): the same additions in the same
order as `features._folds`, the FIFO settlement of `settlement.settle_fills` included, with no
float operation reordered or fused (numba compiles without fast-math). Python then makes the
features of the folds with the one `features.feature_values`.

The per-trade loops were two thirds of a rebuild shard's time in Python (issue 14's profile); the
on-demand path keeps the Python kernel, a wallet at a time, and tests hold the two equal.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from typing import Any

import numpy as np
from numba import njit

from agents.core import features
from agents.core.columns import FillColumns
from agents.core.features import DAY, HOUR, Fill, WindowFolds, feature_values
from agents.core.settlement import EPSILON

__all__ = ["compile_kernel", "windows_of_columns"]

# The Python kernel's constants, as module globals: numba compiles them in.
_MID_LOW, _MID_HIGH = features._MID_LOW, features._MID_HIGH
_EXTREME_LOW, _EXTREME_HIGH = features._EXTREME_LOW, features._EXTREME_HIGH
_SHARPE_EPS, _ANNUALISE = features._SHARPE_EPS, features._ANNUALISE

# The kernel's output columns: WindowFolds' int fields, then its float fields, in its order.
_INTS = 11
_FLOATS = 13
_NO_DOMAIN = -1


@njit(cache=True, nogil=True)
def _drawdown_and_sharpe(daily: np.ndarray, days: int, returns: np.ndarray) -> tuple[float, float]:
    # features._drawdown_and_sharpe: `returns` is scratch space for the day-to-day returns.
    equity = peak = max_dd = 0.0
    count = 0
    for i in range(days):
        pnl = daily[i]
        if i >= 1:
            returns[count] = pnl / equity if abs(equity) > _SHARPE_EPS else 0.0
            count += 1
        equity += pnl
        if equity > peak:
            peak = equity
        if peak > 0:
            drawdown = 100.0 * (peak - equity) / peak
            if drawdown > max_dd:
                max_dd = drawdown
    if days < 2:
        return max_dd, 0.0
    mean = 0.0
    for i in range(count):
        mean += returns[i]
    mean /= count
    var = 0.0
    for i in range(count):
        var += (returns[i] - mean) * (returns[i] - mean)
    std = np.sqrt(var / count)
    return max_dd, (mean / std * _ANNUALISE if std > _SHARPE_EPS else 0.0)


@njit(cache=True, nogil=True)
def _fold_windows(
    market: np.ndarray,
    buy: np.ndarray,
    size: np.ndarray,
    price: np.ndarray,
    stamp: np.ndarray,
    category: np.ndarray,
    markets: int,
    categories: int,
    lows: np.ndarray,
    highs: np.ndarray,
    ints: np.ndarray,
    floats: np.ndarray,
) -> None:
    """The folds of each window `[lows[k], highs[k])` of the fills into `ints[k]`, `floats[k]`."""
    longest = int(np.max(highs - lows)) if len(lows) else 0
    slot = np.full(markets, -1, np.int64)  # a market's slot in the window, in order of first fill
    slot_market = np.empty(longest, np.int64)
    market_volume = np.empty(longest)
    market_pnl = np.empty(longest)
    pnl_order = np.empty(longest, np.int64)  # slots in order of their first round trip
    has_pnl = np.zeros(longest, np.bool_)
    head = np.empty(longest, np.int64)  # per slot, its oldest open lot (-1: none)
    tail = np.empty(longest, np.int64)
    lot_size = np.empty(longest)
    lot_next = np.empty(longest, np.int64)
    daily = np.empty(longest)
    returns = np.empty(longest)
    category_volume = np.zeros(categories)
    has_category = np.zeros(categories, np.bool_)
    for k in range(len(lows)):
        lo, hi = lows[k], highs[k]
        n = hi - lo
        # The fills: features._fill_stats.
        slots = buy_count = mid = extreme = 0
        volume = buy_cost = sell_proceeds = 0.0
        for j in range(lo, hi):
            s = slot[market[j]]
            if s < 0:
                s = slots
                slot[market[j]] = s
                slot_market[s] = market[j]
                market_volume[s] = market_pnl[s] = 0.0
                has_pnl[s] = False
                head[s] = tail[s] = -1
                slots += 1
            v = size[j] * price[j]
            volume += v
            if buy[j]:
                buy_count += 1
                buy_cost += v
            else:
                sell_proceeds += v
            market_volume[s] += v
            category_volume[category[j]] += v
            has_category[category[j]] = True
            p = price[j]
            if _MID_LOW <= p <= _MID_HIGH:
                mid += 1
            if p >= _EXTREME_HIGH or p <= _EXTREME_LOW:
                extreme += 1
        mean = volume / n if n else 0.0
        size_cv = 0.0
        if n and mean:
            var = 0.0
            for j in range(lo, hi):
                v = size[j] * price[j]
                var += (v - mean) * (v - mean)
            size_cv = np.sqrt(var / n) / mean
        # The round trips: settlement.settle_fills then features._trip_stats, in one pass.
        trips = wins = hold_seconds = traded = days = 0
        realized = win_pnl = max_loss = 0.0
        last_day = 0
        for j in range(lo, hi):
            s = slot[market[j]]
            if buy[j]:
                if size[j] >= EPSILON:
                    lot = j - lo
                    lot_size[lot] = size[j]
                    lot_next[lot] = -1
                    if tail[s] < 0:
                        head[s] = lot
                    else:
                        lot_next[tail[s]] = lot
                    tail[s] = lot
                continue
            remaining = size[j]
            while remaining >= EPSILON and head[s] >= 0:
                lot = head[s]
                matched = lot_size[lot] if lot_size[lot] < remaining else remaining
                pnl = (price[j] - price[lo + lot]) * matched
                trips += 1
                realized += pnl
                hold_seconds += stamp[j] - stamp[lo + lot]
                if pnl > 0:
                    wins += 1
                    win_pnl += pnl
                elif -pnl > max_loss:
                    max_loss = -pnl
                if not has_pnl[s]:
                    has_pnl[s] = True
                    pnl_order[traded] = s
                    traded += 1
                market_pnl[s] += pnl
                day = stamp[j] // DAY  # the sells come in time order: so do their days
                if days == 0 or day != last_day:
                    daily[days] = 0.0
                    days += 1
                    last_day = day
                daily[days - 1] += pnl
                lot_size[lot] -= matched
                remaining -= matched
                if lot_size[lot] < EPSILON:
                    head[s] = lot_next[lot]
                    if head[s] < 0:
                        tail[s] = -1
        open_positions = 0
        for s in range(slots):
            if head[s] >= 0:
                open_positions += 1
        profitable = 0
        positive = top1 = 0.0
        for i in range(traded):
            pnl = market_pnl[pnl_order[i]]
            if pnl > 0:
                profitable += 1
                positive += pnl
                if pnl > top1:
                    top1 = pnl
        top3 = 0.0
        by_volume = np.sort(market_volume[:slots])
        for i in range(slots - 1, max(slots - 4, -1), -1):
            top3 += by_volume[i]
        # Categories are numbered in name order: the first of equal volumes is the first name.
        top_domain = _NO_DOMAIN
        top_domain_volume = 0.0
        for c in range(categories):
            if has_category[c]:
                if top_domain == _NO_DOMAIN or category_volume[c] > top_domain_volume:
                    top_domain, top_domain_volume = c, category_volume[c]
                has_category[c] = False
                category_volume[c] = 0.0
        # features._burst
        burst = 0
        first = lo
        for last in range(lo, hi):
            start = stamp[last] - HOUR
            while stamp[first] < start:
                first += 1
            if last - first >= burst:
                burst = last - first + 1
        max_dd, sharpe = _drawdown_and_sharpe(daily, days, returns)
        for s in range(slots):
            slot[slot_market[s]] = -1
        ints[k, 0] = n
        ints[k, 1] = buy_count
        ints[k, 2] = slots
        ints[k, 3] = mid
        ints[k, 4] = extreme
        ints[k, 5] = trips
        ints[k, 6] = wins
        ints[k, 7] = hold_seconds
        ints[k, 8] = profitable
        ints[k, 9] = open_positions
        ints[k, 10] = burst
        ints[k, 11] = top_domain
        floats[k, 0] = volume
        floats[k, 1] = buy_cost
        floats[k, 2] = sell_proceeds
        floats[k, 3] = size_cv
        floats[k, 4] = top3
        floats[k, 5] = top_domain_volume
        floats[k, 6] = realized
        floats[k, 7] = win_pnl
        floats[k, 8] = max_loss
        floats[k, 9] = positive
        floats[k, 10] = top1
        floats[k, 11] = max_dd
        floats[k, 12] = sharpe


def _array(rows: Sequence[int]) -> np.ndarray:
    if isinstance(rows, range):
        return np.arange(rows.start, rows.stop, rows.step, dtype=np.int64)
    return np.array(rows, np.int64)


def windows_of_columns(
    columns: FillColumns,
    wallets: Sequence[tuple[Sequence[int], Sequence[int]]],
    windows: Sequence[int],
) -> list[list[dict[int, tuple[Any, ...]]]]:
    """For each wallet's (rows, as_ofs): per as_of, the features `windows_of_sorted(its fills ≤
    as_of, as_of, windows)[0]` gives, each window's as a tuple in `WindowFeatures` field order.

    A wallet's rows of `columns` are in canonical order (`FillColumns.canonical_rows`), up to its
    last as_of, and hold every trade of the longest window of each of its as_ofs.
    """
    order = np.concatenate([np.zeros(0, np.int64)] + [_array(rows) for rows, _ in wallets])
    stamps = columns.stamps[order]
    times = stamps.tolist()
    lows: list[int] = []
    highs: list[int] = []
    slices: list[list[list[tuple[int, int]]]] = []  # per wallet, per as_of: (window, its slice)
    first = 0
    for rows, as_ofs in wallets:
        end = first + len(rows)
        per_as_of = []
        for as_of in as_ofs:
            hi = bisect_right(times, as_of, first, end)
            numbers: list[tuple[int, int]] = []
            starts: dict[int, int] = {}  # equal slices are folded once
            for days in windows:
                lo = bisect_left(times, as_of - days * DAY, first, hi)
                if lo not in starts:
                    starts[lo] = len(lows)
                    lows.append(lo)
                    highs.append(hi)
                numbers.append((days, starts[lo]))
            per_as_of.append(numbers)
        slices.append(per_as_of)
        first = end
    folds = _fold_all(columns, order, stamps, lows, highs)
    return [
        [{days: feature_values(folds[n], days) for days, n in numbers} for numbers in per_as_of]
        for per_as_of in slices
    ]


def _fold_all(
    columns: FillColumns, order: np.ndarray, stamps: np.ndarray, lows: list[int], highs: list[int]
) -> list[WindowFolds]:
    """The folds of each window [lows[k], highs[k]) of the rows `order` of `columns`."""
    count = len(lows)
    ints = np.zeros((count, _INTS + 1), np.int64)  # the last column: the top domain's number
    ints[:, _INTS] = _NO_DOMAIN
    floats = np.zeros((count, _FLOATS))
    category_names = columns.category_names
    if len(order):
        _fold_windows(
            columns.markets[order],
            columns.buys()[order],
            columns.sizes[order],
            columns.prices[order],
            stamps,
            columns.categories[order],
            len(columns.market_names),
            len(category_names),
            np.array(lows, np.int64),
            np.array(highs, np.int64),
            ints,
            floats,
        )
    out = []
    for whole, real in zip(ints.tolist(), floats.tolist(), strict=True):
        domain = whole.pop()
        top_domain = None if domain == _NO_DOMAIN else category_names[domain]
        out.append(WindowFolds._make([*whole, *real, top_domain]))
    return out


def compile_kernel() -> None:
    """Compile the kernel into numba's cache beside this file (`make setup` and the image do),
    so that no rebuild process spends seconds compiling it on its first shard."""
    fills = [Fill("t1", "m1", "BUY", 1.0, 0.5, 0, "c"), Fill("t2", "m1", "SELL", 1.0, 0.6, 1, "c")]
    windows_of_columns(FillColumns.of(fills), [([0, 1], [1])], (1,))
