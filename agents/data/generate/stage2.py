"""Stage-2 exclusions: wallets past the gates whose trading style rules them out (SPEC §8)."""

from __future__ import annotations

import random

from agents.data.generate.options import HOUR
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
    "bot_swarm",
    "jackpot_gambler",
    "liquidity_provider",
    "news_sniper",
    "noise_trader",
    "tail_risk_seller",
]


def noise_trader(rng: random.Random, end: int, days: int, markets: tuple[str, ...]) -> list[Raw]:
    # 300–340 trades (≥ 70 a week) at ±0.01 a share, 3 wins to 2 losses: roi ≈ +0.003.
    out = base(rng, end, days, markets)
    lo, hi = window(end)
    size = clamp_size(rng.uniform(20, 80))
    pool = rng.sample(markets, 5)
    for k, (b, s) in enumerate(slots(rng, lo, hi, rng.randint(150, 170), 600, 2 * HOUR)):
        bp = clamp_price(rng.uniform(0.55, 0.80))
        round_trip(out, rng.choice(pool), b, s, size, bp, bp + (0.01 if k % 5 < 3 else -0.01))
    return out


def news_sniper(rng: random.Random, end: int, days: int, markets: tuple[str, ...]) -> list[Raw]:
    # Every window trade inside one 50-minute burst: burstiness 1.0.
    out = base(rng, end, days, markets)
    lo, hi = window(end)
    burst = rng.randint(lo, hi - HOUR)
    n = rng.randint(10, 12)
    for k, market in enumerate(rng.sample(markets, n)):
        bp = rng.uniform(0.20, 0.60)
        b = burst + 2 * k * 130
        round_trip(
            out,
            market,
            b,
            b + 130,
            clamp_size(rng.uniform(50, 500)),
            bp,
            bp + rng.uniform(0.05, 0.15),
        )
    return out


def liquidity_provider(
    rng: random.Random, end: int, days: int, markets: tuple[str, ...]
) -> list[Raw]:
    # Balanced round trips, every price in [0.46, 0.54]: mid_fill_ratio 1.0.
    out = base(rng, end, days, markets)
    lo, hi = window(end)
    pool = rng.sample(markets, 8)
    for b, s in slots(rng, lo, hi, rng.randint(35, 45), 600, 6 * HOUR):
        bp = clamp_price(rng.uniform(0.46, 0.50))
        round_trip(
            out,
            rng.choice(pool),
            b,
            s,
            clamp_size(rng.uniform(50, 300)),
            bp,
            bp + rng.choice((0.02, 0.03, 0.04)),
        )
    return out


def bot_swarm(rng: random.Random, end: int, days: int, markets: tuple[str, ...]) -> list[Raw]:
    # 6,800 tiny trades (≈ 227 a day, ≈ 1.5 USDC each) at +0.03 a share: roi ≈ 0.12.
    out = base(rng, end, days, markets)
    lo, hi = window(end)
    pool = rng.sample(markets, 6)
    for b, s in slots(rng, lo, hi, 3_400, 60, 500):
        bp = clamp_price(rng.uniform(0.15, 0.35))
        round_trip(out, rng.choice(pool), b, s, clamp_size(rng.uniform(3, 8)), bp, bp + 0.03)
    return out


def tail_risk_seller(
    rng: random.Random, end: int, days: int, markets: tuple[str, ...]
) -> list[Raw]:
    # 19 wins of 0.03 a share near certainty, one loss of 0.24 a share (8× the average win).
    out = base(rng, end, days, markets)
    lo, hi = window(end)
    size = clamp_size(rng.uniform(100, 1000))
    loser = rng.randint(1, 19)
    for k, (b, s) in enumerate(slots(rng, lo, hi, 20, HOUR, 24 * HOUR)):
        bp = clamp_price(rng.uniform(0.88, 0.92))
        round_trip(out, rng.choice(markets), b, s, size, bp, bp - 0.24 if k == loser else bp + 0.03)
    return out


def jackpot_gambler(rng: random.Random, end: int, days: int, markets: tuple[str, ...]) -> list[Raw]:
    # One long shot pays ≈ 600, one small win, eight small losses: top-1 share ≈ 0.99, win rate 0.2.
    out = base(rng, end, days, markets)
    lo, hi = window(end)
    pool = rng.sample(markets, 10)
    jackpot, small = rng.sample(range(10), 2)
    for k, (b, s) in enumerate(slots(rng, lo, hi, 10, HOUR, 48 * HOUR)):
        if k == jackpot:
            bp = rng.uniform(0.04, 0.08)
            round_trip(
                out,
                pool[k],
                b,
                s,
                clamp_size(rng.uniform(800, 1200)),
                bp,
                bp + rng.uniform(0.55, 0.70),
            )
        elif k == small:
            round_trip(out, pool[k], b, s, 100.0, 0.30, 0.35)
        else:
            bp = rng.uniform(0.10, 0.15)
            round_trip(out, pool[k], b, s, 100.0, bp, bp - 0.05)
    return out
