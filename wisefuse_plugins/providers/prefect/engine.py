"""The flow runs Prefect's engine starts of a ``@wisefuse`` flow, and running a plan in one.

Deployments -- served with ``flow.serve()``, picked up by ``prefect worker start``,
``run_deployment`` -- and ``prefect.flow_engine.run_flow(flow)`` never call the flow
object: the engine loads it (``load_flow_from_flow_run`` imports the entrypoint; a served
flow is pickled into a subprocess), starts the flow run, and inside the run's context
calls ``flow.fn`` (``FlowRunEngine.call_flow_fn``). That call is the one place every way
of running a flow goes through, so :class:`~.decorator.WiseFuseFlow` hands the engine an
*entry* there (:func:`engine_entry`): it decides inside the run that has already started,
runs the plan's units as task runs of that same run, or logs why not in its logs. Every
other reader of ``flow.fn`` (signatures, source files, ``serve``/``deploy`` entrypoints,
the adapter) gets the flow's own function.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wisefuse_plugins.ir import Workflow
    from wisefuse_plugins.plan.schema import Plan
    from wisefuse_plugins.providers.prefect.blocks import WiseFuseLambda

__all__ = ["engine_entry", "engine_runs", "run_plan", "task_runner_problem"]

#: True while an entry runs: the flow's body (and the entry's own checks) see its function.
_IN_ENTRY: contextvars.ContextVar[bool] = contextvars.ContextVar("wisefuse_entry", default=False)


def engine_runs(flow: Any) -> bool:
    """True when Prefect's engine is about to call this flow object's function: inside a
    flow run of ``flow`` itself (not of a copy, not in a task run), outside any entry."""
    if _IN_ENTRY.get():
        return False
    try:
        from prefect.context import FlowRunContext, TaskRunContext
    except ImportError:  # a Lambda unit's stand-ins for Prefect: no engine runs there
        return False

    ctx = FlowRunContext.get()
    return ctx is not None and ctx.flow is flow and TaskRunContext.get() is None


def engine_entry(fn: Callable, decide: Callable[[tuple, dict[str, Any]], Any]) -> Callable:
    """What the engine calls instead of ``fn``: ``decide(args, kwargs)``, which returns the
    flow's value (under the plan, or ``fn``'s own); ``fn``'s name and signature."""

    @functools.wraps(fn)
    def entry(*args: Any, **kwargs: Any) -> Any:
        token = _IN_ENTRY.set(True)
        try:
            return decide(args, kwargs)
        finally:
            _IN_ENTRY.reset(token)

    return entry


def task_runner_problem() -> str | None:
    """Why the current flow run's task runner cannot run unit tasks (None when it can).

    Unit tasks find their :class:`~.planned.PlannedRun` in this process: the task runner
    must run tasks in the flow's process, as Prefect's default thread pool does."""
    from prefect.context import FlowRunContext
    from prefect.task_runners import ThreadPoolTaskRunner

    ctx = FlowRunContext.get()
    runner = getattr(ctx, "task_runner", None)
    if runner is None or isinstance(runner, ThreadPoolTaskRunner):
        return None
    return (
        f"its task runner is {type(runner).__name__}, and the plan's unit tasks run in the "
        "flow's process (Prefect's default ThreadPoolTaskRunner)"
    )


def run_plan(
    workflow: Workflow, plan: Plan, block: WiseFuseLambda, *, namespace: str, code_root: Path
) -> Any:
    """Inside a flow run: run the plan's units as its task runs, log the summary, return
    the flow's value."""
    from prefect.logging import get_run_logger

    from wisefuse_plugins.providers.prefect.planned import PlannedRun, run_in_flow

    run = PlannedRun.start(workflow, plan, block, namespace=namespace, code_root=code_root)
    try:
        value = run_in_flow(run)
        get_run_logger().info("WiseFuse plan: %s", run.summary())
        return value
    finally:
        run.close()
