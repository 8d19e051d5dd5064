"""The agents' consumer fetches with a short wait (Faust hard-codes 1500 ms): streams.transport."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaConsumer

from config.settings import load_settings
from streams.app import build_app
from streams.transport import FETCH_MAX_WAIT_MS, ShortWaitConsumer


@pytest.fixture
def event_loop_installed() -> Iterator[None]:
    """Faust's App wants a current loop; closed afterwards, or its GC warning fails a later test."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield
    asyncio.set_event_loop(None)
    loop.close()


def test_build_app_installs_the_short_wait_consumer(event_loop_installed: None) -> None:
    app = build_app(load_settings(env={}), "127.0.0.1:9", rebuild=False)
    assert app.transport.Consumer is ShortWaitConsumer


def test_aiokafka_still_reads_the_attribute_we_set() -> None:
    # Guards upgrades: the override works only while start() builds its fetcher from this field.
    assert "self._fetch_max_wait_ms = fetch_max_wait_ms" in inspect.getsource(AIOKafkaConsumer)
    assert "fetch_max_wait_ms=self._fetch_max_wait_ms" in inspect.getsource(AIOKafkaConsumer.start)
    assert FETCH_MAX_WAIT_MS < 500
