"""docker-compose.yml and the Dockerfile agree with config/default.toml (no Docker engine)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from config.settings import load_settings
from streams.topics import topic_specs

ROOT = Path(__file__).resolve().parents[2]
WORKERS = ("worker-1", "worker-2")
#: Directories the apache/kafka image creates and chowns to its user, appuser (its
#: docker/jvm/Dockerfile: `mkdir -p /var/lib/kafka/data …; chown appuser:root -R /var/lib/kafka`).
#: A fresh named volume takes the ownership of the image's directory it is mounted on; mounted on
#: a path the image lacks, it is root's, and the broker cannot write its log.
KAFKA_IMAGE_DIRS_OF_APPUSER = ("/var/lib/kafka/data",)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


def workers(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run `personas run`."""
    return {
        name: service
        for name, service in compose["services"].items()
        if service.get("command") == ["personas", "run"]
    }


def test_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {
        "kafka", "topics", "postgres", *WORKERS, "prometheus", "grafana"
    }  # fmt: skip
    assert set(workers(compose)) == set(WORKERS)
    assert compose["services"]["kafka"]["image"].startswith("apache/kafka:")
    assert compose["services"]["topics"]["image"] == compose["services"]["kafka"]["image"]
    assert compose["services"]["postgres"]["image"] == "postgres:15"


def test_kafka_is_single_node_kraft(compose: dict[str, Any]) -> None:
    env = compose["services"]["kafka"]["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"


def _volume_mounts(service: dict[str, Any]) -> dict[PurePosixPath, str]:
    """A service's named-volume mounts, container path → volume."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, _, rest = volume.partition(":")
        if not source.startswith((".", "/")):
            mounts[PurePosixPath(rest.partition(":")[0])] = source
    return mounts


def test_kafka_keeps_its_log_on_a_volume_its_user_can_write(compose: dict[str, Any]) -> None:
    """Topics and committed offsets survive a recreated container: every log dir is on a named
    volume (the image's default, /tmp/kraft-combined-logs, is on none), mounted where the image
    has a directory of its user's."""
    kafka = compose["services"]["kafka"]
    mounts = _volume_mounts(kafka)
    assert set(mounts.values()) <= set(compose["volumes"])
    log_dirs = [PurePosixPath(d) for d in kafka["environment"]["KAFKA_LOG_DIRS"].split(",")]
    assert log_dirs
    for log_dir in log_dirs:
        assert log_dir.is_absolute()
        on = [mount for mount in mounts if log_dir == mount or mount in log_dir.parents]
        assert on, f"{log_dir} is on no volume of the kafka service"
        assert str(on[0]) in KAFKA_IMAGE_DIRS_OF_APPUSER, f"{on[0]} may not be appuser's"
    metadata = kafka["environment"].get("KAFKA_METADATA_LOG_DIR")
    assert metadata is None or PurePosixPath(metadata) in log_dirs  # default: the first log dir


def test_postgres_is_healthchecked_and_keeps_its_data(compose: dict[str, Any]) -> None:
    postgres = compose["services"]["postgres"]
    env = postgres["environment"]
    check = postgres["healthcheck"]["test"]
    command = " ".join(check[1:]) if check[0] in ("CMD", "CMD-SHELL") else ""
    assert command.startswith("pg_isready"), check
    # over TCP, as the workers connect (a socket-only check passes during the first-start init)
    assert "-h 127.0.0.1" in command or "-h localhost" in command
    assert f"-U {env['POSTGRES_USER']}" in command and f"-d {env['POSTGRES_DB']}" in command
    mounts = _volume_mounts(postgres)
    assert mounts.get(PurePosixPath("/var/lib/postgresql/data")) in compose["volumes"]


def test_topics_match_the_config(compose: dict[str, Any]) -> None:
    script = "\n".join(compose["services"]["topics"]["command"])
    created = dict(re.findall(r"^\s*create (\S+) (\d+)\s*$", script, re.MULTILINE))
    settings = load_settings(env={})
    assert {name: int(count) for name, count in created.items()} == {
        spec.name: spec.partitions for spec in topic_specs(settings)
    }
    assert settings.topics.replication_factor == 1


def test_workers_share_kafka_and_the_postgres_database(compose: dict[str, Any]) -> None:
    kafka_env = compose["services"]["kafka"]["environment"]
    postgres = compose["services"]["postgres"]
    host_ports = set()
    for name, worker in workers(compose).items():
        env = worker["environment"]
        assert env == workers(compose)[WORKERS[0]]["environment"], f"{name}: another config"
        assert f"PLAINTEXT://{env['PERSONAS_BROKER']}" in kafka_env["KAFKA_ADVERTISED_LISTENERS"]
        database = urlsplit(env["PERSONAS_DB"])
        assert database.scheme == "postgresql"
        assert database.hostname == "postgres" and database.hostname in compose["services"]
        assert database.port == 5432  # the server's port inside the network, not the host's
        assert database.username == postgres["environment"]["POSTGRES_USER"]
        assert database.password == postgres["environment"]["POSTGRES_PASSWORD"]
        assert database.path == f"/{postgres['environment']['POSTGRES_DB']}"
        assert worker["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert worker["depends_on"]["topics"]["condition"] == "service_completed_successfully"
        settings = load_settings(env={k: str(v) for k, v in env.items()})
        assert settings.broker.bootstrap == ["kafka:9092"]
        assert settings.worker.web_host == "0.0.0.0"
        port = settings.worker.web_port
        assert port == load_settings(env={}).worker.web_port
        [published] = worker["ports"]
        host_port, _, container_port = published.rpartition(":")
        assert container_port == str(port)
        host_ports.add(host_port)
        assert str(port) in " ".join(worker["healthcheck"]["test"])
        # the worker's local files: in its data directory, on a volume of its own
        volumes = _volume_mounts(worker)
        assert volumes.get(PurePosixPath(settings.data_dir)) == f"{name}-data"
        assert set(volumes.values()) <= set(compose["volumes"])
    assert len(host_ports) == len(WORKERS)  # each worker's /metrics reachable from the host


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
    # one target per worker, by its service name (each resolves to its one container)
    [static] = job["static_configs"]
    assert sorted(static["targets"]) == [f"{name}:{port}" for name in sorted(workers(compose))]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert set(workers(compose)) <= set(service["depends_on"])
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
        why = "neither docker-compose nor `docker compose`: `make tools` installs docker-compose"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why} (CI=true: the compose file must be checked)")
        pytest.skip(why)
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
