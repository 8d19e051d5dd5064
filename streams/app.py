"""Builds the Faust app: topics by role, the agents, and the /metrics and /health pages."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import faust
from faust.exceptions import ConsumerNotStarted
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from config.settings import Settings
from streams.runtime import Runtime

__all__ = ["AppTopics", "build_app"]


@dataclass(frozen=True)
class AppTopics:
    """The names of the topics the agents read and write (with the configured prefix)."""

    trades: str
    discovered: str
    features: str

    @classmethod
    def from_settings(cls, settings: Settings) -> AppTopics:
        names = settings.topics
        return cls(names.trades, names.discovered, names.features)


def build_app(settings: Settings, bootstrap: str, *, rebuild: bool = True) -> faust.App:
    """A Faust app wired to `bootstrap`, with every agent registered."""
    from agents import classifier_agent, features_agent, ingest_agent

    broker = settings.broker
    app = faust.App(
        settings.worker.app_id,
        broker=[f"kafka://{host}" for host in bootstrap.split(",")],
        broker_client_id=broker.client_id,
        broker_session_timeout=broker.session_timeout_s,
        broker_heartbeat_interval=broker.heartbeat_interval_s,
        broker_rebalance_timeout=broker.rebalance_timeout_s,
        broker_request_timeout=broker.request_timeout_s,
        # "latest" is unreliable on the embedded broker (wrong end offsets): start at the beginning.
        consumer_auto_offset_reset="earliest",
        producer_linger=0.005,
        # Topics are created up front with their partition counts; state lives in SQLite.
        topic_allow_declare=False,
        store="memory://",
        web_enabled=True,
        web_host=settings.worker.web_host,
        web_port=settings.worker.web_port,
        web_stats_enabled=False,
        web_graph_enabled=False,
        web_tables_enabled=False,
        worker_redirect_stdouts=False,
        autodiscover=False,
    )
    runtime = Runtime(settings, producer=app.producer)
    topics = AppTopics.from_settings(settings)
    for agent in (ingest_agent, features_agent, classifier_agent):
        agent.register(app, runtime, topics, bootstrap)
    if rebuild and settings.rebuild.enabled:
        from agents import rebuild_agent

        rebuild_agent.register(app, runtime, topics)
    _register_pages(app, runtime)
    _register_lag_monitor(app, runtime, bootstrap)
    _register_broker_guard(app, runtime, bootstrap)
    app.personas_runtime = runtime  # type: ignore[attr-defined]
    return app


def _register_lag_monitor(app: faust.App, runtime: Runtime, bootstrap: str) -> None:
    from streams.lag_monitor import monitor_lag

    interval = runtime.settings.worker.lag_check_interval_s

    @app.task
    async def lag_monitor() -> None:
        await monitor_lag(bootstrap, runtime.settings, runtime.metrics, runtime.health, interval)


def _register_broker_guard(app: faust.App, runtime: Runtime, bootstrap: str) -> None:
    from streams.offset_guard import BrokerGuard

    guard = BrokerGuard(bootstrap, runtime.settings, runtime.metrics, runtime.health)

    @app.task
    async def broker_guard() -> None:
        await guard.run()


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
