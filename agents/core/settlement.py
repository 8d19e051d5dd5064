"""FIFO settlement of one wallet's trades into round trips (SPEC §4); pure, stdlib only."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import NamedTuple

__all__ = ["EPSILON", "RoundTrip", "Settlement", "settle"]

# SPEC §4: quantities below this count as zero, so float dust never leaves a phantom open lot.
EPSILON = 1e-9


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
    queues: dict[str, deque[list[float]]] = {}
    trips: list[RoundTrip] = []
    for market, side, size, price, ts in trades:
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
            trips.append(RoundTrip(market, ts, (price - lot[1]) * matched, ts - int(lot[2])))
            lot[0] -= matched
            remaining -= matched
            if lot[0] < EPSILON:
                queue.popleft()
    return Settlement(trips, frozenset(m for m, q in queues.items() if q))
