"""Argument values as JSON, exactly: anything JSON would change, or Airflow renders (a
Jinja template), makes the task opaque."""

from __future__ import annotations

import math
from typing import Any

from wisefuse_plugins.adapters.airflow.access import airflow_names
from wisefuse_plugins.adapters.airflow.context import Opaque

_JINJA = ("{{", "{%", "{#")


def literal(value: Any, where: str) -> Any:
    """``value`` as JSON, exactly; anything JSON would change or Airflow renders is opaque."""
    kind = type(value)
    if value is None or kind in (bool, int):
        return value
    if kind is float:
        if math.isfinite(value):
            return value
        raise Opaque(f"argument {where} is {value!r}, which JSON cannot carry")
    if kind is str:
        if any(mark in value for mark in _JINJA):
            raise Opaque(
                f"argument {where} is a Jinja template ({_short(value)}), rendered from the Airflow context"
            )
        return value
    if kind is list:
        return [literal(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if kind is dict:
        out = {}
        for k, v in value.items():
            if type(k) is not str:
                raise Opaque(
                    f"argument {where} has a non-string key {k!r}, which JSON would change"
                )
            out[k] = literal(v, f"{where}[{k!r}]")
        return out
    af = airflow_names()
    if isinstance(value, af.XComArg):
        raise Opaque(f"argument {where} nests an upstream output inside a literal")
    if kind is tuple:
        raise Opaque(f"argument {where} is a tuple, which JSON would turn into a list")
    raise Opaque(f"argument {where} is a {kind.__name__} ({_short(repr(value))}), not a JSON value")


def _short(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")
