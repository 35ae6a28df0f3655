"""How the profiler invokes a one-stage unit: through the local Lambda when there is one
(functions of their own, with the stage's code loaded at INIT, and wall time reported),
else through the backend's own deploy and invoke; and what a failed call means."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wisefuse_plugins.plan.schema import Unit
from wisefuse_plugins.runtime.backends.units import runtime_error
from wisefuse_plugins.runtime.executor import Invoked, Invoker

COLDSTART_HANDLER = "wisefuse_plugins.profiles.coldstart:handler"


@dataclass
class Call:
    """One invocation as the profiler needs it (``wall_ms`` None: the backend is Lambda itself)."""

    payload: dict[str, Any]
    duration_ms: float
    wall_ms: float | None
    init_ms: float | None
    cold: bool
    max_memory_mb: float
    error: dict[str, Any] | None
    billed_ms: float = 0.0
    cost_usd: float = 0.0


class Deployer:
    """The invoker the profiler runs through; on the local Lambda, with code loaded at INIT.

    On a :class:`~wisefuse_plugins.runtime.backends.local.LocalLambda` units become
    functions of their own (``wfprof-<unit>``, so the backend's plan units keep their
    configuration) whose handler is :mod:`.coldstart`'s. A function is registered again
    only when its configuration changes (a new memory size; a bundle size travels in the
    event), so it keeps its warm workers: the materialising run's workers serve the first
    setting at the same memory. Elsewhere the backend's own deploy and invoke are used.
    """

    def __init__(self, backend: Invoker) -> None:
        self.backend = backend
        self.lam = getattr(backend, "lam", None)
        if self.lam is not None and not hasattr(self.lam, "register"):
            self.lam = None
        self._configs: dict[str, Any] = {}
        self.names: dict[str, str] = {}

    def deploy(self, unit: Unit, spec_path: Path) -> None:
        if self.lam is None:
            self.backend.deploy(unit, spec_path)
            self.names[unit.id] = unit.id
            return
        from wisefuse_plugins.ir.names import safe_name
        from wisefuse_plugins.runtime.backends.local import FunctionConfig
        from wisefuse_plugins.runtime.handler import ENV_ROOT, ENV_SPEC, ENV_STORE

        name = safe_name(f"wfprof-{unit.id}")
        root = str(getattr(self.backend, "code_root", Path.cwd()))
        env_of = getattr(self.backend, "function_env", None)  # the units' own (LocalUnits)
        config = FunctionConfig(
            name=name,
            handler=COLDSTART_HANDLER,
            memory_mb=unit.memory_mb,
            arch=unit.arch,
            timeout_s=float(getattr(self.backend, "timeout_s", 120.0)),
            env=env_of(spec_path)
            if env_of is not None
            else {
                ENV_SPEC: str(spec_path),
                ENV_ROOT: root,
                ENV_STORE: str(getattr(self.backend, "store_url", "")),
            },
            code_dir=root,
        )
        if self._configs.get(name) != config:
            self.lam.register(config)
            self._configs[name] = config
        self.names[unit.id] = name

    def call(self, unit_id: str, event: dict[str, Any]) -> Call:
        """Invoke through the local Lambda when there is one (it reports wall time too)."""
        name = self.names.get(unit_id, unit_id)
        if self.lam is not None:
            inv = self.lam.invoke(name, event)
            return Call(
                payload=inv.payload if isinstance(inv.payload, dict) else {},
                duration_ms=inv.duration_ms,
                wall_ms=inv.wall_ms,
                init_ms=inv.init_duration_ms,
                cold=inv.cold,
                max_memory_mb=float(inv.max_memory_used_mb),
                error=inv.error,
                billed_ms=float(inv.billed_duration_ms),
                cost_usd=inv.cost_usd,
            )
        got = self.backend.invoke(name, event)
        error = None
        if got.error is not None:
            error = {
                "errorType": got.error.get("type", ""),
                "errorMessage": got.error.get("message", ""),
            }
        return Call(
            payload=got.payload,
            duration_ms=got.duration_ms,
            wall_ms=None,
            init_ms=got.init_ms if got.cold else None,
            cold=got.cold,
            max_memory_mb=float(got.max_memory_mb),
            error=error,
            billed_ms=got.billed_ms,
            cost_usd=got.cost_usd,
        )

    def invoke(self, unit_id: str, event: dict[str, Any]) -> Invoked:
        """The executor's view of :meth:`call` (for the materialising run)."""
        call = self.call(unit_id, event)
        error = runtime_error(unit_id, call.error)
        return Invoked(
            payload=call.payload,
            duration_ms=call.duration_ms,
            billed_ms=call.billed_ms,
            init_ms=call.init_ms or 0.0,
            cold=call.cold,
            max_memory_mb=call.max_memory_mb,
            cost_usd=call.cost_usd,
            error=error,
        )


def failure_of(call: Call) -> tuple[str, str] | None:
    """(kind, message) when the invocation did not run the stage to the end."""
    if call.error is not None:
        kind = str(call.error.get("errorType", ""))
        message = str(call.error.get("errorMessage", ""))
        if "OutOfMemory" in kind:
            return "out-of-memory", message or "out of memory"
        if "Timedout" in kind or "timed out" in message.lower():
            return "timeout", message
        return "crash", f"{kind}: {message}"
    if not call.payload.get("ok"):
        err = call.payload.get("error") or {}
        kind = str(err.get("type", "Error"))
        message = f"{kind}: {err.get('message', '')}"
        return ("out-of-memory" if kind == "MemoryError" else "error"), message
    return None
