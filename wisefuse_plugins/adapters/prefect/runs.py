"""Reading task runs from the Prefect API: paging, waiting for the last ones, and what a run
record says (state, duration, recorded inputs, task name).

Separate because both builders read these records -- a trace for names, states and
times, history for everything -- and so do the profile importers (:func:`task_name`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any
from uuid import UUID

API_WAIT_S = 20.0  # how long to wait for the API to record the traced run's task runs


_FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def state_name(run: Any) -> str:
    state_type = getattr(run, "state_type", None)
    return str(getattr(state_type, "value", state_type) or "UNKNOWN")


def read_task_runs(client: Any, flow_run_id: UUID) -> list[Any]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    runs, page = [], 200
    while True:
        batch = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            limit=page,
            offset=len(runs),
        )
        runs.extend(batch)
        if len(batch) < page:
            return runs


def wait_for_runs(client: Any, flow_run_id: UUID, expected: set[UUID]) -> dict[UUID, Any]:
    """The flow run's task runs, once the API has recorded every expected one as finished.

    Prefect records task runs from events, asynchronously: right after a flow returns, the
    last ones may still be missing or running. Gives up after ``API_WAIT_S`` seconds and
    returns what there is (durations are then missing for the rest).
    """
    deadline = time.monotonic() + API_WAIT_S
    while True:
        runs = {r.id: r for r in read_task_runs(client, flow_run_id)}
        done = {i for i, r in runs.items() if state_name(r) in _FINAL and r.end_time}
        if expected <= done or time.monotonic() > deadline:
            return runs
        time.sleep(0.1)


def duration_ms(run: Any) -> float | None:
    start, end = getattr(run, "start_time", None), getattr(run, "end_time", None)
    if start is not None and end is not None:
        return round((end - start).total_seconds() * 1000, 3)
    total = getattr(run, "total_run_time", None)
    return round(total.total_seconds() * 1000, 3) if total else None


def input_runs(items: Sequence[Any]) -> set[UUID]:
    """Producer ids among recorded inputs: task runs, and flow runs (a subflow's result)."""
    return {x.id for x in items if getattr(x, "input_type", None) in ("task_run", "flow_run")}


def task_name(run: Any) -> str:
    """The task's name: Prefect names runs ``<task name>-<dynamic key prefix>``."""
    name, key = run.name or run.task_key, str(run.dynamic_key or "")
    for suffix in (key, key[:3]):
        if suffix and name.endswith(f"-{suffix}"):
            return name[: -len(suffix) - 1]
    return name.rsplit("-", 1)[0] if "-" in name else name
