"""The project's exceptions, one base class, named by failure.

WalletError
├── InvalidMessage       one input (message, file line) failed validation
├── BrokerError          the broker cannot be reached or started
└── StoreError           SQLite refused a write that retrying will not fix

Bad configuration raises `config.settings.ConfigError` (exit status 2), which lives with the
settings so that `config` imports nothing of the project's.
"""

from __future__ import annotations

__all__ = ["BrokerError", "InvalidMessage", "StoreError", "WalletError"]


class WalletError(Exception):
    """Base class of every error this project raises on purpose."""

    exit_code = 1


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
