"""Lifetime stats from a per-wallet checkpoint plus the trades since (issue 14); pure, stdlib only.

A checkpoint holds, as of a time, what the lifetime stats need of everything before it: the trade
count, the first and last trade times, the two running sums of the lifetime roi and the FIFO lots
still open. `advance` continues it with the trades since, exactly as the full pass would have
continued: the same lots in the same state, the same additions in the same order (float sums are
left folds, so carrying a partial sum and adding the rest in order gives the full sum's bits).
So a wallet's daily cost depends on its activity, not on the length of its history.

A checkpoint is only valid while no trade at or before its `as_of` is stored after it was taken
(a late trade); its `total_trades` lets the store tell, and a wallet whose checkpoint is not valid
is computed from its whole history (`EMPTY` plus every trade).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from agents.core.features import (
    DAY,
    Fill,
    LifetimeStats,
    WindowFeatures,
    sorted_fills,
    windows_of_sorted,
)
from agents.core.settlement import Queues, settle_fills

__all__ = [
    "BEFORE_ANY_TRADE",
    "EMPTY",
    "Checkpoint",
    "Lot",
    "advance",
    "advance_sorted",
    "lifetime_from",
    "wallet_features_since",
]

#: The `as_of` of the empty checkpoint: before any trade (SQLite's and PostgreSQL's int64 floor).
BEFORE_ANY_TRADE = -(2**63)


#: A bought lot still open: (what remains of it, its price, when it was bought). A plain tuple,
#: not a NamedTuple: a wallet's lots accumulate over its history, and plain tuples go to and from
#: the store's JSON without Python code per lot.
Lot = tuple[float, float, int]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One wallet's lifetime state over every trade with timestamp ≤ `as_of`."""

    as_of: int
    total_trades: int
    first_trade_at: int | None
    last_trade_at: int | None
    #: Σ size·price of the BUYs, in (timestamp, trade_id) order
    buy_cost: float
    #: Σ pnl of the round trips, in settlement order
    realized_pnl: float
    #: per market (sorted), its open lots oldest first; markets with none are left out
    open_lots: tuple[tuple[str, tuple[Lot, ...]], ...]


EMPTY = Checkpoint(BEFORE_ANY_TRADE, 0, None, None, 0.0, 0.0, ())


def _queues(open_lots: Iterable[tuple[str, Sequence[Lot]]]) -> Queues:
    # settle_fills keeps a lot's time as a float; int → float → int is exact for epoch seconds.
    return {
        market: deque([size, price, float(ts)] for size, price, ts in lots)
        for market, lots in open_lots
    }


def _open_lots(checkpoint: Checkpoint, queues: Queues) -> tuple[tuple[str, tuple[Lot, ...]], ...]:
    """The checkpoint's open lots with those of the markets in `queues` replaced by theirs."""
    by_market = dict(checkpoint.open_lots)
    for market, queue in queues.items():
        if queue:
            by_market[market] = tuple((size, price, int(ts)) for size, price, ts in queue)
        else:
            by_market.pop(market, None)
    return tuple(sorted(by_market.items()))


def _advance_sorted(checkpoint: Checkpoint, new: Sequence[Fill], as_of: int) -> Checkpoint:
    """`checkpoint` continued with `new`: every fill in (checkpoint.as_of, as_of], sorted."""
    if not new:
        return Checkpoint(
            as_of, checkpoint.total_trades, checkpoint.first_trade_at, checkpoint.last_trade_at,
            checkpoint.buy_cost, checkpoint.realized_pnl, checkpoint.open_lots,
        )  # fmt: skip
    buy_cost = checkpoint.buy_cost
    for _, _, side, size, price, _, _ in new:
        if side == "BUY":
            buy_cost += size * price
    # Only the markets traded since are settled: the others' lots stay as they were, unread.
    traded = {market for _, market, _, _, _, _, _ in new}
    queues = _queues((market, lots) for market, lots in checkpoint.open_lots if market in traded)
    realized = checkpoint.realized_pnl
    for _, _, pnl, _ in settle_fills(queues, new):
        realized += pnl
    first = checkpoint.first_trade_at
    return Checkpoint(
        as_of=as_of,
        total_trades=checkpoint.total_trades + len(new),
        first_trade_at=new[0].timestamp if first is None else first,
        last_trade_at=new[-1].timestamp,
        buy_cost=buy_cost,
        realized_pnl=realized,
        open_lots=_open_lots(checkpoint, queues),
    )


def _after(fs: Sequence[Fill], as_of: int) -> Sequence[Fill]:
    """The fills of sorted `fs` with timestamp > as_of."""
    lo = len(fs)
    while lo and fs[lo - 1].timestamp > as_of:
        lo -= 1
    return fs[lo:]


def advance(checkpoint: Checkpoint, fills: Iterable[Fill], as_of: int) -> Checkpoint:
    """The checkpoint as of `as_of`, from `checkpoint` and the wallet's fills: those in
    (checkpoint.as_of, as_of] are added (`fills` may hold older and later ones too)."""
    if as_of < checkpoint.as_of:
        raise ValueError(f"cannot move a checkpoint back, from {checkpoint.as_of} to {as_of}")
    return _advance_sorted(checkpoint, _after(sorted_fills(fills, as_of), checkpoint.as_of), as_of)


def lifetime_from(checkpoint: Checkpoint) -> LifetimeStats:
    """The lifetime stats as of the checkpoint's `as_of`: those of `lifetime_stats`, to the bit."""
    first, last = checkpoint.first_trade_at, checkpoint.last_trade_at
    if first is None or last is None:
        return LifetimeStats(None, None, 0, 0, 0, 0.0)
    buy_cost = checkpoint.buy_cost
    return LifetimeStats(
        first_trade_at=first,
        last_trade_at=last,
        total_trades=checkpoint.total_trades,
        wallet_age_days=(checkpoint.as_of - first) // DAY,
        days_since_last_trade=(checkpoint.as_of - last) // DAY,
        lifetime_roi=checkpoint.realized_pnl / buy_cost if buy_cost else 0.0,
    )


def wallet_features_since(
    checkpoint: Checkpoint, fills: Iterable[Fill], as_of: int, windows: Sequence[int]
) -> tuple[dict[int, WindowFeatures], LifetimeStats, Checkpoint]:
    """The kernel (`wallet_features`) from a checkpoint, and the checkpoint as of `as_of`.

    `fills` must hold every trade of the wallet in the longest window up to `as_of` and every
    one after `checkpoint.as_of`; older ones are ignored. With `EMPTY` and the whole history it
    is the full recomputation; with a valid checkpoint it gives the same bits.
    """
    fs = sorted_fills(fills, as_of)
    per_window, _ = windows_of_sorted(fs, as_of, windows)
    after = advance_sorted(checkpoint, fs, as_of)
    return per_window, lifetime_from(after), after


def advance_sorted(checkpoint: Checkpoint, fs: Sequence[Fill], as_of: int) -> Checkpoint:
    """`advance` of fills already in canonical order (`sorted_fills`) up to `as_of`, holding
    every one after `checkpoint.as_of`."""
    if as_of < checkpoint.as_of:
        raise ValueError(f"checkpoint as of {checkpoint.as_of} is after {as_of}")
    return _advance_sorted(checkpoint, _after(fs, checkpoint.as_of), as_of)
