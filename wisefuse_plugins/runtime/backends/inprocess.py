"""Run units in this process: no isolation, no limits, no cold starts.

For tests of data flow and for debugging a plan with a debugger attached; the local
backend (:mod:`wisefuse_plugins.runtime.backends.local`) is the one that behaves like Lambda.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from wisefuse_plugins.plan.schema import Unit
from wisefuse_plugins.runtime import store as st
from wisefuse_plugins.runtime.handler import LoadedUnit, run_unit
from wisefuse_plugins.runtime.invoker import Invoked
from wisefuse_plugins.runtime.loader import load_callable
from wisefuse_plugins.runtime.spec import read_spec


class InProcessBackend:
    def __init__(self, store: st.Store, code_root: str | Path) -> None:
        self.store = store
        self.code_root = Path(code_root)
        self._units: dict[str, tuple[LoadedUnit, int]] = {}

    def deploy(self, unit: Unit, spec_path: Path) -> None:
        spec = read_spec(spec_path)
        functions = {s.id: load_callable(s.callable, self.code_root) for s in spec.stages}
        self._units[unit.id] = (
            LoadedUnit(spec, self.code_root, self.store, functions),
            unit.memory_mb,
        )

    def invoke(self, unit_id: str, event: dict[str, Any]) -> Invoked:
        dep, memory_mb = self._units[unit_id]
        start = time.perf_counter()
        payload = run_unit(dep, event, memory_mb)
        ms = (time.perf_counter() - start) * 1000
        return Invoked(payload=payload, duration_ms=ms, billed_ms=float(int(ms) + 1))
