"""`personas import`: stream JSONL or CSV into SQLite; good rows kept, bad ones reported by line."""

from __future__ import annotations

import csv
import difflib
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from agents.core.codec import decode, validate
from agents.core.errors import InvalidMessage
from agents.core.records import Market, Trade
from agents.store import Connection, insert_markets, insert_trade_rows, trade_row

__all__ = ["ImportReport", "RowError", "import_markets", "import_trades", "read_records"]

BATCH_ROWS = 20_000
ModelT = TypeVar("ModelT", bound=BaseModel)

_CSV_NUMBERS: dict[str, Callable[[str], Any]] = {"size": float, "price": float, "timestamp": int}


@dataclass(frozen=True)
class RowError:
    line: int
    field: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.reason}"


@dataclass
class ImportReport:
    """What one import did."""

    file: str
    read: int = 0
    inserted: int = 0
    duplicates: int = 0
    rejected: int = 0
    errors: list[RowError] = field(default_factory=list)

    def as_dict(self, max_errors: int = 100) -> dict[str, Any]:
        return {
            "file": self.file, "read": self.read, "inserted": self.inserted,
            "duplicates": self.duplicates, "rejected": self.rejected,
            "errors": [str(error) for error in self.errors[:max_errors]],
        }  # fmt: skip


def _csv_rows(handle: Any, columns: Collection[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(handle)
    _check_header(reader.fieldnames or [], columns)
    for row in reader:
        yield reader.line_num, row


def _check_header(header: Sequence[str], columns: Collection[str]) -> None:
    """A header typo fails the file at once, naming the column, not as a missing field per row."""
    for name in header:
        if name not in columns:
            close = difflib.get_close_matches(name, list(columns), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; columns: {', '.join(columns)}"
            raise InvalidMessage("<header>", f"unknown column {name!r} on line 1{hint}")


def _coerce_csv(row: dict[str, Any]) -> dict[str, Any]:
    if None in row:  # DictReader's key for values beyond the header
        raise InvalidMessage("<row>", "more values than columns")
    for name, convert in _CSV_NUMBERS.items():
        value = row.get(name)
        if isinstance(value, str):
            try:
                row[name] = convert(value.strip())
            except ValueError:
                raise InvalidMessage(name, f"not a number (got {value!r})") from None
    return row


def read_records(
    path: Path, model: type[ModelT], errors: list[RowError]
) -> Iterator[tuple[int, ModelT | None]]:
    """(line, record) for every data line; a bad line yields (line, None) and records its error."""
    is_csv = path.suffix.lower() == ".csv"
    with path.open(newline="" if is_csv else None, encoding="utf-8", errors="replace") as handle:
        rows: Iterator[tuple[int, Any]]
        if is_csv:
            rows = _csv_rows(handle, model.model_fields)
        else:
            rows = ((number, text) for number, text in enumerate(handle, 1) if text.strip())
        for line, raw in rows:
            try:
                yield line, _parse(model, raw, is_csv)
            except InvalidMessage as exc:
                errors.append(RowError(line, exc.field, exc.reason))
                yield line, None


def _parse(model: type[ModelT], raw: Any, is_csv: bool) -> ModelT:
    if is_csv:
        return validate(model, _coerce_csv(raw))
    # A JSON line is decoded as a message on the topic is: the same checks, the same size limit.
    return decode(model, str(raw).encode())


def import_trades(
    conn: Connection, path: Path, on_progress: Callable[[int], None] | None = None
) -> ImportReport:
    """Insert every valid trade of `path` (batched transactions); duplicates are skipped."""
    report = ImportReport(str(path))
    batch: list[tuple[Any, ...]] = []

    def flush() -> None:
        inserted = insert_trade_rows(conn, batch)
        report.inserted += inserted
        report.duplicates += len(batch) - inserted
        batch.clear()
        if on_progress is not None:
            on_progress(report.read)

    for _, trade in read_records(path, Trade, report.errors):
        report.read += 1
        if trade is not None:
            batch.append(trade_row(trade))
            if len(batch) >= BATCH_ROWS:
                flush()
    flush()
    report.rejected = len(report.errors)
    return report


def import_markets(conn: Connection, path: Path) -> ImportReport:
    """Upsert every valid market of `path` in one transaction."""
    report = ImportReport(str(path))
    markets = []
    for _, market in read_records(path, Market, report.errors):
        report.read += 1
        if market is not None:
            markets.append(market)
    report.inserted = insert_markets(conn, markets)
    report.rejected = len(report.errors)
    return report
