"""The shipped alert rules: promtool checks them and runs their unit tests (alerts_test.yml), every
alert is tested firing and not firing, and every metric they read is one the worker exports."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from config.settings import Settings
from streams.health import Health
from streams.lag_monitor import record_lag
from streams.metrics import Metrics
from streams.offset_guard import BrokerGuard
from streams.ops.lag import GroupLag, PartitionLag
from tests.prometheus import ALERTS, metric_names, require

RULES_TEST = ALERTS.with_name("alerts_test.yml")


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require("promtool"), *args], cwd=ALERTS.parent, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip


def test_promtool_checks_the_rules() -> None:
    done = _promtool("check", "rules", ALERTS.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in done.stdout + done.stderr


def test_the_rules_pass_their_promtool_unit_tests() -> None:
    done = _promtool("test", "rules", RULES_TEST.name)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "SUCCESS" in output and "FAILED" not in output, output


def test_every_alert_has_severity_summary_and_description() -> None:
    for rule in _rules():
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    cases = [
        case
        for test in yaml.safe_load(RULES_TEST.read_text())["tests"]
        for case in test["alert_rule_test"]
    ]
    for rule in _rules():
        mine = [case for case in cases if case["alertname"] == rule["alert"]]
        assert any(case["exp_alerts"] for case in mine), f"{rule['alert']} never fires"
        assert any(not case["exp_alerts"] for case in mine), f"{rule['alert']} always fires"


def test_the_alerts_read_only_metrics_the_worker_exports(settings: Settings) -> None:
    metrics, health = Metrics(), Health()
    BrokerGuard("127.0.0.1:9", settings, metrics, health)
    metrics.expect_dead_letters(settings.topics.partitions())
    part = PartitionLag("trades", 0, 3, 0, 5, 2, 1.5, "WARN")
    record_lag([GroupLag("g", "Stable", 1, "WARN", (part,), 0.0)], metrics, health)
    exported = {
        sample.name
        for family in text_string_to_metric_families(generate_latest(metrics.registry).decode())
        for sample in family.samples
    }
    read = {name for rule in _rules() for name in metric_names(rule["expr"])}
    assert read and read <= exported, read - exported


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("max by (job, group) (personas_group_status) >= 2", {"personas_group_status"}),
        ('sum by (job) (rate(x_total{status="error"}[5m])) > 0', {"x_total"}),
        ("time() - max by (job) (a > 0 or b) > 26 * 3600", {"a", "b"}),
        ("histogram_quantile(0.95, sum by (le) (rate(h_bucket[$__rate_interval])))", {"h_bucket"}),
        ("sum(rate(s_sum[1m])) / sum(rate(s_count[1m])) offset 5m", {"s_sum", "s_count"}),
    ],
)  # fmt: skip
def test_metric_names_of_an_expression(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names
