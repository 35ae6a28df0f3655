"""A second user file: reads values of a type defined in faulty_app.py (another module)."""

from __future__ import annotations

from typing import Any


def describe(summary: Any) -> str:
    return f"{summary.total} over {summary.count}"


def passthrough(summary: Any) -> Any:
    return summary
