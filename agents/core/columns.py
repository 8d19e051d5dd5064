"""Fills column by column, as the store reads them for the rebuild's shards; pure.

Numbers are numpy arrays; markets, sides and categories are codes into their names, so the shard
kernel takes the columns as they are and a Fill is made only for the rows that need one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import chain, repeat

import numpy as np

from agents.core.features import Fill

__all__ = ["FillColumns", "Run", "encode"]

#: One wallet's rows of a read: (wallet, first row, end row).
Run = tuple[str, int, int]

_new_tuple = tuple.__new__


def encode(values: Iterable[str]) -> tuple[np.ndarray, list[str]]:
    """`values` as codes into their distinct values, sorted."""
    values = list(values)
    names = sorted(set(values))
    code = {name: n for n, name in enumerate(names)}
    return np.fromiter(map(code.__getitem__, values), np.int64, len(values)), names


@dataclass(frozen=True, slots=True)
class FillColumns:
    """Fills column by column (the fields of `Fill`): row n of each column makes fill n.

    `markets`, `sides` and `categories` are codes into `market_names`, `side_names` and
    `category_names`; the category names are sorted (the kernel breaks ties by code).
    """

    trade_ids: Sequence[str]
    markets: np.ndarray
    market_names: Sequence[str]
    sides: np.ndarray
    side_names: Sequence[str]
    sizes: np.ndarray
    prices: np.ndarray
    stamps: np.ndarray
    categories: np.ndarray
    category_names: Sequence[str]

    @classmethod
    def from_values(
        cls,
        trade_ids: Sequence[str],
        markets: Iterable[str],
        sides: Iterable[str],
        sizes: Sequence[float],
        prices: Sequence[float],
        stamps: Sequence[int],
        categories: Iterable[str],
    ) -> FillColumns:
        """The columns of these values, row by row."""
        market_codes, market_names = encode(markets)
        side_codes, side_names = encode(sides)
        category_codes, category_names = encode(categories)
        return cls(
            trade_ids, market_codes, market_names, side_codes, side_names,
            np.array(sizes, np.float64), np.array(prices, np.float64),
            np.array(stamps, np.int64), category_codes, category_names,
        )  # fmt: skip

    @classmethod
    def of(cls, fills: Sequence[Fill]) -> FillColumns:
        """The columns of `fills`."""
        if not fills:
            return cls.from_values((), (), (), (), (), (), ())
        return cls.from_values(*zip(*fills, strict=True))

    def __len__(self) -> int:
        return len(self.stamps)

    def buys(self) -> np.ndarray:
        """Per row, whether it is a buy."""
        is_buy = np.array([name == "BUY" for name in self.side_names], np.bool_)
        buys: np.ndarray = is_buy[self.sides]
        return buys

    def every_fill(self) -> list[Fill]:
        """Every row's Fill."""
        return self.fills(range(len(self)))

    def fills(self, rows: Sequence[int]) -> list[Fill]:
        """The Fills of these rows, in this order (their values as Python's ints, floats, strs)."""
        at = _indexer(rows)
        # A run of rows takes its ids as one slice: a column read from Arrow makes them at once.
        trade_ids = self.trade_ids
        ids = trade_ids[at] if isinstance(at, slice) else [trade_ids[n] for n in rows]
        columns = zip(
            ids,
            map(self.market_names.__getitem__, self.markets[at].tolist()),
            map(self.side_names.__getitem__, self.sides[at].tolist()),
            self.sizes[at].tolist(),
            self.prices[at].tolist(),
            self.stamps[at].tolist(),
            map(self.category_names.__getitem__, self.categories[at].tolist()),
            strict=True,
        )
        # `tuple.__new__` over the columns: no Python code per row (Fill is a NamedTuple).
        return list(map(_new_tuple, repeat(Fill), columns))

    def stamps_of(self, rows: Sequence[int]) -> list[int]:
        """The trade times of these rows, in this order."""
        return list(self.stamps[_indexer(rows)].tolist())

    def canonical_rows(self, runs: Sequence[Run]) -> dict[str, Sequence[int]]:
        """Each wallet's rows in the canonical order of `features.sorted_fills`, from the runs of
        rows read for it (in the order of their first run).

        A wallet read as one run in time order, no two of its trades in one second (as the store
        reads nearly every wallet), keeps its run as it is; any other is sorted.
        """
        increasing = self.stamps[1:] > self.stamps[:-1]
        spans: dict[str, list[range]] = {}
        for wallet, start, end in runs:
            spans.setdefault(wallet, []).append(range(start, end))
        out: dict[str, Sequence[int]] = {}
        for wallet, ranges in spans.items():
            (only, *more) = ranges
            if not more and increasing[only.start : max(only.start, only.stop - 1)].all():
                out[wallet] = only
            else:
                out[wallet] = self._sorted(list(chain.from_iterable(ranges)))
        return out

    def _sorted(self, rows: list[int]) -> list[int]:
        fills = dict(zip(rows, self.fills(rows), strict=True))
        return sorted(rows, key=lambda n: (fills[n].timestamp, fills[n].trade_id, fills[n]))


def _indexer(rows: Sequence[int]) -> slice | np.ndarray:
    if isinstance(rows, range) and rows.step == 1:
        return slice(rows.start, rows.stop)
    return np.fromiter(rows, np.int64, len(rows))
