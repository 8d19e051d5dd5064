"""docker-compose.yml and the Dockerfile agree with config/default.toml (no Docker engine)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from config.settings import load_settings
from streams.topics import topic_specs

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


def test_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"kafka", "topics", "worker", "prometheus", "grafana"}
    assert compose["services"]["kafka"]["image"].startswith("apache/kafka:")
    assert compose["services"]["topics"]["image"] == compose["services"]["kafka"]["image"]


def test_kafka_is_single_node_kraft(compose: dict[str, Any]) -> None:
    env = compose["services"]["kafka"]["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"


def test_topics_match_the_config(compose: dict[str, Any]) -> None:
    script = "\n".join(compose["services"]["topics"]["command"])
    created = dict(re.findall(r"^\s*create (\S+) (\d+)\s*$", script, re.MULTILINE))
    settings = load_settings(env={})
    assert {name: int(count) for name, count in created.items()} == {
        spec.name: spec.partitions for spec in topic_specs(settings)
    }
    assert settings.topics.replication_factor == 1


def test_worker_env_ports_and_volume(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    env = worker["environment"]
    kafka_env = compose["services"]["kafka"]["environment"]
    assert f"PLAINTEXT://{env['PERSONAS_BROKER']}" in kafka_env["KAFKA_ADVERTISED_LISTENERS"]
    settings = load_settings(env={k: str(v) for k, v in env.items()})
    assert settings.broker.bootstrap == ["kafka:9092"]
    assert settings.worker.web_host == "0.0.0.0"
    assert settings.worker.web_port == load_settings(env={}).worker.web_port
    assert f"{settings.worker.web_port}:{settings.worker.web_port}" in worker["ports"]
    volume, _, mount = worker["volumes"][0].partition(":")
    assert volume in compose["volumes"]
    assert Path(env["PERSONAS_DB"]).parent == Path(mount)
    assert worker["command"] == ["personas", "run"]
    assert worker["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    assert str(settings.worker.web_port) in " ".join(worker["healthcheck"]["test"])


def test_dockerfile_builds_the_worker() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.MULTILINE)
    assert "pip install ." in text
    assert 'CMD ["personas", "run"]' in text
    for package in ("config", "agents", "streams"):
        assert f"COPY {package} ./{package}" in text
    port = load_settings(env={}).worker.web_port
    assert f"EXPOSE {port}" in text


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """A service's bind mounts of repository files, host path (relative) → container path; each
    file or directory must exist in the repository."""
    mounts = {}
    for volume in service["volumes"]:
        source, _, rest = volume.partition(":")
        if not source.startswith("./"):
            continue  # a named volume
        target, _, mode = rest.partition(":")
        assert mode == "ro", volume
        assert (ROOT / source).exists(), f"{source} is mounted but not in the repository"
        mounts[source.removeprefix("./")] = target
    return mounts


def _named_volumes(service: dict[str, Any]) -> set[str]:
    return {v.partition(":")[0] for v in service["volumes"] if not v.startswith((".", "/"))}


def test_prometheus_scrapes_the_worker_and_loads_the_shipped_alerts(
    compose: dict[str, Any],
) -> None:
    service = compose["services"]["prometheus"]
    mounts = _mounts(service)
    assert set(mounts) == {"config/prometheus/prometheus.yml", "config/prometheus/alerts.yml"}
    assert f"--config.file={mounts['config/prometheus/prometheus.yml']}" in service["command"]
    config = yaml.safe_load((ROOT / "config/prometheus/prometheus.yml").read_text())
    assert config["rule_files"] == [mounts["config/prometheus/alerts.yml"]]
    [job] = config["scrape_configs"]
    port = load_settings(env={}).worker.web_port
    assert job["static_configs"] == [{"targets": [f"worker:{port}"]}]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert "worker" in service["depends_on"]
    assert "9090:9090" in service["ports"]
    storage = next(arg for arg in service["command"] if arg.startswith("--storage.tsdb.path="))
    assert f"prometheus-data:{storage.partition('=')[2]}" in service["volumes"]
    assert _named_volumes(service) <= set(compose["volumes"])


def test_grafana_provisions_the_datasource_and_the_dashboard(compose: dict[str, Any]) -> None:
    service = compose["services"]["grafana"]
    mounts = _mounts(service)
    assert mounts["config/grafana/provisioning"] == "/etc/grafana/provisioning"
    dashboards = mounts["config/grafana/dashboards"]
    provisioning = ROOT / "config/grafana/provisioning"
    [datasources] = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())[
        "datasources"
    ]
    assert datasources["type"] == "prometheus"
    assert datasources["url"] == "http://prometheus:9090"  # the prometheus service
    [provider] = yaml.safe_load((provisioning / "dashboards/personas.yml").read_text())["providers"]
    assert provider["type"] == "file" and provider["options"]["path"] == dashboards
    home = service["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{dashboards}/personas.json"
    assert json.loads((ROOT / "config/grafana/dashboards/personas.json").read_text())["panels"]
    assert "prometheus" in service["depends_on"]
    assert "3000:3000" in service["ports"]
    assert _named_volumes(service) <= set(compose["volumes"])


def test_docker_compose_accepts_the_file() -> None:
    """`config -q` validates the file against the Compose schema (no engine needed)."""
    if shutil.which("docker-compose"):
        command = ["docker-compose", "config", "-q"]
    elif (
        shutil.which("docker")
        and subprocess.run(
            ["docker", "compose", "version"], capture_output=True, check=False
        ).returncode
        == 0
    ):
        command = ["docker", "compose", "config", "-q"]
    else:
        pytest.skip("neither docker-compose nor `docker compose`: apt-get install docker-compose")
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
