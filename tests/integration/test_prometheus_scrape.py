"""A real Prometheus scrapes a running worker and evaluates the shipped alert rules: the lag alert
goes pending, firing, then resolves; every dashboard query parses and reads exported metrics.

The worker keeps running and being scraped while its feature agent falls behind: the test holds
the SQLite write lock, so the agent cannot record its batch (it retries a locked database
forever) and commits nothing, while discoveries 15 minutes old wait on its topic. The rules are
the shipped ones; only the `for:` of the two alerts watched is shortened.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from agents.core.codec import encode
from agents.core.records import WalletDiscovered
from agents.data.generate import DEFAULT_END, GenerateOptions
from agents.store import Connection
from config.settings import Settings, load_settings
from streams.topics import stage_group
from tests.conftest import TEST_GROUP_ENV, wait_until
from tests.integration.checks import count, prepare_scenario
from tests.integration.kafka import publish
from tests.integration.worker import WorkerProcess
from tests.prometheus import ALERTS, PrometheusServer, metric_names, require, rules_with_for

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "config" / "grafana" / "dashboards" / "personas.json"
LAG_ALERT, STATUS_ALERT = "PersonasConsumerLagHigh", "PersonasConsumerGroupUnhealthy"
# Short enough to watch, long enough that `pending` is seen between two polls.
FOR = {LAG_ALERT: "3s", STATUS_ALERT: "2s"}
AGE_S = 900  # the waiting discoveries' age: over the shipped 300 s threshold
# What Grafana puts in for its variables when the test sends a panel's query itself.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$job": ".+"}


@dataclass
class Stack:
    settings: Settings
    worker: WorkerProcess
    prometheus: PrometheusServer
    conn: Connection
    exprs: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="module")
def stack(bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A worker that processed a small data set, scraped every second by a Prometheus server
    (rules evaluated every second) of the test's own."""
    require("prometheus")
    tmp = tmp_path_factory.mktemp("scrape")
    tag = uuid.uuid4().hex[:10]
    env = {
        "PERSONAS_DB": str(tmp / "personas.db"),
        "PERSONAS_TOPICS__PREFIX": f'"t{tag}-"',
        "PERSONAS_WORKER__APP_ID": f'"personas-{tag}"',
        **TEST_GROUP_ENV,
        "PERSONAS_WORKER__LAG_CHECK_INTERVAL_S": "0.5",
        # A locked database is retried soon after the lock is gone.
        "PERSONAS_DATABASE__BUSY_TIMEOUT_MS": "100",
    }
    settings = load_settings(env=env)
    options = GenerateOptions(wallets=12, days=90, seed=11, end=DEFAULT_END)
    scenario = prepare_scenario(bootstrap, settings, options, "scrape")
    rules = tmp / "alerts.yml"
    exprs = rules_with_for(ALERTS, rules, FOR)
    worker = WorkerProcess(env, bootstrap, tmp / "worker.log").start().wait_ready()
    prometheus = PrometheusServer(tmp, {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [{
            "job_name": "personas",
            "static_configs": [{"targets": [f"127.0.0.1:{worker.port}"]}],
        }],
    })  # fmt: skip
    try:
        prometheus.start()
        conn, trades = scenario.conn, len(scenario.trades)
        publish(bootstrap, settings, settings.topics.trades, scenario.trades)
        wait_until(lambda: count(conn, "SELECT COUNT(*) FROM trades") == trades, 60, "trades")
        publish(bootstrap, settings, settings.topics.discovered, scenario.discoveries)
        done = "SELECT COUNT(*) FROM wallets WHERE on_demand_status IS NOT NULL"
        wallets = len(scenario.discoveries)
        wait_until(lambda: count(conn, done) == wallets, 90, "every discovery")
        # Classified too: every series the dashboard reads is on /metrics.
        success = count(conn, "SELECT COUNT(*) FROM wallets WHERE on_demand_status = 'success'")
        assert success > 0
        classified = "SELECT COUNT(*) FROM wallet_classifications"
        wait_until(lambda: count(conn, classified) == success, 30, "classifications")
        yield Stack(settings, worker, prometheus, scenario.conn, exprs)
    finally:
        prometheus.stop()
        if worker.process is not None and worker.process.poll() is None:
            worker.stop()
        scenario.conn.close()


def _discoveries_aged(bootstrap: str, settings: Settings, count: int, age_s: float) -> None:
    """`count` discoveries of new wallets whose records are `age_s` old (their lag in seconds)."""
    stamp = int((time.time() - age_s) * 1000)

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
        await producer.start()
        try:
            sends = []
            for n in range(count):
                wallet = f"0x{0xA6E0000 + n:040x}"
                record = WalletDiscovered(
                    proxy_wallet=wallet, discovered_at=DEFAULT_END, source="aged"
                )
                sends.append(
                    await producer.send(
                        settings.topics.discovered, encode(record), key=wallet.encode(),
                        timestamp_ms=stamp,
                    )
                )  # fmt: skip
            await asyncio.gather(*sends)
        finally:
            await producer.stop()

    asyncio.run(send())


@dataclass
class AlertWatch:
    """The states one alert goes through, polled from /api/v1/alerts: pending, firing, resolved
    (gone after it was active), each with the time it was first seen."""

    name: str
    labels: dict[str, str]
    seen: list[tuple[float, str, float | None]] = field(default_factory=list)
    state: str = "inactive"

    def observe(self, alerts: list[dict[str, Any]], now: float) -> str:
        """Note the alert's state in `alerts` (seen at `now`); return it."""
        mine = [
            alert for alert in alerts
            if alert["labels"].get("alertname") == self.name
            and all(alert["labels"].get(k) == v for k, v in self.labels.items())
        ]  # fmt: skip
        state = mine[0]["state"] if mine else "inactive"
        if state != self.state:
            value = float(mine[0]["value"]) if mine else None
            self.seen.append((now, "resolved" if state == "inactive" else state, value))
            self.state = state
        return self.seen[-1][1] if self.seen else "inactive"


def _watch(
    prometheus: PrometheusServer, watches: list[AlertWatch], until: str, timeout: float
) -> None:
    """Poll the alerts every 0.2 s until the first watch reaches `until`."""
    deadline = time.monotonic() + timeout
    while True:
        now = time.time()
        alerts = prometheus.alerts()
        states = [watch.observe(alerts, now) for watch in watches]
        if states[0] == until:
            return
        if time.monotonic() > deadline:
            seen = [(watch.name, watch.seen) for watch in watches]
            pytest.fail(f"{watches[0].name} not {until} after {timeout:.0f}s: {seen}")
        time.sleep(0.2)


def _report(watches: list[AlertWatch], start: float, lock_released: float) -> str:
    def stamp(at: float) -> str:
        wall = datetime.fromtimestamp(at, UTC).strftime("%H:%M:%S.%f")[:-3]
        return f"{wall}Z  t+{at - start:5.1f}s"

    lines = [
        f"{stamp(start)}  lag made: discoveries {AGE_S}s old published, SQLite write lock held"
    ]
    events = [(at, f"{watch.name:<32} {state:<8}" + ("" if value is None else f" value {value:g}"))
              for watch in watches for at, state, value in watch.seen]  # fmt: skip
    events.append((lock_released, "lock released: the feature agent records and commits"))
    lines += [f"{stamp(at)}  {text}" for at, text in sorted(events)]
    return "\n".join(lines)


def test_lag_alert_goes_pending_then_firing_then_resolves(
    stack: Stack, bootstrap: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings, prometheus = stack.settings, stack.prometheus
    group, topic = stage_group(settings.worker.app_id, "features"), settings.topics.discovered
    status = f'personas_consumer_group_status{{job="personas", group="{group}"}}'

    def status_is_ok() -> bool:
        return [r["value"][1] for r in prometheus.query(status)] == ["0"]

    wait_until(status_is_ok, 30, f"Prometheus to scrape {group} OK")
    assert prometheus.alerts() == []

    lag = AlertWatch(LAG_ALERT, {"group": group, "topic": topic, "job": "personas"})
    unhealthy = AlertWatch(STATUS_ALERT, {"group": group, "job": "personas"})
    lock = sqlite3.connect(settings.database.path, timeout=10, isolation_level=None)
    start = time.time()
    try:
        lock.execute("BEGIN EXCLUSIVE")
        _discoveries_aged(bootstrap, settings, count=6, age_s=AGE_S)
        _watch(prometheus, [lag, unhealthy], "firing", 60)
        # Held until the other alert (STALL: the offset does not move) fired too.
        _watch(prometheus, [unhealthy, lag], "firing", 30)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    released = time.time()
    _watch(prometheus, [lag, unhealthy], "resolved", 60)
    _watch(prometheus, [unhealthy, lag], "resolved", 30)

    with capsys.disabled():
        print(f"\nalert states seen through {prometheus.url}/api/v1/alerts:")
        print(_report([lag, unhealthy], start, released))

    assert [state for _, state, _ in lag.seen] == ["pending", "firing", "resolved"]
    assert [state for _, state, _ in unhealthy.seen] == ["pending", "firing", "resolved"]
    assert (lag.seen[1][2] or 0) >= AGE_S - 5  # the alert's value: the lag in seconds
    assert unhealthy.seen[1][2] == 2  # STALL: a live member, its offset not moving
    lag_now = f'max(personas_consumer_lag_seconds{{group="{group}", topic="{topic}"}})'
    assert [r["value"][1] for r in prometheus.query(lag_now)] == ["0"]
    # Every shipped rule evaluates without error on the worker's real series.
    rules = [
        rule
        for rule_group in prometheus.api("rules")["data"]["groups"]
        for rule in rule_group["rules"]
    ]
    assert {rule["name"] for rule in rules} == set(stack.exprs)
    assert [(rule["name"], rule["health"], rule.get("lastError") or "") for rule in rules] == [
        (rule["name"], "ok", "") for rule in rules
    ]


def _scraped_names(port: int) -> set[str]:
    """Every metric and sample name on the worker's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        body = response.read().decode()
    return {
        name
        for family in text_string_to_metric_families(body)
        for name in (family.name, *(sample.name for sample in family.samples))
    }


def _dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target, annotation and variable of the dashboard."""
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [
        (f"panel {panel['title']!r}", target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]
    queries += [
        (f"annotation {item['name']!r}", item["expr"])
        for item in dashboard["annotations"]["list"]
        if "expr" in item
    ]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            # Grafana's label_values(metric, label): its metric is a PromQL selector.
            inner = variable["query"]["query"]
            assert inner.startswith("label_values(") and inner.endswith(")"), inner
            selector = inner.removeprefix("label_values(").removesuffix(")").rpartition(",")[0]
            queries.append((f"variable {variable['name']!r}", selector))
    return queries


def test_every_dashboard_query_parses_and_reads_exported_metrics(stack: Stack) -> None:
    exported = _scraped_names(stack.worker.port)
    # ALERTS is made by Prometheus from the shipped rules: the annotation marks their firing.
    made_by_prometheus = {"ALERTS"}
    queries = _dashboard_queries()
    assert len(queries) >= 15
    empty = []
    for where, expr in queries:
        sent = expr
        for variable, value in GRAFANA_VARIABLES.items():
            sent = sent.replace(variable, value)
        assert "$" not in sent, f"{where}: a variable the test does not fill in: {expr}"
        answer = stack.prometheus.api("query", query=sent)
        assert answer["status"] == "success", f"{where}: {expr}: {answer.get('error')}"
        unknown = metric_names(sent) - exported - made_by_prometheus
        assert metric_names(sent) and not unknown, f"{where}: not on /metrics: {unknown}"
        if not answer["data"]["result"]:
            empty.append(where)
    # Data for everything the worker has done; none only where nothing has happened yet.
    allowed_empty = {"panel 'Since the last successful rebuild'", "annotation 'Alerts'"}
    assert set(empty) <= allowed_empty, empty
