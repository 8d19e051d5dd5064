"""Message types of every topic (SPEC §1, §5): frozen pydantic models validated at the edge."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from agents.core.errors import InvalidMessage
from agents.core.features import LifetimeStats, WindowFeatures, feature_date

__all__ = [
    "FeatureSet",
    "Market",
    "Source",
    "Trade",
    "Wallet",
    "WalletDiscovered",
    "build_feature_set",
    "check_not_future",
    "feature_set_metrics",
    "is_future",
    "normalise_wallet",
    "parse_timestamp",
]

_HEX = frozenset("0123456789abcdef")


def normalise_wallet(value: str) -> str:
    """A wallet address in lower case; ValueError unless it is 0x and 40 hex characters."""
    lowered = value.lower()
    if len(lowered) != 42 or not lowered.startswith("0x") or not _HEX.issuperset(lowered[2:]):
        raise ValueError("must be 0x followed by 40 hex characters")
    return lowered


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


def parse_timestamp(value: Any) -> int:
    """Epoch seconds (int) or ISO-8601 UTC text → epoch seconds; naive text is taken as UTC."""
    if isinstance(value, bool):
        raise ValueError("must be epoch seconds or ISO-8601 text")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return int(text)
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("must be epoch seconds or ISO-8601 text") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return int(parsed.timestamp())
    raise ValueError("must be epoch seconds or ISO-8601 text")


#: How far past our clock an event's time may be: producers' clocks drift a little, not by years.
MAX_CLOCK_SKEW_S = 300


def is_future(timestamp: float, now: float) -> bool:
    """Whether `timestamp` is later than `now`, beyond the clock skew allowed between hosts."""
    return timestamp > now + MAX_CLOCK_SKEW_S


def check_not_future(field: str, timestamp: int, now: float) -> None:
    """InvalidMessage naming `field` when `timestamp` is later than `now` (plus the skew)."""
    if is_future(timestamp, now):
        when = datetime.fromtimestamp(timestamp, UTC).isoformat()
        raise InvalidMessage(field, f"{when} is in the future (now {int(now)})")


Wallet = Annotated[str, AfterValidator(normalise_wallet)]
Finite = Annotated[float, AfterValidator(_finite)]
Timestamp = Annotated[int, BeforeValidator(parse_timestamp), Field(ge=0)]
Source = Literal["on_demand", "batch"]

_STRICT = ConfigDict(frozen=True, extra="forbid", strict=True)


class Trade(BaseModel):
    """One fill on a prediction market (topic `trades`)."""

    model_config = _STRICT

    trade_id: str = Field(min_length=1, max_length=200)
    proxy_wallet: Wallet
    condition_id: str = Field(min_length=1, max_length=200)
    side: Literal["BUY", "SELL"]
    size: Finite = Field(gt=0)
    price: Finite = Field(gt=0, lt=1)
    timestamp: int = Field(ge=0)


class Market(BaseModel):
    """A market and its category (imported from a file)."""

    model_config = _STRICT

    condition_id: str = Field(min_length=1, max_length=200)
    category: str = Field(default="unknown", min_length=1, max_length=100)


class WalletDiscovered(BaseModel):
    """A newly discovered wallet (topic `wallet-discovered`)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)

    proxy_wallet: Annotated[str, Field(strict=True), AfterValidator(normalise_wallet)]
    discovered_at: Timestamp
    source: str = Field(strict=True, max_length=200)


class FeatureSet(BaseModel):
    """One wallet's features for a window and as_of, with lifetime stats (`wallet-features`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    proxy_wallet: Wallet
    window_days: int
    as_of: int
    feature_date: str
    source: Source
    computed_at: float

    trade_count: int
    buy_count: int
    sell_count: int
    unique_markets: int
    volume_usdc: float
    avg_trade_size_usdc: float
    size_cv: float
    buy_cost_usdc: float
    sell_proceeds_usdc: float
    cashflow_pnl: float
    round_trips: int
    win_count: int
    loss_count: int
    win_rate: float
    realized_pnl: float
    roi: float
    avg_win_pnl: float
    max_single_loss: float
    profitable_markets: int
    pnl_top1_share: float
    open_positions: int
    avg_hold_hours: float
    max_drawdown_pct: float
    sharpe: float
    trades_per_week: float
    trades_per_day: float
    concentration_ratio: float
    buy_sell_balance: float
    mid_fill_ratio: float
    extreme_price_ratio: float
    burstiness_top_1h_ratio: float
    top_domain: str | None
    top_domain_ratio: float

    first_trade_at: int | None
    last_trade_at: int | None
    total_trades: int
    wallet_age_days: int
    days_since_last_trade: int
    lifetime_roi: float


def build_feature_set(
    proxy_wallet: str,
    window_days: int,
    as_of: int,
    source: Source,
    window: WindowFeatures,
    lifetime: LifetimeStats,
    computed_at: float,
) -> FeatureSet:
    """A FeatureSet from the core's results; no re-validation (the core produced the values)."""
    values: dict[str, Any] = {
        "proxy_wallet": proxy_wallet,
        "window_days": window_days,
        "as_of": as_of,
        "feature_date": feature_date(as_of),
        "source": source,
        "computed_at": computed_at,
    }
    for part in (window, lifetime):
        values.update({name: getattr(part, name) for name in part.__dataclass_fields__})
    return FeatureSet.model_construct(**values)


def feature_set_metrics(features: FeatureSet) -> dict[str, Any]:
    """What classification reads by name (`rules.metric_values`: every feature, the lifetime
    stats and `abs_roi`), from a FeatureSet's values as they are, without splitting it."""
    metrics = dict(features.__dict__)
    metrics["abs_roi"] = abs(features.roi)
    return metrics
