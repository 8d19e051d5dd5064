"""`personas dlq list|redrive`: grouped by reason; re-driven once, original key and bytes."""

from __future__ import annotations

import asyncio
import base64

import orjson
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from config.settings import Settings
from streams.cli import main
from streams.ops.offsets import log_ranges, reader
from streams.topics import dlq_name, ensure_topics

pytestmark = pytest.mark.slow


def _read_all(bootstrap: str, settings: Settings, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    async def read() -> list[ConsumerRecord[bytes, bytes]]:
        async with reader(bootstrap, settings) as consumer:
            await consumer.topics()  # loads the metadata partitions_for_topic answers from
            tps = [
                TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())
            ]
            ranges = await log_ranges(consumer, tps)
            for tp in tps:
                consumer.seek(tp, ranges[tp].start)
            want = sum(span.end - span.start for span in ranges.values())
            records: list[ConsumerRecord[bytes, bytes]] = []
            async with asyncio.timeout(20):
                while len(records) < want:
                    for batch in (await consumer.getmany(timeout_ms=200)).values():
                        records.extend(batch)
            return records

    return asyncio.run(read())


def _letter(reason: str, value: bytes, offset: int, topic: str) -> bytes:
    envelope: dict[str, object] = {
        "reason": reason, "error": "InvalidMessage", "topic": topic, "partition": 0,
        "offset": offset, "failed_at": 1_700_000_000.0,
    }  # fmt: skip
    try:
        envelope["value"] = value.decode()
    except UnicodeDecodeError:
        envelope["value_base64"] = base64.b64encode(value).decode()
    return orjson.dumps(envelope)


def test_list_and_redrive_once(
    bootstrap: str,
    settings: Settings,
    cli_env: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = settings.topics.trades
    asyncio.run(ensure_topics(bootstrap, settings))
    letters = [
        (
            b"k1",
            _letter("price: Input should be less than 1 (got 1.5)", b'{"price":1.5}', 3, source),
        ),
        (
            b"k2",
            _letter("price: Input should be less than 1 (got 2.0)", b'{"price":2.0}', 7, source),
        ),
        (b"k3", _letter("<json>: not valid JSON (got 'x')", b"\xff\xfe", 9, source)),
    ]

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            for key, value in letters:
                await producer.send_and_wait(dlq_name(source), value, key=key)
        finally:
            await producer.stop()

    asyncio.run(send())

    assert main(["dlq", "list", "--json"]) == 0
    listing = orjson.loads(capsys.readouterr().out)
    assert listing["total"] == 3
    assert [(g["reason"], g["count"], g["sample_offsets"]) for g in listing["groups"]] == [
        ("price: Input should be less than 1", 2, [0, 1]),
        ("<json>: not valid JSON", 1, [2]),
    ]

    def redrive(*args: str) -> dict[str, object]:
        assert main(["dlq", "redrive", "--topic", source, *args, "--json"]) == 0
        return orjson.loads(capsys.readouterr().out)  # type: ignore[no-any-return]

    assert redrive("--reason", "price")["sent"] == {source: 2}
    assert redrive("--reason", "price")["sent"] == {}  # idempotent: committed after sending
    assert redrive()["sent"] == {source: 1}
    assert redrive()["sent"] == {}

    got = {(r.key, r.value) for r in _read_all(bootstrap, settings, source)}
    assert got == {(b"k1", b'{"price":1.5}'), (b"k2", b'{"price":2.0}'), (b"k3", b"\xff\xfe")}
