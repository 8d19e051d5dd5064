"""Computation off the event loop: process pools, on-demand jobs and the rebuild's shards."""
