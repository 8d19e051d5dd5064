"""The cast drawn up front: market ids and categories, wallet addresses, who plays what."""

from __future__ import annotations

import random

from agents.data.generate.options import BEHAVIOURS

__all__ = ["CATEGORIES", "draw_markets", "draw_unknown_markets", "draw_wallets", "planted_sequence"]

CATEGORIES = ("Sports", "Politics", "Crypto", "Economics", "Culture")
_KNOWN_MARKETS = 300
_UNKNOWN_MARKETS = 6  # traded by noise wallets but absent from the markets file → "unknown"
_PLANTED_SHARE = 0.30
# A BOT_SWARM wallet needs ≥ 6,000 trades in 30 days (≥ 200 a day), about 60× an average wallet,
# so only one in this many planted wallets plays it (at least one).
_PLANTED_PER_BOT_SWARM = 500


def _hex(rng: random.Random, chars: int) -> str:
    return f"0x{rng.getrandbits(chars * 4):0{chars}x}"


def draw_markets(rng: random.Random) -> list[dict[str, str]]:
    """The known markets, categories round-robin (what the markets file holds)."""
    return [
        {"condition_id": _hex(rng, 64), "category": CATEGORIES[i % len(CATEGORIES)]}
        for i in range(_KNOWN_MARKETS)
    ]


def draw_unknown_markets(rng: random.Random) -> tuple[str, ...]:
    """condition_ids that noise wallets trade but the markets file lacks."""
    return tuple(_hex(rng, 64) for _ in range(_UNKNOWN_MARKETS))


def draw_wallets(rng: random.Random, n: int) -> list[str]:
    """n wallet addresses whose first 12 hex digits are unique too."""
    # Trade ids are "<first 12 hex of the wallet>-<n>", so those 12 must be unique too.
    wallets: list[str] = []
    prefixes: set[str] = set()
    while len(wallets) < n:
        wallet = _hex(rng, 40)
        if wallet[2:14] not in prefixes:
            prefixes.add(wallet[2:14])
            wallets.append(wallet)
    return wallets


def planted_sequence(wallets: int) -> list[str]:
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
