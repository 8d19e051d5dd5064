"""Rebuild agent in-process: every active wallet's 30-day row published `source=batch`."""

from __future__ import annotations

import pytest
from aiokafka.errors import KafkaConnectionError

from agents import ingest_agent, rebuild_agent
from agents.context import AgentContext
from agents.core.features import feature_date
from agents.store import Connection
from agents.store.runs import rebuild_runs
from tests.agents.conftest import (
    NOW,
    OTHER,
    WALLET,
    MemorySender,
    counter,
    encoded,
    messages,
    round_trips,
)
from tests.agents.test_ingest_agent import TOPIC as TRADES

TODAY = feature_date(int(NOW))


async def ingest_two_wallets(context: AgentContext) -> None:
    trades = round_trips(WALLET, 6, int(NOW)) + round_trips(OTHER, 2, int(NOW))
    await ingest_agent.handle(messages(TRADES, encoded(trades)), context)


async def test_the_daily_rebuild_publishes_each_wallet_once_as_batch(
    context: AgentContext, sender: MemorySender
) -> None:
    await ingest_two_wallets(context)

    result = await rebuild_agent.daily_rebuild(context)

    published = sender.to(context.settings.topics.features)
    assert sorted(f["proxy_wallet"] for f in published) == [WALLET, OTHER]
    assert {(f["source"], f["window_days"], f["as_of"]) for f in published} == {
        ("batch", 30, int(NOW))
    }
    assert result.published == 2 and result.rows_written == 2 * 3  # 7, 30 and 90 days
    assert context.metrics.rebuild_wallets._value.get() == 2


async def test_the_daily_rebuild_marks_its_day_published_after_publishing(
    context: AgentContext, db: Connection
) -> None:
    await ingest_two_wallets(context)

    await rebuild_agent.daily_rebuild(context)

    assert rebuild_runs(db, TODAY, TODAY)[TODAY].published_at == NOW


async def test_a_publish_error_that_retrying_will_not_fix_is_raised_not_fatal(
    context: AgentContext, sender: MemorySender, db: Connection
) -> None:
    # The agents' retry would stop the worker (the context's raises `Fatal`, not a ValueError);
    # the rebuild's raises to its caller, which records the failure and keeps consuming.
    await ingest_two_wallets(context)
    sender.failures.append(ValueError("message too large"))

    with pytest.raises(ValueError, match="message too large"):
        await rebuild_agent.daily_rebuild(context)

    assert rebuild_runs(db, TODAY, TODAY)[TODAY].published_at is None


async def test_a_transient_publish_error_is_retried(
    context: AgentContext, sender: MemorySender
) -> None:
    await ingest_two_wallets(context)
    sender.failures.append(KafkaConnectionError("broker away"))

    result = await rebuild_agent.daily_rebuild(context)

    assert result.published == 2
    assert counter(context.metrics.transient_retries, "rebuild-publish") == 1
