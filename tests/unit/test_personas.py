"""SPEC §8 classification: every rule at, just below and just above its threshold."""

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from agents.core.explain import explain
from agents.core.features import LifetimeStats, WindowFeatures
from agents.core.rules import RULES, Classification, classify, rules_version
from config.thresholds import RuleThresholds

WALLET = "0x" + "ab" * 20
RULES_DEFAULT = RuleThresholds()

# A wallet that passes every exclusion and is an INFORMED_SPECIALIST.
BASE_WINDOW = WindowFeatures(
    trade_count=30, buy_count=15, sell_count=15, unique_markets=5, volume_usdc=600.0,
    avg_trade_size_usdc=20.0, size_cv=0.5, buy_cost_usdc=50.0, sell_proceeds_usdc=60.0,
    cashflow_pnl=10.0, round_trips=10, win_count=7, loss_count=3, win_rate=0.7, realized_pnl=10.0,
    roi=0.2, avg_win_pnl=2.0, max_single_loss=1.0, profitable_markets=3, pnl_top1_share=0.3,
    open_positions=2, avg_hold_hours=10.0, max_drawdown_pct=5.0, sharpe=2.0, trades_per_week=7.0,
    trades_per_day=1.0, concentration_ratio=0.8, buy_sell_balance=0.3, mid_fill_ratio=0.1,
    extreme_price_ratio=0.1, burstiness_top_1h_ratio=0.1, top_domain="Sports", top_domain_ratio=0.5,
)  # fmt: skip
BASE_LIFE = LifetimeStats(0, 99 * 86_400, 50, 100, 1, 0.1)

GENERALIST = {"concentration_ratio": 0.3, "unique_markets": 20, "win_rate": 0.55}
ACCUMULATOR = {"concentration_ratio": 0.3, "avg_hold_hours": 48.0, "trades_per_week": 5.0}
SNIPER = {"wallet_age_days": 10, "win_rate": 0.9, "trade_count": 10}


def run(**overrides: Any) -> Classification:
    life_fields = set(LifetimeStats.__slots__)
    life = replace(BASE_LIFE, **{k: v for k, v in overrides.items() if k in life_fields})
    window = replace(BASE_WINDOW, **{k: v for k, v in overrides.items() if k not in life_fields})
    return classify(WALLET, window, life, RULES_DEFAULT, frozenset())


def test_base_wallet_is_followable_specialist() -> None:
    c = run()
    assert (c.status, c.persona, c.reason, c.confidence) == (
        "followable",
        "INFORMED_SPECIALIST",
        None,
        0.7,
    )


EXCLUSIONS = [
    # (code, overrides, fires)
    ("SNIPER", SNIPER, True),
    ("SNIPER", {**SNIPER, "wallet_age_days": 29}, True),
    ("SNIPER", {**SNIPER, "wallet_age_days": 30}, False),
    ("SNIPER", {**SNIPER, "win_rate": 0.85}, False),
    ("SNIPER", {**SNIPER, "win_rate": 0.86}, True),
    ("SNIPER", {**SNIPER, "trade_count": 19}, True),
    ("SNIPER", {**SNIPER, "trade_count": 20}, False),
    ("SNIPER", {**SNIPER, "round_trips": 0}, False),
    ("SNIPER", {**SNIPER, "round_trips": 1}, True),
    ("TOO_YOUNG", {"wallet_age_days": 44}, True),
    ("TOO_YOUNG", {"wallet_age_days": 45}, False),
    ("TOO_YOUNG", {"wallet_age_days": 46}, False),
    ("TOO_FEW_TRADES", {"total_trades": 9}, True),
    ("TOO_FEW_TRADES", {"total_trades": 10}, False),
    ("TOO_FEW_TRADES", {"total_trades": 11}, False),
    ("INACTIVE", {"days_since_last_trade": 44}, False),
    ("INACTIVE", {"days_since_last_trade": 45}, False),
    ("INACTIVE", {"days_since_last_trade": 46}, True),
    ("LIFETIME_LOSS", {"lifetime_roi": -0.001}, True),
    ("LIFETIME_LOSS", {"lifetime_roi": 0.0}, False),
    ("LIFETIME_LOSS", {"lifetime_roi": 0.001}, False),
    ("RECENT_LOSS", {"realized_pnl": -0.001}, True),
    ("RECENT_LOSS", {"realized_pnl": 0.0}, False),
    ("RECENT_LOSS", {"realized_pnl": 0.001}, False),
    ("INSUFFICIENT_DATA", {"round_trips": 4}, True),
    ("INSUFFICIENT_DATA", {"round_trips": 5}, False),
    ("INSUFFICIENT_DATA", {"round_trips": 6}, False),
    ("NOISE_TRADER", {"trades_per_week": 50.01, "roi": 0.019}, True),
    ("NOISE_TRADER", {"trades_per_week": 50.0, "roi": 0.019}, False),
    ("NOISE_TRADER", {"trades_per_week": 50.01, "roi": -0.019}, True),
    ("NOISE_TRADER", {"trades_per_week": 50.01, "roi": 0.02}, False),
    ("NOISE_TRADER", {"trades_per_week": 50.01, "roi": 0.021}, False),
    ("NEWS_SNIPER", {"burstiness_top_1h_ratio": 0.69}, False),
    ("NEWS_SNIPER", {"burstiness_top_1h_ratio": 0.70}, False),
    ("NEWS_SNIPER", {"burstiness_top_1h_ratio": 0.71}, True),
    ("LIQUIDITY_PROVIDER", {"buy_sell_balance": 0.45, "mid_fill_ratio": 0.60}, True),
    ("LIQUIDITY_PROVIDER", {"buy_sell_balance": 0.46, "mid_fill_ratio": 0.61}, True),
    ("LIQUIDITY_PROVIDER", {"buy_sell_balance": 0.44, "mid_fill_ratio": 0.60}, False),
    ("LIQUIDITY_PROVIDER", {"buy_sell_balance": 0.45, "mid_fill_ratio": 0.59}, False),
    ("BOT_SWARM", {"trades_per_day": 200.0, "avg_trade_size_usdc": 5.0}, True),
    ("BOT_SWARM", {"trades_per_day": 201.0, "avg_trade_size_usdc": 4.9}, True),
    ("BOT_SWARM", {"trades_per_day": 199.9, "avg_trade_size_usdc": 5.0}, False),
    ("BOT_SWARM", {"trades_per_day": 200.0, "avg_trade_size_usdc": 5.1}, False),
    ("TAIL_RISK_SELLER", {"win_rate": 0.81, "max_single_loss": 10.01}, True),
    ("TAIL_RISK_SELLER", {"win_rate": 0.80, "max_single_loss": 10.01}, False),
    ("TAIL_RISK_SELLER", {"win_rate": 0.81, "max_single_loss": 10.0}, False),
    ("TAIL_RISK_SELLER", {"win_rate": 0.81, "max_single_loss": 9.99}, False),
    ("JACKPOT_GAMBLER", {"pnl_top1_share": 0.60, "win_rate": 0.45}, True),
    ("JACKPOT_GAMBLER", {"pnl_top1_share": 0.61, "win_rate": 0.44}, True),
    ("JACKPOT_GAMBLER", {"pnl_top1_share": 0.59, "win_rate": 0.45}, False),
    ("JACKPOT_GAMBLER", {"pnl_top1_share": 0.60, "win_rate": 0.46}, False),
]


@pytest.mark.parametrize(("code", "overrides", "fires"), EXCLUSIONS)
def test_exclusion_threshold(code: str, overrides: dict[str, Any], fires: bool) -> None:
    c = run(**overrides)
    assert (c.reason == code) is fires, c
    if fires:
        assert c.status == ("pending" if code == "INSUFFICIENT_DATA" else "excluded")
        assert c.persona is None and c.confidence is None


PERSONAS = [
    ("INFORMED_SPECIALIST", {"open_positions": 5}, True),
    ("INFORMED_SPECIALIST", {"open_positions": 6}, False),
    ("INFORMED_SPECIALIST", {"concentration_ratio": 0.60}, True),
    ("INFORMED_SPECIALIST", {"concentration_ratio": 0.59}, False),
    ("INFORMED_SPECIALIST", {"win_rate": 0.60}, True),
    ("INFORMED_SPECIALIST", {"win_rate": 0.59}, False),
    ("CONSISTENT_GENERALIST", GENERALIST, True),
    ("CONSISTENT_GENERALIST", {**GENERALIST, "unique_markets": 19}, False),
    ("CONSISTENT_GENERALIST", {**GENERALIST, "win_rate": 0.52}, True),
    ("CONSISTENT_GENERALIST", {**GENERALIST, "win_rate": 0.51}, False),
    ("CONSISTENT_GENERALIST", {**GENERALIST, "win_rate": 0.60}, True),
    ("CONSISTENT_GENERALIST", {**GENERALIST, "win_rate": 0.61}, False),
    ("CONSISTENT_GENERALIST", {**GENERALIST, "max_drawdown_pct": 15.0}, True),
    ("CONSISTENT_GENERALIST", {**GENERALIST, "max_drawdown_pct": 15.01}, False),
    ("CONSISTENT_GENERALIST", {**GENERALIST, "sharpe": 1.0}, True),
    ("CONSISTENT_GENERALIST", {**GENERALIST, "sharpe": 0.99}, False),
    ("PATIENT_ACCUMULATOR", ACCUMULATOR, True),
    ("PATIENT_ACCUMULATOR", {**ACCUMULATOR, "avg_hold_hours": 47.9}, False),
    ("PATIENT_ACCUMULATOR", {**ACCUMULATOR, "trades_per_week": 5.1}, False),
    ("PATIENT_ACCUMULATOR", {**ACCUMULATOR, "roi": 0.05}, True),
    ("PATIENT_ACCUMULATOR", {**ACCUMULATOR, "roi": 0.049}, False),
]


@pytest.mark.parametrize(("persona", "overrides", "matches"), PERSONAS)
def test_persona_threshold(persona: str, overrides: dict[str, Any], matches: bool) -> None:
    c = run(**overrides)
    assert (c.persona == persona) is matches, c
    if matches and c.status == "followable":
        assert c.confidence == overrides.get("win_rate", 0.7)


@pytest.mark.parametrize(
    ("roi", "status", "reason"),
    [(0.049, "excluded", "LOW_ROI"), (0.05, "followable", None), (0.051, "followable", None)],
)
def test_low_roi_vetoes_a_matched_persona(roi: float, status: str, reason: str | None) -> None:
    c = run(roi=roi)
    assert (c.status, c.reason, c.persona) == (status, reason, "INFORMED_SPECIALIST")
    if status == "excluded":
        assert (c.metric_value, c.threshold, c.confidence) == (roi, 0.05, None)


def test_no_persona_is_unclassified() -> None:
    c = run(concentration_ratio=0.3)
    assert (c.status, c.persona, c.reason) == ("unclassified", None, "NO_PERSONA_MATCH")


def test_low_roi_without_persona_is_unclassified() -> None:
    assert run(concentration_ratio=0.3, roi=0.0).reason == "NO_PERSONA_MATCH"


def test_known_bot_first_and_case_insensitive() -> None:
    c = classify(WALLET, BASE_WINDOW, BASE_LIFE, RULES_DEFAULT, frozenset({WALLET.upper()}))
    assert (c.status, c.reason, c.stage, c.metric_value, c.threshold) == (
        "excluded",
        "KNOWN_BOT",
        "1",
        None,
        None,
    )


def test_first_firing_rule_decides_and_reports_first_condition() -> None:
    c = run(**SNIPER, total_trades=1, realized_pnl=-5.0)
    assert (c.reason, c.stage, c.metric_value, c.threshold) == ("SNIPER", "1", 10.0, 30.0)
    assert run(realized_pnl=-5.0, round_trips=1).reason == "RECENT_LOSS"


def test_stage_labels() -> None:
    assert run(realized_pnl=-1.0).stage == "1.5"
    assert run(round_trips=2).stage == "gate"
    assert run(burstiness_top_1h_ratio=0.9).stage == "2"


@pytest.mark.parametrize(
    ("overrides", "traits"),
    [
        ({}, ()),
        ({"top_domain_ratio": 0.65}, (("TOPIC_LANE", "Sports"),)),
        ({"top_domain_ratio": 0.64}, ()),
        ({"extreme_price_ratio": 0.60}, (("BONDER", None),)),
        ({"extreme_price_ratio": 0.59}, ()),
        ({"avg_trade_size_usdc": 100.0}, (("WHALE", None),)),
        ({"avg_trade_size_usdc": 99.9}, ()),
        ({"top_domain_ratio": 1.0, "avg_trade_size_usdc": 500.0, "burstiness_top_1h_ratio": 0.9},
         (("TOPIC_LANE", "Sports"), ("WHALE", None))),  # stage-2 exclusion still records traits
    ],
)  # fmt: skip
def test_traits_at_stage_two(overrides: dict[str, Any], traits: tuple[Any, ...]) -> None:
    assert run(**overrides).traits == traits


@pytest.mark.parametrize("overrides", [{"round_trips": 4}, {"wallet_age_days": 1}])
def test_no_traits_before_stage_two(overrides: dict[str, Any]) -> None:
    assert run(top_domain_ratio=1.0, avg_trade_size_usdc=500.0, **overrides).traits == ()


def test_explain_lists_every_rule_and_agrees() -> None:
    e = explain(WALLET, BASE_WINDOW, BASE_LIFE, RULES_DEFAULT, frozenset())
    assert [r.code for r in e.rules] == [r.code for r in RULES]
    assert e.classification == run()
    assert e.decided_by == "INFORMED_SPECIALIST"
    assert sum(r.decided for r in e.rules) == 0
    tail = next(r for r in e.rules if r.code == "TAIL_RISK_SELLER")
    assert tail.conditions[1].threshold == 10.0  # 5 · avg_win_pnl
    assert e.to_dict()["rules"][0]["code"] == "KNOWN_BOT"


def test_explain_marks_the_deciding_rule() -> None:
    e = explain(WALLET, replace(BASE_WINDOW, round_trips=3), BASE_LIFE, RULES_DEFAULT, frozenset())
    assert [r.code for r in e.rules if r.decided] == ["INSUFFICIENT_DATA"]
    assert e.decided_by == "INSUFFICIENT_DATA"


def test_custom_thresholds_are_used() -> None:
    strict = RuleThresholds(min_wallet_age_days=200)
    c = classify(WALLET, BASE_WINDOW, BASE_LIFE, strict, frozenset())
    assert (c.reason, c.threshold) == ("TOO_YOUNG", 200.0)


def test_rules_version_is_stable_and_sensitive() -> None:
    v = rules_version(RULES_DEFAULT, frozenset())
    assert len(v) == 12 and int(v, 16) >= 0
    assert v == rules_version(RuleThresholds(), frozenset())
    assert v != rules_version(RuleThresholds(low_roi_min=0.06), frozenset())
    assert v != rules_version(RULES_DEFAULT, frozenset({WALLET}))
    assert run().rules_version == v


def test_thresholds_are_frozen_and_validated() -> None:
    with pytest.raises(ValidationError):
        RULES_DEFAULT.low_roi_min = 0.1  # type: ignore[misc]
    with pytest.raises(ValidationError):
        RuleThresholds(sniper_min_win_rate=1.5)
    with pytest.raises(ValidationError):
        RuleThresholds(unknown_threshold=1)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        RuleThresholds(generalist_min_sharpe=float("nan"))


# Values at, around and far from the default thresholds.
_NEAR_THRESHOLDS = st.sampled_from(
    [-1.0, -0.01, 0.0, 0.01, 0.02, 0.05, 0.45, 0.52, 0.6, 0.65, 0.7, 0.8, 0.85, 0.9, 1.0,
     1.5, 4.0, 5.0, 6.0, 15.0, 20.0, 48.0, 50.0, 51.0, 100.0, 200.0, 500.0]
)  # fmt: skip
_COUNTS = st.sampled_from([0, 1, 4, 5, 6, 9, 10, 19, 20, 21, 29, 30, 44, 45, 46, 60, 400])
_FIELDS = {
    **{f: _COUNTS if isinstance(getattr(BASE_WINDOW, f), int) else _NEAR_THRESHOLDS
       for f in WindowFeatures.__slots__},
    **{f: _COUNTS if f != "lifetime_roi" else _NEAR_THRESHOLDS for f in LifetimeStats.__slots__},
    "top_domain": st.sampled_from([None, "politics"]),
}  # fmt: skip
# Rules that need several features at once; one of these, then a few features moved to values
# around the thresholds, reaches every rule.
_PRESETS = st.sampled_from([
    {}, GENERALIST, ACCUMULATOR, SNIPER, {"trades_per_week": 51.0, "roi": 0.01},
    {"trades_per_day": 200.0, "avg_trade_size_usdc": 5.0},
    {"win_rate": 0.85, "max_single_loss": 11.0}, {"pnl_top1_share": 0.6, "win_rate": 0.45},
    {"buy_sell_balance": 0.45, "mid_fill_ratio": 0.6},
])  # fmt: skip
_PERTURBED = st.builds(
    lambda preset, moved: {**preset, **moved},
    _PRESETS,
    st.dictionaries(st.sampled_from(sorted(_FIELDS)), st.none(), max_size=4).flatmap(
        lambda keys: st.fixed_dictionaries({key: _FIELDS[key] for key in keys})
    ),
)


def _perturbed(overrides: dict[str, Any]) -> tuple[WindowFeatures, LifetimeStats]:
    life_fields = set(LifetimeStats.__slots__)
    return (
        replace(BASE_WINDOW, **{k: v for k, v in overrides.items() if k not in life_fields}),
        replace(BASE_LIFE, **{k: v for k, v in overrides.items() if k in life_fields}),
    )


@settings(max_examples=1000, deadline=None)
@given(_PERTURBED, st.sampled_from([frozenset(), frozenset({WALLET.upper()})]))
def test_classify_is_explain_for_any_feature_values(
    overrides: dict[str, Any], bots: frozenset[str]
) -> None:
    window, life = _perturbed(overrides)
    expected = explain(WALLET, window, life, RULES_DEFAULT, bots).classification
    assert classify(WALLET, window, life, RULES_DEFAULT, bots) == expected


def test_perturbed_values_reach_every_rule() -> None:
    """The strategy above is strong enough to matter: each rule decides for some draw."""
    seen: set[str | None] = set()

    @settings(max_examples=1000, deadline=None, database=None, derandomize=True)
    @given(_PERTURBED)
    def draw(overrides: dict[str, Any]) -> None:
        c = classify(WALLET, *_perturbed(overrides), RULES_DEFAULT, frozenset())
        seen.update({c.reason, c.persona})

    draw()
    missing = {rule.code for rule in RULES if rule.code != "KNOWN_BOT"} - seen
    assert not missing, sorted(missing)
