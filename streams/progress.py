"""Progress on stderr: a live line on a terminal, a plain line every few seconds otherwise."""

from __future__ import annotations

import math
import shutil
import sys
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["Progress", "due", "fit", "format_duration", "rate_and_eta", "render"]

# A CI log gets a line this often; a terminal's line is redrawn at most every TTY_EVERY_S.
LOG_EVERY_S = 5.0
TTY_EVERY_S = 0.1
LABEL_WIDTH = 12
BAR_WIDTH = 20
CLEAR_TO_END = "\x1b[K"


def rate_and_eta(done: int, total: int, elapsed: float) -> tuple[float, float | None]:
    """Items per second so far, and the seconds left at that rate (None: nothing done yet)."""
    rate = done / elapsed if elapsed > 0 else 0.0
    if rate <= 0:
        return 0.0, None
    return rate, max(total - done, 0) / rate


def format_duration(seconds: float | None) -> str:
    """`4.2s`, `42s`, `2m05s`; `?` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s"


def render(
    label: str, done: int, total: int, elapsed: float, *,
    bar: bool = False, sent: int | None = None, noun: str = "", final: bool = False,
) -> str:  # fmt: skip
    """One progress line: `label [bar] published sent/total  noun done/total  rate/s  ETA`.

    `total <= 0` means the total is not known (yet): the line shows what is done and the time.
    `sent` is what has been handed to the broker so far, for a step that waits on a consumer.
    """
    head = f"{label:<{LABEL_WIDTH}}"
    if total <= 0:
        parts = [head, *([f"{done:,}"] if done else []), *([noun] if noun else [])]
        return "  ".join([*parts, ("in " if final else "") + format_duration(elapsed)])
    parts = [head]
    if bar:
        filled = min(BAR_WIDTH, BAR_WIDTH * done // total)
        parts.append(f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}]")
    if sent is not None:
        parts.append(f"published {sent:>{len(f'{total:,}')},}/{total:,}")
    parts.append(f"{noun + ' ' if noun else ''}{done:>{len(f'{total:,}')},}/{total:,}")
    rate, eta = rate_and_eta(done, total, elapsed)
    parts.append(f"{rate:,.0f}/s")
    parts.append(f"in {format_duration(elapsed)}" if final else f"ETA {format_duration(eta)}")
    return "  ".join(parts)


def fit(line: str, columns: int) -> str:
    """Cut `line` to the terminal's width: a wrapped line cannot be redrawn in place."""
    return line if len(line) < columns else line[: max(columns - 2, 1)] + "…"


def due(now: float, last_print: float | None, tty: bool) -> bool:
    """Whether a new line is due: at once the first time, then at the terminal's or log's pace."""
    return last_print is None or now - last_print >= (TTY_EVERY_S if tty else LOG_EVERY_S)


class Progress:
    """`done / total`, rate and ETA for one long step, on stderr."""

    def __init__(
        self, label: str, total: int, *, enabled: bool = True, noun: str = "",
        stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self.label, self.total, self.enabled, self.noun = label, total, enabled, noun
        self._stream = stream if stream is not None else sys.stderr
        self._clock = clock
        self.started = clock()
        self._last_print: float | None = None
        self._tty = self._stream.isatty()
        self._open_line = False  # a terminal line drawn in place, not yet ended

    def update(self, done: int, *, sent: int | None = None, final: bool = False) -> None:
        """Show `done` (and `sent`, if given) when a line is due; always when `final`."""
        now = self._clock()
        if not self.enabled or not (final or due(now, self._last_print, self._tty)):
            return
        self._last_print = now
        elapsed = now - self.started
        line = render(self.label, done, self.total, elapsed, sent=sent, noun=self.noun, final=final)
        if self._tty:
            columns = shutil.get_terminal_size((100, 24)).columns
            with_bar = render(
                self.label, done, self.total, elapsed,
                bar=True, sent=sent, noun=self.noun, final=final,
            )  # fmt: skip
            line = with_bar if len(with_bar) < columns else line  # the bar goes first
            self._stream.write(f"\r{fit(line, columns)}{CLEAR_TO_END}")
            self._open_line = True
        else:
            self._stream.write(line + "\n")
        self._stream.flush()

    def finish(self, done: int, *, sent: int | None = None) -> float:
        """Print the final line; return the elapsed seconds."""
        self.update(done, sent=sent, final=True)
        self.end()
        return self._clock() - self.started

    def end(self) -> None:
        """End a line drawn in place, so that what is printed next starts on its own line."""
        if self._open_line:
            self._stream.write("\n")
            self._stream.flush()
            self._open_line = False
