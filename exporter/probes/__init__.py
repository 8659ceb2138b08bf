"""Probes: one module per kind of target."""
