"""docker-compose.yml and the Dockerfile agree with config/default.toml (no Docker engine)."""

from __future__ import annotations

import re
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
    assert set(compose["services"]) == {"kafka", "topics", "worker"}
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
