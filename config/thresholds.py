"""The SPEC §8 thresholds the classification rules read by name, with their SPEC defaults."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["RuleThresholds"]


class RuleThresholds(BaseModel):
    """Every SPEC §8 number, with its SPEC default."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    min_settled_trades: int = Field(5, ge=0)
    sniper_max_age_days: int = Field(30, ge=0)
    sniper_min_win_rate: float = Field(0.85, ge=0, le=1)
    sniper_max_trades: int = Field(20, ge=0)
    sniper_min_round_trips: int = Field(0, ge=0)
    min_wallet_age_days: int = Field(45, ge=0)
    min_total_trades: int = Field(10, ge=0)
    max_days_inactive: int = Field(45, ge=0)
    min_lifetime_roi: float = Field(0.0, ge=-1)
    min_recent_pnl: float = 0.0
    topic_lane_min_ratio: float = Field(0.65, ge=0, le=1)
    bonder_min_extreme_ratio: float = Field(0.60, ge=0, le=1)
    whale_min_avg_trade_usdc: float = Field(100.0, ge=0)
    noise_min_trades_per_week: float = Field(50.0, ge=0)
    noise_max_abs_roi: float = Field(0.02, ge=0)
    news_sniper_min_burstiness: float = Field(0.70, ge=0, le=1)
    lp_min_buy_sell_balance: float = Field(0.45, ge=0, le=1)
    lp_min_mid_fill_ratio: float = Field(0.60, ge=0, le=1)
    bot_swarm_min_trades_per_day: float = Field(200.0, ge=0)
    bot_swarm_max_avg_trade_usdc: float = Field(5.0, ge=0)
    tail_risk_min_win_rate: float = Field(0.80, ge=0, le=1)
    tail_risk_loss_to_win_multiple: float = Field(5.0, ge=0)
    jackpot_min_top1_share: float = Field(0.60, ge=0, le=1)
    jackpot_max_win_rate: float = Field(0.45, ge=0, le=1)
    specialist_max_open_positions: int = Field(5, ge=0)
    specialist_min_concentration: float = Field(0.60, ge=0, le=1)
    specialist_min_win_rate: float = Field(0.60, ge=0, le=1)
    generalist_min_unique_markets: int = Field(20, ge=0)
    generalist_min_win_rate: float = Field(0.52, ge=0, le=1)
    generalist_max_win_rate: float = Field(0.60, ge=0, le=1)
    generalist_max_drawdown_pct: float = Field(15.0, ge=0)
    generalist_min_sharpe: float = 1.0
    accumulator_min_avg_hold_hours: float = Field(48.0, ge=0)
    accumulator_max_trades_per_week: float = Field(5.0, ge=0)
    accumulator_min_roi: float = Field(0.05, ge=-1)
    low_roi_min: float = Field(0.05, ge=-1)
