"""One wallet, read only: `personas features` (a window) and `personas classify` (rule by rule)."""

from __future__ import annotations

import argparse
import dataclasses
from contextlib import closing
from typing import Any

from agents.core.errors import InvalidMessage, WalletError
from agents.core.explain import ConditionResult, Explanation, RuleResult, explain
from agents.core.features import wallet_features
from agents.store import fills_for_wallet
from config.settings import Settings, load_settings
from streams.cli.output import emit_json, open_existing, timestamp_arg, utc_time, wallet_arg
from streams.cli.status import EXIT_OK

__all__ = ["command_classify", "command_features", "condition_text", "print_explanation"]

HOLDS, DOES_NOT_HOLD = "holds", "does not hold"


def _features_of(settings: Settings, wallet: str, as_of: int, window: int) -> tuple[Any, Any]:
    with closing(open_existing(settings)) as conn:
        fills = fills_for_wallet(conn, wallet, as_of)
    if not fills:
        # Features of no trades would classify as TOO_YOUNG, as if the wallet had been seen.
        when = utc_time(as_of)
        raise WalletError(
            f"no trades of {wallet} up to {when} in {settings.database.location}: "
            "nothing to compute"
        )
    windows, lifetime = wallet_features(fills, as_of, (window,))
    return windows[window], lifetime


def command_features(args: argparse.Namespace) -> int:
    """Print one window's features and the lifetime stats of a wallet."""
    settings = load_settings(args.config)
    wallet = wallet_arg(args.wallet)
    if args.window < 1:
        raise InvalidMessage("--window", f"must be a positive number of days (got {args.window})")
    as_of = timestamp_arg(args.as_of, "--as-of")
    window, lifetime = _features_of(settings, wallet, as_of, args.window)
    values = {**dataclasses.asdict(window), **dataclasses.asdict(lifetime)}
    if args.json:
        emit_json({"proxy_wallet": wallet, "window_days": args.window, "as_of": as_of, **values})
        return EXIT_OK
    print(f"{wallet}  window {args.window}d  as_of {as_of}")
    for name, value in values.items():
        print(f"  {name:<26} {_fmt(value)}")
    return EXIT_OK


def command_classify(args: argparse.Namespace) -> int:
    """Explain the classification on the configured window; `--json` gives `Explanation`."""
    settings = load_settings(args.config)
    wallet = wallet_arg(args.wallet)
    as_of = timestamp_arg(args.as_of, "--as-of")
    window, lifetime = _features_of(settings, wallet, as_of, settings.features.window_days)
    rules = settings.rules
    explanation = explain(wallet, window, lifetime, rules, frozenset(rules.known_bots))
    if args.json:
        emit_json(explanation.to_dict())
    else:
        print_explanation(wallet, as_of, explanation)
    return EXIT_OK


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "-" if value is None else str(value)


def condition_text(condition: ConditionResult) -> str:
    """`wallet_age_days = 50 < 45: does not hold`: the comparison, and whether it is true."""
    threshold = (
        condition.threshold_name if condition.threshold is None else _fmt(condition.threshold)
    )
    comparison = f"{condition.metric} {condition.op} {threshold}"
    if condition.value is not None:
        comparison = f"{condition.metric} = {_fmt(condition.value)} {condition.op} {threshold}"
    return f"{comparison}: {HOLDS if condition.passed else DOES_NOT_HOLD}"


def _rule_outcome(rule: RuleResult, decided_by: str | None, after_decision: bool) -> str:
    if rule.code == decided_by:
        return "fires → decides"
    if not rule.fired:
        return "does not fire"
    return "fires (no effect: decided above)" if after_decision else "fires"


def print_explanation(wallet: str, as_of: int, explanation: Explanation) -> None:
    """Every rule with its conditions, the traits, and which rule decided the result."""
    result = explanation.classification
    decided_by = explanation.decided_by
    print(f"{wallet}  as_of {as_of}  rules {result.rules_version}")
    print("rules in order; a rule fires when all its conditions hold (→ the rule that decided):")
    after_decision = False
    for rule in explanation.rules:
        marker = "→" if rule.code == decided_by else " "
        outcome = _rule_outcome(rule, decided_by, after_decision)
        print(f"{marker} stage {rule.stage:<4} {rule.code:<22} {outcome}")
        for condition in rule.conditions:
            print(f"      {condition_text(condition)}")
        after_decision = after_decision or rule.code == decided_by
    print("traits (recorded when their condition holds and classification reaches stage 2):")
    for trait in explanation.traits:
        recorded = "recorded" if trait.recorded else "not recorded"
        print(f"  {trait.code:<16} {condition_text(trait.condition)} ({recorded})")
    print(f"decided by: {decided_by or '- (no rule decided)'}")
    print(
        f"result: {result.status}"
        + (f", persona {result.persona}" if result.persona else "")
        + (f", reason {result.reason}" if result.reason else "")
        + (f", confidence {_fmt(result.confidence)}" if result.confidence is not None else "")
    )
