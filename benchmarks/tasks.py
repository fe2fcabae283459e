"""Importable task functions for benchmarks (so they travel as JSON, as in production)."""

from __future__ import annotations


def noop(i):
    """Return the argument: the cheapest possible task."""
    return i
