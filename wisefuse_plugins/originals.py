"""Reading a workflow file for its own graph: drop-in lines in it stand aside.

A DAG file that ends with the drop-in ``dag = rewrite(dag, "etl.plan.json")`` line gives
Airflow the rewritten DAG. wisefuse itself must read the *original* one from it: the
adapter (``wisefuse inspect``, ``profile``, ``optimize`` on the DAG file, which is what a
plan change asks for) and an emitted file importing its original DAG file. While
:func:`reading_original` is active the drop-in returns its argument unchanged.

Standard library only: the drop-in checks it at every parse.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

__all__ = ["reading", "reading_original"]

_reading: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "wisefuse_reading_original", default=False
)


def reading() -> bool:
    """True while wisefuse reads a workflow file for its original graph."""
    return _reading.get()


@contextlib.contextmanager
def reading_original() -> Iterator[None]:
    """Within it, drop-in lines return the workflow they are given, unchanged."""
    token = _reading.set(True)
    try:
        yield
    finally:
        _reading.reset(token)
