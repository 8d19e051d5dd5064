"""Operator commands: publish, replay, lag, dead letters (SPEC §10)."""
