"""The frozen, validated settings: `default.toml` < `--config FILE` < environment variables.

Environment variables:
    PERSONAS_DB              database.url (a SQLite file path, or postgresql://user@host:port/db)
    PERSONAS_BROKER          broker.url (host:port[,…]); unset and no run file → embedded broker
    PERSONAS_<SECTION>__<KEY>  any other key, value written as a TOML literal (4, 0.5, true, "x")
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from config.thresholds import RuleThresholds

__all__ = [
    "DLQ_SUFFIX",
    "POSTGRES_SCHEMES",
    "ConfigError",
    "DatabaseSettings",
    "Settings",
    "dlq_name",
    "load_settings",
    "redact_url",
]

ENV_PREFIX = "PERSONAS_"
ENV_ALIASES = {"PERSONAS_DB": ("database", "url"), "PERSONAS_BROKER": ("broker", "url")}

_SECTION = ConfigDict(frozen=True, extra="forbid")
#: One gate, two readers: the feature agent publishes nothing below it and the rules mark such a
#: wallet pending. Set as `features.min_settled_trades` only, so the two can never disagree.
_SETTLED_GATE = ("features", "min_settled_trades")


class ConfigError(Exception):
    """The configuration is invalid; the message names the key (exit status 2).

    Defined here, not with the other errors in `agents.core.errors`, so that `config` imports
    nothing of the project's: every layer may read settings.
    """

    exit_code = 2


POSTGRES_SCHEMES = ("postgresql://", "postgres://")


class DatabaseSettings(BaseModel):
    """Where the store lives: a SQLite file (the embedded default) or a PostgreSQL server."""

    model_config = _SECTION
    url: str = Field(min_length=1)
    busy_timeout_ms: int = Field(ge=0, le=600_000)
    pool_min: int = Field(ge=1, le=100)
    pool_max: int = Field(ge=1, le=100)
    pool_timeout_s: float = Field(gt=0, le=600)

    @model_validator(mode="after")
    def _pool_bounds(self) -> DatabaseSettings:
        if self.pool_min > self.pool_max:
            raise ValueError("database.pool_min must not exceed database.pool_max")
        return self

    @property
    def is_postgres(self) -> bool:
        return self.url.startswith(POSTGRES_SCHEMES)

    @property
    def path(self) -> Path:
        """The SQLite file; only meaningful when the store is not PostgreSQL."""
        if self.is_postgres:
            raise ConfigError("database.url is a PostgreSQL URL, not a SQLite file")
        return Path(self.url)

    @property
    def location(self) -> str:
        """The database as logs and messages name it: the file, or the URL without password."""
        return redact_url(self.url) if self.is_postgres else self.url


def redact_url(url: str) -> str:
    """`url` with any password replaced by `***`."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


class BrokerSettings(BaseModel):
    model_config = _SECTION
    url: str
    client_id: str = Field(min_length=1)
    session_timeout_s: float = Field(gt=0, le=300)
    heartbeat_interval_s: float = Field(gt=0, le=60)
    rebalance_timeout_s: float = Field(gt=0, le=300)
    request_timeout_s: float = Field(gt=0, le=300)
    #: a producer's largest batch: at most what the brokers take in one (`message.max.bytes`)
    producer_batch_bytes: int = Field(ge=16_384, le=1_048_576)

    @field_validator("url")
    @classmethod
    def _hosts_with_ports(cls, url: str) -> str:
        url = url.strip().removeprefix("kafka://")
        for host in filter(None, url.split(",")):
            if not re.fullmatch(r"[\w.\-]+:\d{1,5}", host.strip()):
                raise ValueError(f"expected host:port[,host:port…], got {host!r}")
        return url

    @property
    def bootstrap(self) -> list[str]:
        """The configured bootstrap servers; empty when none is configured."""
        return [host.strip() for host in self.url.split(",") if host.strip()]


DLQ_SUFFIX = ".dlq"


def dlq_name(topic: str) -> str:
    """The dead-letter topic of `topic` (SPEC §2)."""
    return topic + DLQ_SUFFIX


class TopicSettings(BaseModel):
    model_config = _SECTION
    prefix: str = Field(pattern=r"^[A-Za-z0-9._\-]*$")
    trades_partitions: int = Field(ge=1, le=1024)
    discovered_partitions: int = Field(ge=1, le=1024)
    features_partitions: int = Field(ge=1, le=1)
    rebuild_jobs_partitions: int = Field(ge=1, le=1024)
    replication_factor: int = Field(ge=1, le=10)

    @property
    def trades(self) -> str:
        return f"{self.prefix}trades"

    @property
    def discovered(self) -> str:
        return f"{self.prefix}wallet-discovered"

    @property
    def features(self) -> str:
        return f"{self.prefix}wallet-features"

    @property
    def rebuild_jobs(self) -> str:
        return f"{self.prefix}rebuild-jobs"

    def partitions(self) -> dict[str, int]:
        """Every source topic and its partition count (SPEC §2)."""
        return {
            self.trades: self.trades_partitions,
            self.discovered: self.discovered_partitions,
            self.features: self.features_partitions,
            self.rebuild_jobs: self.rebuild_jobs_partitions,
        }


class WorkerSettings(BaseModel):
    model_config = _SECTION
    app_id: str = Field(pattern=r"^[A-Za-z0-9._\-]+$")
    data_dir: Path | None = None
    web_host: str
    web_port: int = Field(ge=0, le=65535)
    shutdown_timeout_s: float = Field(gt=0, le=600)
    lag_check_interval_s: float = Field(gt=0, le=3600)


class BatchSettings(BaseModel):
    model_config = _SECTION
    batch_max: int = Field(ge=1, le=100_000)
    batch_within_s: float = Field(gt=0, le=60)


class FeatureSettings(BatchSettings):
    window_days: int = Field(ge=1, le=365)
    min_settled_trades: int = Field(ge=0)
    concurrency: int = Field(ge=1, le=1000)
    processes: int = Field(ge=0, le=256)

    @property
    def process_count(self) -> int:
        """Feature processes to use: `processes`, or the CPU count when 0."""
        return self.processes or os.cpu_count() or 1


class RebuildSettings(BaseModel):
    model_config = _SECTION
    enabled: bool
    at: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    parallel_enabled: bool
    workers: int = Field(ge=0, le=256)
    shard_wallets: int = Field(ge=1, le=1_000_000)
    classifier_cost: float = Field(ge=0, le=1)

    @property
    def worker_count(self) -> int:
        """Processes to use: `workers`, or the CPU count when 0."""
        return self.workers or os.cpu_count() or 1


class RuleSettings(RuleThresholds):
    """The SPEC §8 thresholds plus the known-bot list."""

    known_bots: tuple[str, ...] = ()

    @field_validator("known_bots")
    @classmethod
    def _lower(cls, bots: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(bot.lower() for bot in bots)


class Settings(BaseModel):
    """Every setting of the system; built once by `load_settings`, then frozen."""

    model_config = _SECTION
    database: DatabaseSettings
    broker: BrokerSettings
    topics: TopicSettings
    worker: WorkerSettings
    ingest: BatchSettings
    features: FeatureSettings
    classifier: BatchSettings
    rebuild: RebuildSettings
    rules: RuleSettings = RuleSettings()

    @property
    def data_dir(self) -> Path:
        """Where this host keeps its local files (the broker's run file and log, Faust's
        directory): `worker.data_dir`, else beside the SQLite file, else `var/`."""
        if self.worker.data_dir is not None:
            return self.worker.data_dir
        return Path("var") if self.database.is_postgres else self.database.path.parent

    @model_validator(mode="after")
    def _one_settled_gate(self) -> Settings:
        if self.rules.min_settled_trades != self.features.min_settled_trades:
            raise ValueError(
                "rules.min_settled_trades must equal features.min_settled_trades (one gate)"
            )
        return self


def load_settings(
    config_file: Path | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Load defaults, overlay `config_file` and the environment, validate; raise ConfigError."""
    data = _read_toml(
        resources.files("config").joinpath("default.toml").read_text(), "default.toml"
    )
    if config_file is not None:
        try:
            text = Path(config_file).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read config file {config_file}: {exc.strerror}") from None
        _merge(data, _read_toml(text, str(config_file)), str(config_file))
    _merge(data, _env_overrides(os.environ if env is None else env), "environment")
    section, key = _SETTLED_GATE
    data.setdefault("rules", {})[key] = data[section][key]
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        key = ".".join(str(part) for part in first["loc"])
        got = "" if first["type"] == "missing" else f" (got {first.get('input')!r})"
        raise ConfigError(f"config key {key}: {first['msg']}{got}") from None


def _read_toml(text: str, origin: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{origin}: not valid TOML ({exc})") from None


def _merge(base: dict[str, Any], overlay: Mapping[str, Any], origin: str) -> None:
    for section, values in overlay.items():
        if section not in base and section not in Settings.model_fields:
            raise ConfigError(f"{origin}: unknown config section [{section}]")
        if not isinstance(values, Mapping):
            raise ConfigError(f"{origin}: [{section}] must be a table")
        for key, value in values.items():
            if (section, key) == ("rules", _SETTLED_GATE[1]):
                raise ConfigError(
                    f"{origin}: rules.{key} is set by features.{key} (one gate for the feature "
                    "agent and the rules)"
                )
            if key not in base.setdefault(section, {}) and key not in _optional_keys(section):
                raise ConfigError(f"{origin}: unknown config key {section}.{key}")
            base[section][key] = value


def _optional_keys(section: str) -> set[str]:
    model = Settings.model_fields[section].annotation if section in Settings.model_fields else None
    return (
        set(model.model_fields)
        if isinstance(model, type) and issubclass(model, BaseModel)
        else set()
    )


def _env_overrides(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    overrides: dict[str, dict[str, Any]] = {}
    for name, raw in env.items():
        if name in ENV_ALIASES:
            section, key = ENV_ALIASES[name]
            overrides.setdefault(section, {})[key] = raw
        elif name.startswith(ENV_PREFIX) and "__" in name:
            section, _, key = name.removeprefix(ENV_PREFIX).lower().partition("__")
            overrides.setdefault(section, {})[key] = _toml_literal(raw)
    return overrides


def _toml_literal(raw: str) -> Any:
    try:
        return tomllib.loads(f"value = {raw}")["value"]
    except tomllib.TOMLDecodeError:
        return raw
