"""The file and inspection commands: generate, import, features, classify."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any

from agents.core.errors import InvalidMessage
from agents.core.explain import ConditionResult, Explanation, explain
from agents.core.features import wallet_features
from agents.data.generate import DEFAULT_END, GenerateOptions, generate, write_dataset
from agents.data.importer import ImportReport, import_markets, import_trades
from agents.store import connect, fills_for_wallet, migrate
from config.settings import Settings, load_settings
from streams.cli.output import emit_json, open_existing, timestamp_arg, wallet_arg
from streams.progress import Progress

__all__ = ["command_classify", "command_features", "command_generate", "command_import"]

SHOWN_ERRORS = 20


def command_generate(args: argparse.Namespace) -> int:
    end = timestamp_arg(args.end, "--end", DEFAULT_END)
    try:
        options = GenerateOptions(wallets=args.wallets, days=args.days, seed=args.seed, end=end)
        dataset = generate(options)
    except ValueError as exc:
        raise InvalidMessage("options", str(exc)) from None
    started = time.monotonic()
    paths = write_dataset(dataset, args.out)
    summary: dict[str, Any] = {
        "wallets": len(dataset.wallets), "planted": len(dataset.labels), "end": end,
        "files": {kind: str(path) for kind, path in paths.items()},
        "seconds": round(time.monotonic() - started, 2),
    }  # fmt: skip
    if args.json:
        emit_json(summary)
    else:
        print(f"generated {summary['wallets']:,} wallets ({summary['planted']:,} planted) "
              f"in {summary['seconds']}s:")  # fmt: skip
        for kind, path in summary["files"].items():
            print(f"  {kind:<8} {path}")
    return 0


def _print_report(kind: str, report: ImportReport, seconds: float) -> None:
    for error in report.errors[:SHOWN_ERRORS]:
        print(f"{report.file}:{error}", file=sys.stderr)
    if report.rejected > SHOWN_ERRORS:
        print(f"… and {report.rejected - SHOWN_ERRORS:,} more rejected rows", file=sys.stderr)
    rate = report.read / seconds if seconds > 0 else 0.0
    print(f"{kind}: {report.read:,} read, {report.inserted:,} inserted, "
          f"{report.duplicates:,} duplicates skipped, {report.rejected:,} rejected "
          f"in {seconds:.1f}s ({rate:,.0f} rows/s)")  # fmt: skip


def command_import(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    for path in filter(None, (args.file, args.markets)):
        if not path.is_file():
            raise InvalidMessage("FILE", f"no such file: {path}")
    reports: dict[str, Any] = {}
    with closing(connect(settings.database.path, settings.database.busy_timeout_ms)) as conn:
        migrate(conn)
        if args.markets is not None:
            started = time.monotonic()
            markets = import_markets(conn, args.markets)
            reports["markets"] = markets.as_dict()
            if not args.json:
                _print_report("markets", markets, time.monotonic() - started)
        started = time.monotonic()
        progress = Progress("importing", _count_lines(args.file), enabled=not args.json)
        trades = import_trades(conn, args.file, progress.update)
        seconds = progress.finish(trades.read)
        reports["trades"] = trades.as_dict()
    if args.json:
        emit_json(reports)
    else:
        _print_report("trades", trades, seconds)
    rejected = sum(report["rejected"] for report in reports.values())
    return 2 if rejected else 0


def _count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))


def _features_of(settings: Settings, wallet: str, as_of: int, window: int) -> tuple[Any, Any]:
    with closing(open_existing(settings)) as conn:
        fills = fills_for_wallet(conn, wallet, as_of)
    windows, lifetime = wallet_features(fills, as_of, (window,))
    return windows[window], lifetime


def command_features(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    wallet = wallet_arg(args.wallet)
    if args.window < 1:
        raise InvalidMessage("--window", f"must be a positive number of days (got {args.window})")
    as_of = timestamp_arg(args.as_of, "--as-of")
    window, lifetime = _features_of(settings, wallet, as_of, args.window)
    values = {**dataclasses.asdict(window), **dataclasses.asdict(lifetime)}
    if args.json:
        emit_json({"proxy_wallet": wallet, "window_days": args.window, "as_of": as_of, **values})
        return 0
    print(f"{wallet}  window {args.window}d  as_of {as_of}")
    for name, value in values.items():
        print(f"  {name:<26} {_fmt(value)}")
    return 0


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "-" if value is None else str(value)


def command_classify(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    wallet = wallet_arg(args.wallet)
    as_of = timestamp_arg(args.as_of, "--as-of")
    window, lifetime = _features_of(settings, wallet, as_of, settings.features.window_days)
    rules = settings.rules
    explanation = explain(wallet, window, lifetime, rules, frozenset(rules.known_bots))
    if args.json:
        emit_json(explanation_dict(explanation))
    else:
        print_explanation(wallet, as_of, explanation)
    return 0


def explanation_dict(explanation: Explanation) -> dict[str, Any]:
    return explanation.to_dict()


def _condition_text(condition: ConditionResult) -> str:
    threshold = (
        condition.threshold_name if condition.threshold is None else _fmt(condition.threshold)
    )
    mark = "pass" if condition.passed else "fail"
    return f"{condition.metric} = {_fmt(condition.value)} {condition.op} {threshold}: {mark}"


def print_explanation(wallet: str, as_of: int, explanation: Explanation) -> None:
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
