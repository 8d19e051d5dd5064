"""Benchmarks (`make bench`): a registry of benchmark functions and a shared table printer.

A benchmark is a function `(Context) -> list[Measurement]` registered with `@benchmark("name")`;
`python -m bench [name …]` runs them, prints one table each, and writes `bench/results.json`.
Every table shows ratios to a baseline measured in the same run, never to remembered numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["BENCHMARKS", "Context", "Measurement", "benchmark", "extends", "format_table"]

DATA_DIR = Path(__file__).resolve().parent / "data"


@dataclass(frozen=True)
class Context:
    """What every benchmark gets: where to cache data sets, and how hard to try."""

    data_dir: Path = DATA_DIR
    quick: bool = False  # smaller samples, for a smoke run of the bench itself


@dataclass
class Measurement:
    """One measured variant: `items` processed in `wall_s`, at a peak resident memory."""

    name: str
    wall_s: float
    items: int
    unit: str = "wallets"
    peak_rss_mb: float | None = None
    #: the variant this one is compared to (None: it is the baseline, or nothing to compare)
    baseline: str | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.items / self.wall_s if self.wall_s > 0 else 0.0

    def as_dict(self, speedup: float | None) -> dict[str, Any]:
        return {**asdict(self), "rate_per_s": round(self.rate, 1), "speedup": speedup}


Benchmark = Callable[[Context], list[Measurement]]
BENCHMARKS: dict[str, Benchmark] = {}


def benchmark(name: str) -> Callable[[Benchmark], Benchmark]:
    """Register a benchmark under `name` (run order = registration order)."""

    def register(function: Benchmark) -> Benchmark:
        if name in BENCHMARKS:
            raise ValueError(f"benchmark {name!r} registered twice")
        BENCHMARKS[name] = function
        return function

    return register


Extension = Callable[[Context, list[Measurement]], list[Measurement]]


def extends(name: str) -> Callable[[Extension], Extension]:
    """Add rows to the registered benchmark `name`: the extension runs after it, in the same
    run, sees its measurements (to compare with them) and its rows join the same table."""

    def register(extension: Extension) -> Extension:
        base = BENCHMARKS[name]

        def extended(context: Context) -> list[Measurement]:
            measured = base(context)
            return [*measured, *extension(context, measured)]

        BENCHMARKS[name] = extended
        return extension

    return register


def speedups(measurements: list[Measurement]) -> dict[str, float | None]:
    """Each variant's speed relative to its baseline (rate ratio, so sampled baselines compare)."""
    by_name = {m.name: m for m in measurements}
    out: dict[str, float | None] = {}
    for m in measurements:
        base = by_name.get(m.baseline) if m.baseline else None
        out[m.name] = round(m.rate / base.rate, 2) if base is not None and base.rate > 0 else None
    return out


def format_table(title: str, measurements: list[Measurement]) -> str:
    """A plain-text table: variant, items, wall time, rate, peak RSS, speed-up, note."""
    ratios = speedups(measurements)
    header = ("variant", "items", "wall s", "rate/s", "peak RSS MB", "× baseline", "note")
    rows = [
        (
            m.name,
            f"{m.items:,} {m.unit}",
            f"{m.wall_s:,.2f}",
            f"{m.rate:,.0f}",
            "-" if m.peak_rss_mb is None else f"{m.peak_rss_mb:,.0f}",
            "baseline" if ratios[m.name] is None and m.baseline is None else f"{ratios[m.name]}×",
            m.note,
        )
        for m in measurements
    ]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)
