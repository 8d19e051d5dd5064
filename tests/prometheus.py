"""Debian's Prometheus for the tests: find promtool and the server, run a server of our own.

`make tools` installs the package (config/install-tools.sh). Without it the tests that
need it skip, saying so, except under CI=true, where a missing tool is a failure: CI must run
them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.broker import free_port

__all__ = ["ALERTS", "PrometheusServer", "metric_names", "require", "rules_with_for"]

ROOT = Path(__file__).resolve().parents[1]
ALERTS = ROOT / "config" / "prometheus" / "alerts.yml"


def require(tool: str) -> str:
    """The path of `tool` (promtool, prometheus); skip the test without it, fail it under CI."""
    path = shutil.which(tool)
    if path:
        return path
    why = f"{tool} is not installed: `make tools` installs Debian's prometheus package"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{why} (CI=true: these tests must run)")
    pytest.skip(why)


def rules_with_for(source: Path, target: Path, durations: Mapping[str, str]) -> dict[str, str]:
    """Copy the rules file `source` to `target` with the `for:` of the alerts named in
    `durations` replaced; every expression stays as shipped. Returns each alert's expression."""
    doc = yaml.safe_load(source.read_text())
    exprs = {}
    for group in doc["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") in durations:
                rule["for"] = durations[rule["alert"]]
            exprs[rule.get("alert") or rule.get("record")] = rule["expr"]
    missing = set(durations) - set(exprs)
    assert not missing, f"no such alerts in {source}: {missing}"
    target.write_text(yaml.safe_dump(doc, sort_keys=False))
    return exprs


# Words of PromQL that are not metric names where `metric_names` looks for them.
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "inf", "nan", "by", "without", "on", "ignoring"}
    | {"group_left", "group_right"}
)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not its functions, labels or keywords)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word, before = match.group(), text[: match.start()]
        if before and (before[-1].isdigit() or before[-1] == "."):
            continue  # 5m, 1e3
        if text[match.end() :].lstrip().startswith("(") or word.lower() in _KEYWORDS:
            continue
        names.add(word)
    return names


class PrometheusServer:
    """A Prometheus server of the test's own: temp config and storage, a free loopback port."""

    def __init__(self, directory: Path, config: dict[str, Any]) -> None:
        self.binary = require("prometheus")
        self.directory = directory
        self.config = config
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = directory / "prometheus.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> PrometheusServer:
        config_path = self.directory / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                [
                    self.binary, f"--config.file={config_path}",
                    f"--storage.tsdb.path={self.directory / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=log_file, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            assert self.process.poll() is None, self.log()[-3000:]
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.HTTPError, OSError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"prometheus not ready after {timeout}s: {self.log()[-2000:]}")
            time.sleep(0.2)

    def api(self, path: str, **params: str) -> dict[str, Any]:
        """GET /api/v1/<path>; the decoded answer (errors answer JSON too: 400 for bad PromQL)."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=10) as resp:
                body = resp.read()
        except urllib.error.HTTPError as exc:
            body = exc.read()
        answer: dict[str, Any] = json.loads(body)
        return answer

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The result of an instant query; fails the test on an error."""
        answer = self.api("query", query=expr)
        assert answer["status"] == "success", f"{expr}: {answer}"
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def alerts(self) -> list[dict[str, Any]]:
        """The active (pending or firing) alerts."""
        answer = self.api("alerts")
        assert answer["status"] == "success", answer
        alerts: list[dict[str, Any]] = answer["data"]["alerts"]
        return alerts

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
