"""Rebuild agent in-process: every active wallet's 30-day row published `source=batch`."""

from __future__ import annotations

from agents import ingest_agent, rebuild_agent
from agents.context import AgentContext
from tests.agents.conftest import NOW, OTHER, WALLET, MemorySender, encoded, messages, round_trips
from tests.agents.test_ingest_agent import TOPIC as TRADES


async def test_the_daily_rebuild_publishes_each_wallet_once_as_batch(
    context: AgentContext, sender: MemorySender
) -> None:
    trades = round_trips(WALLET, 6, int(NOW)) + round_trips(OTHER, 2, int(NOW))
    await ingest_agent.handle(messages(TRADES, encoded(trades)), context)

    result = await rebuild_agent.daily_rebuild(context)

    published = sender.to(context.settings.topics.features)
    assert sorted(f["proxy_wallet"] for f in published) == [WALLET, OTHER]
    assert {(f["source"], f["window_days"], f["as_of"]) for f in published} == {
        ("batch", 30, int(NOW))
    }
    assert result.published == 2 and result.rows_written == 2 * 3  # 7, 30 and 90 days
    assert context.metrics.rebuild_wallets._value.get() == 2
