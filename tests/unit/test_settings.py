"""Configuration: defaults, precedence, and every error path naming its key."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from config.settings import ConfigError, load_settings
from streams.cli import main


def test_defaults_match_the_spec() -> None:
    settings = load_settings(env={})
    assert settings.topics.partitions() == {
        "trades": 4,
        "wallet-discovered": 4,
        "wallet-features": 1,
        "rebuild-jobs": 4,
    }
    assert settings.features.min_settled_trades == 5
    assert settings.features.concurrency == 100
    assert settings.broker.bootstrap == []


def test_settings_are_frozen() -> None:
    settings = load_settings(env={})
    with pytest.raises(ValidationError):
        settings.features.concurrency = 3


def test_precedence_env_over_file_over_default(tmp_path: Path) -> None:
    config = tmp_path / "personas.toml"
    config.write_text("[features]\nconcurrency = 4\nbatch_max = 7\n")
    settings = load_settings(config, env={"PERSONAS_FEATURES__CONCURRENCY": "6"})
    assert settings.features.concurrency == 6
    assert settings.features.batch_max == 7
    assert settings.classifier.batch_max == 500


def test_short_aliases() -> None:
    settings = load_settings(
        env={"PERSONAS_DB": "/data/x.db", "PERSONAS_BROKER": "k1:9092,k2:9092"}
    )
    assert settings.database.path == Path("/data/x.db")
    assert settings.broker.bootstrap == ["k1:9092", "k2:9092"]


@pytest.mark.parametrize(
    ("text", "env", "named"),
    [
        ("[features]\nconcurency = 4\n", {}, "features.concurency"),
        ("[nosuch]\nx = 1\n", {}, "[nosuch]"),
        ("[features]\nconcurrency = 'ten'\n", {}, "features.concurrency"),
        ("[features]\nconcurrency = 0\n", {}, "features.concurrency"),
        ("[topics]\nfeatures_partitions = 4\n", {}, "topics.features_partitions"),
        ("[rebuild]\nat = '25:00'\n", {}, "rebuild.at"),
        ("", {"PERSONAS_BROKER": "not a host"}, "broker.url"),
        ("", {"PERSONAS_WORKER__WEB_PORT": "70000"}, "worker.web_port"),
        ("[features\n", {}, "not valid TOML"),
    ],
)
def test_bad_config_names_the_key(
    tmp_path: Path, text: str, env: dict[str, str], named: str
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=named.replace("[", r"\[").replace("]", r"\]")):
        load_settings(config, env=env)


def test_bad_config_exits_2_with_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[classifier]\nbatch_max = -1\n")
    assert main(["features", "0x" + "a" * 40, "--config", str(config)]) == 2
    assert "classifier.batch_max" in capsys.readouterr().err


def test_missing_config_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["features", "0x" + "a" * 40, "--config", str(tmp_path / "nope.toml")]) == 2
    assert "nope.toml" in capsys.readouterr().err


def test_one_settled_trades_gate_for_the_feature_agent_and_the_rules() -> None:
    settings = load_settings(env={"PERSONAS_FEATURES__MIN_SETTLED_TRADES": "7"})
    assert settings.features.min_settled_trades == settings.rules.min_settled_trades == 7


def test_the_rules_copy_of_the_gate_cannot_be_set_on_its_own(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"rules\.min_settled_trades is set by features"):
        load_settings(env={"PERSONAS_RULES__MIN_SETTLED_TRADES": "3"})
    config = tmp_path / "c.toml"
    config.write_text("[rules]\nmin_settled_trades = 3\n")
    with pytest.raises(ConfigError, match=r"features\.min_settled_trades"):
        load_settings(config)
