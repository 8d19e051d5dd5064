"""SPEC §8 explanation: every rule and trait of the table evaluated, and which one decided."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from agents.core.features import LifetimeStats, WindowFeatures
from agents.core.rules import (
    RULES,
    TRAITS,
    Classification,
    Condition,
    Rule,
    Thresholds,
    decides,
    decision,
    metric_values,
    passes,
    reaches_stage2,
    rules_version,
    threshold_of,
)

__all__ = ["ConditionResult", "Explanation", "RuleResult", "TraitResult", "explain"]


@dataclass(frozen=True, slots=True)
class ConditionResult:
    """One condition evaluated: value, operator, threshold (None for set membership), outcome."""

    metric: str
    value: float | None
    op: str
    threshold_name: str
    threshold: float | None
    passed: bool


@dataclass(frozen=True, slots=True)
class RuleResult:
    """One rule evaluated: its conditions, whether it fired and whether it decided."""

    code: str
    stage: str
    kind: str
    conditions: tuple[ConditionResult, ...]
    fired: bool
    decided: bool


@dataclass(frozen=True, slots=True)
class TraitResult:
    """One trait evaluated; `recorded` only when classification reached stage 2."""

    code: str
    condition: ConditionResult
    value: str | None
    recorded: bool


@dataclass(frozen=True, slots=True)
class Explanation:
    """Every rule and trait in table order, the deciding rule, and the classification."""

    proxy_wallet: str
    rules: tuple[RuleResult, ...]
    traits: tuple[TraitResult, ...]
    decided_by: str | None
    classification: Classification

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form."""
        return asdict(self)


def _evaluate(
    cond: Condition,
    metrics: dict[str, Any],
    thresholds: Thresholds,
    wallet: str,
    bots: frozenset[str],
) -> ConditionResult:
    passed = passes(cond, metrics, thresholds, wallet, bots)
    if cond.op == "in":
        return ConditionResult(cond.metric, None, "in", cond.threshold, None, passed)
    value, threshold = metrics[cond.metric], threshold_of(cond, metrics, thresholds)
    return ConditionResult(
        cond.metric, float(value), cond.op, cond.threshold, float(threshold), passed
    )


def explain(
    proxy_wallet: str,
    window: WindowFeatures,
    lifetime: LifetimeStats,
    thresholds: Thresholds,
    known_bots: frozenset[str],
) -> Explanation:
    """Evaluate every rule and trait in order and say which rule decided (known_bots: any case).

    It walks the table with `classify`'s helpers, without stopping at the deciding rule, so its
    classification is `classify`'s (tests hold them equal).
    """
    metrics = metric_values(window, lifetime)
    wallet = proxy_wallet.lower()
    bots = frozenset(b.lower() for b in known_bots)

    results: list[RuleResult] = []
    decided: Rule | None = None
    first: ConditionResult | None = None
    persona: Rule | None = None
    for rule in RULES:
        conds = tuple(_evaluate(c, metrics, thresholds, wallet, bots) for c in rule.conditions)
        fired = all(c.passed for c in conds)
        decides_here = decided is None and decides(rule, fired, persona)
        if decided is None and fired and rule.kind == "persona" and persona is None:
            persona = rule
        if decides_here:
            decided, first = rule, conds[0]
        results.append(RuleResult(rule.code, rule.stage, rule.kind, conds, fired, decides_here))

    reached_stage2 = reaches_stage2(decided)
    trait_results: list[TraitResult] = []
    for trait in TRAITS:
        cond = _evaluate(trait.condition, metrics, thresholds, wallet, bots)
        value = metrics[trait.value_metric] if trait.value_metric else None
        trait_results.append(TraitResult(trait.code, cond, value, reached_stage2 and cond.passed))
    traits = tuple((t.code, t.value) for t in trait_results if t.recorded)
    reported = (first.value, first.threshold) if first is not None else (None, None)
    return Explanation(
        proxy_wallet=proxy_wallet,
        rules=tuple(results),
        traits=tuple(trait_results),
        decided_by=decided.code if decided is not None else persona.code if persona else None,
        classification=decision(
            decided,
            reported,
            persona,
            window.win_rate,
            traits,
            rules_version(thresholds, known_bots),
        ),
    )
