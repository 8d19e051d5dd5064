"""Progress on stderr: a live bar on a terminal, a log line every few seconds otherwise."""

from __future__ import annotations

import sys
import time

__all__ = ["Progress"]

LOG_EVERY_S = 5.0


class Progress:
    """`done / total`, rate and ETA for one long step."""

    def __init__(self, label: str, total: int, *, enabled: bool = True) -> None:
        self.label, self.total, self.enabled = label, total, enabled
        self.started = time.monotonic()
        self._last_print = 0.0
        self._tty = sys.stderr.isatty()

    def update(self, done: int) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self._last_print < (0.1 if self._tty else LOG_EVERY_S)):
            return
        self._last_print = now
        elapsed = max(now - self.started, 1e-9)
        rate = done / elapsed
        eta = (self.total - done) / rate if rate > 0 else float("inf")
        width = 30
        filled = int(width * done / self.total) if self.total else width
        line = (
            f"{self.label:<14} [{'#' * filled}{'.' * (width - filled)}] {done:>8,}/{self.total:,}"
            f"  {rate:>9,.0f}/s  ETA {eta:5.1f}s" if eta != float("inf") else
            f"{self.label:<14} {done:,}/{self.total:,}"
        )  # fmt: skip
        print(("\r" + line) if self._tty else line, end="" if self._tty else "\n", file=sys.stderr)

    def finish(self, done: int) -> float:
        """Print the final line; return the elapsed seconds."""
        self._last_print = 0.0
        self.update(done)
        if self.enabled and self._tty:
            print(file=sys.stderr)
        return time.monotonic() - self.started
