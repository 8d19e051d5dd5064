"""Fills as columns: each wallet's rows in the canonical order of the Python kernel."""

import random

from hypothesis import given
from hypothesis import strategies as st

from agents.core.columns import FillColumns
from agents.core.features import Fill, sorted_fills
from tests.unit.test_core_properties import AS_OF, FAST, wallets_fills


def fill(trade_id: str, ts: int, market: str = "m1") -> Fill:
    return Fill(trade_id, market, "BUY", 1.0, 0.5, ts, "Sports")


def test_a_wallet_read_in_time_order_keeps_its_run() -> None:
    columns = FillColumns.of([fill("b", 1), fill("a", 2), fill("z", 5), fill("y", 6)])
    rows = columns.canonical_rows([("w1", 0, 2), ("w2", 2, 4)])
    assert rows == {"w1": range(0, 2), "w2": range(2, 4)}
    assert columns.fills(rows["w2"]) == [fill("z", 5), fill("y", 6)]


def test_two_trades_in_one_second_are_ordered_by_trade_id() -> None:
    columns = FillColumns.of([fill("b", 1), fill("a", 1), fill("c", 0)])
    assert columns.canonical_rows([("w", 0, 3)]) == {"w": [2, 1, 0]}


def test_a_wallet_read_in_two_runs_is_merged() -> None:
    columns = FillColumns.of([fill("a", 3), fill("x", 9), fill("b", 1)])
    rows = columns.canonical_rows([("w", 0, 1), ("v", 1, 2), ("w", 2, 3)])
    assert rows == {"w": [2, 0], "v": range(1, 2)}
    assert list(rows) == ["w", "v"]  # in the order of each wallet's first run


@FAST
@given(st.lists(wallets_fills(max_size=12), max_size=4), st.randoms(use_true_random=False))
def test_every_wallet_in_the_order_of_sorted_fills(
    wallets: list[list[Fill]], rnd: random.Random
) -> None:
    wallets = [[f for f in fills if f.timestamp <= AS_OF] for fills in wallets]
    # Each wallet's rows cut into up to two runs, the runs of all wallets shuffled.
    runs_of: list[tuple[int, list[Fill]]] = []
    for n, fills in enumerate(wallets):
        cut = rnd.randint(0, len(fills))
        runs_of += [(n, fills[:cut]), (n, fills[cut:])]
    rnd.shuffle(runs_of)
    flat = [f for _, fills in runs_of for f in fills]
    runs, start = [], 0
    for n, fills in runs_of:
        runs.append((f"w{n}", start, start + len(fills)))
        start += len(fills)
    columns = FillColumns.of(flat)
    rows = columns.canonical_rows(runs)
    assert {w: columns.fills(r) for w, r in rows.items()} == {
        f"w{n}": sorted_fills(fills, AS_OF) for n, fills in enumerate(wallets)
    }
    assert columns.every_fill() == flat
