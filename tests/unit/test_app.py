"""The Faust app's own settings: where it keeps files, which interface its web server binds, how
much its producer batches; the heap it leaves out of garbage collection once started."""

from __future__ import annotations

import asyncio
import gc
import weakref
from pathlib import Path

from config.settings import Settings, load_settings
from streams.app import build_app, freeze_startup_heap


def test_faust_keeps_its_directory_beside_the_database(
    settings: Settings, loop: asyncio.AbstractEventLoop
) -> None:
    app = build_app(settings, "127.0.0.1:9")
    datadir = Path(app.conf.datadir).resolve()
    assert datadir.is_relative_to(settings.database.path.parent.resolve())
    assert not Path.cwd().joinpath(f"{settings.worker.app_id}-data").exists()


def test_the_web_server_binds_only_the_configured_interface(
    isolated_env: dict[str, str], loop: asyncio.AbstractEventLoop
) -> None:
    settings = load_settings(env={**isolated_env, "PERSONAS_WORKER__WEB_HOST": '"127.0.0.2"'})
    app = build_app(settings, "127.0.0.1:9")
    assert app.conf.web_bind == "127.0.0.2"


def test_the_startup_heap_is_frozen_and_later_garbage_still_collected() -> None:
    class Node:
        pass

    def cycle() -> weakref.ref[Node]:
        node = Node()
        node.self = node  # type: ignore[attr-defined]  # only the cyclic collector frees it
        return weakref.ref(node)

    before = cycle()
    try:
        frozen = freeze_startup_heap()
        assert frozen == gc.get_freeze_count() > 0
        assert before() is None  # startup garbage was collected first, not frozen
        after = cycle()
        gc.collect()
        assert after() is None
    finally:
        gc.unfreeze()


def test_the_producer_batches_up_to_the_configured_bytes(
    isolated_env: dict[str, str], loop: asyncio.AbstractEventLoop
) -> None:
    env = {**isolated_env, "PERSONAS_BROKER__PRODUCER_BATCH_BYTES": "65536"}
    app = build_app(load_settings(env=env), "127.0.0.1:9")
    assert app.conf.producer_max_batch_size == 65_536
