"""Trades from outside the topics: the synthetic generator (demo, bench) and file import."""
