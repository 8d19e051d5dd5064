"""The compiled shard kernel gives the Python kernel's features to the last bit."""

from dataclasses import astuple
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from agents.core.features import DAY, WINDOWS, Fill, WindowFeatures, sorted_fills, windows_of_sorted
from agents.core.shard_kernel import windows_of_many
from tests.unit.test_core_properties import AS_OF, FAST, wallets_fills


def bits(features: WindowFeatures) -> list[tuple[type, str]]:
    """Each value with its type and repr: equal only if every float has the same bits (-0.0 too)."""
    return [(type(value), repr(value)) for value in astuple(features)]


def python_kernel(fills: list[Fill], as_of: int, windows: tuple[int, ...]) -> dict[int, Any]:
    per_window, _ = windows_of_sorted(sorted_fills(fills, as_of), as_of, windows)
    return {days: bits(features) for days, features in per_window.items()}


def shard_kernel(wallets: list[tuple[list[Fill], list[int]]], windows: tuple[int, ...]) -> Any:
    shard = [(sorted_fills(fills, as_ofs[-1]), as_ofs) for fills, as_ofs in wallets]
    return [
        [{days: bits(features) for days, features in per.items()} for per in per_as_of]
        for per_as_of in windows_of_many(shard, windows)
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
    assert windows_of_many([], WINDOWS) == []
    (empty,) = windows_of_many([([], [AS_OF])], WINDOWS)
    assert [{d: bits(f) for d, f in per.items()} for per in empty] == [
        python_kernel([], AS_OF, WINDOWS)
    ]
    assert empty[0][7].top_domain is None and empty[0][90].trade_count == 0


def test_windows_over_the_same_trades_differ_only_in_their_rates() -> None:
    fills = [Fill("t1", "m1", "BUY", 10.0, 0.4, AS_OF - DAY, "Sports")]
    ((per,),) = windows_of_many([(fills, [AS_OF])], WINDOWS)
    assert per[7].volume_usdc == per[90].volume_usdc == 4.0
    assert (per[7].trades_per_day, per[90].trades_per_day) == (1 / 7, 1 / 90)
