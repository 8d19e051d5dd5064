"""`personas demo`: the whole pipeline on generated data, with live progress and a summary.

The pipeline itself is `streams.demo.run_demo`. Here: the options, the terminal's logging (the
demo's own lines only; the worker and the broker write their logs to files) and the summary.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from agents.data.generate import DEFAULT_END
from config.settings import load_settings
from streams.cli.output import emit_json, generate_options
from streams.cli.status import EXIT_OK
from streams.demo import run_demo

__all__ = ["command_demo", "format_summary"]


def quiet_logging(verbose: bool) -> None:
    """Warnings and errors only on the terminal: the clients' INFO lines are not the demo's."""
    if not verbose:
        logging.getLogger().setLevel(logging.WARNING)


def _rate(value: int | None, unit: str) -> str:
    return f"{value:>9,} {unit}/s" if value is not None else f"{'-':>9} {unit}/s"


def format_summary(summary: dict[str, Any]) -> list[str]:
    """The summary's lines, as printed."""
    lines = [
        "",
        "wallet-personas demo",
        f"  {summary['wallets']:,} wallets, {summary['trades']:,} trades, "
        f"feature date {summary['feature_date']}",
        f"  generate     {summary['generate_s']:>7.2f}s",
        f"  worker start {summary['worker_start_s']:>7.2f}s  until its consumers had partitions",
        f"  ingest       {summary['ingest_s']:>7.2f}s  {_rate(summary['trades_per_s'], 'trades')}"
        f"  first publish to last trade stored (published in {summary['trades_publish_s']:.1f}s)",
        f"  on-demand    {summary['classify_s']:>7.2f}s  "
        f"{_rate(summary['discoveries_per_s'], 'discoveries')}"
        "  first publish to last wallet classified",
        f"  on-demand outcomes: {summary['on_demand']['success']:,} success, "
        f"{summary['on_demand']['insufficient']:,} insufficient (left to the daily rebuild)",
    ]
    for title, key in (("status", "by_status"), ("persona", "by_persona"), ("reason", "by_reason")):
        lines.append(f"  by {title}:")
        lines += [f"    {name:<24} {count:>7,}" for name, count in summary[key].items()]
    lines.append(
        f"  planted labels reproduced on demand: {summary['planted_labels_reproduced']} "
        f"({summary['planted_left_to_rebuild']} planted wallets left to the daily rebuild)"
    )
    logs = f"worker log {summary['worker_log']}"
    if summary.get("broker_log"):
        logs += f", broker log {summary['broker_log']}"
    lines.append(f"  elapsed {summary['elapsed_s']:.1f}s; database {summary['database']}; {logs}")
    return lines


def command_demo(args: argparse.Namespace) -> int:
    """Run the demo; the summary on stdout (one JSON object with --json, no progress then)."""
    quiet_logging(args.verbose)
    settings = load_settings(args.config)
    options = generate_options(args.wallets, args.days, args.seed, DEFAULT_END)
    summary = run_demo(settings, options, args.config, quiet=args.json)
    if args.json:
        emit_json(summary)
    else:
        print("\n".join(format_summary(summary)))
    return EXIT_OK
