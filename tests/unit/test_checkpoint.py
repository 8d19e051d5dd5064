"""Checkpoints (issue 14): lifetime stats from a checkpoint plus the trades since are the full
recomputation's, to the last bit, whatever the history and wherever the checkpoints fall."""

from dataclasses import astuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.core.checkpoint import (
    EMPTY,
    Checkpoint,
    advance,
    lifetime_from,
    wallet_features_since,
)
from agents.core.features import DAY, WINDOWS, Fill, lifetime_stats, wallet_features

AS_OF = 200 * DAY
FAST = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_parts = st.tuples(
    st.sampled_from(["m1", "m2", "m3"]),
    st.sampled_from(["BUY", "BUY", "SELL"]),
    # awkward sizes: float dust below EPSILON, sizes that leave a lot almost empty
    st.one_of(st.floats(0.001, 500.0), st.just(1.0), st.just(1e-10), st.just(1.0 - 1e-10)),
    st.floats(0.001, 0.999),
    # few distinct times, so that trades tie with each other and with the checkpoints
    st.one_of(st.integers(0, AS_OF + DAY), st.sampled_from([0, 50 * DAY, 150 * DAY, AS_OF])),
    st.sampled_from(["Sports", "Politics"]),
)


@st.composite
def histories(draw: st.DrawFn) -> list[Fill]:
    parts = draw(st.lists(_parts, max_size=50))
    ids = draw(st.permutations(range(len(parts))))
    return [Fill(f"t{i:03d}", *p) for i, p in zip(ids, parts, strict=True)]


@st.composite
def checkpoint_times(draw: st.DrawFn, fills: list[Fill]) -> list[int]:
    """Increasing times ≤ AS_OF, often exactly a trade's time (the boundary that matters)."""
    stamps = [f.timestamp for f in fills if f.timestamp <= AS_OF] or [0]
    times = draw(
        st.lists(
            st.one_of(st.sampled_from(stamps), st.integers(-DAY, AS_OF)), min_size=1, max_size=4
        )
    )
    return sorted(times)


def _bits(value: object) -> tuple[object, ...]:
    # float.hex tells 0.0 from -0.0 and every last bit apart; == would not
    return tuple(v.hex() if isinstance(v, float) else v for v in astuple(value))  # type: ignore[call-overload]


@FAST
@given(st.data(), histories())
def test_checkpoints_plus_trades_since_give_the_full_lifetime_bits(
    data: st.DataObject, fills: list[Fill]
) -> None:
    checkpoint = EMPTY
    for at in data.draw(checkpoint_times(fills)):
        checkpoint = advance(checkpoint, fills, at)
    final = advance(checkpoint, fills, AS_OF)
    assert final == advance(EMPTY, fills, AS_OF)
    assert _bits(lifetime_from(final)) == _bits(lifetime_stats(fills, AS_OF))
    assert _bits(lifetime_from(final)) == _bits(wallet_features(fills, AS_OF)[1])


@FAST
@given(st.data(), histories())
def test_kernel_from_a_checkpoint_reads_only_the_window_and_the_trades_since(
    data: st.DataObject, fills: list[Fill]
) -> None:
    (at,) = data.draw(checkpoint_times(fills).filter(lambda times: len(times) == 1))
    checkpoint = advance(EMPTY, fills, at)
    # what the store reads for this wallet: the longest window, and every trade since `at`
    start = AS_OF - max(WINDOWS) * DAY
    read = [f for f in fills if f.timestamp >= start or f.timestamp > at]
    windows, lifetime, after = wallet_features_since(checkpoint, read, AS_OF, WINDOWS)
    full_windows, full_lifetime = wallet_features(fills, AS_OF)
    assert _bits(lifetime) == _bits(full_lifetime)
    assert {w: _bits(v) for w, v in windows.items()} == {
        w: _bits(v) for w, v in full_windows.items()
    }
    assert after == advance(EMPTY, fills, AS_OF)


@FAST
@given(histories())
def test_the_empty_checkpoint_and_every_trade_is_the_full_recomputation(fills: list[Fill]) -> None:
    windows, lifetime, after = wallet_features_since(EMPTY, fills, AS_OF, WINDOWS)
    assert (windows, lifetime) == wallet_features(fills, AS_OF)
    assert _bits(lifetime) == _bits(lifetime_from(after))
    assert after.total_trades == sum(f.timestamp <= AS_OF for f in fills)


def test_a_checkpoint_carries_the_open_lots_partly_sold() -> None:
    fills = [
        Fill("a", "m", "BUY", 10.0, 0.4, 100, "Sports"),
        Fill("b", "m", "SELL", 4.0, 0.5, 200, "Sports"),
        Fill("c", "m", "SELL", 6.0, 0.7, 300, "Sports"),
    ]
    checkpoint = advance(EMPTY, fills, 250)
    assert checkpoint.open_lots == (("m", ((6.0, 0.4, 100),)),)
    assert checkpoint.total_trades == 2 and checkpoint.buy_cost == 4.0
    after = advance(checkpoint, fills, 300)
    assert after.open_lots == ()
    assert after.realized_pnl == (0.5 - 0.4) * 4.0 + (0.7 - 0.4) * 6.0
    assert lifetime_from(after) == lifetime_stats(fills, 300)


def test_only_the_markets_traded_since_change_their_open_lots() -> None:
    before = [
        Fill("a", "kept", "BUY", 2.0, 0.3, 100, "x"),
        Fill("b", "sold", "BUY", 1.0, 0.4, 110, "x"),
    ]
    since = [
        Fill("c", "sold", "SELL", 1.0, 0.5, 300, "x"),
        Fill("d", "new", "BUY", 3.0, 0.6, 310, "x"),
    ]
    checkpoint = advance(EMPTY, before, 200)
    after = advance(checkpoint, before + since, 400)
    assert after.open_lots == (("kept", ((2.0, 0.3, 100),)), ("new", ((3.0, 0.6, 310),)))
    assert after.open_lots[0][1] is checkpoint.open_lots[0][1]  # carried, not rebuilt
    assert after == advance(EMPTY, before + since, 400)


def test_the_sums_carry_on_in_the_full_pass_order() -> None:
    # (0.1 + 0.2) + 0.3 != 0.1 + (0.2 + 0.3): adding the trades since to a sum of their own,
    # then to the checkpoint's, would be off by one ulp
    fills = [Fill(str(n), "m", "BUY", 1.0, n / 10, n, "x") for n in (1, 2, 3)]
    after = advance(advance(EMPTY, fills, 1), fills, 3)
    assert after.buy_cost == (0.1 + 0.2) + 0.3 != 0.1 + (0.2 + 0.3)
    assert after == advance(EMPTY, fills, 3)


def test_a_trade_at_the_checkpoint_time_is_in_it_and_never_counted_twice() -> None:
    fills = [Fill("a", "m", "BUY", 1.0, 0.5, 100, "x"), Fill("b", "m", "SELL", 1.0, 0.6, 200, "x")]
    checkpoint = advance(EMPTY, fills, 100)
    assert checkpoint.total_trades == 1
    assert advance(checkpoint, fills, 200).total_trades == 2


def test_a_checkpoint_cannot_move_back() -> None:
    checkpoint = Checkpoint(100, 0, None, None, 0.0, 0.0, ())
    with pytest.raises(ValueError, match="back"):
        advance(checkpoint, [], 99)
    with pytest.raises(ValueError, match="after"):
        wallet_features_since(checkpoint, [], 99, WINDOWS)
