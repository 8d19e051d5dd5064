"""The data set: `generate` decides the small parts up front, `Dataset.trades` streams the rest."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from agents.data.generate.behaviours import BUILDERS, noise
from agents.data.generate.catalogue import (
    draw_markets,
    draw_unknown_markets,
    draw_wallets,
    planted_sequence,
)
from agents.data.generate.options import BEHAVIOURS, GenerateOptions, PlantedLabel
from agents.data.generate.shapes import Raw

__all__ = ["Dataset", "generate"]


# A trade's values in the trades table's column order, the order `insert_trade_rows` binds.
_ROW = itemgetter("trade_id", "proxy_wallet", "condition_id", "side", "size", "price", "timestamp")


def _by_time(trade: Raw) -> int:
    return trade[0]


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
            # Its own generator per wallet: any wallet's trades are reproducible on their own.
            rng = random.Random(f"{opts.seed}/{index}")
            if behaviour is None:
                raw = noise(rng, opts.end, opts.days, everything)
            else:
                raw = BUILDERS[behaviour](rng, opts.end, opts.days, known)
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

    def trade_rows(self) -> Iterator[tuple[Any, ...]]:
        """``trades()`` as rows for ``agents.store.insert_trade_rows``."""
        return map(_ROW, self.trades())


def generate(options: GenerateOptions) -> Dataset:
    """Markets, wallets and planted labels for ``options``; trades follow lazily from the result."""
    # One generator drawn in a fixed order (markets, unknown markets, wallets, the shuffle):
    # reordering these draws would change every file for the same seed.
    rng = random.Random(f"personas-generate/{options.seed}")
    markets = draw_markets(rng)
    unknown = draw_unknown_markets(rng)
    wallets = draw_wallets(rng, options.wallets)

    behaviours: list[str | None] = list(planted_sequence(options.wallets))
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
