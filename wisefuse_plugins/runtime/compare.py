"""Whether a planned run returned what the original returns.

The same computation does not always give the same bits: BLAS (OpenBLAS chooses its
kernel per call, by the arrays' alignment and size, and its number of threads per
process) may sum a dot product in another order in a unit's worker, which has the vCPUs
of its memory size, than in the task process of the original; the last bit or two of a
float differ (seen with the example apps even at one thread each). So floats are
compared to a relative tolerance, everything else exactly.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["REL_TOL", "differences", "same_outputs"]

#: Floats agree to this relative tolerance; anything more is a real difference.
REL_TOL = 1e-9


def differences(a: Any, b: Any, rel: float = REL_TOL, path: str = "") -> list[str]:
    """Where ``a`` and ``b`` differ (``[]``: the same), floats up to ``rel``.

    >>> differences({"x": [1, 0.1 + 0.2]}, {"x": [1, 0.3]})
    []
    >>> differences({"x": 1}, {"x": 2})
    ['/x: 1 != 2']
    """
    if isinstance(a, float) or isinstance(b, float):
        close = (
            isinstance(a, int | float)
            and isinstance(b, int | float)
            and math.isclose(a, b, rel_tol=rel, abs_tol=1e-300)
        )
        return [] if close else [f"{path}: {a!r} != {b!r}"]
    if _is_array(a) or _is_array(b):  # numpy arrays: elementwise, floats up to ``rel``
        return [] if _same_arrays(a, b, rel) else [f"{path}: arrays differ"]
    if isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys():
        return [d for k in a for d in differences(a[k], b[k], rel, f"{path}/{k}")]
    if isinstance(a, list | tuple) and type(a) is type(b) and len(a) == len(b):
        pairs = enumerate(zip(a, b, strict=True))
        return [d for i, (x, y) in pairs for d in differences(x, y, rel, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def _is_array(value: Any) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype") and hasattr(value, "__array__")


def _same_arrays(a: Any, b: Any, rel: float) -> bool:
    import numpy as np

    if not (_is_array(a) and _is_array(b)) or a.shape != b.shape:
        return False
    if np.issubdtype(a.dtype, np.inexact) or np.issubdtype(b.dtype, np.inexact):
        return bool(np.allclose(a, b, rtol=rel, atol=0.0, equal_nan=True))
    return bool(np.array_equal(a, b))


def same_outputs(a: Any, b: Any, rel: float = REL_TOL) -> bool:
    """True when ``a`` and ``b`` are equal, floats up to ``rel`` (:func:`differences`)."""
    return not differences(a, b, rel)
