"""Deterministic synthetic trades with planted behaviours and the labels SPEC §8 expects for them.

``generate(options)`` decides everything that is small up front (markets, wallets, which wallet
plays which behaviour, the expected labels) and streams the trades wallet by wallet from
``Dataset.trades()``: every wallet draws from its own ``random.Random`` seeded from
``(seed, wallet index)``, so the output is byte-identical for the same options and memory stays
bounded at any scale.

About 30% of the wallets are *planted*: their trades are shaped so that, classified at
``as_of = options.end`` with the default thresholds, they land on one SPEC §8 outcome, well clear of
every threshold. The rest are noise wallets with random trades and no label. ``KNOWN_BOT`` is not
planted: it depends on the configured ``known_bots`` list, not on trades.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

__all__ = [
    "BEHAVIOURS",
    "DEFAULT_END",
    "MIN_DAYS",
    "Dataset",
    "GenerateOptions",
    "PlantedLabel",
    "generate",
    "write_dataset",
]

DAY = 86_400
HOUR = 3_600

#: 2026-11-01T00:00:00Z: the default ``end`` (the data's as_of): a seed alone reproduces a file.
DEFAULT_END = 1_793_491_200

#: Planted wallets that must pass the age gate are 50+ days old, so the history needs some room.
MIN_DAYS = 60

CATEGORIES = ("Sports", "Politics", "Crypto", "Economics", "Culture")
_KNOWN_MARKETS = 300
_UNKNOWN_MARKETS = 6  # traded by noise wallets but absent from the markets file → "unknown"
_PLANTED_SHARE = 0.30
# A BOT_SWARM wallet needs ≥ 6,000 trades in 30 days (≥ 200 a day), about 60× an average wallet,
# so only one in this many planted wallets plays it (at least one).
_PLANTED_PER_BOT_SWARM = 500
# Noise wallets trade between these counts (uniform): with the planted mix this averages ≈ 100
# trades a wallet over the whole data set.
_NOISE_TRADES = (8, 232)

_EXCLUDED, _FOLLOWABLE = "excluded", "followable"

#: behaviour → (status, persona, reason) as SPEC §8 decides it; in SPEC order.
BEHAVIOURS: dict[str, tuple[str, str | None, str | None]] = {
    "SNIPER": (_EXCLUDED, None, "SNIPER"),
    "TOO_YOUNG": (_EXCLUDED, None, "TOO_YOUNG"),
    "TOO_FEW_TRADES": (_EXCLUDED, None, "TOO_FEW_TRADES"),
    "INACTIVE": (_EXCLUDED, None, "INACTIVE"),
    "LIFETIME_LOSS": (_EXCLUDED, None, "LIFETIME_LOSS"),
    "RECENT_LOSS": (_EXCLUDED, None, "RECENT_LOSS"),
    "INSUFFICIENT_DATA": ("pending", None, "INSUFFICIENT_DATA"),
    "NOISE_TRADER": (_EXCLUDED, None, "NOISE_TRADER"),
    "NEWS_SNIPER": (_EXCLUDED, None, "NEWS_SNIPER"),
    "LIQUIDITY_PROVIDER": (_EXCLUDED, None, "LIQUIDITY_PROVIDER"),
    "BOT_SWARM": (_EXCLUDED, None, "BOT_SWARM"),
    "TAIL_RISK_SELLER": (_EXCLUDED, None, "TAIL_RISK_SELLER"),
    "JACKPOT_GAMBLER": (_EXCLUDED, None, "JACKPOT_GAMBLER"),
    "INFORMED_SPECIALIST": (_FOLLOWABLE, "INFORMED_SPECIALIST", None),
    "CONSISTENT_GENERALIST": (_FOLLOWABLE, "CONSISTENT_GENERALIST", None),
    "PATIENT_ACCUMULATOR": (_FOLLOWABLE, "PATIENT_ACCUMULATOR", None),
    "LOW_ROI": (_EXCLUDED, "INFORMED_SPECIALIST", "LOW_ROI"),
    "NO_PERSONA_MATCH": ("unclassified", None, "NO_PERSONA_MATCH"),
}


@dataclass(frozen=True)
class GenerateOptions:
    """What to generate: ``days`` of history ending at ``end`` (epoch seconds, the as_of)."""

    wallets: int
    days: int
    seed: int
    end: int = DEFAULT_END


@dataclass(frozen=True)
class PlantedLabel:
    """The classification a planted wallet must get at as_of = end."""

    proxy_wallet: str
    behaviour: str
    status: str
    persona: str | None
    reason: str | None


@dataclass(frozen=True)
class Dataset:
    """Markets, wallets and labels in memory; trades streamed on demand by ``trades()``."""

    options: GenerateOptions
    markets: list[dict[str, str]]
    labels: list[PlantedLabel]
    wallets: list[str]
    #: behaviour per wallet (aligned with ``wallets``), None for a noise wallet
    behaviours: tuple[str | None, ...] = field(default=(), repr=False)
    #: condition_ids that noise wallets trade but ``markets`` lacks
    unknown_markets: tuple[str, ...] = field(default=(), repr=False)

    def trades(self) -> Iterator[dict[str, object]]:
        """Every trade, wallet by wallet, each wallet's in (timestamp, trade_id) order."""
        known = tuple(m["condition_id"] for m in self.markets)
        everything = known + self.unknown_markets
        opts = self.options
        for index, (wallet, behaviour) in enumerate(
            zip(self.wallets, self.behaviours, strict=True)
        ):
            rng = random.Random(f"{opts.seed}/{index}")
            if behaviour is None:
                raw = _noise(rng, opts.end, opts.days, everything)
            else:
                raw = _BUILDERS[behaviour](rng, opts.end, opts.days, known)
            raw.sort(key=_by_time)
            prefix = wallet[2:14]
            for n, (ts, side, market, size, price) in enumerate(raw):
                yield {
                    "trade_id": f"{prefix}-{n:05d}",
                    "proxy_wallet": wallet,
                    "condition_id": market,
                    "side": side,
                    "size": size,
                    "price": price,
                    "timestamp": ts,
                }


# A raw trade: (timestamp, side, condition_id, size, price).
_Raw = tuple[int, str, str, float, float]
_Builder = Callable[[random.Random, int, int, tuple[str, ...]], list[_Raw]]


def _by_time(trade: _Raw) -> int:
    return trade[0]


def _price(x: float) -> float:
    return round(min(0.99, max(0.01, x)), 2)


def _size(x: float) -> float:
    return round(max(0.01, x), 2)


def _rt(
    out: list[_Raw], market: str, buy_ts: int, sell_ts: int, size: float, bp: float, sp: float
) -> None:
    """One round trip: a BUY and the SELL that closes it (sell strictly after buy)."""
    assert buy_ts < sell_ts
    out.append((buy_ts, "BUY", market, size, _price(bp)))
    out.append((sell_ts, "SELL", market, size, _price(sp)))


def _slots(
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


def _window(end: int) -> tuple[int, int]:
    """Where 30-day-window round trips go: inside [end − 30 d, end] with a margin on both sides."""
    return end - 29 * DAY, end - 2 * HOUR


def _first_ts(rng: random.Random, end: int, age: int) -> int:
    """A first-trade timestamp giving wallet_age_days == age exactly."""
    return end - age * DAY - rng.randint(0, 6 * HOUR)


def _history(
    rng: random.Random,
    end: int,
    markets: tuple[str, ...],
    age: int,
    n: int,
    *,
    edge: float = 0.08,
    sizes: tuple[float, float] = (20.0, 200.0),
) -> list[_Raw]:
    """n round trips before the 30-day window, the first ``age`` days old; pnl sign = edge's."""
    out: list[_Raw] = []
    first = _first_ts(rng, end, age)
    old_hi = end - 36 * DAY
    for k, (b, s) in enumerate(_slots(rng, first, old_hi, n, HOUR, 20 * HOUR)):
        buy_ts = first if k == 0 else b
        sell_ts = max(s, buy_ts + HOUR)
        bp = rng.uniform(0.30, 0.55)
        _rt(out, rng.choice(markets), buy_ts, sell_ts, _size(rng.uniform(*sizes)), bp, bp + edge)
    return out


def _seasoned_age(rng: random.Random, days: int) -> int:
    """An age well past the 45-day gate that still fits in the history."""
    return rng.randint(50, days - 2)


# --------------------------------------------------------------------------- stage 1


def _sniper(rng: random.Random, end: int, days: int, markets: tuple[str, ...]) -> list[_Raw]:
    # age < 30, every round trip a win, < 20 trades: fires before the age gate.
    out: list[_Raw] = []
    first = _first_ts(rng, end, rng.randint(10, 25))
    n = rng.randint(5, 8)
    for k, (b, s) in enumerate(_slots(rng, first, end - HOUR, n, HOUR, 30 * HOUR)):
        bp = rng.uniform(0.20, 0.55)
        buy_ts = first if k == 0 else b
        _rt(
            out,
            rng.choice(markets),
            buy_ts,
            max(s, buy_ts + HOUR),
            _size(rng.uniform(20, 300)),
            bp,
            bp + rng.uniform(0.10, 0.25),
        )
    return out


def _too_young(rng: random.Random, end: int, days: int, markets: tuple[str, ...]) -> list[_Raw]:
    # 33–40 days old: past the sniper's 30 days, short of the 45-day gate; 5–7 round trips in
    # the window so the on-demand path (SPEC §7) classifies it too.
    first = _first_ts(rng, end, rng.randint(33, 40))
    out: list[_Raw] = []
    bp = rng.uniform(0.20, 0.70)
    _rt(
        out,
        rng.choice(markets),
        first,
        first + 2 * HOUR,
        _size(rng.uniform(10, 300)),
        bp,
        bp + 0.05,
    )
    lo, hi = _window(end)
    for b, s in _slots(rng, lo, hi, rng.randint(5, 7), HOUR, 40 * HOUR):
        bp = rng.uniform(0.20, 0.70)
        sp = bp + rng.uniform(-0.10, 0.15)
        _rt(out, rng.choice(markets), b, s, _size(rng.uniform(10, 300)), bp, sp)
    return out


def _too_few_trades(
    rng: random.Random, end: int, days: int, markets: tuple[str, ...]
) -> list[_Raw]:
    # Old enough and active, 8 trades in all, yet 5 round trips in the window (one BUY sold off in
    # five pieces) so the on-demand path (SPEC §7) classifies it too.
    out = _history(rng, end, markets, _seasoned_age(rng, days), 1)
    lo, hi = _window(end)
    piece = _size(rng.uniform(5, 50))
    market = rng.choice(markets)
    bp = _price(rng.uniform(0.2, 0.6))
    buy_ts = rng.randint(lo, lo + DAY)
    out.append((buy_ts, "BUY", market, _size(6 * piece), bp))  # a sixth stays open
    for s, _ in _slots(rng, buy_ts + HOUR, hi, 5, 60, HOUR):
        out.append((s, "SELL", market, piece, _price(bp + 0.05)))
    return out


def _inactive(rng: random.Random, end: int, days: int, markets: tuple[str, ...]) -> list[_Raw]:
    # 12–16 trades, the last one ≥ 48 days before as_of. Its 30-day window is empty, so only the
    # daily rebuild classifies it: the on-demand path publishes nothing below 5 round trips.
    out: list[_Raw] = []
    first = _first_ts(rng, end, rng.randint(52, days - 1))
    for k, (b, s) in enumerate(
        _slots(rng, first, end - 48 * DAY, rng.randint(6, 8), 600, 6 * HOUR)
    ):
        bp = rng.uniform(0.2, 0.6)
        buy_ts = first if k == 0 else b
        _rt(
            out,
            rng.choice(markets),
            buy_ts,
            max(s, buy_ts + 600),
            _size(rng.uniform(10, 200)),
            bp,
            bp + 0.06,
        )
    return out


def _lifetime_loss(rng: random.Random, end: int, days: int, markets: tuple[str, ...]) -> list[_Raw]:
    # Every round trip loses 0.15 a share: lifetime roi ≈ −0.3.
    out = _history(rng, end, markets, _seasoned_age(rng, days), 3, edge=-0.15)
    lo, hi = _window(end)
    for b, s in _slots(rng, lo, hi, 6, HOUR, 48 * HOUR):
        bp = rng.uniform(0.45, 0.70)
        _rt(out, rng.choice(markets), b, s, _size(rng.uniform(20, 200)), bp, bp - 0.15)
    return out


def _recent_loss(rng: random.Random, end: int, days: int, markets: tuple[str, ...]) -> list[_Raw]:
    # Big old wins (≥ +135) keep lifetime roi > 0; six recent losses (≤ −15) make the window lose.
    out = _history(rng, end, markets, _seasoned_age(rng, days), 3, edge=0.15, sizes=(300, 500))
    lo, hi = _window(end)
    for b, s in _slots(rng, lo, hi, 6, HOUR, 48 * HOUR):
        bp = rng.uniform(0.30, 0.60)
        _rt(out, rng.choice(markets), b, s, _size(rng.uniform(50, 100)), bp, bp - 0.05)
    return out


def _insufficient_data(
    rng: random.Random, end: int, days: int, markets: tuple[str, ...]
) -> list[_Raw]:
    # Passes stage 1, but only 2 round trips (both wins) in the window.
    out = _history(rng, end, markets, _seasoned_age(rng, days), 4)
    lo, hi = _window(end)
    for b, s in _slots(rng, lo, hi, 2, HOUR, 48 * HOUR):
        bp = rng.uniform(0.2, 0.6)
        _rt(out, rng.choice(markets), b, s, _size(rng.uniform(10, 200)), bp, bp + 0.08)
    return out


# --------------------------------------------------------------------------- stage 2 exclusions


def _base(rng: random.Random, end: int, days: int, markets: tuple[str, ...]) -> list[_Raw]:
    """Two profitable round trips 36+ days back: passes the age, count and lifetime gates."""
    return _history(rng, end, markets, _seasoned_age(rng, days), 2)


def _noise_trader(rng: random.Random, end: int, days: int, markets: tuple[str, ...]) -> list[_Raw]:
    # 300–340 trades (≥ 70 a week) at ±0.01 a share, 3 wins to 2 losses: roi ≈ +0.003.
    out = _base(rng, end, days, markets)
    lo, hi = _window(end)
    size = _size(rng.uniform(20, 80))
    pool = rng.sample(markets, 5)
    for k, (b, s) in enumerate(_slots(rng, lo, hi, rng.randint(150, 170), 600, 2 * HOUR)):
        bp = _price(rng.uniform(0.55, 0.80))
        _rt(out, rng.choice(pool), b, s, size, bp, bp + (0.01 if k % 5 < 3 else -0.01))
    return out


def _news_sniper(rng: random.Random, end: int, days: int, markets: tuple[str, ...]) -> list[_Raw]:
    # Every window trade inside one 50-minute burst: burstiness 1.0.
    out = _base(rng, end, days, markets)
    lo, hi = _window(end)
    burst = rng.randint(lo, hi - HOUR)
    n = rng.randint(10, 12)
    for k, market in enumerate(rng.sample(markets, n)):
        bp = rng.uniform(0.20, 0.60)
        b = burst + 2 * k * 130
        _rt(out, market, b, b + 130, _size(rng.uniform(50, 500)), bp, bp + rng.uniform(0.05, 0.15))
    return out


def _liquidity_provider(
    rng: random.Random, end: int, days: int, markets: tuple[str, ...]
) -> list[_Raw]:
    # Balanced round trips, every price in [0.46, 0.54]: mid_fill_ratio 1.0.
    out = _base(rng, end, days, markets)
    lo, hi = _window(end)
    pool = rng.sample(markets, 8)
    for b, s in _slots(rng, lo, hi, rng.randint(35, 45), 600, 6 * HOUR):
        bp = _price(rng.uniform(0.46, 0.50))
        _rt(
            out,
            rng.choice(pool),
            b,
            s,
            _size(rng.uniform(50, 300)),
            bp,
            bp + rng.choice((0.02, 0.03, 0.04)),
        )
    return out


def _bot_swarm(rng: random.Random, end: int, days: int, markets: tuple[str, ...]) -> list[_Raw]:
    # 6,800 tiny trades (≈ 227 a day, ≈ 1.5 USDC each) at +0.03 a share: roi ≈ 0.12.
    out = _base(rng, end, days, markets)
    lo, hi = _window(end)
    pool = rng.sample(markets, 6)
    for b, s in _slots(rng, lo, hi, 3_400, 60, 500):
        bp = _price(rng.uniform(0.15, 0.35))
        _rt(out, rng.choice(pool), b, s, _size(rng.uniform(3, 8)), bp, bp + 0.03)
    return out


def _tail_risk_seller(
    rng: random.Random, end: int, days: int, markets: tuple[str, ...]
) -> list[_Raw]:
    # 19 wins of 0.03 a share near certainty, one loss of 0.24 a share (8× the average win).
    out = _base(rng, end, days, markets)
    lo, hi = _window(end)
    size = _size(rng.uniform(100, 1000))
    loser = rng.randint(1, 19)
    for k, (b, s) in enumerate(_slots(rng, lo, hi, 20, HOUR, 24 * HOUR)):
        bp = _price(rng.uniform(0.88, 0.92))
        _rt(out, rng.choice(markets), b, s, size, bp, bp - 0.24 if k == loser else bp + 0.03)
    return out


def _jackpot_gambler(
    rng: random.Random, end: int, days: int, markets: tuple[str, ...]
) -> list[_Raw]:
    # One long shot pays ≈ 600, one small win, eight small losses: top-1 share ≈ 0.99, win rate 0.2.
    out = _base(rng, end, days, markets)
    lo, hi = _window(end)
    pool = rng.sample(markets, 10)
    jackpot, small = rng.sample(range(10), 2)
    for k, (b, s) in enumerate(_slots(rng, lo, hi, 10, HOUR, 48 * HOUR)):
        if k == jackpot:
            bp = rng.uniform(0.04, 0.08)
            _rt(out, pool[k], b, s, _size(rng.uniform(800, 1200)), bp, bp + rng.uniform(0.55, 0.70))
        elif k == small:
            _rt(out, pool[k], b, s, 100.0, 0.30, 0.35)
        else:
            bp = rng.uniform(0.10, 0.15)
            _rt(out, pool[k], b, s, 100.0, bp, bp - 0.05)
    return out


# --------------------------------------------------------------------------- personas


def _specialist(
    rng: random.Random, end: int, days: int, markets: tuple[str, ...], win: float, loss: float
) -> list[_Raw]:
    """12 round trips in 2–3 markets (concentration 1.0), 9 wins (win rate 0.75), none left open."""
    out = _base(rng, end, days, markets)
    lo, hi = _window(end)
    pool = rng.sample(markets, rng.randint(2, 3))
    losers = set(rng.sample(range(12), 3))
    size = _size(rng.uniform(50, 300))
    for k, (b, s) in enumerate(_slots(rng, lo, hi, 12, 2 * HOUR, 30 * HOUR)):
        bp = _price(rng.uniform(0.28, 0.35))
        _rt(out, rng.choice(pool), b, s, size, bp, bp - loss if k in losers else bp + win)
    return out


def _informed_specialist(
    rng: random.Random, end: int, days: int, markets: tuple[str, ...]
) -> list[_Raw]:
    # roi = (9·0.10 − 3·0.05) / (12·≈0.31) ≈ 0.2
    return _specialist(rng, end, days, markets, 0.10, 0.05)


def _low_roi(rng: random.Random, end: int, days: int, markets: tuple[str, ...]) -> list[_Raw]:
    # The specialist's shape with thin edges: roi = (9·0.01 − 3·0.02) / (12·≈0.31) ≈ 0.008
    return _specialist(rng, end, days, markets, 0.01, 0.02)


def _consistent_generalist(
    rng: random.Random, end: int, days: int, markets: tuple[str, ...]
) -> list[_Raw]:
    # 25 markets, 14 wins / 11 losses (0.56) on 14 UTC days; each day nets a profit, so equity only
    # rises: drawdown 0, sharpe ≫ 1, roi ≈ 0.13.
    out = _base(rng, end, days, markets)
    midnight = end // DAY * DAY
    pool = rng.sample(markets, 25)
    size = _size(rng.uniform(50, 300))
    trading_days = rng.sample(range(2, 29), 14)
    loss_days = set(rng.sample(range(14), 11))
    m = 0
    for i, k in enumerate(trading_days):
        day = midnight - k * DAY
        b = day + 8 * HOUR + rng.randint(0, HOUR)
        bp = _price(rng.uniform(0.28, 0.34))
        _rt(out, pool[m], b, b + 3 * HOUR, size, bp, bp + 0.10)
        m += 1
        if i in loss_days:
            b = day + 14 * HOUR + rng.randint(0, HOUR)
            bp = _price(rng.uniform(0.28, 0.34))
            _rt(out, pool[m], b, b + 3 * HOUR, size, bp, bp - 0.04)
            m += 1
    return out


def _patient_accumulator(
    rng: random.Random, end: int, days: int, markets: tuple[str, ...]
) -> list[_Raw]:
    # 7 round trips held 72–100 h (14 trades ≈ 3.3 a week), 4 wins / 3 losses (0.57, under the
    # specialist's 0.60), 7 markets (under the generalist's 20): roi ≈ 0.24.
    out = _base(rng, end, days, markets)
    midnight = end // DAY * DAY
    pool = rng.sample(markets, 7)
    losers = set(rng.sample(range(7), 3))
    size = _size(rng.uniform(50, 300))
    for k, d in enumerate(rng.sample(range(6, 29), 7)):
        b = midnight - d * DAY + rng.randint(0, 20 * HOUR)
        bp = _price(rng.uniform(0.28, 0.32))
        sp = bp - 0.03 if k in losers else bp + 0.12
        _rt(out, pool[k], b, b + rng.randint(72 * HOUR, 100 * HOUR), size, bp, sp)
    return out


def _no_persona_match(
    rng: random.Random, end: int, days: int, markets: tuple[str, ...]
) -> list[_Raw]:
    # Profitable and clean, but win rate 0.5, 8 markets and short holds: no persona fits.
    out = _base(rng, end, days, markets)
    lo, hi = _window(end)
    pool = rng.sample(markets, 8)
    losers = set(rng.sample(range(8), 4))
    size = _size(rng.uniform(50, 300))
    for k, (b, s) in enumerate(_slots(rng, lo, hi, 8, 2 * HOUR, 10 * HOUR)):
        bp = _price(rng.uniform(0.28, 0.34))
        _rt(out, pool[k], b, s, size, bp, bp - 0.04 if k in losers else bp + 0.10)
    return out


# --------------------------------------------------------------------------- noise


def _noise(rng: random.Random, end: int, days: int, markets: tuple[str, ...]) -> list[_Raw]:
    """Random trades with no designed outcome (and no label)."""
    n = rng.randint(*_NOISE_TRADES)
    span = int(rng.uniform(1.0, days) * DAY)
    start = end - span
    pool = rng.sample(markets, rng.randint(1, 12))
    buy_share = rng.uniform(0.4, 0.7)
    scale = rng.uniform(5, 300)
    rand = rng.random
    choice = rng.choice
    out: list[_Raw] = []
    for _ in range(n):
        out.append(
            (
                start + int(rand() * span),
                "BUY" if rand() < buy_share else "SELL",
                choice(pool),
                round(0.01 + rand() * scale, 2),
                round(0.01 + rand() * 0.98, 2),
            )
        )
    return out


_BUILDERS: dict[str, _Builder] = {
    "SNIPER": _sniper,
    "TOO_YOUNG": _too_young,
    "TOO_FEW_TRADES": _too_few_trades,
    "INACTIVE": _inactive,
    "LIFETIME_LOSS": _lifetime_loss,
    "RECENT_LOSS": _recent_loss,
    "INSUFFICIENT_DATA": _insufficient_data,
    "NOISE_TRADER": _noise_trader,
    "NEWS_SNIPER": _news_sniper,
    "LIQUIDITY_PROVIDER": _liquidity_provider,
    "BOT_SWARM": _bot_swarm,
    "TAIL_RISK_SELLER": _tail_risk_seller,
    "JACKPOT_GAMBLER": _jackpot_gambler,
    "INFORMED_SPECIALIST": _informed_specialist,
    "CONSISTENT_GENERALIST": _consistent_generalist,
    "PATIENT_ACCUMULATOR": _patient_accumulator,
    "LOW_ROI": _low_roi,
    "NO_PERSONA_MATCH": _no_persona_match,
}
assert _BUILDERS.keys() == BEHAVIOURS.keys()


# --------------------------------------------------------------------------- entry points


def _hex(rng: random.Random, chars: int) -> str:
    return f"0x{rng.getrandbits(chars * 4):0{chars}x}"


def _planted_sequence(wallets: int) -> list[str]:
    """Behaviours round-robin over ~30% of the wallets, BOT_SWARM rationed (it is trade-heavy)."""
    order = list(BEHAVIOURS)
    n_planted = min(wallets, max(len(order), round(_PLANTED_SHARE * wallets)))
    bot_cap = max(1, n_planted // _PLANTED_PER_BOT_SWARM)
    out: list[str] = []
    bots = 0
    i = 0
    while len(out) < n_planted:
        behaviour = order[i % len(order)]
        i += 1
        if behaviour == "BOT_SWARM":
            if bots >= bot_cap:
                continue
            bots += 1
        out.append(behaviour)
    return out


def generate(options: GenerateOptions) -> Dataset:
    """Markets, wallets and planted labels for ``options``; trades follow lazily from the result."""
    if options.wallets < 1:
        raise ValueError(f"wallets must be ≥ 1, got {options.wallets}")
    if options.days < MIN_DAYS:
        raise ValueError(
            f"days must be ≥ {MIN_DAYS} (planted wallets need 50+ days of history), "
            f"got {options.days}"
        )
    rng = random.Random(f"personas-generate/{options.seed}")

    markets = [
        {"condition_id": _hex(rng, 64), "category": CATEGORIES[i % len(CATEGORIES)]}
        for i in range(_KNOWN_MARKETS)
    ]
    unknown = tuple(_hex(rng, 64) for _ in range(_UNKNOWN_MARKETS))

    # Trade ids are "<first 12 hex of the wallet>-<n>", so those 12 must be unique too.
    wallets: list[str] = []
    prefixes: set[str] = set()
    while len(wallets) < options.wallets:
        wallet = _hex(rng, 40)
        if wallet[2:14] not in prefixes:
            prefixes.add(wallet[2:14])
            wallets.append(wallet)

    behaviours: list[str | None] = list(_planted_sequence(options.wallets))
    behaviours += [None] * (options.wallets - len(behaviours))
    rng.shuffle(behaviours)

    labels = [
        PlantedLabel(wallet, behaviour, *BEHAVIOURS[behaviour])
        for wallet, behaviour in zip(wallets, behaviours, strict=True)
        if behaviour is not None
    ]
    return Dataset(
        options=options,
        markets=markets,
        labels=labels,
        wallets=wallets,
        behaviours=tuple(behaviours),
        unknown_markets=unknown,
    )


def write_dataset(dataset: Dataset, out: Path) -> dict[str, Path]:
    """Write trades to ``out`` and ``<stem>.markets.jsonl`` / ``<stem>.labels.jsonl`` beside it."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = {
        "trades": out,
        "markets": out.with_name(f"{out.stem}.markets.jsonl"),
        "labels": out.with_name(f"{out.stem}.labels.jsonl"),
    }
    dumps = orjson.dumps
    with paths["trades"].open("wb") as fh:
        chunk: list[bytes] = []
        for trade in dataset.trades():
            chunk.append(dumps(trade))
            if len(chunk) >= 20_000:
                fh.write(b"\n".join(chunk) + b"\n")
                chunk.clear()
        if chunk:
            fh.write(b"\n".join(chunk) + b"\n")
    with paths["markets"].open("wb") as fh:
        fh.writelines(dumps(market) + b"\n" for market in dataset.markets)
    with paths["labels"].open("wb") as fh:
        fh.writelines(
            dumps(
                {
                    "proxy_wallet": label.proxy_wallet,
                    "behaviour": label.behaviour,
                    "status": label.status,
                    "persona": label.persona,
                    "reason": label.reason,
                }
            )
            + b"\n"
            for label in dataset.labels
        )
    return paths
