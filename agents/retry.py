"""One retry policy for every agent and the rebuild: which errors pass, and how long to wait."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, NoReturn, Protocol, TypeVar

import psycopg
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError

from agents.store.postgres import is_connection_lost

__all__ = ["RETRY_FIRST_S", "RETRY_MAX_S", "Retry", "backoff", "is_transient"]

log = logging.getLogger("personas.retry")

T = TypeVar("T")

RETRY_FIRST_S = 0.05
RETRY_MAX_S = 5.0


def is_transient(exc: BaseException) -> bool:
    """Errors that go away by themselves: a locked SQLite database; a PostgreSQL connection lost,
    a serialization failure or deadlock; a broker that is not reachable."""
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc)
        return "locked" in text or "busy" in text
    if isinstance(exc, psycopg.Error):
        return is_connection_lost(exc)
    return isinstance(exc, KafkaConnectionError | KafkaTimeoutError | NodeNotReadyError)


def backoff(first: float = RETRY_FIRST_S, most: float = RETRY_MAX_S) -> Iterator[float]:
    """The delays between attempts: doubling from `first`, capped at `most`, without end."""
    delay = first
    while True:
        yield delay
        delay = min(delay * 2, most)


class RetryCounter(Protocol):
    def labels(self, operation: str) -> Any: ...


class Retry:
    """Run an action, retrying transient errors with backoff forever; any other error is fatal.

    `fatal(operation, exc)` must not return: in a worker it stops the process uncommitted, so
    the batch is redelivered (`streams.runtime.Runtime.crash`).
    """

    def __init__(
        self,
        retries: RetryCounter,
        fatal: Callable[[str, BaseException], NoReturn],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._retries, self._fatal, self._sleep = retries, fatal, sleep

    async def __call__(self, operation: str, action: Callable[..., Awaitable[T]], *args: Any) -> T:
        for delay in backoff():
            try:
                return await action(*args)
            except Exception as exc:
                if not is_transient(exc):
                    self._fatal(operation, exc)
                self._retries.labels(operation).inc()
                log.warning("%s: transient error, retrying in %.2fs: %s", operation, delay, exc)
                await self._sleep(delay)
        raise AssertionError("backoff never ends")
