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

Modules: ``options`` (what to generate, the SPEC §8 table), ``catalogue`` (markets, wallets, who
plays what), ``shapes`` (round trips and time slots), ``stage1``/``stage2``/``personas`` (one
builder per behaviour), ``behaviours`` (behaviour → builder, noise), ``dataset`` (``generate``,
``Dataset``) and ``files`` (``write_dataset``).
"""

from agents.data.generate.dataset import Dataset, generate
from agents.data.generate.files import write_dataset
from agents.data.generate.options import (
    BEHAVIOURS,
    DEFAULT_END,
    MIN_DAYS,
    GenerateOptions,
    PlantedLabel,
)

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
