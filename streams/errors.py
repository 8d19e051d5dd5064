"""The project's exceptions, one base class, named by failure.

WalletError
├── ConfigError          bad configuration: unknown key, wrong type, out of range
├── InvalidMessage       one input (message, file line) failed validation
├── BrokerError          the broker cannot be reached or started
└── StoreError           SQLite refused a write that retrying will not fix
"""

from __future__ import annotations

__all__ = ["BrokerError", "ConfigError", "InvalidMessage", "StoreError", "WalletError"]


class WalletError(Exception):
    """Base class of every error this project raises on purpose."""

    exit_code = 1


class ConfigError(WalletError):
    """The configuration is invalid; the message names the key."""

    exit_code = 2


class InvalidMessage(WalletError):
    """An input failed validation; `field` names the offending field (or `<json>`)."""

    exit_code = 2

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class BrokerError(WalletError):
    """The Kafka broker is unreachable, or the embedded one failed to start."""


class StoreError(WalletError):
    """A SQLite operation failed in a way that retrying will not fix."""
