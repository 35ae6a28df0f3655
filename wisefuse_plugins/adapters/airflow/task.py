"""One task -> one stage: Python when it can run as a plain call elsewhere, opaque (with
the reason) otherwise; an unexpected problem with a task makes only that task opaque."""

from __future__ import annotations

from typing import Any

from wisefuse_plugins.adapters.airflow.calls import python_call
from wisefuse_plugins.adapters.airflow.context import (
    Context,
    ParallelismSource,
    Producer,
    reason_of,
)
from wisefuse_plugins.adapters.airflow.facts import task_meta
from wisefuse_plugins.adapters.airflow.mapping import mapped_in_airflow, task_mapping
from wisefuse_plugins.adapters.airflow.operators import why_not_python
from wisefuse_plugins.ir import Binding, CallableRef, Stage, StageKind


def convert_task(task: Any, ctx: Context) -> Stage:
    """One task -> one stage; records what its consumers need to know about it."""
    reasons = [r for r in [_attempt(why_not_python, task, ctx)] if r]
    mapping: dict[str, Binding] = {}
    count: tuple[int, ParallelismSource] = (1, "static")
    lost = None
    try:
        if mapped_in_airflow(task, ctx):
            mapping, count = task_mapping(task, ctx)
    except Exception as err:
        lost = reason_of(err)
        reasons.append(lost)
    python = None
    if not reasons:
        try:
            python = python_call(task, mapping, ctx)
        except Exception as err:
            reasons.append(reason_of(err))
    try:
        stage = _stage(task, ctx, python, "; ".join(reasons), mapping, count)
    except Exception as err:  # e.g. a value pydantic refuses: keep the bare task
        if mapping:  # consumers must not read instances that are no longer there
            lost = lost or reason_of(err)
        count, stage = (1, "static"), _stage(task, ctx, None, reason_of(err), {}, (1, "static"))
    producer = Producer(stage.id, task.task_id, stage.mapped, lost, *count)
    ctx.done[task.task_id] = ctx.by_stage[stage.id] = producer
    return stage


def _attempt(check: Any, task: Any, ctx: Context) -> str | None:
    try:
        return check(task, ctx)
    except Exception as err:
        return reason_of(err)


def _stage(
    task: Any,
    ctx: Context,
    python: tuple[CallableRef, dict[str, Binding]] | None,
    reason: str,
    mapping: dict[str, Binding],
    count: tuple[int, ParallelismSource],
) -> Stage:
    common: dict[str, Any] = dict(
        id=ctx.ids[task.task_id],
        name=task.task_id,
        parallelism=count[0],
        parallelism_source=count[1],
        retries=_retries(task),
        meta=task_meta(task),
    )
    if python is not None:
        return Stage(kind=StageKind.PYTHON, callable=python[0], bindings=python[1], **common)
    # opaque: keep only the mapping, so instance counts and edge patterns stay right
    return Stage(kind=StageKind.OPAQUE, opaque_reason=reason, bindings=mapping, **common)


def _retries(task: Any) -> int:
    try:
        return max(0, int(task.retries or 0))
    except (TypeError, ValueError):
        return 0
