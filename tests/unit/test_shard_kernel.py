"""The compiled shard kernel gives the Python kernel's features to the last bit."""

from dataclasses import astuple, fields
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from agents.core.columns import FillColumns
from agents.core.features import DAY, WINDOWS, Fill, WindowFeatures, sorted_fills, windows_of_sorted
from agents.core.shard_kernel import windows_of_columns
from tests.unit.test_core_properties import AS_OF, FAST, wallets_fills

NAMES = [field.name for field in fields(WindowFeatures)]


def bits(values: tuple[Any, ...]) -> list[tuple[type, str]]:
    """Each value with its type and repr: equal only if every float has the same bits (-0.0 too)."""
    return [(type(value), repr(value)) for value in values]


def python_kernel(fills: list[Fill], as_of: int, windows: tuple[int, ...]) -> dict[int, Any]:
    per_window, _ = windows_of_sorted(sorted_fills(fills, as_of), as_of, windows)
    return {days: bits(astuple(features)) for days, features in per_window.items()}


def windows_of_many(
    wallets: list[tuple[list[Fill], list[int]]], windows: tuple[int, ...]
) -> list[list[dict[int, tuple[Any, ...]]]]:
    """The shard kernel over these wallets' fills, put in columns one wallet after another."""
    shard = [sorted_fills(fills, as_ofs[-1]) for fills, as_ofs in wallets]
    starts = [sum(map(len, shard[:n])) for n in range(len(shard))]
    columns = FillColumns.of([fill for fills in shard for fill in fills])
    rows = [range(start, start + len(fills)) for start, fills in zip(starts, shard, strict=True)]
    days = [as_ofs for _, as_ofs in wallets]
    return windows_of_columns(columns, list(zip(rows, days, strict=True)), windows)


def shard_kernel(wallets: list[tuple[list[Fill], list[int]]], windows: tuple[int, ...]) -> Any:
    return [
        [{days: bits(values) for days, values in per.items()} for per in per_as_of]
        for per_as_of in windows_of_many(wallets, windows)
    ]


as_ofs = st.lists(st.integers(AS_OF - 10 * DAY, AS_OF + DAY), min_size=1, max_size=3).map(sorted)


@FAST
@given(
    st.lists(st.tuples(wallets_fills(), as_ofs), max_size=6),
    st.sampled_from([WINDOWS, (30,), (1, 45, 90), (0, 7)]),
)
def test_every_wallet_and_as_of_equals_the_python_kernel(
    wallets: list[tuple[list[Fill], list[int]]], windows: tuple[int, ...]
) -> None:
    expected = [[python_kernel(fills, as_of, windows) for as_of in days] for fills, days in wallets]
    assert shard_kernel(wallets, windows) == expected


def test_a_long_history_with_many_markets_equals_the_python_kernel() -> None:
    # Beyond the property's sizes: many open lots, partial fills, trips over many days.
    fills = [
        Fill(
            f"t{n:05d}",
            f"m{n % 37}",
            "SELL" if n % 3 == 2 else "BUY",
            1.0 + (n * 7919) % 13,
            0.05 + ((n * 104729) % 90) / 100,
            AS_OF - 95 * DAY + n * 1_000,
            f"c{n % 5}",
        )
        for n in range(8_000)
    ]
    assert shard_kernel([(fills, [AS_OF])], WINDOWS) == [[python_kernel(fills, AS_OF, WINDOWS)]]


def test_no_wallets_and_wallets_without_trades() -> None:
    assert windows_of_columns(FillColumns.of([]), [], WINDOWS) == []
    assert shard_kernel([([], [AS_OF])], WINDOWS) == [[python_kernel([], AS_OF, WINDOWS)]]
    ((empty,),) = windows_of_many([([], [AS_OF])], WINDOWS)
    assert dict(zip(NAMES, empty[7], strict=True))["top_domain"] is None


def test_windows_over_the_same_trades_differ_only_in_their_rates() -> None:
    fills = [Fill("t1", "m1", "BUY", 10.0, 0.4, AS_OF - DAY, "Sports")]
    ((per,),) = windows_of_many([(fills, [AS_OF])], WINDOWS)
    week, quarter = (dict(zip(NAMES, per[days], strict=True)) for days in (7, 90))
    assert {name for name in NAMES if week[name] != quarter[name]} == {
        "trades_per_week",
        "trades_per_day",
    }
    assert (week["volume_usdc"], week["trades_per_day"], quarter["trades_per_day"]) == (
        4.0,
        1 / 7,
        1 / 90,
    )
