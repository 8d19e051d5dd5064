"""Stage-1 exclusions and INSUFFICIENT_DATA: wallets the gates stop before any persona is tried."""

from __future__ import annotations

import random

from agents.data.generate.options import DAY, HOUR
from agents.data.generate.shapes import (
    Raw,
    clamp_price,
    clamp_size,
    first_ts,
    history,
    round_trip,
    seasoned_age,
    slots,
    window,
)

__all__ = [
    "inactive",
    "insufficient_data",
    "lifetime_loss",
    "recent_loss",
    "sniper",
    "too_few_trades",
    "too_young",
]


def sniper(rng: random.Random, end: int, days: int, markets: tuple[str, ...]) -> list[Raw]:
    # age < 30, every round trip a win, < 20 trades: fires before the age gate.
    out: list[Raw] = []
    first = first_ts(rng, end, rng.randint(10, 25))
    n = rng.randint(5, 8)
    for k, (b, s) in enumerate(slots(rng, first, end - HOUR, n, HOUR, 30 * HOUR)):
        bp = rng.uniform(0.20, 0.55)
        buy_ts = first if k == 0 else b
        round_trip(
            out,
            rng.choice(markets),
            buy_ts,
            max(s, buy_ts + HOUR),
            clamp_size(rng.uniform(20, 300)),
            bp,
            bp + rng.uniform(0.10, 0.25),
        )
    return out


def too_young(rng: random.Random, end: int, days: int, markets: tuple[str, ...]) -> list[Raw]:
    # 33–40 days old: past the sniper's 30 days, short of the 45-day gate; 5–7 round trips in
    # the window so the on-demand path (SPEC §7) classifies it too.
    first = first_ts(rng, end, rng.randint(33, 40))
    out: list[Raw] = []
    bp = rng.uniform(0.20, 0.70)
    round_trip(
        out,
        rng.choice(markets),
        first,
        first + 2 * HOUR,
        clamp_size(rng.uniform(10, 300)),
        bp,
        bp + 0.05,
    )
    lo, hi = window(end)
    for b, s in slots(rng, lo, hi, rng.randint(5, 7), HOUR, 40 * HOUR):
        bp = rng.uniform(0.20, 0.70)
        sp = bp + rng.uniform(-0.10, 0.15)
        round_trip(out, rng.choice(markets), b, s, clamp_size(rng.uniform(10, 300)), bp, sp)
    return out


def too_few_trades(rng: random.Random, end: int, days: int, markets: tuple[str, ...]) -> list[Raw]:
    # Old enough and active, 8 trades in all, yet 5 round trips in the window (one BUY sold off in
    # five pieces) so the on-demand path (SPEC §7) classifies it too.
    out = history(rng, end, markets, seasoned_age(rng, days), 1)
    lo, hi = window(end)
    piece = clamp_size(rng.uniform(5, 50))
    market = rng.choice(markets)
    bp = clamp_price(rng.uniform(0.2, 0.6))
    buy_ts = rng.randint(lo, lo + DAY)
    out.append((buy_ts, "BUY", market, clamp_size(6 * piece), bp))  # a sixth stays open
    for s, _ in slots(rng, buy_ts + HOUR, hi, 5, 60, HOUR):
        out.append((s, "SELL", market, piece, clamp_price(bp + 0.05)))
    return out


def inactive(rng: random.Random, end: int, days: int, markets: tuple[str, ...]) -> list[Raw]:
    # 12–16 trades, the last one ≥ 48 days before as_of. Its 30-day window is empty, so only the
    # daily rebuild classifies it: the on-demand path publishes nothing below 5 round trips.
    out: list[Raw] = []
    first = first_ts(rng, end, rng.randint(52, days - 1))
    for k, (b, s) in enumerate(slots(rng, first, end - 48 * DAY, rng.randint(6, 8), 600, 6 * HOUR)):
        bp = rng.uniform(0.2, 0.6)
        buy_ts = first if k == 0 else b
        round_trip(
            out,
            rng.choice(markets),
            buy_ts,
            max(s, buy_ts + 600),
            clamp_size(rng.uniform(10, 200)),
            bp,
            bp + 0.06,
        )
    return out


def lifetime_loss(rng: random.Random, end: int, days: int, markets: tuple[str, ...]) -> list[Raw]:
    # Every round trip loses 0.15 a share: lifetime roi ≈ −0.3.
    out = history(rng, end, markets, seasoned_age(rng, days), 3, edge=-0.15)
    lo, hi = window(end)
    for b, s in slots(rng, lo, hi, 6, HOUR, 48 * HOUR):
        bp = rng.uniform(0.45, 0.70)
        round_trip(out, rng.choice(markets), b, s, clamp_size(rng.uniform(20, 200)), bp, bp - 0.15)
    return out


def recent_loss(rng: random.Random, end: int, days: int, markets: tuple[str, ...]) -> list[Raw]:
    # Big old wins (≥ +135) keep lifetime roi > 0; six recent losses (≤ −15) make the window lose.
    out = history(rng, end, markets, seasoned_age(rng, days), 3, edge=0.15, sizes=(300, 500))
    lo, hi = window(end)
    for b, s in slots(rng, lo, hi, 6, HOUR, 48 * HOUR):
        bp = rng.uniform(0.30, 0.60)
        round_trip(out, rng.choice(markets), b, s, clamp_size(rng.uniform(50, 100)), bp, bp - 0.05)
    return out


def insufficient_data(
    rng: random.Random, end: int, days: int, markets: tuple[str, ...]
) -> list[Raw]:
    # Passes stage 1, but only 2 round trips (both wins) in the window.
    out = history(rng, end, markets, seasoned_age(rng, days), 4)
    lo, hi = window(end)
    for b, s in slots(rng, lo, hi, 2, HOUR, 48 * HOUR):
        bp = rng.uniform(0.2, 0.6)
        round_trip(out, rng.choice(markets), b, s, clamp_size(rng.uniform(10, 200)), bp, bp + 0.08)
    return out
