"""Worker health as /health reports it: healthy once started, unless some component has a problem.

A worker says it is healthy only once it is ready to answer a discovery at once: its store open,
its feature processes started and each agent's consumer in its group (a warm start). Until then
/health lists what it is still starting.
"""

from __future__ import annotations

import time
from typing import Any

__all__ = ["Health"]


class Health:
    """Problems by component; a component clears its own problem once it recovers."""

    def __init__(self) -> None:
        self._problems: dict[str, tuple[str, float]] = {}
        self._progress: dict[str, float] = {}
        self._starting: set[str] = set()

    def starting(self, component: str) -> None:
        """Unhealthy until `component` says it is `ready` (opened, started, joined)."""
        self._starting.add(component)

    def ready(self, component: str) -> None:
        self._starting.discard(component)

    def problem(self, component: str, reason: str) -> None:
        """Mark `component` unhealthy (the first time since it was last healthy counts)."""
        self._problems.setdefault(component, (reason, time.time()))

    def clear(self, component: str) -> None:
        self._problems.pop(component, None)

    def progressed(self, component: str) -> None:
        """Record that `component` just finished a unit of work."""
        self._progress[component] = time.time()

    @property
    def healthy(self) -> bool:
        return not self._problems and not self._starting

    def report(self) -> dict[str, Any]:
        now = time.time()
        return {
            "healthy": self.healthy,
            "starting": sorted(self._starting),
            "problems": {
                name: {"reason": reason, "for_s": round(now - since, 1)}
                for name, (reason, since) in sorted(self._problems.items())
            },
            "last_progress_s_ago": {
                name: round(now - at, 1) for name, at in sorted(self._progress.items())
            },
        }
