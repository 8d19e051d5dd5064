"""Classifier in-process: every outcome stored in one transaction, batch rows win, bad input
dead-lettered."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson

from agents import classifier_agent, ingest_agent
from agents.context import AgentContext
from agents.core.codec import encode
from agents.core.features import feature_date, wallet_features
from agents.core.records import Source, build_feature_set
from agents.store import Connection, fills_for_wallet
from tests.agents.conftest import (
    NOW,
    OTHER,
    WALLET,
    MemorySender,
    count,
    counter,
    encoded,
    messages,
    round_trips,
)
from tests.agents.test_ingest_agent import TOPIC as TRADES

TOPIC = "wallet-features"
AS_OF = int(NOW)


async def feature_set(
    context: AgentContext, db: Connection, wallet: str, source: Source, window: int = 30
) -> bytes:
    await ingest_agent.handle(messages(TRADES, encoded(round_trips(wallet, 6, AS_OF))), context)
    windows, lifetime = wallet_features(fills_for_wallet(db, wallet, AS_OF), AS_OF, (window,))
    record = build_feature_set(wallet, window, AS_OF, source, windows[window], lifetime, NOW)
    return encode(record)


def stored(db: Connection, wallet: str) -> dict[str, Any]:
    cursor = db.execute(
        "SELECT * FROM wallet_classifications WHERE proxy_wallet = ? AND feature_date = ?",
        (wallet, feature_date(AS_OF)),
    )
    names = [column[0] for column in cursor.description]
    return dict(zip(names, cursor.fetchone(), strict=True))


async def test_a_feature_set_is_classified_and_stored_with_its_features(
    context: AgentContext, db: Connection
) -> None:
    value = await feature_set(context, db, WALLET, "on_demand")
    await classifier_agent.handle(messages(TOPIC, [value]), context)
    row = stored(db, WALLET)
    assert row["features_source"] == "on_demand" and row["classified_at"] == NOW
    assert row["status"] in ("followable", "excluded", "unclassified", "pending")
    assert count(db, "wallet_features") == 1
    assert counter(context.metrics.classifications, row["status"]) == 1


async def test_batch_rows_win_over_on_demand_rows_whatever_the_order(
    context: AgentContext, db: Connection
) -> None:
    batch = await feature_set(context, db, WALLET, "batch")
    on_demand = await feature_set(context, db, WALLET, "on_demand")
    await classifier_agent.handle(messages(TOPIC, [batch]), context)
    await classifier_agent.handle(messages(TOPIC, [on_demand]), context)
    assert stored(db, WALLET)["features_source"] == "batch"
    sources = db.execute("SELECT source FROM wallet_features").fetchall()
    assert sources == [("batch",)]


async def test_bad_feature_sets_are_dead_lettered_and_the_good_ones_stored(
    context: AgentContext, sender: MemorySender, db: Connection
) -> None:
    good = await feature_set(context, db, WALLET, "on_demand")
    seven_day = await feature_set(context, db, OTHER, "on_demand", window=7)
    missing = orjson.dumps({k: v for k, v in orjson.loads(good).items() if k != "win_rate"})
    await classifier_agent.handle(messages(TOPIC, [seven_day, good, missing]), context)

    assert count(db, "wallet_classifications") == 1
    letters = sender.to(f"{TOPIC}.dlq")
    assert [letter["offset"] for letter in letters] == [0, 2]
    assert letters[0]["reason"].startswith("window_days: classification needs the 30-day")
    assert letters[1]["reason"].startswith("win_rate:")


async def test_nothing_is_stored_before_the_returned_awaitable_runs(
    context: AgentContext, db: Connection
) -> None:
    value = await feature_set(context, db, WALLET, "on_demand")
    storing = classifier_agent.handle(messages(TOPIC, [value]), context)
    assert count(db, "wallet_classifications") == 0
    await storing
    assert count(db, "wallet_classifications") == 1


async def test_only_on_demand_feature_sets_are_timed_as_discoveries(
    context: AgentContext, db: Connection
) -> None:
    on_demand = await feature_set(context, db, WALLET, "on_demand")
    batch = await feature_set(context, db, OTHER, "batch")
    await classifier_agent.handle(messages(TOPIC, [on_demand, batch]), context)
    committed = context.metrics.registry.get_sample_value(
        "personas_on_demand_hop_seconds_count", {"hop": "committed"}
    )
    assert committed == 1  # a rebuild's FeatureSet is no discovery


async def test_batches_waiting_for_the_writer_are_stored_in_one_transaction(
    context: AgentContext, db: Connection
) -> None:
    first = await feature_set(context, db, WALLET, "on_demand")
    second = await feature_set(context, db, OTHER, "on_demand")
    pending = classifier_agent.Pending()
    storing_first = classifier_agent.handle(messages(TOPIC, [first]), context, pending)
    storing_second = classifier_agent.handle(messages(TOPIC, [second]), context, pending)
    await storing_first  # the consumer awaits them in fetch order
    assert count(db, "wallet_classifications") == 2
    await storing_second  # stored already: no transaction of its own

    def sample(name: str) -> float | None:
        return context.metrics.registry.get_sample_value(name)

    assert sample("personas_classifier_batch_size_count") == 1
    assert sample("personas_classifier_batch_size_sum") == 2
    committed = context.metrics.registry.get_sample_value(
        "personas_on_demand_hop_seconds_count", {"hop": "committed"}
    )
    assert committed == 2


async def test_waiting_batches_share_a_transaction_only_up_to_batch_max(
    context: AgentContext, db: Connection
) -> None:
    wallets = [WALLET, OTHER, "0x" + "c" * 40]
    sets = [await feature_set(context, db, wallet, "on_demand") for wallet in wallets]
    classifier = context.settings.classifier.model_copy(update={"batch_max": 2})
    context = replace(
        context, settings=context.settings.model_copy(update={"classifier": classifier})
    )
    pending = classifier_agent.Pending()
    storing = [classifier_agent.handle(messages(TOPIC, [s]), context, pending) for s in sets]
    await storing[0]
    assert count(db, "wallet_classifications") == 2  # the first two; the third does not fit
    for awaitable in storing[1:]:
        await awaitable
    assert count(db, "wallet_classifications") == 3
    sizes = context.metrics.registry.get_sample_value("personas_classifier_batch_size_sum")
    transactions = context.metrics.registry.get_sample_value("personas_classifier_batch_size_count")
    assert (transactions, sizes) == (2, 3)
