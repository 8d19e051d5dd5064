"""`personas lag --watch S`: an interval that would never pause is bad usage, naming --watch."""

from __future__ import annotations

import pytest

from streams.cli import main
from streams.cli.lag import watch
from streams.cli.parser import build_parser


@pytest.mark.parametrize("value", ["-1", "0", "-0.0", "nan", "inf", "1e400", "soon", ""])
def test_watch_rejects_an_interval_that_never_pauses(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["lag", "--watch", value])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "--watch" in err and "above 0" in err


@pytest.mark.parametrize(
    ("argv", "seconds"),
    [([], None), (["--watch"], 2.0), (["--watch", "0.1"], 0.1), (["--watch=5"], 5.0)],
)
def test_watch_accepts_positive_seconds(argv: list[str], seconds: float | None) -> None:
    assert build_parser().parse_args(["lag", *argv]).watch == seconds


def test_ctrl_c_ends_a_watch_with_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    """Ctrl-C is how a watch ends: exit 0, as for any lag, not the interrupted status."""

    def interrupted(_seconds: float) -> None:
        raise KeyboardInterrupt

    assert watch(lambda _previous: [], 1.0, as_json=True, redraw=False, sleep=interrupted) == 0
    assert capsys.readouterr().out == '{"groups":[]}\n'
