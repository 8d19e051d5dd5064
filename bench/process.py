"""Run a measured variant in a child process: wall time and the peak RSS of its whole tree."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson

__all__ = ["Run", "run_measured"]

SAMPLE_EVERY_S = 0.05
_PAGE = os.sysconf("SC_PAGE_SIZE")


class Run:
    """The child's JSON answer, its wall time, and the peak summed RSS of it and its children."""

    def __init__(self, answer: dict[str, Any], wall_s: float, peak_rss_mb: float) -> None:
        self.answer, self.wall_s, self.peak_rss_mb = answer, wall_s, peak_rss_mb


def _tree_rss(root: int) -> int:
    """Resident bytes of `root` and all its descendants (workers, the forkserver), from /proc."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            statm = (entry / "statm").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        rss[pid] = int(statm.split()[1]) * _PAGE
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier.extend(children)
    return sum(rss.get(pid, 0) for pid in tree)


def run_measured(argv: list[str], env: dict[str, str] | None = None) -> Run:
    """Run `python argv…` (in `env`); it must print one JSON object on stdout. Raise if it fails."""
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, *argv], stdout=subprocess.PIPE, env=env)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _tree_rss(child.pid))
            stop.wait(SAMPLE_EVERY_S)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = child.communicate()
    wall = time.perf_counter() - started
    stop.set()
    sampler.join()
    if child.returncode != 0:
        raise RuntimeError(f"benchmark child {argv} exited with {child.returncode}")
    return Run(orjson.loads(out), wall, peak / 2**20)
