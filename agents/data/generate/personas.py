"""Persona wallets: the followable three, plus LOW_ROI and NO_PERSONA_MATCH that narrowly miss."""

from __future__ import annotations

import random

from agents.data.generate.options import DAY, HOUR
from agents.data.generate.shapes import (
    Raw,
    base,
    clamp_price,
    clamp_size,
    round_trip,
    slots,
    window,
)

__all__ = [
    "consistent_generalist",
    "informed_specialist",
    "low_roi",
    "no_persona_match",
    "patient_accumulator",
]


def _specialist(
    rng: random.Random, end: int, days: int, markets: tuple[str, ...], win: float, loss: float
) -> list[Raw]:
    """12 round trips in 2–3 markets (concentration 1.0), 9 wins (win rate 0.75), none left open."""
    out = base(rng, end, days, markets)
    lo, hi = window(end)
    pool = rng.sample(markets, rng.randint(2, 3))
    losers = set(rng.sample(range(12), 3))
    size = clamp_size(rng.uniform(50, 300))
    for k, (b, s) in enumerate(slots(rng, lo, hi, 12, 2 * HOUR, 30 * HOUR)):
        bp = clamp_price(rng.uniform(0.28, 0.35))
        round_trip(out, rng.choice(pool), b, s, size, bp, bp - loss if k in losers else bp + win)
    return out


def informed_specialist(
    rng: random.Random, end: int, days: int, markets: tuple[str, ...]
) -> list[Raw]:
    # roi = (9·0.10 − 3·0.05) / (12·≈0.31) ≈ 0.2
    return _specialist(rng, end, days, markets, 0.10, 0.05)


def low_roi(rng: random.Random, end: int, days: int, markets: tuple[str, ...]) -> list[Raw]:
    # The specialist's shape with thin edges: roi = (9·0.01 − 3·0.02) / (12·≈0.31) ≈ 0.008
    return _specialist(rng, end, days, markets, 0.01, 0.02)


def consistent_generalist(
    rng: random.Random, end: int, days: int, markets: tuple[str, ...]
) -> list[Raw]:
    # 25 markets, 14 wins / 11 losses (0.56) on 14 UTC days; each day nets a profit, so equity only
    # rises: drawdown 0, sharpe ≫ 1, roi ≈ 0.13.
    out = base(rng, end, days, markets)
    midnight = end // DAY * DAY
    pool = rng.sample(markets, 25)
    size = clamp_size(rng.uniform(50, 300))
    trading_days = rng.sample(range(2, 29), 14)
    loss_days = set(rng.sample(range(14), 11))
    m = 0
    for i, k in enumerate(trading_days):
        day = midnight - k * DAY
        b = day + 8 * HOUR + rng.randint(0, HOUR)
        bp = clamp_price(rng.uniform(0.28, 0.34))
        round_trip(out, pool[m], b, b + 3 * HOUR, size, bp, bp + 0.10)
        m += 1
        if i in loss_days:
            b = day + 14 * HOUR + rng.randint(0, HOUR)
            bp = clamp_price(rng.uniform(0.28, 0.34))
            round_trip(out, pool[m], b, b + 3 * HOUR, size, bp, bp - 0.04)
            m += 1
    return out


def patient_accumulator(
    rng: random.Random, end: int, days: int, markets: tuple[str, ...]
) -> list[Raw]:
    # 7 round trips held 72–100 h (14 trades ≈ 3.3 a week), 4 wins / 3 losses (0.57, under the
    # specialist's 0.60), 7 markets (under the generalist's 20): roi ≈ 0.24.
    out = base(rng, end, days, markets)
    midnight = end // DAY * DAY
    pool = rng.sample(markets, 7)
    losers = set(rng.sample(range(7), 3))
    size = clamp_size(rng.uniform(50, 300))
    for k, d in enumerate(rng.sample(range(6, 29), 7)):
        b = midnight - d * DAY + rng.randint(0, 20 * HOUR)
        bp = clamp_price(rng.uniform(0.28, 0.32))
        sp = bp - 0.03 if k in losers else bp + 0.12
        round_trip(out, pool[k], b, b + rng.randint(72 * HOUR, 100 * HOUR), size, bp, sp)
    return out


def no_persona_match(
    rng: random.Random, end: int, days: int, markets: tuple[str, ...]
) -> list[Raw]:
    # Profitable and clean, but win rate 0.5, 8 markets and short holds: no persona fits.
    out = base(rng, end, days, markets)
    lo, hi = window(end)
    pool = rng.sample(markets, 8)
    losers = set(rng.sample(range(8), 4))
    size = clamp_size(rng.uniform(50, 300))
    for k, (b, s) in enumerate(slots(rng, lo, hi, 8, 2 * HOUR, 10 * HOUR)):
        bp = clamp_price(rng.uniform(0.28, 0.34))
        round_trip(out, pool[k], b, s, size, bp, bp - 0.04 if k in losers else bp + 0.10)
    return out
