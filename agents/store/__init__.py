"""The store: SQLite schema, connections and the idempotent, precedence-aware writes (SPEC §6).

Its API is `agents.store.sqlite`'s; the schema and its migrations are `agents.store.schema`.
"""

from agents.store import sqlite
from agents.store.sqlite import *  # noqa: F403

__all__ = sqlite.__all__
