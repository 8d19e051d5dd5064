"""`python -m bench [NAME …] [--quick]`: run the registered benchmarks, print tables, save JSON."""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import platform
import sys
import time
from pathlib import Path
from typing import Any

import orjson

import bench
from bench import BENCHMARKS, Context, format_table, speedups

RESULTS = Path(__file__).resolve().parent / "results.json"


def discover() -> None:
    """Import every module of the package: each registers its benchmarks with `@benchmark`."""
    for module in pkgutil.iter_modules(bench.__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"bench.{module.name}")


def format_targets(targets: list[dict[str, Any]]) -> str:
    """The figures that have a target: value, target, value as a share of it, met or not."""
    width = max(len(t["figure"]) for t in targets)
    lines = ["\n== targets ==", f"{'figure':<{width}}  {'measured':>10}  {'target':>10}  "
             f"{'÷ target':>8}  met"]  # fmt: skip
    for t in targets:
        bound = "≥" if t["at_least"] else "≤"
        ratio = t["value"] / t["target"] if t["target"] else float("nan")
        # Ratios (1.34×) need their decimals; rates and milliseconds do not.
        places = 2 if max(abs(t["value"]), abs(t["target"])) < 100 else 0
        lines.append(
            f"{t['figure']:<{width}}  {t['value']:>8,.{places}f} {t['unit']:<2}  "
            f"{bound} {t['target']:>6,.{places}f} {t['unit']:<2}  {ratio:>7.2f}×  "
            f"{'yes' if t['met'] else 'NO'}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    discover()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"of {sorted(BENCHMARKS)}")
    parser.add_argument("--quick", action="store_true", help="small samples: a smoke run")
    args = parser.parse_args(argv)
    unknown = set(args.names) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    context = Context(quick=args.quick)
    report: dict[str, object] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "started_at": int(time.time()),
        "benchmarks": {},
    }  # fmt: skip
    targets: list[dict[str, Any]] = []
    for name in args.names or list(BENCHMARKS):
        measurements = BENCHMARKS[name](context)
        print(format_table(f"\n== {name} ==", measurements), flush=True)
        ratios = speedups(measurements)
        report["benchmarks"][name] = [m.as_dict(ratios[m.name]) for m in measurements]  # type: ignore[index]
        targets += [t for m in measurements for t in m.extra.get("targets", [])]
    if targets:
        print(format_targets(targets), flush=True)
    if args.names and RESULTS.exists():  # a selection updates its entries, keeps the others
        kept = orjson.loads(RESULTS.read_bytes()).get("benchmarks", {})
        report["benchmarks"] = {**kept, **report["benchmarks"]}  # type: ignore[dict-item]
    report["elapsed_s"] = round(time.time() - report["started_at"], 1)  # type: ignore[operator]
    RESULTS.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    print(f"\nresults written to {RESULTS} (whole run {report['elapsed_s']}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
