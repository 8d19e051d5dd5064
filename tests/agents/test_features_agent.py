"""Feature agent in-process: each outcome (published, insufficient, failed, invalid), and the
batch not done before the broker has its FeatureSets and the wallets are recorded."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from agents import features_agent, ingest_agent
from agents.compute.on_demand import OnDemandJob, Outcome, compute_discoveries
from agents.context import AgentContext
from agents.core.codec import encode
from agents.core.records import WalletDiscovered
from agents.features_agent import OnDemandCompute
from agents.store import Connection, open_reader
from config.settings import Settings
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

TOPIC = "wallet-discovered"
BROKEN = "0x" + "c" * 40


@pytest.fixture
def reader(settings: Settings, db: Connection) -> Iterator[Connection]:
    conn = open_reader(settings.database.url)
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def compute(reader: Connection) -> OnDemandCompute:
    """The feature processes' computation, run here; one wallet fails as a bug would."""

    async def run(job: OnDemandJob) -> list[Outcome]:
        outcomes = compute_discoveries(reader, job)
        return [
            Outcome(0, None, "ZeroDivisionError: boom", 0.0) if d.wallet == BROKEN else outcome
            for d, outcome in zip(job.discoveries, outcomes, strict=True)
        ]

    return OnDemandCompute(run, concurrency=4, processes=1)


def discovered(wallet: str, source: str = "test", at: int = int(NOW)) -> bytes:
    return encode(WalletDiscovered(proxy_wallet=wallet, discovered_at=at, source=source))


async def seed(context: AgentContext) -> None:
    trades = round_trips(WALLET, 6, int(NOW)) + round_trips(OTHER, 2, int(NOW))
    await ingest_agent.handle(messages(TRADES, encoded(trades)), context)


async def test_every_outcome_of_a_batch(
    context: AgentContext, sender: MemorySender, db: Connection, compute: OnDemandCompute
) -> None:
    await seed(context)
    batch = messages(
        TOPIC,
        [discovered(WALLET), discovered(OTHER), b'{"proxy_wallet": "nope"}', discovered(BROKEN)],
    )
    await features_agent.handle(batch, context, compute)

    published = sender.to(context.settings.topics.features)
    assert [(f["proxy_wallet"], f["source"], f["window_days"]) for f in published] == [
        (WALLET, "on_demand", 30)
    ]
    assert published[0]["round_trips"] == 6 and published[0]["computed_at"] == NOW
    statuses = dict(db.execute("SELECT proxy_wallet, on_demand_status FROM wallets"))
    assert statuses == {WALLET: "success", OTHER: "insufficient"}
    letters = sender.to(f"{TOPIC}.dlq")
    assert [letter["offset"] for letter in letters] == [2, 3]
    assert letters[0]["reason"].startswith("proxy_wallet:")
    assert letters[1]["error"] == "FeatureComputeError" and BROKEN in letters[1]["reason"]
    metrics = context.metrics.on_demand_features
    outcomes = ("success", "insufficient", "rejected", "error")
    assert [counter(metrics, s) for s in outcomes] == [1, 1, 1, 1]


async def test_the_gate_is_the_one_setting(
    context: AgentContext, sender: MemorySender, compute: OnDemandCompute
) -> None:
    await seed(context)
    assert context.settings.features.min_settled_trades == context.settings.rules.min_settled_trades
    await features_agent.handle(messages(TOPIC, [discovered(OTHER)]), context, compute)
    assert sender.to(context.settings.topics.features) == []  # 2 round trips < the gate of 5


async def test_not_done_until_the_broker_has_the_feature_sets(
    context: AgentContext, sender: MemorySender, db: Connection, compute: OnDemandCompute
) -> None:
    await seed(context)
    sender.hold()
    publishing = asyncio.ensure_future(
        features_agent.handle(messages(TOPIC, [discovered(WALLET)]), context, compute)
    )
    for _ in range(20):
        await asyncio.sleep(0)
    assert len(sender.to(context.settings.topics.features)) == 1  # sent, no receipt yet
    assert not publishing.done()
    assert count(db, "wallets") == 0  # the consumer could not commit: nothing recorded either
    sender.release()
    await publishing
    assert count(db, "wallets") == 1


async def test_a_replayed_discovery_records_the_wallet_once(
    context: AgentContext, db: Connection, compute: OnDemandCompute
) -> None:
    await seed(context)
    batch = messages(TOPIC, [discovered(WALLET, "first"), discovered(WALLET, "again")])
    await features_agent.handle(batch, context, compute)
    await features_agent.handle(batch, context, compute)
    rows = db.execute("SELECT source FROM wallets WHERE proxy_wallet = ?", (WALLET,)).fetchall()
    assert rows == [("first",)]


async def test_a_discovery_from_the_future_is_dead_lettered(
    context: AgentContext, sender: MemorySender, compute: OnDemandCompute
) -> None:
    await seed(context)
    in_2099 = 4_070_908_800
    batch = messages(TOPIC, [discovered(WALLET, at=in_2099), discovered(WALLET, at=int(NOW) + 60)])
    await features_agent.handle(batch, context, compute)
    letters = sender.to(f"{TOPIC}.dlq")
    assert [letter["offset"] for letter in letters] == [0]
    assert letters[0]["reason"].startswith(
        "discovered_at: 2099-01-01T00:00:00+00:00 is in the future"
    )
    assert len(sender.to(context.settings.topics.features)) == 1  # a minute ahead is clock skew


def hop_count(context: AgentContext, hop: str) -> float:
    """Samples of one hop of the latency breakdown (`personas_on_demand_hop_seconds`)."""
    name, labels = "personas_on_demand_hop_seconds_count", {"hop": hop}
    return context.metrics.registry.get_sample_value(name, labels) or 0.0


async def test_each_computed_discovery_is_timed_once_per_hop(
    context: AgentContext, compute: OnDemandCompute
) -> None:
    await seed(context)
    batch = messages(TOPIC, [discovered(WALLET), discovered(OTHER), b"{}"])
    await features_agent.handle(batch, context, compute)
    # published and insufficient alike were queued and computed; the invalid one never was
    assert [hop_count(context, hop) for hop in ("queued", "computed", "published")] == [2, 2, 2]


async def test_a_job_is_sent_without_waiting_for_the_rest_of_its_batch(
    context: AgentContext, sender: MemorySender, reader: Connection
) -> None:
    await seed(context)
    await ingest_agent.handle(messages(TRADES, encoded(round_trips(BROKEN, 6, int(NOW)))), context)
    second_job = asyncio.Event()

    async def run(job: OnDemandJob) -> list[Outcome]:
        if job.discoveries[0].wallet == BROKEN:
            await second_job.wait()
        return compute_discoveries(reader, job)

    one_per_job = OnDemandCompute(run, concurrency=2, processes=1)
    batch = messages(TOPIC, [discovered(WALLET), discovered(BROKEN)])
    handling = asyncio.ensure_future(features_agent.handle(batch, context, one_per_job))
    for _ in range(20):
        await asyncio.sleep(0)
    sent = [f["proxy_wallet"] for f in sender.to(context.settings.topics.features)]
    assert sent == [WALLET] and not handling.done()
    second_job.set()
    await handling
    sent = [f["proxy_wallet"] for f in sender.to(context.settings.topics.features)]
    assert sent == [WALLET, BROKEN]
