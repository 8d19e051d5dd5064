"""Builds the Faust app: a consumer per agent, the daily rebuild, /metrics and /health."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC
from functools import partial
from typing import Any

import faust
from faust.exceptions import ConsumerNotStarted
from faust.web import Request, Response, View
from mode import Service, ServiceT
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from agents import classifier_agent, features_agent, ingest_agent, rebuild_jobs_agent
from agents.compute.on_demand import OnDemandJob, Outcome
from agents.context import worker_name
from agents.features_agent import OnDemandCompute
from agents.rebuild_agent import cron_expression
from config.settings import BatchSettings, Settings
from streams.consumer import register_consumer
from streams.dealing import job_weights
from streams.runtime import Runtime
from streams.topics import stage_topics

__all__ = ["App", "build_app", "freeze_startup_heap"]

log = logging.getLogger("personas.app")


class App(faust.App):
    """Faust's app, starting the agents' own services with its own.

    Faust starts an `@app.task` only once its consumer has joined the app's group (about half
    the session timeout on the embedded broker), and the agents' consumers then joined their
    groups: two joins one after the other before /health could say 200. Started right after the
    app's producer instead (handlers send), and side by side, every group is joined at once.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._agents = _SideBySide()

    def start_with(self, service: ServiceT) -> None:
        """Start `service` with the app's own services, after its producer, and stop it before."""
        self._agents.services.append(service)

    def on_init_dependencies(self) -> Iterable[ServiceT]:
        services = list(super().on_init_dependencies())
        after_producer = services.index(self.producer) + 1
        return [*services[:after_producer], self._agents, *services[after_producer:]]


class _SideBySide(Service):
    """Services started side by side, in the background: a consumer's start waits for its group
    join, and the rest of the app (its web server: /health) need not wait for it."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.services: list[ServiceT] = []

    async def on_start(self) -> None:
        for service in self.services:
            service.beacon.reattach(self.beacon)
        self.add_future(self._start_all())

    async def _start_all(self) -> None:
        await asyncio.gather(*(service.maybe_start() for service in self.services))

    async def on_stop(self) -> None:
        await asyncio.gather(*(service.stop() for service in self.services))


def build_app(settings: Settings, bootstrap: str, *, rebuild: bool = True) -> App:
    """A Faust app wired to `bootstrap`, with every agent registered."""
    broker = settings.broker
    app = App(
        settings.worker.app_id,
        broker=[f"kafka://{host}" for host in bootstrap.split(",")],
        broker_client_id=broker.client_id,
        broker_session_timeout=broker.session_timeout_s,
        broker_heartbeat_interval=broker.heartbeat_interval_s,
        broker_rebalance_timeout=broker.rebalance_timeout_s,
        broker_request_timeout=broker.request_timeout_s,
        # Faust's own consumer reads no topic (each agent has its own, `streams.consumer`): it
        # joins the `<app_id>` group to elect the leader that runs the daily rebuild.
        # No linger: a FeatureSet goes out at once; under load, messages queue behind the request
        # in flight and go out together anyway, in batches of up to this many bytes.
        producer_linger=0.0,
        producer_max_batch_size=broker.producer_batch_bytes,
        # Topics are created up front with their partition counts; state lives in SQLite.
        topic_allow_declare=False,
        store="memory://",
        # Faust keeps a directory per app (by default `<app_id>-data/` in the working directory):
        # beside the database, with the rest of the worker's files.
        datadir=settings.data_dir / f"{settings.worker.app_id}-data",
        web_enabled=True,
        # web_host only names the URL; web_bind is the interface listened on (default: all).
        web_bind=settings.worker.web_host,
        web_host=settings.worker.web_host,
        web_port=settings.worker.web_port,
        web_stats_enabled=False,
        web_graph_enabled=False,
        web_tables_enabled=False,
        worker_redirect_stdouts=False,
        autodiscover=False,
    )
    runtime = Runtime(settings, producer=app.producer)
    _register_warm_start(app, runtime)
    _register_agents(app, runtime, bootstrap)
    if rebuild and settings.rebuild.enabled:
        _register_daily_rebuild(app, runtime, bootstrap)
    _register_pages(app, runtime)
    _register_lag_monitor(app, runtime, bootstrap)
    _register_broker_guard(app, runtime, bootstrap)
    app.personas_runtime = runtime  # type: ignore[attr-defined]
    return app


class _Running(Service):
    """A coroutine run with the agents' services, from the app's start on."""

    def __init__(self, name: str, run: Callable[[], Awaitable[None]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.name, self._run = name, run

    @property
    def shortlabel(self) -> str:
        return self.name

    @Service.task
    async def _running(self) -> None:
        await self._run()


STORE, FEATURE_PROCESSES = "store", "feature processes"


def freeze_startup_heap() -> int:
    """Leave every object alive now out of the cyclic garbage collector; return how many.

    A started worker holds some 100,000 long-lived objects (modules, Faust, aiokafka, pydantic
    schemas), and each full collection walked them all with everything else: pauses of the event
    loop of 70–110 ms every few thousand discoveries, the top of the latency distribution. Frozen,
    they are never scanned again; what is made afterwards is collected as before.
    """
    gc.collect()  # garbage of the startup is freed, not frozen
    gc.freeze()
    return gc.get_freeze_count()


def _register_warm_start(app: App, runtime: Runtime) -> None:
    """Open the store and start the feature processes with the worker, not on first use.

    /health says 200 only once they are ready (and the consumers joined), so the first discovery
    a healthy worker gets does not wait for processes to start.
    """
    runtime.health.starting(STORE)
    runtime.health.starting(FEATURE_PROCESSES)

    async def warm_start() -> None:
        await runtime.context()
        runtime.health.ready(STORE)
        await runtime.feature_pool()
        log.info("started: %d objects left out of garbage collection", freeze_startup_heap())
        runtime.health.ready(FEATURE_PROCESSES)

    app.start_with(_Running("WarmStart", warm_start))


def _register_agents(app: App, runtime: Runtime, bootstrap: str) -> None:
    """One consumer per agent, each in its own group, calling the agent's handler."""
    settings = runtime.settings
    reads, features = stage_topics(settings), settings.features

    async def compute_in_processes(job: OnDemandJob) -> list[Outcome]:
        pool = await runtime.feature_pool()
        # A database busy past its timeout is retried; any other read error stops the worker.
        return await runtime.retry("features-read", pool.compute, job)

    compute = OnDemandCompute(compute_in_processes, features.concurrency, features.process_count)
    register_consumer(
        app, runtime, ingest_agent.STAGE, reads[ingest_agent.STAGE], bootstrap, ingest_agent.handle,
        settings.ingest, max_partition_fetch_bytes=ingest_agent.MAX_PARTITION_FETCH_BYTES,
    )  # fmt: skip
    register_consumer(
        app, runtime, features_agent.STAGE, reads[features_agent.STAGE], bootstrap,
        partial(features_agent.handle, compute=compute), features, fetch_hop="fetched",
    )  # fmt: skip
    register_consumer(
        app, runtime, classifier_agent.STAGE, reads[classifier_agent.STAGE], bootstrap,
        partial(classifier_agent.handle, pending=classifier_agent.Pending()), settings.classifier,
        fetch_hop="classifier_fetched",
    )  # fmt: skip
    # Jobs of the daily rebuild: a batch is one job per local process, computed side by side.
    jobs = BatchSettings(batch_max=settings.rebuild.worker_count, batch_within_s=0.25)
    register_consumer(
        app, runtime, rebuild_jobs_agent.STAGE, reads[rebuild_jobs_agent.STAGE], bootstrap,
        rebuild_jobs_agent.handle, jobs,
    )  # fmt: skip


def _register_daily_rebuild(app: faust.App, runtime: Runtime, bootstrap: str) -> None:
    """The rebuild daily at `rebuild.at` UTC, started by the leader of the `<app_id>` group only:
    it publishes the run's jobs, which every worker's rebuild consumer computes. The worker that
    finishes the run sets `personas_rebuild_last_success_timestamp_seconds`, unless a wallet
    failed (the day is then not recorded, and the overdue alert fires unless a later run does).
    """

    @app.crontab(cron_expression(runtime.settings.rebuild.at), timezone=UTC, on_leader=True)
    async def daily_rebuild() -> None:
        try:
            context = await runtime.context()
            settings = runtime.settings
            weights = await job_weights(bootstrap, settings)
            now = context.clock()
            await rebuild_jobs_agent.start_run(
                settings, context.sender, int(now), now, worker_name(),
                weights=weights,
            )  # fmt: skip
        except Exception as exc:
            # A failed rebuild must not stop ingest and classification; the next run redoes it.
            runtime.health.problem("rebuild", f"last daily rebuild could not start: {exc!r}")
            log.exception("daily rebuild could not start")
            return
        runtime.health.clear("rebuild")
        runtime.health.progressed("rebuild")


def _register_lag_monitor(app: App, runtime: Runtime, bootstrap: str) -> None:
    """Started with the agents: /health reports lag and a lost broker as soon as it says 200."""
    from streams.lag_monitor import monitor_lag

    interval = runtime.settings.worker.lag_check_interval_s

    async def lag_monitor() -> None:
        await monitor_lag(bootstrap, runtime.settings, runtime.metrics, runtime.health, interval)

    app.start_with(_Running("LagMonitor", lag_monitor))


def _register_broker_guard(app: App, runtime: Runtime, bootstrap: str) -> None:
    from streams.offset_guard import BrokerGuard

    guard = BrokerGuard(bootstrap, runtime.settings, runtime.metrics, runtime.health)
    app.start_with(_Running("BrokerGuard", guard.run))


def _register_pages(app: faust.App, runtime: Runtime) -> None:
    started = time.time()

    @app.page("/metrics")
    class MetricsView(View):
        async def get(self, request: Request) -> Response:
            body = generate_latest(runtime.metrics.registry)
            return self.bytes(body, content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/health")
    class HealthView(View):
        async def get(self, request: Request) -> Response:
            report: dict[str, Any] = runtime.health.report()
            report["uptime_s"] = round(time.time() - started, 1)
            # The daily rebuild runs on the group's leader only (crontab on_leader=True).
            try:
                report["leader"] = app.is_leader()
            except ConsumerNotStarted:  # asked while starting: not (yet) the leader
                report["leader"] = False
            return self.json(report, status=200 if report["healthy"] else 503)
