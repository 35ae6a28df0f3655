"""Comparing a rewritten run's values with the original run's: the package's own rule
(:mod:`wisefuse_plugins.runtime.compare`, floats to a relative 1e-9), so that the tests
judge results as the demo and the benchmarks do."""

from __future__ import annotations

from typing import Any

from wisefuse_plugins.runtime.compare import differences


def same_values(a: Any, b: Any) -> list[str]:
    """Where ``a`` and ``b`` differ (``[]``: the same)."""
    return differences(a, b)
