"""The demo: its stage timing and progress lines as pure functions, and its own groups/broker."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from config.settings import load_settings
from streams.broker import broker_for, find_running_broker
from streams.cli.demo import format_summary
from streams.demo import StageTiming, demo_settings
from streams.demo.pipeline import _demo_broker, warn
from streams.progress import (
    CLEAR_TO_END,
    LOG_EVERY_S,
    TTY_EVERY_S,
    Progress,
    due,
    fit,
    format_duration,
    rate_and_eta,
    render,
)
from streams.topics import worker_groups

# --------------------------------------------------------------------------------------------
# Stage timing: first publish → last committed row


def test_the_span_starts_at_the_first_publish_not_at_the_end_of_publishing() -> None:
    # The user's run: 300,456 trades published over 30 s, the last one stored 0.75 s later.
    timing = StageTiming(300_456, first_publish_at=100.0, published_at=130.0, stored_at=130.75)
    assert timing.seconds == pytest.approx(30.75)
    assert timing.publish_seconds == pytest.approx(30.0)
    assert timing.per_second == round(300_456 / 30.75)  # ~9,771/s, not 398,576/s


@pytest.mark.parametrize(
    ("items", "first", "stored", "seconds", "per_second"),
    [
        (20_000, 0.0, 1.0, 1.0, 20_000),
        (3_000, 10.0, 12.5, 2.5, 1_200),
        (1, 5.0, 5.0, 0.0, None),  # an empty span has no rate
        (10, 5.0, 4.0, 0.0, None),  # a row committed "before" the first publish: clock skew
        (0, 1.0, 2.0, 1.0, 0),
    ],
)
def test_stage_seconds_and_rate(
    items: int, first: float, stored: float, seconds: float, per_second: int | None
) -> None:
    timing = StageTiming(items, first, max(first, stored), stored)
    assert timing.seconds == pytest.approx(seconds)
    assert timing.per_second == per_second


def _summary(**overrides: Any) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "wallets": 3000, "trades": 300_456, "feature_date": "2026-11-01",
        "generate_s": 3.7, "worker_start_s": 9.2,
        "ingest_s": 22.29, "trades_per_s": 13_481, "trades_publish_s": 22.0,
        "classify_s": 2.17, "discoveries_per_s": 1_386,
        "on_demand": {"success": 2669, "insufficient": 331},
        "by_status": {"excluded": 2182}, "by_persona": {"SNIPER": 53}, "by_reason": {},
        "planted_labels_reproduced": "794/794", "planted_left_to_rebuild": 106,
        "elapsed_s": 42.3, "database": "var/personas.db", "worker_log": "var/demo-worker.log",
        "broker": "127.0.0.1:1", "broker_log": "var/broker.log",
    }  # fmt: skip
    return summary | overrides


def test_the_summary_names_each_stage_its_rate_and_the_logs() -> None:
    text = "\n".join(format_summary(_summary()))
    assert "ingest         22.29s     13,481 trades/s  first publish to last trade stored" in text
    assert "published in 22.0s" in text
    assert "1,386 discoveries/s" in text
    assert "worker log var/demo-worker.log, broker log var/broker.log" in text


def test_the_summary_without_a_rate_or_an_embedded_broker() -> None:
    text = "\n".join(format_summary(_summary(trades_per_s=None, broker_log=None)))
    assert "        - trades/s" in text
    assert "broker log" not in text


# --------------------------------------------------------------------------------------------
# Progress: rate, ETA, the line, and when it is printed


@pytest.mark.parametrize(
    ("done", "total", "elapsed", "rate", "eta"),
    [
        (0, 100, 5.0, 0.0, None),  # nothing done: no ETA yet
        (50, 100, 5.0, 10.0, 5.0),
        (100, 100, 4.0, 25.0, 0.0),
        (120, 100, 4.0, 30.0, 0.0),  # more than the total (a redelivery): never a negative ETA
        (10, 100, 0.0, 0.0, None),  # no time has passed
    ],
)
def test_rate_and_eta(
    done: int, total: int, elapsed: float, rate: float, eta: float | None
) -> None:
    got_rate, got_eta = rate_and_eta(done, total, elapsed)
    assert got_rate == pytest.approx(rate)
    assert got_eta == (pytest.approx(eta) if eta is not None else None)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "?"), (float("inf"), "?"), (0.04, "0.0s"), (4.25, "4.2s"), (42.4, "42s"),
     (59.4, "59s"), (125.0, "2m05s"), (3600.0, "60m00s")],
)  # fmt: skip
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


def test_render_a_stage_waiting_on_the_worker() -> None:
    line = render("ingest", 95_000, 300_456, 10.0, sent=120_000, noun="stored")
    assert line == (
        "ingest        published 120,000/300,456  stored  95,000/300,456  9,500/s  ETA 22s"
    )


def test_render_before_anything_is_stored_and_at_the_end() -> None:
    assert render("on-demand", 0, 3000, 0.5, sent=0, noun="done").endswith(
        "done     0/3,000  0/s  ETA ?"
    )
    final = render("on-demand", 3000, 3000, 2.5, sent=3000, noun="done", final=True)
    assert final.endswith("done 3,000/3,000  1,200/s  in 2.5s")


def test_render_with_a_bar_and_without_a_total() -> None:
    assert render("importing", 50, 100, 1.0, bar=True).startswith(
        "importing     [##########..........]   50/100"
    )
    assert render("rebuild", 0, 0, 1.5) == "rebuild       1.5s"
    assert render("worker start", 0, 0, 9.2, final=True) == "worker start  in 9.2s"


def test_fit_cuts_a_line_to_the_terminal() -> None:
    assert fit("short", 80) == "short"
    cut = fit("x" * 120, 80)
    assert len(cut) < 80 and cut.endswith("…")


@pytest.mark.parametrize(
    ("now", "last", "tty", "expected"),
    [
        (0.0, None, False, True),  # the first line is printed at once
        (LOG_EVERY_S - 0.1, 0.0, False, False),
        (LOG_EVERY_S, 0.0, False, True),
        (TTY_EVERY_S / 2, 0.0, True, False),
        (TTY_EVERY_S, 0.0, True, True),
    ],
)
def test_due(now: float, last: float | None, tty: bool, expected: bool) -> None:
    assert due(now, last, tty) is expected


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_in_a_log_prints_plain_lines_at_the_log_pace() -> None:
    stream, clock = io.StringIO(), _Clock()
    progress = Progress("ingest", 100, noun="stored", stream=stream, clock=clock)
    for step in range(12):
        clock.now = step * 1.0
        progress.update(step, sent=step * 2)
    progress.finish(100, sent=100)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4  # at 0 s, 5 s, 10 s, and the final line
    assert lines[0].startswith("ingest        published   0/100  stored   0/100")
    assert lines[-1].endswith("in 11s")
    assert "\r" not in stream.getvalue()


def test_progress_on_a_terminal_redraws_one_line_and_ends_it_once() -> None:
    stream, clock = _Terminal(), _Clock()
    progress = Progress("importing", 10, stream=stream, clock=clock)
    for step in range(3):
        clock.now = step * 1.0
        progress.update(step)
    progress.end()
    progress.end()
    text = stream.getvalue()
    assert text.count("\r") == 3 and text.count(CLEAR_TO_END) == 3
    assert text.endswith("\n") and text.count("\n") == 1


def test_progress_disabled_prints_nothing() -> None:
    stream = io.StringIO()
    progress = Progress("ingest", 10, enabled=False, stream=stream, clock=_Clock())
    progress.update(5)
    assert progress.finish(10) == 0.0
    assert stream.getvalue() == ""


def test_the_demo_has_groups_of_its_own(tmp_path: Path) -> None:
    settings = load_settings(env={"PERSONAS_DB": str(tmp_path / "p.db")})
    demo = demo_settings(settings)
    assert set(worker_groups(demo)).isdisjoint(worker_groups(settings))
    assert demo.topics.prefix == settings.topics.prefix  # its own broker: the usual names


def test_on_a_shared_broker_the_demo_has_topics_of_its_own(tmp_path: Path) -> None:
    settings = load_settings(
        env={"PERSONAS_DB": str(tmp_path / "p.db"), "PERSONAS_BROKER": "kafka-1:9092"}
    )
    demo = demo_settings(settings)
    assert demo.topics.trades != settings.topics.trades
    assert demo.topics.trades.startswith("demo-")


def test_the_demo_never_takes_over_the_run_file(tmp_path: Path) -> None:
    settings = load_settings(env={"PERSONAS_DB": str(tmp_path / "p.db")})
    with broker_for(settings) as theirs:  # a `personas broker` or worker already running
        with _demo_broker(settings, tmp_path / "demo-broker.log", embedded=True) as ours:
            assert ours != theirs
            assert find_running_broker(settings) == theirs
        assert find_running_broker(settings) == theirs


def test_the_demo_warns_as_every_command_does(capsys: pytest.CaptureFixture[str]) -> None:
    warn("the worker exited with status 1")
    assert capsys.readouterr().err == "personas demo: warning: the worker exited with status 1\n"


def test_on_a_configured_broker_the_demo_starts_none(tmp_path: Path) -> None:
    settings = load_settings(
        env={"PERSONAS_DB": str(tmp_path / "p.db"), "PERSONAS_BROKER": "kafka-1:9092,kafka-2:9092"}
    )
    with _demo_broker(settings, tmp_path / "demo-broker.log", embedded=False) as bootstrap:
        assert bootstrap == "kafka-1:9092,kafka-2:9092"
    assert not (tmp_path / "demo-broker.log").exists()
