"""Invoke a unit once and report it in the Airflow task log, raising if it failed.

The unit operator and ``@task.wisefuse_lambda`` invoke the same way: the unit's own log
lines first, then the REPORT line, then the :class:`AirflowException` naming the failed
stage, so Airflow's retries apply and what a stage printed comes before its error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowException

if TYPE_CHECKING:
    from wisefuse_plugins.providers.airflow.hooks import Deployed, WiseFuseLambdaHook
    from wisefuse_plugins.runtime.invoker import Invoked


def invoke_logged(
    log: Any,
    hook: WiseFuseLambdaHook,
    deployed: Deployed,
    event: dict[str, Any],
    *,
    unit_id: str,
    label: str,
    memory_mb: int,
    stage_tasks: Mapping[str, str],
) -> Invoked:
    """Invoke a unit and write its run into the task log; raise if it failed.

    The task log gets every line the unit's functions printed or logged (the response's
    ``logs``, :mod:`wisefuse_plugins.runtime.capture`: prefixed with the stage, its original
    task and the instance, at the record's level), then the invocation's REPORT line
    (``label``: cold/warm, duration, billed duration, memory, cost), then, for a failed
    stage, the :class:`AirflowException` naming it, so what it printed comes before its error.
    A unit that died before answering (timeout, out of memory) has no lines to give: the
    end of the function's own log (Lambda's 4 KB ``LogType=Tail``) is written instead.
    """
    from wisefuse_plugins.runtime import capture  # run time only: it imports the loader

    invoked = hook.invoke(deployed, {**event, "log_bytes": capture.LOG_BYTES})
    payload = invoked.payload or {}
    for level, text in capture.log_lines(payload, stage_tasks):
        log.log(level, "%s", text)
    if invoked.error is not None and invoked.log_tail and "logs" not in payload:
        # the runtime died (timeout, out of memory): the platform's log tail is all there is
        log.warning("the unit returned no log lines; the end of the function's own log:")
        for line in invoked.log_tail.splitlines():
            log.warning("function log | %s", line)
    log.info(
        "%s: %s, %.0f ms (billed %.0f ms, %d MB), $%.8f",
        label,
        "cold" if invoked.cold else "warm",
        invoked.duration_ms,
        invoked.billed_ms,
        memory_mb,
        invoked.cost_usd,
    )
    if invoked.error is not None or not payload.get("ok"):
        raise AirflowException(
            failure_message_for(unit_id, invoked.error or payload.get("error"), stage_tasks)
        )
    return invoked


def failure_message_for(
    unit_id: str, error: Mapping[str, Any] | None, stage_tasks: Mapping[str, str]
) -> str:
    """What failed (stage, original task, instance), and the task's own traceback."""
    error = error or {}
    stage = str(error.get("stage", "?"))
    task = stage_tasks.get(stage)
    where = f"stage {stage!r}" + (f" (task {task!r})" if task and task != stage else "")
    if error.get("instance") is not None:
        where += f" instance {error['instance']}"
    head = f"unit {unit_id!r} failed in {where}: {error.get('type', 'Error')}: {error.get('message', '')}"
    trace = str(error.get("traceback") or "").rstrip()
    return f"{head}\n{trace}" if trace else head
