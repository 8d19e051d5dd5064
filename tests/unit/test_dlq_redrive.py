"""`personas dlq redrive` without a broker: what the commit passes over, the report, timeouts."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from agents.core.errors import BrokerError
from streams.cli.dlq import _print_redrive
from streams.ops import dlq
from streams.ops.dlq import RedriveReport, _read_until, _Redrive
from streams.ops.letters import DeadLetter, gather_histories

DLQ = "x-trades.dlq"


def _record(offset: int, value: bytes) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(DLQ, 0, offset, 0, 0, b"k", value, None, 0, len(value), ())


def _letter(offset: int, source_offset: int, reason: str = "price: too high") -> DeadLetter:
    envelope = {"reason": reason, "error": "InvalidMessage", "topic": "x-trades",
                "partition": 0, "offset": source_offset, "value": "{}"}  # fmt: skip
    return DeadLetter.from_record(_record(offset, orjson.dumps(envelope)))


class _Broker:
    """Stands in for the re-drive group's consumer and the producer: records sends and commits."""

    def __init__(self) -> None:
        self.sent: list[int] = []
        self.commits: list[dict[TopicPartition, int]] = []

    async def send(self, _topic: str, _value: bytes, **_: Any) -> asyncio.Future[None]:
        self.sent.append(len(self.sent))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(offsets)


def _run(letters: list[DeadLetter], reason: str | None) -> tuple[RedriveReport, _Broker]:
    broker = _Broker()
    history_of = {
        letter.at: history for history in gather_histories(letters)
        for letter in (*history.letters, *history.copies)
    }  # fmt: skip

    async def run() -> RedriveReport:
        redrive = _Redrive(
            cast(AIOKafkaConsumer, broker), cast(AIOKafkaProducer, broker), reason, history_of
        )
        for letter in letters:
            await redrive.take(letter)
        await redrive.flush()
        return redrive.report

    return asyncio.run(run()), broker


def test_an_unreadable_letter_does_not_hold_the_commit_back() -> None:
    """The letters after it are committed past, so a second run does not send them again."""
    unreadable = DeadLetter.from_record(_record(1, b"not json"))
    report, broker = _run([_letter(0, 3), unreadable, _letter(2, 7)], reason=None)
    assert (sum(report.sent.values()), report.unreadable, report.left_behind) == (2, 1, 0)
    assert broker.commits == [{TopicPartition(DLQ, 0): 3}]


def test_a_letter_the_reason_filter_leaves_out_holds_the_commit_back() -> None:
    report, broker = _run([_letter(0, 3), _letter(1, 5, "side: bad"), _letter(2, 7)], "price")
    assert (sum(report.sent.values()), report.left_behind) == (2, 1)
    assert broker.commits == [{TopicPartition(DLQ, 0): 1}]  # a later run still sees offset 1


def test_a_read_that_never_reaches_the_log_end_is_a_broker_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Silent:
        async def position(self, _tp: TopicPartition) -> int:
            return 0

        async def getmany(self, *_tps: TopicPartition, timeout_ms: int) -> dict[Any, Any]:
            await asyncio.sleep(timeout_ms / 1000)
            return {}

    monkeypatch.setattr(dlq, "READ_TIMEOUT_S", 0.05)
    ends = {TopicPartition(DLQ, 0): 5}
    with pytest.raises(BrokerError, match=DLQ):
        asyncio.run(_read_until(cast(AIOKafkaConsumer, Silent()), ends))


def test_the_printed_report_says_what_the_json_says(capsys: pytest.CaptureFixture[str]) -> None:
    report = RedriveReport(left_behind=1, unreadable=2, already_redriven=3, copies=4)
    report.sent["x-trades"] = 5
    _print_redrive(report)
    out = capsys.readouterr().out
    for said in ("re-drove 5 message(s) to x-trades", "1 dead letter(s) left for a later run",
                 "2 unreadable letter(s) skipped", "3 letter(s) skipped: re-driven before",
                 "4 copy letter(s) skipped"):  # fmt: skip
        assert said in out, out
    as_json = report.as_dict()
    assert (as_json["left_behind"], as_json["unreadable"]) == (1, 2)
    assert (as_json["already_redriven"], as_json["copies"]) == (3, 4)
