"""What the executor asks of a backend, and what a backend reports for one invocation.

Kept apart from the executor (which needs networkx for the plan's graph) so that a backend,
the Airflow hook or the Prefect block can import it cheaply in every task process.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from wisefuse_plugins.plan.schema import Unit


@dataclass
class Invoked:
    """What a backend reports for one invocation (Lambda's REPORT line and the payload)."""

    payload: dict[str, Any]
    duration_ms: float = 0.0
    billed_ms: float = 0.0
    init_ms: float = 0.0
    cold: bool = False
    max_memory_mb: float = 0.0
    cost_usd: float = 0.0
    error: dict[str, Any] | None = None  # a runtime-level failure (OOM, timeout, crash)
    log_tail: str = ""  # the end of the function's own log (LogType=Tail), when known


class Invoker(Protocol):
    """A backend as the executor sees it."""

    def deploy(self, unit: Unit, spec_path: Path) -> None:
        """Create or update ``unit``'s function to run the spec at ``spec_path``.

        The spec names its workflow; the backend knows the code root it packages or runs.
        """

    def invoke(self, unit_id: str, event: dict[str, Any]) -> Invoked: ...
