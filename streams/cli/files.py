"""The file commands: `personas generate` (synthetic trades) and `personas import` (load them)."""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any

from agents.data.generate import DEFAULT_END, generate, write_dataset
from agents.data.importer import ImportReport, import_markets, import_trades
from agents.store import connect, migrate
from config.settings import load_settings
from streams.cli.output import emit_json, generate_options, input_file, timestamp_arg
from streams.cli.status import EXIT_OK, EXIT_USAGE
from streams.progress import Progress

__all__ = ["command_generate", "command_import"]

SHOWN_ERRORS = 20


def command_generate(args: argparse.Namespace) -> int:
    """Write the trades, markets and planted labels; print where they went."""
    end = timestamp_arg(args.end, "--end", DEFAULT_END)
    dataset = generate(generate_options(args.wallets, args.days, args.seed, end))
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
    return EXIT_OK


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
    """Load the markets, then the trades; exit 2 when any row was rejected (the rest is kept)."""
    settings = load_settings(args.config)
    input_file(args.file, "FILE")
    if args.markets is not None:
        input_file(args.markets, "--markets")
    reports: dict[str, Any] = {}
    with closing(connect(settings.database.url, settings.database.busy_timeout_ms)) as conn:
        migrate(conn)
        if args.markets is not None:
            started = time.monotonic()
            markets = import_markets(conn, args.markets)
            reports["markets"] = markets.as_dict()
            if not args.json:
                _print_report("markets", markets, time.monotonic() - started)
        progress = Progress("importing", _count_lines(args.file), enabled=not args.json)
        trades = import_trades(conn, args.file, progress.update)
        seconds = progress.finish(trades.read)
        reports["trades"] = trades.as_dict()
    if args.json:
        emit_json(reports)
    else:
        _print_report("trades", trades, seconds)
    rejected = sum(report["rejected"] for report in reports.values())
    return EXIT_USAGE if rejected else EXIT_OK


def _count_lines(path: Path) -> int:
    """Lines in `path`, the last one counted even without its newline (the progress total)."""
    lines, last = 0, b"\n"
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return lines + int(last != b"\n")
