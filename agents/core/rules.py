"""SPEC §8 rule table and the decision it gives (`classify`); stdlib only."""

from __future__ import annotations

import hashlib
import json
import operator
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any, TypeAlias

from agents.core.features import LifetimeStats, WindowFeatures

__all__ = [
    "RULES",
    "THRESHOLD_NAMES",
    "TRAITS",
    "Classification",
    "Condition",
    "Rule",
    "Thresholds",
    "Trait",
    "classify",
    "classify_metrics",
    "decides",
    "decision",
    "metric_values",
    "passes",
    "reaches_stage2",
    "rules_version",
    "threshold_of",
]

FOLLOWABLE, EXCLUDED, UNCLASSIFIED, PENDING = "followable", "excluded", "unclassified", "pending"
INSUFFICIENT_DATA, NO_PERSONA_MATCH = "INSUFFICIENT_DATA", "NO_PERSONA_MATCH"


#: The numbers the table names, read by attribute (config's `RuleThresholds`); hashable, so
#: that `rules_version` is computed once per set of thresholds.
Thresholds: TypeAlias = Hashable


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


@dataclass(frozen=True, slots=True)
class Condition:
    """`metric op threshold`; `scale` names a metric that multiplies the threshold (TAIL_RISK)."""

    metric: str
    op: str
    threshold: str
    scale: str | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of the table: fires when all its conditions hold.

    kind: "exclude" (first firing one decides), "pending", "persona" (first match is the persona)
    or "persona_gate" (excludes a matched persona). stage: "1", "1.5", "gate" (the round_trips
    pending check) or "2".
    """

    code: str
    stage: str
    kind: str
    conditions: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class Trait:
    """A stage-2 trait: recorded when its condition holds; `value_metric` gives its value."""

    code: str
    condition: Condition
    value_metric: str | None = None


_c = Condition  # a short name keeps most rows of the table on one line


RULES: tuple[Rule, ...] = (
    Rule("KNOWN_BOT", "1", "exclude", (_c("proxy_wallet", "in", "known_bots"),)),
    Rule(
        "SNIPER",
        "1",
        "exclude",
        (
            _c("wallet_age_days", "<", "sniper_max_age_days"),
            _c("win_rate", ">", "sniper_min_win_rate"),
            _c("trade_count", "<", "sniper_max_trades"),
            _c("round_trips", ">", "sniper_min_round_trips"),
        ),
    ),
    Rule("TOO_YOUNG", "1", "exclude", (_c("wallet_age_days", "<", "min_wallet_age_days"),)),
    Rule("TOO_FEW_TRADES", "1", "exclude", (_c("total_trades", "<", "min_total_trades"),)),
    Rule("INACTIVE", "1", "exclude", (_c("days_since_last_trade", ">", "max_days_inactive"),)),
    Rule("LIFETIME_LOSS", "1", "exclude", (_c("lifetime_roi", "<", "min_lifetime_roi"),)),
    Rule("RECENT_LOSS", "1.5", "exclude", (_c("realized_pnl", "<", "min_recent_pnl"),)),
    Rule(INSUFFICIENT_DATA, "gate", "pending", (_c("round_trips", "<", "min_settled_trades"),)),
    Rule(
        "NOISE_TRADER",
        "2",
        "exclude",
        (
            _c("trades_per_week", ">", "noise_min_trades_per_week"),
            _c("abs_roi", "<", "noise_max_abs_roi"),
        ),
    ),
    Rule(
        "NEWS_SNIPER",
        "2",
        "exclude",
        (_c("burstiness_top_1h_ratio", ">", "news_sniper_min_burstiness"),),
    ),
    Rule(
        "LIQUIDITY_PROVIDER",
        "2",
        "exclude",
        (
            _c("buy_sell_balance", ">=", "lp_min_buy_sell_balance"),
            _c("mid_fill_ratio", ">=", "lp_min_mid_fill_ratio"),
        ),
    ),
    Rule(
        "BOT_SWARM",
        "2",
        "exclude",
        (
            _c("trades_per_day", ">=", "bot_swarm_min_trades_per_day"),
            _c("avg_trade_size_usdc", "<=", "bot_swarm_max_avg_trade_usdc"),
        ),
    ),
    Rule(
        "TAIL_RISK_SELLER",
        "2",
        "exclude",
        (
            _c("win_rate", ">", "tail_risk_min_win_rate"),
            _c("max_single_loss", ">", "tail_risk_loss_to_win_multiple", scale="avg_win_pnl"),
        ),
    ),
    Rule(
        "JACKPOT_GAMBLER",
        "2",
        "exclude",
        (
            _c("pnl_top1_share", ">=", "jackpot_min_top1_share"),
            _c("win_rate", "<=", "jackpot_max_win_rate"),
        ),
    ),
    Rule(
        "INFORMED_SPECIALIST",
        "2",
        "persona",
        (
            _c("open_positions", "<=", "specialist_max_open_positions"),
            _c("concentration_ratio", ">=", "specialist_min_concentration"),
            _c("win_rate", ">=", "specialist_min_win_rate"),
        ),
    ),
    Rule(
        "CONSISTENT_GENERALIST",
        "2",
        "persona",
        (
            _c("unique_markets", ">=", "generalist_min_unique_markets"),
            _c("win_rate", ">=", "generalist_min_win_rate"),
            _c("win_rate", "<=", "generalist_max_win_rate"),
            _c("max_drawdown_pct", "<=", "generalist_max_drawdown_pct"),
            _c("sharpe", ">=", "generalist_min_sharpe"),
        ),
    ),
    Rule(
        "PATIENT_ACCUMULATOR",
        "2",
        "persona",
        (
            _c("avg_hold_hours", ">=", "accumulator_min_avg_hold_hours"),
            _c("trades_per_week", "<=", "accumulator_max_trades_per_week"),
            _c("roi", ">=", "accumulator_min_roi"),
        ),
    ),
    Rule("LOW_ROI", "2", "persona_gate", (_c("roi", "<", "low_roi_min"),)),
)

TRAITS: tuple[Trait, ...] = (
    Trait("TOPIC_LANE", _c("top_domain_ratio", ">=", "topic_lane_min_ratio"), "top_domain"),
    Trait("BONDER", _c("extreme_price_ratio", ">=", "bonder_min_extreme_ratio")),
    Trait("WHALE", _c("avg_trade_size_usdc", ">=", "whale_min_avg_trade_usdc")),
)

#: Every threshold the table reads (`known_bots` is the wallet list, passed on its own).
THRESHOLD_NAMES: tuple[str, ...] = tuple(
    sorted(
        (
            {c.threshold for rule in RULES for c in rule.conditions}
            | {t.condition.threshold for t in TRAITS}
        )
        - {"known_bots"}
    )
)

_WINDOW_FIELDS = tuple(f.name for f in fields(WindowFeatures))
_LIFETIME_FIELDS = tuple(f.name for f in fields(LifetimeStats))


@dataclass(frozen=True)
class Classification:
    """The decision for one wallet and day."""

    status: str
    persona: str | None
    reason: str | None
    stage: str | None
    metric_value: float | None
    threshold: float | None
    confidence: float | None
    traits: tuple[tuple[str, str | None], ...]
    rules_version: str


def metric_values(window: WindowFeatures, lifetime: LifetimeStats) -> dict[str, Any]:
    """Every metric the table names, by name: the window's features, the lifetime stats, abs_roi."""
    values: dict[str, Any] = {name: getattr(window, name) for name in _WINDOW_FIELDS}
    for name in _LIFETIME_FIELDS:
        values[name] = getattr(lifetime, name)
    values["abs_roi"] = abs(window.roi)
    return values


def threshold_of(cond: Condition, metrics: Mapping[str, Any], thresholds: Thresholds) -> Any:
    """The number `cond` compares against, times its `scale` metric when it has one."""
    threshold = getattr(thresholds, cond.threshold)
    return threshold * metrics[cond.scale] if cond.scale is not None else threshold


def passes(
    cond: Condition,
    metrics: Mapping[str, Any],
    thresholds: Thresholds,
    wallet: str,
    bots: frozenset[str],
) -> bool:
    """Whether `cond` holds (`wallet` and `bots` lower-cased, for the known-bot membership)."""
    if cond.op == "in":
        return wallet in bots
    return _OPS[cond.op](metrics[cond.metric], threshold_of(cond, metrics, thresholds))


@lru_cache(maxsize=64)
def rules_version(thresholds: Thresholds, known_bots: frozenset[str]) -> str:
    """Stable 12-hex hash of the rule table, the thresholds and the known bots."""
    doc = {
        "rules": [
            [
                r.code,
                r.stage,
                r.kind,
                [[c.metric, c.op, c.threshold, c.scale] for c in r.conditions],
            ]
            for r in RULES
        ],
        "traits": [
            [t.code, t.condition.metric, t.condition.op, t.condition.threshold] for t in TRAITS
        ],
        "thresholds": {name: getattr(thresholds, name) for name in THRESHOLD_NAMES},
        "known_bots": sorted(b.lower() for b in known_bots),
    }
    blob = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def decides(rule: Rule, fired: bool, persona: Rule | None) -> bool:
    """Whether a firing rule decides, before any other rule has (`persona`: the matched one)."""
    if not fired:
        return False
    if rule.kind == "persona":
        return False
    return rule.kind != "persona_gate" or persona is not None


def reaches_stage2(decided: Rule | None) -> bool:
    """Whether traits are recorded: classification got to stage 2, even if it then excluded."""
    return decided is None or decided.stage not in ("1", "1.5", "gate")


def _reported(
    decided: Rule | None, metrics: Mapping[str, Any], thresholds: Thresholds
) -> tuple[float | None, float | None]:
    # A composite rule reports its first condition; set membership has no number to report.
    if decided is None or decided.conditions[0].op == "in":
        return None, None
    cond = decided.conditions[0]
    return float(metrics[cond.metric]), float(threshold_of(cond, metrics, thresholds))


def decision(
    decided: Rule | None,
    reported: tuple[float | None, float | None],
    persona: Rule | None,
    win_rate: float,
    traits: tuple[tuple[str, str | None], ...],
    version: str,
) -> Classification:
    """The result of one walk of the table; `reported`: the deciding rule's value and threshold."""
    if decided is not None:
        return Classification(
            status=PENDING if decided.kind == "pending" else EXCLUDED,
            # LOW_ROI keeps the persona it vetoed, so the record says what was matched.
            persona=persona.code if decided.kind == "persona_gate" and persona else None,
            reason=decided.code,
            stage=decided.stage,
            metric_value=reported[0],
            threshold=reported[1],
            confidence=None,
            traits=traits,
            rules_version=version,
        )
    if persona is not None:
        return Classification(
            FOLLOWABLE, persona.code, None, "2", None, None, win_rate, traits, version
        )
    return Classification(
        UNCLASSIFIED, None, NO_PERSONA_MATCH, "2", None, None, None, traits, version
    )


def classify(
    proxy_wallet: str,
    window: WindowFeatures,
    lifetime: LifetimeStats,
    thresholds: Thresholds,
    known_bots: frozenset[str],
) -> Classification:
    """The SPEC §8 decision for one wallet (known_bots: any case); `explain` adds the report.

    It stops at the deciding rule and builds no per-condition results: the classifier calls it
    for every FeatureSet, where `explain` would cost several times more (README, Performance).
    Tests hold it equal to `explain`.
    """
    return classify_metrics(proxy_wallet, metric_values(window, lifetime), thresholds, known_bots)


@lru_cache(maxsize=64)
def _lower_case(known_bots: frozenset[str]) -> frozenset[str]:
    return frozenset(b.lower() for b in known_bots)


def classify_metrics(
    proxy_wallet: str,
    metrics: Mapping[str, Any],
    thresholds: Thresholds,
    known_bots: frozenset[str],
) -> Classification:
    """`classify` from the metrics by name (`metric_values`, or any mapping holding them, such
    as a FeatureSet's values plus `abs_roi`): the classifier's path, which builds no
    WindowFeatures per message."""
    wallet = proxy_wallet.lower()
    bots = _lower_case(known_bots)
    decided: Rule | None = None
    persona: Rule | None = None
    for rule in RULES:
        if rule.kind == "persona" and persona is not None:
            continue  # only the first matching persona counts
        fired = all(passes(c, metrics, thresholds, wallet, bots) for c in rule.conditions)
        if decides(rule, fired, persona):
            decided = rule
            break
        if fired and rule.kind == "persona":
            persona = rule
    reported = _reported(decided, metrics, thresholds)
    traits: tuple[tuple[str, str | None], ...] = ()
    if reaches_stage2(decided):
        traits = tuple(
            (t.code, metrics[t.value_metric] if t.value_metric else None)
            for t in TRAITS
            if passes(t.condition, metrics, thresholds, wallet, bots)
        )
    version = rules_version(thresholds, known_bots)
    return decision(decided, reported, persona, metrics["win_rate"], traits, version)
