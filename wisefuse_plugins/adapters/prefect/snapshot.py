"""Argument values as the IR can carry them: JSON copies taken at call time, and which values
are atoms (objects the interpreter may share between unrelated places).

Separate because both questions are about plain Python values, asked by the tracer for
every argument and by the builders for metadata; nothing here knows Prefect.
"""

from __future__ import annotations

import json
import math
from typing import Any

_ATOM_TYPES = (type(None), bool, int, float, complex, str, bytes, type(Ellipsis))


def is_atom(value: Any) -> bool:
    """True for values the interpreter may share between unrelated places (the package docstring)."""
    if isinstance(value, _ATOM_TYPES):
        return True
    if type(value) in (tuple, frozenset):
        return all(is_atom(v) for v in value)
    return False


def _json_problem(value: Any, where: str) -> str | None:
    """Why ``value`` is not plain JSON (None when it is); tuples and sets are not JSON."""
    if value is None or isinstance(value, bool | str):
        return None
    if type(value) is int:
        return None
    if type(value) is float:
        return None if math.isfinite(value) else f"{where} is {value!r}, not a JSON number"
    if type(value) is list:
        for i, v in enumerate(value):
            if (p := _json_problem(v, f"{where}[{i}]")) is not None:
                return p
        return None
    if type(value) is dict:
        for k, v in value.items():
            if not isinstance(k, str):
                return f"{where} has a non-string key {k!r}"
            if (p := _json_problem(v, f"{where}[{k!r}]")) is not None:
                return p
        return None
    return f"{where} is a {type(value).__name__}, which JSON cannot carry"


def snapshot(value: Any, where: str) -> tuple[Any, str | None]:
    """A JSON copy of ``value`` taken now (the flow may mutate it later), or the reason why not."""
    problem = _json_problem(value, where)
    if problem is not None:
        return None, problem
    return json.loads(json.dumps(value)), None


def jsonable(value: Any) -> Any:
    """Best-effort JSON for metadata: the value itself, else its repr."""
    copy, problem = snapshot(value, "value")
    return copy if problem is None else repr(value)
