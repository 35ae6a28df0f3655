"""Names a package or a facade re-exports from its modules, imported on first use (PEP 562).

A DAG file is parsed in a fresh process every time, and the CLI starts one per command:
``import wisefuse_plugins.airflow`` (or ``.profiles``, ``.prefect``) must not import what
only some of its names need. A module declares where each name lives and takes the
``__getattr__`` and ``__dir__`` this gives::

    __getattr__, __dir__ = lazy_exports(__name__, {"rewrite": ".rewrite"})

Standard library only (it is imported at every parse).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    module: str,
    where: Mapping[str, str],
    *,
    before: Callable[[str], None] | None = None,
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``module``, whose names ``where`` maps to the
    modules that define them (``".name"``: relative to ``module``, as ``import_module``
    reads it). ``before(name)`` runs before the first import of a name (to raise a clear
    error when an extra is not installed). Each name is imported once, then kept in the
    module as a plain attribute."""

    def __getattr__(name: str) -> Any:
        source = where.get(name)
        if source is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        if before is not None:
            before(name)
        value = getattr(import_module(source, package=module), name)
        setattr(sys.modules[module], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[module]), *where})

    return __getattr__, __dir__
