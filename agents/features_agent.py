"""Feature agent: `wallet-discovered` → 30-day features on demand → `wallet-features` (SPEC §7).

Discoveries are taken in batches and computed with bounded concurrency. A batch is acknowledged
only after every FeatureSet of it is delivered to the broker and the wallets are recorded, so an
offset is never committed past a discovery that has not finished.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import faust
from faust.types import EventT

from agents.features import wallet_features
from streams.codec import decode, encode
from streams.errors import InvalidMessage
from streams.records import FeatureSet, WalletDiscovered, build_feature_set
from streams.runtime import Runtime, acknowledge, event_batches

if TYPE_CHECKING:
    from streams.app import AppTopics

__all__ = ["register"]

log = logging.getLogger("personas.features")


def register(app: faust.App, runtime: Runtime, topics: AppTopics) -> None:
    config, metrics = runtime.settings.features, runtime.metrics
    window_days = config.window_days
    limit = asyncio.Semaphore(config.concurrency)

    async def compute(discovery: WalletDiscovered) -> FeatureSet | None:
        async with limit:
            store = await runtime.store()
            started = time.perf_counter()
            as_of = discovery.discovered_at
            wallet = discovery.proxy_wallet
            fills = await runtime.retry("features-read", store.fills, wallet, as_of)
            windows, lifetime = wallet_features(fills, as_of, (window_days,))
            metrics.on_demand_duration.observe(time.perf_counter() - started)
        window = windows[window_days]
        if window.round_trips < config.min_settled_trades:
            log.warning(
                "insufficient data for %s: %d settled trades in %d days (< %d); "
                "the daily rebuild will pick it up",
                wallet, window.round_trips, window_days, config.min_settled_trades,
            )  # fmt: skip
            return None
        return build_feature_set(
            wallet, window_days, as_of, "on_demand", window, lifetime, time.time()
        )

    @app.agent(topics.discovered, name="features")
    async def features(stream: faust.StreamT[bytes]) -> None:
        async for events in event_batches(stream, config.batch_max, config.batch_within_s):
            accepted: list[tuple[EventT[bytes], WalletDiscovered]] = []
            rejected: list[tuple[EventT[bytes], BaseException]] = []
            for event in events:
                try:
                    accepted.append((event, decode(WalletDiscovered, event.value)))
                except InvalidMessage as exc:
                    rejected.append((event, exc))
            outcomes = await asyncio.gather(
                *(compute(discovery) for _, discovery in accepted), return_exceptions=True
            )
            computed = []
            for (event, discovery), outcome in zip(accepted, outcomes, strict=True):
                if isinstance(outcome, BaseException):  # a bug for this wallet: not the others
                    rejected.append((event, outcome))
                else:
                    computed.append((discovery, outcome))
            deliveries = [
                await topics.features.send(key=fs.proxy_wallet.encode(), value=encode(fs))
                for _, fs in computed
                if fs is not None
            ]
            await asyncio.gather(*deliveries)
            now = time.time()
            rows = [
                (d.proxy_wallet, d.discovered_at, d.source, now,
                 "success" if fs is not None else "insufficient", now)
                for d, fs in computed
            ]  # fmt: skip
            store = await runtime.store()
            await runtime.retry("features-record", store.record_wallets, rows)
            await runtime.dead_letter_all(rejected)
            succeeded = len(deliveries)
            metrics.on_demand_features.labels("success").inc(succeeded)
            metrics.on_demand_features.labels("insufficient").inc(len(computed) - succeeded)
            metrics.on_demand_features.labels("error").inc(len(rejected))
            await acknowledge(stream, events)
            runtime.health.progressed("features")
