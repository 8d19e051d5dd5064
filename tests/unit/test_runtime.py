"""The runtime's failure contract: what is transient, the dead-letter envelope, retry or crash."""

from __future__ import annotations

import asyncio
import base64
import logging
import sqlite3
from itertools import pairwise
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError

from agents.context import Address, Lineage, dead_letter_envelope, lineage
from agents.core.errors import InvalidMessage, StoreError
from agents.retry import RETRY_FIRST_S, RETRY_MAX_S, Retry, is_transient
from config.settings import Settings
from streams.runtime import EXIT_INFRASTRUCTURE, ProducerSender, Runtime


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (sqlite3.OperationalError("database is locked"), True),
        (sqlite3.OperationalError("database table is locked: trades"), True),
        (sqlite3.OperationalError("database is busy"), True),
        (KafkaConnectionError("no broker"), True),
        (KafkaTimeoutError(), True),
        (NodeNotReadyError("node 1"), True),
        (sqlite3.OperationalError("no such table: trades"), False),
        (sqlite3.IntegrityError("UNIQUE constraint failed"), False),
        (StoreError("schema too new"), False),
        (InvalidMessage("price", "must be < 1"), False),
        (ValueError("locked"), False),  # the word alone does not make an error transient
        (RuntimeError("broker unavailable"), False),
    ],
)
def test_is_transient(error: BaseException, transient: bool) -> None:
    assert is_transient(error) is transient


def _record(value: Any, key: bytes | None = b"k", headers: Any = ()) -> Any:
    return SimpleNamespace(
        value=value, key=key, topic="trades", partition=3, offset=42, headers=headers
    )


def test_envelope_keeps_utf8_bytes_as_text() -> None:
    raw = '{"trade_id": "é", "price": 1.5}'.encode()
    error = InvalidMessage("price", "Input should be less than 1 (got 1.5)")
    envelope = orjson.loads(dead_letter_envelope(_record(raw), error, 1_700_000_000.5))
    assert envelope == {
        "reason": "price: Input should be less than 1 (got 1.5)",
        "error": "InvalidMessage",
        "topic": "trades",
        "partition": 3,
        "offset": 42,
        "failed_at": 1_700_000_000.5,
        "value": raw.decode(),
    }
    assert envelope["value"].encode() == raw


def test_envelope_keeps_non_utf8_bytes_exactly_in_base64() -> None:
    raw = b"\xff\xfe\x00{not json"
    envelope = orjson.loads(dead_letter_envelope(_record(raw), ValueError("x"), 1.0))
    assert "value" not in envelope
    assert base64.b64decode(envelope["value_base64"]) == raw
    assert envelope["error"] == "ValueError"


def test_envelope_of_an_empty_message() -> None:
    envelope = orjson.loads(dead_letter_envelope(_record(None), ValueError("empty"), 1.0))
    assert envelope["value"] == ""


def test_envelope_of_a_redriven_copy_names_its_source_message() -> None:
    lineage = Lineage(Address("trades", 0, 7), 3, Address("trades.dlq", 0, 12))
    record = _record(b"{}", headers=[("trace", b"t1"), *lineage.headers()])
    envelope = orjson.loads(dead_letter_envelope(record, ValueError("x"), 1.0))
    assert (envelope["topic"], envelope["partition"], envelope["offset"]) == ("trades", 0, 7)
    assert envelope["redrives"] == 3
    assert envelope["redriven_letter"] == "trades.dlq:0:12"
    assert envelope["redriven_copy"] == "trades:3:42"
    assert envelope["headers"] == [["trace", base64.b64encode(b"t1").decode()]]


def test_a_lineage_survives_its_headers() -> None:
    sent = Lineage(Address("t-x.y_z", 2, 9), 1, Address("t-x.y_z.dlq", 0, 4))
    assert lineage(_record(b"", headers=sent.headers())) == Lineage(
        Address("trades", 3, 42)
    )  # a lineage of another topic is not this message's
    record = SimpleNamespace(topic="t-x.y_z", partition=1, offset=5, headers=sent.headers())
    assert lineage(record) == sent
    assert Lineage(Address("trades", 0, 1)).headers() == []  # an original carries none


@pytest.mark.parametrize("text", ["trades", "trades:1", "trades:a:1", ":0:1", "trades:0:-1"])
def test_an_address_is_topic_partition_offset(text: str) -> None:
    with pytest.raises(ValueError):
        Address.parse(text)
    assert str(Address.parse("trades.dlq:0:12")) == "trades.dlq:0:12"


def test_the_producer_sender_hands_headers_and_partition_to_faust() -> None:
    calls: list[tuple[Any, ...]] = []

    class Producer:
        async def send(self, *args: Any) -> Any:
            calls.append(args)
            return None

    sender = ProducerSender(Producer())  # type: ignore[arg-type]
    asyncio.run(sender.send("t", b"k", b"v", [("h", b"1")]))
    asyncio.run(sender.send("t", None, b"v"))
    asyncio.run(sender.send("t", b"k", b"v", partition=2))
    # Faust's order: topic, key, value, partition, timestamp, headers.
    assert calls == [
        ("t", b"k", b"v", None, None, [("h", b"1")]),
        ("t", None, b"v", None, None, None),
        ("t", b"k", b"v", 2, None, None),
    ]


class Crashed(Exception):
    """Stands in for os._exit, which would end the test process."""


@pytest.fixture
def runtime(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Runtime:
    sleeps: list[float] = []

    async def no_sleep(delay: float) -> None:
        sleeps.append(delay)

    def exit_(status: int) -> None:
        raise Crashed(status)

    monkeypatch.setattr("streams.runtime.os._exit", exit_)
    monkeypatch.setattr(logging, "shutdown", lambda: None)
    rt = Runtime(settings)
    rt.retry = Retry(rt.metrics.transient_retries, rt.crash, sleep=no_sleep)
    rt.sleeps = sleeps  # type: ignore[attr-defined]
    return rt


def test_retry_retries_transient_errors_with_capped_backoff(runtime: Runtime) -> None:
    failures = [sqlite3.OperationalError("database is locked")] * 10
    calls: list[int] = []

    async def action(value: int) -> int:
        calls.append(value)
        if failures:
            raise failures.pop()
        return value * 2

    assert asyncio.run(runtime.retry("op", action, 21)) == 42
    assert len(calls) == 11
    sleeps = runtime.sleeps  # type: ignore[attr-defined]
    assert sleeps[0] == RETRY_FIRST_S
    assert all(b == min(a * 2, RETRY_MAX_S) for a, b in pairwise(sleeps))
    assert max(sleeps) == RETRY_MAX_S
    retried = runtime.metrics.transient_retries.labels("op")._value.get()
    assert retried == 10


def test_retry_crashes_at_once_on_a_non_transient_error(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    calls = 0

    async def action() -> None:
        nonlocal calls
        calls += 1
        raise sqlite3.OperationalError("no such table: trades")

    with caplog.at_level(logging.CRITICAL, "personas.runtime"), pytest.raises(Crashed) as crash:
        asyncio.run(runtime.retry("ingest", action))
    assert crash.value.args == (EXIT_INFRASTRUCTURE,)
    assert calls == 1
    assert runtime.sleeps == []  # type: ignore[attr-defined]
    assert "ingest failed" in caplog.text and "no such table" in caplog.text
