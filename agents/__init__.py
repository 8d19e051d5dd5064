"""What the system does: the pure core, the store, the computations and the agents.

    core/       feature math, settlement, classification rules, records, codec, errors (pure)
    store/      SQLite: schema, connections, the idempotent precedence-aware writes
    compute/    work off the event loop: feature processes, on-demand jobs, the rebuild's shards
    data/       synthetic trades for the demo and the bench; bulk import of trade files
    *_agent.py  one module per agent: `handle(batch, context)` (see `agents.context`); the
                rebuild's is `daily_rebuild(context)`, run on a schedule instead of a topic

Nothing here imports `streams`: the plumbing calls the agents, never the other way round.
"""
