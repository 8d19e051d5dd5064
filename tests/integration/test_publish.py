"""`personas publish`: a file with bad lines sends nothing; a good file is sent whole, keyed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
from aiokafka import TopicPartition

from config.settings import Settings
from streams.cli import main
from streams.ops.offsets import log_ranges, reader
from streams.topics import ensure_topics

pytestmark = pytest.mark.slow

WALLET = "0x" + "ab" * 20


def _trade(i: int, **overrides: object) -> bytes:
    trade = {
        "trade_id": f"t{i}", "proxy_wallet": "0x" + f"{i % 7:02x}" * 20, "condition_id": "m1",
        "side": "BUY" if i % 2 else "SELL", "size": 10.0, "price": 0.4,
        "timestamp": 1_700_000_000 + i,
    }  # fmt: skip
    return orjson.dumps({**trade, **overrides})


def _messages(bootstrap: str, settings: Settings, topic: str) -> int:
    async def count() -> int:
        async with reader(bootstrap, settings) as consumer:
            tps = [TopicPartition(topic, p) for p in range(4)]
            ranges = await log_ranges(consumer, tps)
            return sum(span.end - span.start for span in ranges.values())

    return asyncio.run(count())


@pytest.fixture
def env(bootstrap: str, settings: Settings, cli_env: None) -> Settings:
    asyncio.run(ensure_topics(bootstrap, settings))
    return settings


def test_bad_lines_send_nothing(
    bootstrap: str, env: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "trades.jsonl"
    lines = [_trade(1), _trade(2, price=1.5), _trade(3), b"{not json", _trade(5, side="HOLD")]
    path.write_bytes(b"\n".join(lines) + b"\n")

    assert main(["publish", "trades", "--file", str(path), "--json"]) == 2
    report = orjson.loads(capsys.readouterr().out)
    assert report["sent"] == 0 and report["rejected"] == 3 and report["read"] == 5
    assert [error.split(":")[:2] for error in report["errors"]] == [
        ["line 2", " price"], ["line 4", " <json>"], ["line 5", " side"],
    ]  # fmt: skip
    assert _messages(bootstrap, env, env.topics.trades) == 0

    assert main(["publish", "trades", "--file", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:line 2: price" in err and "nothing sent: 3 of 5 rejected" in err


def test_good_files_and_wallets_are_sent(
    bootstrap: str, env: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trades = tmp_path / "trades.jsonl"
    trades.write_bytes(b"\n".join(_trade(i) for i in range(200)) + b"\n")
    assert main(["publish", "trades", "--file", str(trades), "--json"]) == 0
    report = orjson.loads(capsys.readouterr().out)
    assert report["sent"] == 200 and report["rejected"] == 0 and report["msg_per_s"] > 0
    assert _messages(bootstrap, env, env.topics.trades) == 200

    wallets = tmp_path / "wallets.csv"
    wallets.write_text(f"proxy_wallet,discovered_at,source\n{WALLET},2024-05-01T00:00:00Z,csv\n"
                       f"{WALLET.upper().replace('0X', '0x')},,\n")  # fmt: skip
    assert main(["publish", "discovered", "--file", str(wallets), "--rate", "100"]) == 0
    assert "2 sent, 0 rejected" in capsys.readouterr().out
    assert main(["publish", "discovered", WALLET, "--json"]) == 0
    assert orjson.loads(capsys.readouterr().out)["sent"] == 1
    assert _messages(bootstrap, env, env.topics.discovered) == 3

    assert main(["publish", "discovered", WALLET, "0xnope"]) == 2
    assert "WALLET 2: proxy_wallet" in capsys.readouterr().err
    assert _messages(bootstrap, env, env.topics.discovered) == 3
