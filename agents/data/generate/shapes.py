"""The building blocks every planted behaviour is drawn from: round trips, time slots, history."""

from __future__ import annotations

import random
from collections.abc import Callable

from agents.data.generate.options import DAY, HOUR

__all__ = [
    "Builder",
    "Raw",
    "base",
    "clamp_price",
    "clamp_size",
    "first_ts",
    "history",
    "round_trip",
    "seasoned_age",
    "slots",
    "window",
]

#: A raw trade: (timestamp, side, condition_id, size, price).
Raw = tuple[int, str, str, float, float]
#: (rng, end, days, markets) → one wallet's raw trades, in any order.
Builder = Callable[[random.Random, int, int, tuple[str, ...]], list[Raw]]


def clamp_price(x: float) -> float:
    """A price rounded to the cent and kept inside [0.01, 0.99]."""
    return round(min(0.99, max(0.01, x)), 2)


def clamp_size(x: float) -> float:
    """A size rounded to the cent, at least 0.01."""
    return round(max(0.01, x), 2)


def round_trip(
    out: list[Raw], market: str, buy_ts: int, sell_ts: int, size: float, bp: float, sp: float
) -> None:
    """One round trip: a BUY and the SELL that closes it (sell strictly after buy)."""
    assert buy_ts < sell_ts
    out.append((buy_ts, "BUY", market, size, clamp_price(bp)))
    out.append((sell_ts, "SELL", market, size, clamp_price(sp)))


def slots(
    rng: random.Random, lo: int, hi: int, n: int, min_hold: int, max_hold: int
) -> list[tuple[int, int]]:
    """n non-overlapping (buy_ts, sell_ts) intervals inside [lo, hi], in time order.

    Non-overlapping intervals keep FIFO matching trivial even when round trips share a market.
    """
    slot = (hi - lo) // n
    hold_cap = min(max_hold, int(slot * 0.8))
    if hold_cap < min_hold:
        raise AssertionError("slot too short for the hold")  # a design error, not bad input
    out = []
    for k in range(n):
        hold = rng.randint(min_hold, hold_cap)
        start = lo + k * slot + rng.randint(0, slot - hold - 1)
        out.append((start, start + hold))
    return out


def window(end: int) -> tuple[int, int]:
    """Where 30-day-window round trips go: inside [end − 30 d, end] with a margin on both sides."""
    return end - 29 * DAY, end - 2 * HOUR


def first_ts(rng: random.Random, end: int, age: int) -> int:
    """A first-trade timestamp giving wallet_age_days == age exactly."""
    return end - age * DAY - rng.randint(0, 6 * HOUR)


def history(
    rng: random.Random,
    end: int,
    markets: tuple[str, ...],
    age: int,
    n: int,
    *,
    edge: float = 0.08,
    sizes: tuple[float, float] = (20.0, 200.0),
) -> list[Raw]:
    """n round trips before the 30-day window, the first ``age`` days old; pnl sign = edge's."""
    out: list[Raw] = []
    first = first_ts(rng, end, age)
    old_hi = end - 36 * DAY
    for k, (b, s) in enumerate(slots(rng, first, old_hi, n, HOUR, 20 * HOUR)):
        buy_ts = first if k == 0 else b
        sell_ts = max(s, buy_ts + HOUR)
        bp = rng.uniform(0.30, 0.55)
        round_trip(
            out,
            rng.choice(markets),
            buy_ts,
            sell_ts,
            clamp_size(rng.uniform(*sizes)),
            bp,
            bp + edge,
        )
    return out


def seasoned_age(rng: random.Random, days: int) -> int:
    """An age well past the 45-day gate that still fits in the history."""
    return rng.randint(50, days - 2)


def base(rng: random.Random, end: int, days: int, markets: tuple[str, ...]) -> list[Raw]:
    """Two profitable round trips 36+ days back: passes the age, count and lifetime gates."""
    return history(rng, end, markets, seasoned_age(rng, days), 2)
