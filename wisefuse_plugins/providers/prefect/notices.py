"""Where a ``@wisefuse`` call runs, and how it tells the user what it decided.

Why a module: the decorator's warnings (no plan, a plan that does not fit, the recorded
trace) belong in the flow run's own logs, where Prefect shows them on the console and in
its UI, not on a logger nobody configured; and whether a call may be traced depends on
the run it is made in. Both read Prefect's run context, imported lazily here.
"""

from __future__ import annotations

import functools
import inspect
import logging
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["being_traced", "inside_a_run", "logger", "tell", "telling"]

logger = logging.getLogger("wisefuse_plugins.prefect")


def being_traced() -> bool:
    """True while the Prefect adapter traces a run here: then a decorated flow is plain.

    A small cooperation with :mod:`wisefuse_plugins.adapters.prefect` (its tracer's context
    variable), so that tracing a decorated flow traces the flow, not its plan's units.
    """
    adapter = sys.modules.get("wisefuse_plugins.adapters.prefect.patch")
    active = getattr(adapter, "_ACTIVE", None)
    return active is not None and active.get() is not None


def inside_a_run() -> bool:
    from prefect.context import FlowRunContext, TaskRunContext

    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


def tell(level: int, message: str, flow_run_id: Any = None, flow: Any = None) -> None:
    """Log ``message`` in the flow run's logs (console, API, UI), else on this module's logger.

    After a run has finished there is no run context: the run's id names it."""
    if flow_run_id is not None:
        from prefect.logging.loggers import flow_run_logger

        flow_run_logger(flow_run_id=flow_run_id, flow=flow).log(level, message)
    else:
        logger.log(level, message)


def telling(fn: Callable, notice: tuple[int, str]) -> Callable:
    """``fn``, logging ``notice`` (level, message) in the flow run's logs as the run starts
    (a coroutine function for a coroutine function: Prefect awaits it)."""
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def awaited(*args: Any, **kwargs: Any) -> Any:
            from prefect.logging import get_run_logger

            get_run_logger().log(*notice)
            return await fn(*args, **kwargs)

        return awaited

    @functools.wraps(fn)
    def body(*args: Any, **kwargs: Any) -> Any:
        from prefect.logging import get_run_logger

        get_run_logger().log(*notice)
        return fn(*args, **kwargs)

    return body
