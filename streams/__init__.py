"""The plumbing: the Faust app and worker, consumers, producer, topics, broker, operations, CLI.

app.py, worker.py      the worker: a consumer per agent, the daily rebuild, /metrics, /health
consumer.py            batch consumers that commit only after the agent's handler is done
producer.py            the Python producer API
broker.py, topics.py   the broker (embedded or configured) and the topology
ops/                   the operators' Python API: publish, replay, lag, dead letters
cli/                   the `personas` command line
"""
