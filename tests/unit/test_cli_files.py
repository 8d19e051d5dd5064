"""The command line: generate → import → classify end to end, import's bad-row contract, help."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from agents.data.generate import DEFAULT_END
from streams.cli import main
from streams.cli.parser import COMMANDS, build_parser

WALLET = "0x" + "ab" * 20


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_generate_import_classify_reproduces_every_planted_label(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "data" / "trades.jsonl"
    code, _, _ = run(capsys, "generate", "--wallets", "200", "--days", "90", "--seed", "4",
                     "--out", str(out))  # fmt: skip
    assert code == 0
    markets = out.with_name("trades.markets.jsonl")
    code, report, _ = run(capsys, "import", "trades", str(out), "--markets", str(markets), "--json")
    assert code == 0
    assert json.loads(report)["trades"]["rejected"] == 0

    labels = [
        json.loads(line)
        for line in out.with_name("trades.labels.jsonl").read_text().split("\n")
        if line
    ]
    assert labels
    for label in labels:
        code, text, _ = run(capsys, "classify", label["proxy_wallet"], "--as-of", str(DEFAULT_END),
                            "--json")  # fmt: skip
        assert code == 0
        result = json.loads(text)["classification"]
        assert (result["status"], result["persona"], result["reason"]) == (
            label["status"], label["persona"], label["reason"],
        ), label  # fmt: skip


def trade(n: int, **changes: object) -> bytes:
    row = {"trade_id": f"t{n}", "proxy_wallet": WALLET, "condition_id": "m1", "side": "BUY",
           "size": 2.0, "price": 0.5, "timestamp": 1_700_000_000 + n, **changes}  # fmt: skip
    return orjson.dumps(row)


def test_import_keeps_good_rows_and_names_bad_lines(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [
        trade(1),
        trade(2, price=1.2),
        b"{oops",
        trade(3),
        trade(1),
        trade(4, side="HOLD"),
        b"",
    ]
    path = tmp_path / "trades.jsonl"
    path.write_bytes(b"\n".join(lines))
    code, out, err = run(capsys, "import", "trades", str(path))
    assert code == 2
    assert f"{path}:line 2: price:" in err
    assert f"{path}:line 3: <json>:" in err
    assert f"{path}:line 6: side:" in err
    assert "2 inserted, 1 duplicates skipped, 3 rejected" in out

    code, out, _ = run(capsys, "import", "trades", str(path), "--json")
    report = json.loads(out)["trades"]
    assert (report["inserted"], report["duplicates"], report["rejected"]) == (0, 3, 3)


def test_import_csv_converts_numbers_and_names_the_field(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "trades.csv"
    path.write_text(
        "trade_id,proxy_wallet,condition_id,side,size,price,timestamp\n"
        f"c1,{WALLET},m1,BUY,3,0.25,1700000000\n"
        f"c2,{WALLET},m1,SELL,lots,0.5,1700000100\n"
        f"c3,{WALLET},m1,SELL,3,0.5,1700000200\n"
    )
    code, out, err = run(capsys, "import", "trades", str(path))
    assert code == 2
    assert f"{path}:line 3: size: not a number" in err
    assert "2 inserted" in out
    code, out, _ = run(capsys, "features", WALLET, "--as-of", "1700000300", "--json")
    features = json.loads(out)
    assert (features["trade_count"], features["round_trips"]) == (2, 1)
    assert features["realized_pnl"] == pytest.approx(0.75)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["features", "0x12"], "WALLET"),
        (["features", WALLET, "--as-of", "someday"], "--as-of"),
        (["features", WALLET, "--window", "0"], "--window"),
        (["import", "trades", "/no/such/file.jsonl"], "no such file"),
        (["import", "trades", "/tmp"], "FILE: /tmp is a directory"),
        (["publish", "discovered", "--file", "/tmp"], "--file: /tmp is a directory"),
        (["generate", "--wallets", "5", "--days", "3", "--out", "x.jsonl"], "days"),
    ],
)
def test_bad_usage_exits_2_with_a_clear_message(
    db: Path, capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert needle in err


def test_a_csv_header_typo_names_the_unknown_column(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "trades.csv"
    path.write_text(
        "trade_id,proxy_walet,condition_id,side,size,price,timestamp\n"
        f"c1,{WALLET},m1,BUY,3,0.25,1700000000\n"
    )
    code, _, err = run(capsys, "import", "trades", str(path))
    assert code == 2
    assert "unknown column 'proxy_walet' on line 1; did you mean 'proxy_wallet'?" in err


@pytest.mark.parametrize("command", ["classify", "features"])
def test_a_wallet_with_no_trades_is_not_classified_as_if_seen(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    path = tmp_path / "trades.jsonl"
    other = "0x" + "cd" * 20
    path.write_text(
        json.dumps({"trade_id": "t1", "proxy_wallet": other, "condition_id": "m1",
                    "side": "BUY", "size": 1.0, "price": 0.5, "timestamp": 1700000000}) + "\n"
    )  # fmt: skip
    assert run(capsys, "import", "trades", str(path))[0] == 0
    code, out, err = run(capsys, command, WALLET)
    assert code == 1
    assert f"no trades of {WALLET}" in err and "TOO_YOUNG" not in out


def test_read_commands_need_an_existing_database(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "classify", WALLET)
    assert code == 1
    assert "no database" in err
    assert not db.exists()


def test_classify_says_whether_each_condition_holds_and_marks_the_deciding_rule(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # One losing round trip 10 days before as_of: too young, and not a sniper (it did not win).
    path = tmp_path / "trades.jsonl"
    path.write_bytes(trade(1, side="BUY", price=0.5) + b"\n" + trade(2, side="SELL", price=0.4))
    assert run(capsys, "import", "trades", str(path))[0] == 0
    as_of = str(1_700_000_000 + 10 * 86_400 + 60)

    code, out, _ = run(capsys, "classify", WALLET, "--as-of", as_of)
    assert code == 0
    lines = out.splitlines()
    # "…: pass" / "…: fail" read as a verdict on the wallet; a condition holds or does not.
    assert not [line for line in lines if line.endswith((": pass", ": fail"))]
    assert re.search(r"^ +wallet_age_days = 10 < 45: holds$", out, re.MULTILINE)
    assert re.search(r"^ +win_rate = 0 > 0\.85: does not hold$", out, re.MULTILINE)
    assert re.search(r"^ +proxy_wallet in known_bots: does not hold$", out, re.MULTILINE)
    marked = [line for line in lines if line.startswith("→")]
    assert len(marked) == 1
    assert marked[0].split()[3:] == ["TOO_YOUNG", "fires", "→", "decides"]
    assert re.search(r"^  stage 1 +SNIPER +does not fire$", out, re.MULTILINE)
    assert "decided by: TOO_YOUNG" in lines
    assert "result: excluded, reason TOO_YOUNG" in lines

    # --json keeps its keys: a condition's outcome is still `passed`.
    code, text, _ = run(capsys, "classify", WALLET, "--as-of", as_of, "--json")
    explanation = json.loads(text)
    assert set(explanation) == {"proxy_wallet", "rules", "traits", "decided_by", "classification"}
    too_young = next(rule for rule in explanation["rules"] if rule["code"] == "TOO_YOUNG")
    assert (too_young["fired"], too_young["decided"]) == (True, True)
    assert too_young["conditions"][0]["passed"] is True


def test_every_option_and_positional_has_a_help_line() -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = [
        f"{name} {action.dest}"
        for name, sub in commands.choices.items()
        for action in sub._actions
        if not action.help or not action.help.strip()
    ]
    assert not missing
    assert set(commands.choices) == set(COMMANDS)


def test_help_loads_neither_the_clients_nor_the_settings() -> None:
    # `personas --help` must start fast: Faust, aiokafka and pydantic load only to run a command.
    code = (
        "import sys\n"
        "from streams.cli import main\n"
        "try:\n"
        "    main(['lag', '--help'])\n"
        "except SystemExit as exit:\n"
        "    assert exit.code == 0, exit.code\n"
        "heavy = {'faust', 'aiokafka', 'pydantic', 'config.settings'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "--group G" in done.stdout


def test_publish_refuses_a_discovery_from_the_future_before_sending(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PERSONAS_BROKER", "127.0.0.1:9")  # never reached: nothing is sent
    path = tmp_path / "found.jsonl"
    path.write_text(json.dumps({"proxy_wallet": WALLET, "discovered_at": "2099-01-01"}) + "\n")
    code, _, err = run(capsys, "publish", "discovered", "--file", str(path))
    assert code == 2
    assert "discovered_at: 2099-01-01T00:00:00+00:00 is in the future" in err
