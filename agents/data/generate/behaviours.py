"""Which builder draws which behaviour's trades, and the noise builder for unlabelled wallets."""

from __future__ import annotations

import random

from agents.data.generate import personas, stage1, stage2
from agents.data.generate.options import BEHAVIOURS, DAY
from agents.data.generate.shapes import Builder, Raw

__all__ = ["BUILDERS", "noise"]

# Noise wallets trade between these counts (uniform): with the planted mix this averages ≈ 100
# trades a wallet over the whole data set.
_NOISE_TRADES = (8, 232)


def noise(rng: random.Random, end: int, days: int, markets: tuple[str, ...]) -> list[Raw]:
    """Random trades with no designed outcome (and no label)."""
    n = rng.randint(*_NOISE_TRADES)
    span = int(rng.uniform(1.0, days) * DAY)
    start = end - span
    pool = rng.sample(markets, rng.randint(1, 12))
    buy_share = rng.uniform(0.4, 0.7)
    scale = rng.uniform(5, 300)
    # Bound methods looked up once: this loop draws most of the data set's trades.
    rand = rng.random
    choice = rng.choice
    out: list[Raw] = []
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


#: behaviour → the builder of its trades; keys in BEHAVIOURS order.
BUILDERS: dict[str, Builder] = {
    "SNIPER": stage1.sniper,
    "TOO_YOUNG": stage1.too_young,
    "TOO_FEW_TRADES": stage1.too_few_trades,
    "INACTIVE": stage1.inactive,
    "LIFETIME_LOSS": stage1.lifetime_loss,
    "RECENT_LOSS": stage1.recent_loss,
    "INSUFFICIENT_DATA": stage1.insufficient_data,
    "NOISE_TRADER": stage2.noise_trader,
    "NEWS_SNIPER": stage2.news_sniper,
    "LIQUIDITY_PROVIDER": stage2.liquidity_provider,
    "BOT_SWARM": stage2.bot_swarm,
    "TAIL_RISK_SELLER": stage2.tail_risk_seller,
    "JACKPOT_GAMBLER": stage2.jackpot_gambler,
    "INFORMED_SPECIALIST": personas.informed_specialist,
    "CONSISTENT_GENERALIST": personas.consistent_generalist,
    "PATIENT_ACCUMULATOR": personas.patient_accumulator,
    "LOW_ROI": personas.low_roi,
    "NO_PERSONA_MATCH": personas.no_persona_match,
}
assert BUILDERS.keys() == BEHAVIOURS.keys()
