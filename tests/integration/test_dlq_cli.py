"""`personas dlq list|redrive|show`: by reason and source message; re-driven once, with lineage."""

from __future__ import annotations

import asyncio
import base64
import urllib.request
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from agents.context import LETTER_HEADER, ORIGIN_HEADER, REDRIVES_HEADER
from config.settings import Settings, dlq_name
from streams.cli import main
from streams.ops.dlq import list_dead_letters
from streams.ops.offsets import log_ranges, reader
from streams.topics import ensure_topics
from tests.conftest import wait_until
from tests.integration.worker import WorkerProcess

pytestmark = pytest.mark.slow

Headers = list[tuple[str, bytes]]


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


def _letter(reason: str, value: bytes, offset: int, topic: str, **more: object) -> bytes:
    envelope: dict[str, object] = {
        "reason": reason, "error": "InvalidMessage", "topic": topic, "partition": 0,
        "offset": offset, "failed_at": 1_700_000_000.0, **more,
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

    _send(bootstrap, dlq_name(source), letters)

    assert main(["dlq", "list", "--json"]) == 0
    listing = orjson.loads(capsys.readouterr().out)
    assert (listing["total"], listing["pending"]) == (3, 3)
    groups = [
        (g["reason"], g["count"], [(x["source"], x["letter"]) for x in g["letters"]])
        for g in listing["groups"]
    ]
    # By source message (the README's promise), with the letter's own place beside it.
    assert groups == [
        ("price: Input should be less than 1", 2,
         [(f"{source}:0:3", f"{source}.dlq:0:0"), (f"{source}:0:7", f"{source}.dlq:0:1")]),
        ("<json>: not valid JSON", 1, [(f"{source}:0:9", f"{source}.dlq:0:2")]),
    ]  # fmt: skip
    first = listing["groups"][0]["letters"][0]
    assert first["reason"] == "price: Input should be less than 1 (got 1.5)"
    assert first["value_preview"] == '{"price":1.5}'
    assert main(["dlq", "list"]) == 0
    text = capsys.readouterr().out
    assert f"{source}:0:3" in text and "got 1.5" in text and '{"price":1.5}' in text

    def redrive(*args: str) -> dict[str, object]:
        assert main(["dlq", "redrive", "--topic", source, *args, "--json"]) == 0
        return orjson.loads(capsys.readouterr().out)  # type: ignore[no-any-return]

    assert redrive("--reason", "price")["sent"] == {source: 2}
    assert redrive("--reason", "price")["sent"] == {}  # idempotent: committed after sending
    assert redrive()["sent"] == {source: 1}
    assert redrive()["sent"] == {}

    got = {(r.key, r.value) for r in _read_all(bootstrap, settings, source)}
    assert got == {(b"k1", b'{"price":1.5}'), (b"k2", b'{"price":2.0}'), (b"k3", b"\xff\xfe")}

    # Sent back, and not dead-lettered since: listed once, as re-driven, pending none.
    assert main(["dlq", "list", "--json"]) == 0
    listing = orjson.loads(capsys.readouterr().out)
    assert (listing["total"], listing["pending"]) == (3, 0)
    statuses = {(x["status"], x["redrives"]) for g in listing["groups"] for x in g["letters"]}
    assert statuses == {("redriven", 1)}


def _send(
    bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]], headers: Headers | None = None
) -> None:
    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            for key, value in messages:
                await producer.send_and_wait(topic, value, key=key, headers=headers)
        finally:
            await producer.stop()

    asyncio.run(send())


def test_a_letter_redriven_before_is_not_sent_again(
    bootstrap: str, settings: Settings, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """The first letter, its letter after one re-drive, and a copy of that: one message sent,
    from the newest letter, one re-drive later; with no commit of the re-drive group to go by."""
    source = settings.topics.trades
    asyncio.run(ensure_topics(bootstrap, settings))
    reason = "price: Input should be less than 1 (got 1.5)"
    value = b'{"price":1.5}'
    again = _letter(reason, value, 3, source, redrives=1, redriven_letter=f"{source}.dlq:0:0",
                    redriven_copy=f"{source}:0:11")  # fmt: skip
    _send(bootstrap, dlq_name(source), [(b"k", _letter(reason, value, 3, source)), (b"k", again),
                                        (b"k", again)])  # fmt: skip

    assert main(["dlq", "list", "--json"]) == 0
    listing = orjson.loads(capsys.readouterr().out)
    assert listing["total"] == 1
    [entry] = listing["groups"][0]["letters"]
    assert (entry["source"], entry["letter"], entry["first_letter"], entry["redrives"]) == (
        f"{source}:0:3", f"{source}.dlq:0:1", f"{source}.dlq:0:0", 1,
    )  # fmt: skip

    assert main(["dlq", "redrive", "--json"]) == 0
    report = orjson.loads(capsys.readouterr().out)
    assert (report["sent"], report["already_redriven"], report["copies"]) == ({source: 1}, 1, 1)
    [copy] = _read_all(bootstrap, settings, source)
    assert (copy.key, copy.value) == (b"k", value)
    assert dict(copy.headers) == {
        ORIGIN_HEADER: f"{source}:0:3".encode(),
        REDRIVES_HEADER: b"2",
        LETTER_HEADER: f"{source}.dlq:0:1".encode(),
    }


def test_an_unreadable_letter_does_not_make_later_letters_go_again(
    bootstrap: str, settings: Settings, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each letter is sent once even with an unreadable letter before it in the partition."""
    source = settings.topics.trades
    asyncio.run(ensure_topics(bootstrap, settings))
    reason = "price: Input should be less than 1 (got 1.5)"
    unreadable = (b"u", b"not a dead-letter envelope")
    _send(
        bootstrap, dlq_name(source), [unreadable, (b"k1", _letter(reason, b'{"n":1}', 3, source))]
    )

    def redrive() -> dict[str, object]:
        assert main(["dlq", "redrive", "--json"]) == 0
        return orjson.loads(capsys.readouterr().out)  # type: ignore[no-any-return]

    first = redrive()
    assert (first["sent"], first["unreadable"], first["left_behind"]) == ({source: 1}, 1, 0)
    again = redrive()
    assert (again["sent"], again["unreadable"]) == ({}, 0)  # committed past both
    _send(bootstrap, dlq_name(source), [(b"k2", _letter(reason, b'{"n":2}', 5, source))])
    assert redrive()["sent"] == {source: 1}
    got = sorted(r.key or b"" for r in _read_all(bootstrap, settings, source))
    assert got == [b"k1", b"k2"]


def test_a_topic_that_is_not_ours_is_bad_usage(
    bootstrap: str, settings: Settings, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    source = settings.topics.trades
    typo = source[:-1]  # `trade`
    for argv in (["list", "--topic", typo], ["redrive", "--topic", typo],
                 ["list", "--topic", f"{typo}.dlq"], ["show", f"{typo}:0:1"]):  # fmt: skip
        assert main(["dlq", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert f"{typo!r}" in err or f"{typo}.dlq" in err, err
        assert source in err and settings.topics.discovered in err, err
    assert main(["dlq", "show", "trades"]) == 2  # not topic:partition:offset
    assert main(["dlq", "show"]) == 2
    assert main(["dlq", "list", f"{source}:0:1"]) == 2
    asyncio.run(ensure_topics(bootstrap, settings))
    assert main(["dlq", "show", f"{source}:0:1"]) == 1  # well formed, but no such letter
    assert "no dead letter" in capsys.readouterr().err


def _listing(bootstrap: str, settings: Settings) -> list[Any]:
    groups, _ = asyncio.run(list_dead_letters(bootstrap, settings))
    return [history for group in groups for history in group.letters]


def test_a_still_bad_message_redriven_twice_is_one_letter_redriven_twice(
    bootstrap: str,
    settings: Settings,
    isolated_env: dict[str, str],
    cli_env: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Through a real worker: each re-drive fails again, and the list stays at one entry."""
    source = settings.topics.trades
    asyncio.run(ensure_topics(bootstrap, settings))
    trade = {"trade_id": "t1", "proxy_wallet": "0x" + "a" * 40, "condition_id": "m",
             "side": "BUY", "size": 1.0, "price": 1.5, "timestamp": 1_700_000_000}  # fmt: skip
    bad = orjson.dumps(trade)
    with WorkerProcess(isolated_env, bootstrap, tmp_path / "worker.log") as worker:
        _send(bootstrap, source, [(b"wallet-a", bad)], headers=[("trace", b"t-1")])

        def redrives() -> tuple[int, ...]:
            """The re-drive count of each listed message whose newest letter is pending."""
            return tuple(h.redrives for h in _listing(bootstrap, settings) if h.status == "pending")

        def redriven(times: int) -> bool:
            return redrives() == (times,)

        wait_until(partial(redriven, 0), 30, "the first dead letter")
        for times in (1, 2):
            assert main(["dlq", "redrive"]) == 0
            assert capsys.readouterr().out.startswith(f"re-drove 1 message(s) to {source}")
            wait_until(partial(redriven, times), 30, f"the letter after re-drive {times}")

        assert main(["dlq", "list", "--json"]) == 0
        listing = orjson.loads(capsys.readouterr().out)
        assert (listing["total"], listing["pending"]) == (1, 1)
        [entry] = listing["groups"][0]["letters"]
        assert (entry["redrives"], entry["status"], entry["letter"]) == (
            2,
            "pending",
            f"{source}.dlq:0:2",
        )
        origin = entry["source"]

        assert main(["dlq", "show", origin]) == 0
        shown = capsys.readouterr().out
        assert bad.decode() in shown  # the whole message, not a preview
        assert "price: Input should be less than 1 (got 1.5)" in shown
        assert "re-driven 2×" in shown and f"{source}.dlq:0:0" in shown

        assert main(["dlq", "show", f"{source}.dlq:0:1", "--json"]) == 0
        letter = orjson.loads(capsys.readouterr().out)
        assert letter["source"] == origin and letter["redrives"] == 2
        envelope = letter["envelope"]
        assert (envelope["redrives"], envelope["redriven_letter"]) == (1, f"{source}.dlq:0:0")
        assert f"{envelope['topic']}:{envelope['partition']}:{envelope['offset']}" == origin
        assert [h["letter"] for h in letter["history"]] == [f"{source}.dlq:0:{n}" for n in range(3)]

        # Counted once: the re-driven copies that failed again are the same bad message.
        url = f"http://127.0.0.1:{worker.port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            metrics = response.read().decode()
        assert f'personas_dead_letters_total{{topic="{source}"}} 1.0' in metrics

    # The copies went back with the message's own headers and the lineage.
    copies = [
        r for r in _read_all(bootstrap, settings, source) if r.headers != (("trace", b"t-1"),)
    ]
    assert [dict(r.headers).get(REDRIVES_HEADER) for r in copies] == [b"1", b"2"]
    assert all(dict(r.headers)["trace"] == b"t-1" and r.value == bad for r in copies)
