"""One wallet, read only: `personas features` (a window) and `personas classify` (rule by rule)."""

from __future__ import annotations

import argparse
import dataclasses
from contextlib import closing
from typing import Any

from agents.core.errors import InvalidMessage
from agents.core.explain import ConditionResult, Explanation, explain
from agents.core.features import wallet_features
from agents.store import fills_for_wallet
from config.settings import Settings, load_settings
from streams.cli.output import emit_json, open_existing, timestamp_arg, wallet_arg
from streams.cli.status import EXIT_OK

__all__ = ["command_classify", "command_features", "print_explanation"]


def _features_of(settings: Settings, wallet: str, as_of: int, window: int) -> tuple[Any, Any]:
    with closing(open_existing(settings)) as conn:
        fills = fills_for_wallet(conn, wallet, as_of)
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


def _condition_text(condition: ConditionResult) -> str:
    threshold = (
        condition.threshold_name if condition.threshold is None else _fmt(condition.threshold)
    )
    mark = "pass" if condition.passed else "fail"
    return f"{condition.metric} = {_fmt(condition.value)} {condition.op} {threshold}: {mark}"


def print_explanation(wallet: str, as_of: int, explanation: Explanation) -> None:
    """Every rule with its conditions, the traits, and which rule decided the result."""
    result = explanation.classification
    print(f"{wallet}  as_of {as_of}  rules {result.rules_version}")
    for rule in explanation.rules:
        marker = "→" if rule.decided else ("✓" if rule.fired else " ")
        conditions = "; ".join(_condition_text(c) for c in rule.conditions)
        print(f" {marker} stage {rule.stage:<4} {rule.code:<22} {conditions}")
    for trait in explanation.traits:
        recorded = "recorded" if trait.recorded else "not recorded"
        print(f"   trait {trait.code:<16} {_condition_text(trait.condition)} ({recorded})")
    print(f"decided by: {explanation.decided_by or '-'}")
    print(
        f"result: {result.status}"
        + (f", persona {result.persona}" if result.persona else "")
        + (f", reason {result.reason}" if result.reason else "")
        + (f", confidence {_fmt(result.confidence)}" if result.confidence is not None else "")
    )
