"""What to generate and what a planted wallet must become: options, the SPEC §8 table, labels."""

from __future__ import annotations

from dataclasses import dataclass

from agents.core.features import DAY, HOUR

__all__ = [
    "BEHAVIOURS",
    "DAY",
    "DEFAULT_END",
    "HOUR",
    "MIN_DAYS",
    "GenerateOptions",
    "InvalidOption",
    "PlantedLabel",
]

#: 2026-11-01T00:00:00Z: the default ``end`` (the data's as_of): a seed alone reproduces a file.
DEFAULT_END = 1_793_491_200

#: Planted wallets that must pass the age gate are 50+ days old, so the history needs some room.
MIN_DAYS = 60

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


class InvalidOption(ValueError):
    """A generate option out of range; ``option`` names it (``wallets``, ``days``)."""

    def __init__(self, option: str, reason: str) -> None:
        super().__init__(f"{option} {reason}")
        self.option = option
        self.reason = reason


@dataclass(frozen=True)
class GenerateOptions:
    """What to generate: ``days`` of history ending at ``end`` (epoch seconds, the as_of)."""

    wallets: int
    days: int
    seed: int
    end: int = DEFAULT_END

    def __post_init__(self) -> None:
        if self.wallets < 1:
            raise InvalidOption("wallets", f"must be ≥ 1, got {self.wallets}")
        if self.days < MIN_DAYS:
            raise InvalidOption(
                "days",
                f"must be ≥ {MIN_DAYS} (planted wallets need 50+ days of history), got {self.days}",
            )


@dataclass(frozen=True)
class PlantedLabel:
    """The classification a planted wallet must get at as_of = end."""

    proxy_wallet: str
    behaviour: str
    status: str
    persona: str | None
    reason: str | None
