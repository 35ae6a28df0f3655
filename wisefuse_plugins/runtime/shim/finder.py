"""The meta path finder that serves ``airflow*`` / ``prefect*`` imports with stand-ins.

Which frameworks it serves is decided once per top-level name: ``always`` serves them
even when installed; ``auto`` serves a framework only where no real one is importable
(a namespace package does not count: a code root with an ``airflow/`` folder of DAG files
is not Airflow); ``prefect_*`` integrations are served only along with ``prefect``.
"""

from __future__ import annotations

import importlib.machinery
import sys
from typing import Any

from wisefuse_plugins.runtime.shim import airflow as _airflow
from wisefuse_plugins.runtime.shim import prefect as _prefect

FRAMEWORKS = ("airflow", "prefect")


def family(fullname: str) -> str | None:
    """``airflow`` or ``prefect`` for the names the shim can serve, else None."""
    top = fullname.partition(".")[0]
    if top == "airflow":
        return "airflow"
    if top == "prefect" or top.startswith("prefect_"):
        return "prefect"
    return None


def is_framework_module(name: str) -> bool:
    return family(name) is not None


class FrameworkFinder:
    """Serves stand-in modules for the frameworks it decided to hide or replace."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self._serves: dict[str, bool] = {}
        self.created: list[str] = []

    def serves(self, fullname: str) -> bool:
        fam = family(fullname)
        if fam is None or self.mode == "never":
            return False
        top = fullname.partition(".")[0]
        decided = self._serves.get(top)
        if decided is None:
            if self.mode == "always":
                decided = True
            else:
                decided = (top == fam or self.serves(fam)) and self._real_spec(top) is None
            self._serves[top] = decided
        return decided

    def _real_spec(self, top: str) -> Any:
        """The spec another finder would give ``top``, unless it is only a namespace."""
        for finder in sys.meta_path:
            if finder is self or isinstance(finder, FrameworkFinder):
                continue
            find = getattr(finder, "find_spec", None)
            if find is None:
                continue
            try:
                spec = find(top, None)
            except Exception:  # a broken third-party finder must not break the unit
                continue
            if spec is not None and spec.origin not in (None, "namespace"):
                return spec
        return None

    # importlib's finder and loader protocols
    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if not self.serves(fullname):
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec: Any) -> Any:
        self.created.append(spec.name)
        make = _airflow.make_module if family(spec.name) == "airflow" else _prefect.make_module
        return make(spec.name)

    def exec_module(self, module: Any) -> None:
        return None

    def __repr__(self) -> str:
        served = sorted(top for top, yes in self._serves.items() if yes)
        return f"<wisefuse FrameworkFinder mode={self.mode} serving={served}>"
