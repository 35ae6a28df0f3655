"""Comparing a rewritten run's values with the original run's."""

from __future__ import annotations

import math
from typing import Any

#: Floats agree to this relative tolerance: BLAS (OpenBLAS picks its kernel and thread count
#: per process) may sum a dot product in another order in a unit's worker than in the task
#: process, which changes the last bit or two; anything more is a real difference.
REL_TOL = 1e-12


def same_values(a: Any, b: Any, path: str = "") -> list[str]:
    """Where ``a`` and ``b`` differ (``[]``: the same), floats up to :data:`REL_TOL`.

    >>> same_values({"x": [1, 0.1 + 0.2]}, {"x": [1, 0.3]})
    []
    >>> same_values({"x": 1}, {"x": 2})
    ['/x: 1 != 2']
    """
    if isinstance(a, float) and isinstance(b, float):
        return (
            [] if math.isclose(a, b, rel_tol=REL_TOL, abs_tol=1e-300) else [f"{path}: {a} != {b}"]
        )
    if isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys():
        return [d for k in a for d in same_values(a[k], b[k], f"{path}/{k}")]
    if isinstance(a, list | tuple) and type(a) is type(b) and len(a) == len(b):
        return [
            d
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            for d in same_values(x, y, f"{path}[{i}]")
        ]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]
