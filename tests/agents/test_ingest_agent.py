"""Ingest in-process: good trades stored once, bad ones dead-lettered, nothing before commit."""

from __future__ import annotations

import orjson
import pytest
from aiokafka.errors import KafkaConnectionError

from agents import ingest_agent
from agents.context import AgentContext
from agents.store import Connection
from tests.agents.conftest import (
    NOW,
    WALLET,
    Fatal,
    MemorySender,
    count,
    counter,
    encoded,
    messages,
    round_trips,
)

TOPIC = "trades"


async def test_good_trades_are_stored_and_bad_ones_dead_lettered_with_the_field(
    context: AgentContext, sender: MemorySender, db: Connection
) -> None:
    good = encoded(round_trips(WALLET, 2, int(NOW)))
    bad_price = orjson.loads(good[0] or b"") | {"trade_id": "bad", "price": 1.5}
    batch = messages(TOPIC, [good[0], b"{not json", orjson.dumps(bad_price), *good[1:], None])

    await ingest_agent.handle(batch, context)

    assert count(db, "trades") == 4
    letters = sender.to(f"{TOPIC}.dlq")
    assert [letter["offset"] for letter in letters] == [1, 2, 6]
    assert letters[0]["reason"].startswith("<json>: not valid JSON")
    assert letters[1]["reason"].startswith("price:") and letters[1]["topic"] == TOPIC
    assert letters[2]["reason"].startswith("<value>: empty message")
    assert letters[1]["failed_at"] == NOW
    metrics = context.metrics.trades_ingested
    assert (counter(metrics, "stored"), counter(metrics, "rejected")) == (4, 3)


async def test_a_redelivered_batch_stores_nothing_twice(
    context: AgentContext, db: Connection
) -> None:
    batch = messages(TOPIC, encoded(round_trips(WALLET, 3, int(NOW))))
    await ingest_agent.handle(batch, context)
    await ingest_agent.handle(batch, context)
    assert count(db, "trades") == 6
    assert counter(context.metrics.trades_ingested, "duplicate") == 6


async def test_nothing_is_stored_before_the_returned_awaitable_runs(
    context: AgentContext, db: Connection
) -> None:
    storing = ingest_agent.handle(
        messages(TOPIC, encoded(round_trips(WALLET, 1, int(NOW)))), context
    )
    assert count(db, "trades") == 0  # decoded only: the consumer may not commit yet
    await storing
    assert count(db, "trades") == 2


async def test_a_dead_letter_is_resent_after_a_broker_error(
    context: AgentContext, sender: MemorySender
) -> None:
    sender.failures.append(KafkaConnectionError("broker away"))
    await ingest_agent.handle(messages(TOPIC, [b"[]"]), context)
    assert len(sender.to(f"{TOPIC}.dlq")) == 1
    assert counter(context.metrics.transient_retries, "dead-letter") == 1


async def test_a_store_that_refuses_the_write_is_fatal_and_sends_no_dead_letter(
    context: AgentContext, sender: MemorySender, db: Connection
) -> None:
    db.execute("DROP TABLE trades")
    batch = messages(TOPIC, [*encoded(round_trips(WALLET, 1, int(NOW))), b"{"])
    with pytest.raises(Fatal, match="ingest"):
        await ingest_agent.handle(batch, context)
    assert sender.sent == []
