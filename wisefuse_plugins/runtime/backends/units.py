"""Plan units on the local Lambda: the executor's ``Invoker`` over :class:`LocalLambda`.

One function per unit, named after it, whose handler is the runtime's
(``wisefuse_plugins.runtime.handler:handler``) and whose environment points at the unit
spec, the code root and the store, exactly as a deployed AWS function's does, plus the
variables given as ``environment`` (Lambda's ``Environment.Variables``; the AWS backend
takes the same argument): a function sees nothing else of the caller's environment. Deploying
the same unit again with the same settings keeps its warm workers; changing memory or
architecture retires them (new configuration, new execution environments), as on Lambda.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wisefuse_plugins.ir import Workflow
from wisefuse_plugins.plan.limits import MAX_TIMEOUT_S
from wisefuse_plugins.plan.schema import Unit
from wisefuse_plugins.runtime import shim
from wisefuse_plugins.runtime.backends.local import FunctionConfig, LocalLambda
from wisefuse_plugins.runtime.handler import ENV_ROOT, ENV_SPEC, ENV_STORE
from wisefuse_plugins.runtime.invoker import Invoked

HANDLER = "wisefuse_plugins.runtime.handler:handler"
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
#: Makes the unit's loader import DAG and flow files with its stand-ins for Airflow and
#: Prefect even where they are installed, as on Lambda, where they are not.
FRAMEWORK_SHIM_VAR = shim.ENV


def thread_env() -> dict[str, str]:
    """One thread per BLAS/OpenMP pool, unless the user set these variables.

    Two reasons. OpenBLAS sizes its pool to the host's cores, and under a CPU quota of a
    fraction of a core its spinning threads starve each other (a 2 ms numpy call took
    over a second at 512 MB). And a pool's size changes the order of floating-point sums:
    with it fixed, a stage gives bit-identical results at every memory size, so a plan
    returns exactly what the original workflow returns. Set the variables to size the
    pools to the vCPUs instead.
    """
    return {k: os.environ.get(k, "1") for k in THREAD_VARS}


@dataclass
class LocalUnits:
    """Deploy and invoke plan units on a :class:`LocalLambda`.

    ``environment``: variables every unit's function gets (e.g. what the user's code reads
    with ``os.environ``); the runtime's own settings win.
    """

    lam: LocalLambda
    store_url: str
    code_root: Path
    timeout_s: float = MAX_TIMEOUT_S
    environment: Mapping[str, str] = field(default_factory=dict)
    _deployed: dict[str, FunctionConfig] = field(default_factory=dict)

    def function_env(self, spec_path: Path) -> dict[str, str]:
        """The configured environment of a unit's function (what Lambda's would hold)."""
        return unit_env(spec_path, self.code_root, self.store_url, self.environment)

    def deploy(self, unit: Unit, spec_path: Path) -> None:
        config = FunctionConfig(
            name=unit.id,
            handler=HANDLER,
            memory_mb=unit.memory_mb,
            arch=unit.arch,
            timeout_s=self.timeout_s,
            env=self.function_env(spec_path),
            code_dir=str(self.code_root),
        )
        if self._deployed.get(unit.id) != config:
            self.lam.register(config)
            self._deployed[unit.id] = config

    def invoke(self, unit_id: str, event: dict[str, Any]) -> Invoked:
        inv = self.lam.invoke(unit_id, event)
        return Invoked(
            payload=inv.payload if isinstance(inv.payload, dict) else {},
            duration_ms=inv.duration_ms,
            billed_ms=inv.billed_duration_ms,
            init_ms=inv.init_duration_ms or 0.0,
            cold=inv.cold,
            max_memory_mb=inv.max_memory_used_mb,
            cost_usd=inv.cost_usd,
            error=runtime_error(unit_id, inv.error),
            log_tail=inv.logs,
        )


def unit_env(
    spec_path: Path, code_root: Path, store_url: str, environment: Mapping[str, str] | None = None
) -> dict[str, str]:
    """A unit function's variables: BLAS pools of one thread (:func:`thread_env`), the
    framework stand-ins, the user's ``environment``, then the spec, code root and store."""
    return {
        **thread_env(),
        FRAMEWORK_SHIM_VAR: "always",
        **(environment or {}),
        ENV_SPEC: str(spec_path),
        ENV_ROOT: str(code_root),
        ENV_STORE: store_url,
    }


def runtime_error(unit_id: str, error: dict[str, Any] | None) -> dict[str, Any] | None:
    """A Lambda runtime failure (out of memory, timeout, crash) in the executor's error shape."""
    if error is None:
        return None
    return {
        "stage": f"<unit {unit_id}>",
        "instance": None,
        "type": error.get("errorType", "Runtime.Error"),
        "message": error.get("errorMessage", ""),
        "traceback": "\n".join(error.get("stackTrace") or []),
    }


def preload_for(workflow: Workflow) -> tuple[str, ...]:
    """Modules a fork server should import once for this workflow's units.

    A unit imports the user's DAG or flow file with stand-ins for its framework (the
    shim: :data:`FRAMEWORK_SHIM_VAR` is ``always`` in every unit's environment), so
    preloading Airflow or Prefect would only cost the fork server seconds for modules the
    worker then sets aside. What every unit imports is the runtime's handler and the shim:
    with them preloaded, cold starts fork instead of spawning an interpreter. The user's
    own imports (numpy...) are not preloaded: their thread pools are sized from each
    function's own environment (:func:`thread_env`) when the worker imports them.
    """
    del workflow  # the same for every framework now; kept for the callers' sake
    return ("wisefuse_plugins.runtime.handler", "wisefuse_plugins.runtime.shim")
