"""Agents and the pure core they call: features, settlement, personas, generator, store."""
