"""Fills column by column, as the store reads them for the rebuild's shards; pure, stdlib only."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from operator import lt

from agents.core.features import Fill

__all__ = ["FillColumns", "Run"]

#: One wallet's rows of a read: (wallet, first row, end row).
Run = tuple[str, int, int]

_new_tuple = tuple.__new__


@dataclass(frozen=True, slots=True)
class FillColumns:
    """Fills column by column (the fields of `Fill`): row n of each column makes fill n."""

    trade_ids: Sequence[str]
    markets: Sequence[str]
    sides: Sequence[str]
    sizes: Sequence[float]
    prices: Sequence[float]
    stamps: Sequence[int]
    categories: Sequence[str]

    @classmethod
    def of(cls, fills: Sequence[Fill]) -> FillColumns:
        """The columns of `fills`."""
        if not fills:
            return cls((), (), (), (), (), (), ())
        return cls(*zip(*fills, strict=True))

    def __len__(self) -> int:
        return len(self.stamps)

    def every_fill(self) -> list[Fill]:
        """Every row's Fill, without Python code per row (`tuple.__new__` over the columns)."""
        columns = zip(
            self.trade_ids, self.markets, self.sides, self.sizes, self.prices, self.stamps,
            self.categories, strict=True,
        )  # fmt: skip
        return list(map(_new_tuple, repeat(Fill), columns))

    def fills(self, rows: Iterable[int]) -> list[Fill]:
        """The Fills of these rows, in this order."""
        t, m, si, sz, p, ts, c = (
            self.trade_ids, self.markets, self.sides, self.sizes, self.prices, self.stamps,
            self.categories,
        )  # fmt: skip
        return [Fill(t[n], m[n], si[n], sz[n], p[n], ts[n], c[n]) for n in rows]

    def canonical_rows(self, runs: Sequence[Run]) -> dict[str, Sequence[int]]:
        """Each wallet's rows in the canonical order of `features.sorted_fills`, from the runs of
        rows read for it (in the order of their first run).

        A wallet read as one run in time order, no two of its trades in one second (as the store
        reads nearly every wallet), keeps its run as it is; any other is sorted.
        """
        stamps = self.stamps
        spans: dict[str, list[range]] = {}
        for wallet, start, end in runs:
            spans.setdefault(wallet, []).append(range(start, end))
        out: dict[str, Sequence[int]] = {}
        for wallet, ranges in spans.items():
            (only, *more) = ranges
            times = stamps[only.start : only.stop]
            if not more and all(map(lt, times, times[1:])):
                out[wallet] = only
            else:
                out[wallet] = self._sorted(list(chain.from_iterable(ranges)))
        return out

    def _sorted(self, rows: list[int]) -> list[int]:
        stamps, trade_ids = self.stamps, self.trade_ids
        fills = dict(zip(rows, self.fills(rows), strict=True))
        return sorted(rows, key=lambda n: (stamps[n], trade_ids[n], fills[n]))
