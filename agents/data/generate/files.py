"""Writing a data set out: trades, markets and labels as three JSONL files side by side."""

from __future__ import annotations

from pathlib import Path

import orjson

from agents.data.generate.dataset import Dataset

__all__ = ["write_dataset"]

# Trades are joined and written this many lines at a time: few syscalls, bounded memory.
_CHUNK_LINES = 20_000


def write_dataset(dataset: Dataset, out: Path) -> dict[str, Path]:
    """Write trades to ``out`` and ``<stem>.markets.jsonl`` / ``<stem>.labels.jsonl`` beside it."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = {
        "trades": out,
        "markets": out.with_name(f"{out.stem}.markets.jsonl"),
        "labels": out.with_name(f"{out.stem}.labels.jsonl"),
    }
    dumps = orjson.dumps
    with paths["trades"].open("wb") as fh:
        chunk: list[bytes] = []
        for trade in dataset.trades():
            chunk.append(dumps(trade))
            if len(chunk) >= _CHUNK_LINES:
                fh.write(b"\n".join(chunk) + b"\n")
                chunk.clear()
        if chunk:
            fh.write(b"\n".join(chunk) + b"\n")
    with paths["markets"].open("wb") as fh:
        fh.writelines(dumps(market) + b"\n" for market in dataset.markets)
    with paths["labels"].open("wb") as fh:
        fh.writelines(
            dumps(
                {
                    "proxy_wallet": label.proxy_wallet,
                    "behaviour": label.behaviour,
                    "status": label.status,
                    "persona": label.persona,
                    "reason": label.reason,
                }
            )
            + b"\n"
            for label in dataset.labels
        )
    return paths
