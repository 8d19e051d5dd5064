"""A re-driven copy that fails again is dead-lettered as its source message, one re-drive later.

The re-drive (`streams.ops.dlq.redrive`) sends a letter back with headers naming the source
message, the re-drive count and the letter; the handler → `AgentContext.dead_letter` path must
carry them into the new letter, and count the source message once.
"""

from __future__ import annotations

from typing import cast

import orjson
import pytest

from agents import classifier_agent, ingest_agent
from agents.context import LETTER_HEADER, ORIGIN_HEADER, REDRIVES_HEADER, AgentContext
from agents.store import Connection
from tests.agents.conftest import MemorySender, count, counter, messages

TRADES = "trades"
FEATURES = "wallet-features"
BAD_PRICE = orjson.dumps({"trade_id": "t", "proxy_wallet": "0x" + "a" * 40, "condition_id": "m",
                          "side": "BUY", "size": 1.0, "price": 1.5, "timestamp": 1})  # fmt: skip


def redriven(origin: str, redrives: int, letter: str) -> tuple[tuple[str, bytes], ...]:
    """The headers a re-drive puts on the copy it sends."""
    return ((ORIGIN_HEADER, origin.encode()), (REDRIVES_HEADER, str(redrives).encode()),
            (LETTER_HEADER, letter.encode()))  # fmt: skip


async def test_a_first_failure_is_its_own_source_and_is_counted(
    context: AgentContext, sender: MemorySender
) -> None:
    await ingest_agent.handle(messages(TRADES, [BAD_PRICE]), context)
    [letter] = sender.to(f"{TRADES}.dlq")
    assert (letter["topic"], letter["partition"], letter["offset"]) == (TRADES, 0, 0)
    assert "redrives" not in letter and "headers" not in letter
    assert sender.headers == [[]]
    assert counter(context.metrics.dead_letters, TRADES) == 1


async def test_a_redriven_copy_that_fails_again_names_its_source_and_the_next_count(
    context: AgentContext, sender: MemorySender, db: Connection
) -> None:
    headers = redriven("trades:3:41", 2, "trades.dlq:0:7")
    await ingest_agent.handle(messages(TRADES, [BAD_PRICE], headers), context)

    [letter] = sender.to(f"{TRADES}.dlq")
    assert (letter["topic"], letter["partition"], letter["offset"]) == (TRADES, 3, 41)
    assert letter["redrives"] == 2
    assert letter["redriven_letter"] == "trades.dlq:0:7"
    assert letter["redriven_copy"] == "trades:0:0"  # where this copy was consumed
    assert letter["reason"].startswith("price:")
    assert orjson.loads(letter["value"]) == orjson.loads(BAD_PRICE)
    # The letter itself carries the lineage too, so a re-drive of it counts on from 2.
    [sent_headers] = sender.headers
    assert (ORIGIN_HEADER, b"trades:3:41") in sent_headers
    assert (REDRIVES_HEADER, b"2") in sent_headers
    # The same bad message, counted when it was first dead-lettered: not again.
    assert counter(context.metrics.dead_letters, TRADES) == 0
    assert count(db, "trades") == 0


async def test_a_good_redriven_copy_is_stored_and_sends_no_letter(
    context: AgentContext, sender: MemorySender, db: Connection
) -> None:
    good = orjson.loads(BAD_PRICE) | {"price": 0.5}
    headers = redriven("trades:3:41", 1, "trades.dlq:0:7")
    await ingest_agent.handle(messages(TRADES, [orjson.dumps(good)], headers), context)
    assert sender.sent == []
    assert count(db, "trades") == 1


async def test_the_classifier_carries_the_lineage_too(
    context: AgentContext, sender: MemorySender
) -> None:
    headers = redriven("wallet-features:0:5", 1, "wallet-features.dlq:0:2")
    await classifier_agent.handle(messages(FEATURES, [b"{}"], headers), context)
    [letter] = sender.to(f"{FEATURES}.dlq")
    assert (letter["topic"], letter["offset"], letter["redrives"]) == (FEATURES, 5, 1)


@pytest.mark.parametrize(
    "headers",
    [
        redriven("wallet-features:3:41", 1, "x.dlq:0:1"),  # another topic: not a copy of ours
        redriven("trades:3", 1, "trades.dlq:0:1"),  # not topic:partition:offset
        redriven("trades:3:41", 0, "trades.dlq:0:1"),  # a count below one
        ((ORIGIN_HEADER, b"trades:3:41"),),  # no count
        ((REDRIVES_HEADER, b"x"), (ORIGIN_HEADER, b"trades:3:41")),
        # Kafka allows a header without a value, which aiokafka delivers as None.
        ((REDRIVES_HEADER, b"1"), (ORIGIN_HEADER, cast(bytes, None))),
    ],
)
async def test_headers_that_are_not_a_lineage_leave_the_message_an_original(
    context: AgentContext, sender: MemorySender, headers: tuple[tuple[str, bytes], ...]
) -> None:
    await ingest_agent.handle(messages(TRADES, [BAD_PRICE], headers), context)
    [letter] = sender.to(f"{TRADES}.dlq")
    assert (letter["topic"], letter["partition"], letter["offset"]) == (TRADES, 0, 0)
    assert "redrives" not in letter
    assert counter(context.metrics.dead_letters, TRADES) == 1


async def test_the_source_messages_own_headers_are_kept_for_the_redrive(
    context: AgentContext, sender: MemorySender
) -> None:
    own = (("trace-id", b"\x00\x01"), ("producer", b"api"))
    await ingest_agent.handle(messages(TRADES, [BAD_PRICE], own), context)
    [letter] = sender.to(f"{TRADES}.dlq")
    assert letter["headers"] == [["trace-id", "AAE="], ["producer", "YXBp"]]
    assert sender.headers == [[]]  # the letter's own headers are the lineage only
