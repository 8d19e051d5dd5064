"""FIFO settlement of one wallet's trades into round trips (SPEC §4); pure, stdlib only."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import NamedTuple

__all__ = ["EPSILON", "Queues", "RoundTrip", "Settlement", "Trip", "settle", "settle_fills"]

# SPEC §4: quantities below this count as zero, so float dust never leaves a phantom open lot.
EPSILON = 1e-9

#: Per market, the bought lots still open, oldest first: [remaining size, price, timestamp].
Queues = dict[str, deque[list[float]]]
#: A round trip as `settle_fills` gives it: a plain tuple in `RoundTrip` order, because building
#: a NamedTuple per trip costs the rebuild more than the matching itself (see issue 14's profile).
Trip = tuple[str, int, float, int]


class RoundTrip(NamedTuple):
    """One matched piece of a SELL against a bought lot."""

    condition_id: str
    sell_ts: int
    pnl: float
    hold_seconds: int


class Settlement(NamedTuple):
    """Round trips in sell order, plus the markets still holding bought quantity at the end."""

    round_trips: list[RoundTrip]
    open_markets: frozenset[str]


def settle(trades: Iterable[tuple[str, str, float, float, int]]) -> Settlement:
    """Settle `(condition_id, side, size, price, timestamp)` rows in (timestamp, trade_id) order.

    Lots are consumed only if they precede the sell in that order, so a BUY with the same timestamp
    but a larger trade_id than the SELL is not matched. Unmatched sell quantity is ignored.
    """
    queues: Queues = {}
    trips = settle_fills(queues, (("", *row, "") for row in trades))
    return Settlement(
        [RoundTrip(*trip) for trip in trips], frozenset(m for m, q in queues.items() if q)
    )


def settle_fills(
    queues: Queues, fills: Iterable[tuple[str, str, str, float, float, int, str]]
) -> list[Trip]:
    """Settle fills `(trade_id, condition_id, side, size, price, timestamp, category)` (the
    core's `Fill`) against `queues`, which are updated in place; return their round trips.

    Starting from the queues a first part of a history left, the rest of it gives exactly the
    round trips (and queues) that settling the whole history at once gives: what lets lifetime
    stats resume from a checkpoint.
    """
    trips: list[Trip] = []
    for _, market, side, size, price, ts, _ in fills:
        if side == "BUY":
            if size >= EPSILON:
                queue = queues.get(market)
                if queue is None:
                    queue = queues[market] = deque()
                queue.append([size, price, float(ts)])
            continue
        queue = queues.get(market)
        if not queue:
            continue
        remaining = size
        while remaining >= EPSILON and queue:
            lot = queue[0]
            matched = lot[0] if lot[0] < remaining else remaining
            trips.append((market, ts, (price - lot[1]) * matched, ts - int(lot[2])))
            lot[0] -= matched
            remaining -= matched
            if lot[0] < EPSILON:
                queue.popleft()
    return trips
