"""A plain call of a ``@wisefuse`` flow, traced, and its trace filed where plans find it.

Why a module: when no plan fits, the call still runs the flow once, as it is, and that one
run is the trace the next plan needs. The adapter's IR lacks what the decorator needs
(what the flow returns in stage terms, the SLO, the flow's source), so it is completed
here, written as the latest trace and as the trace for the call's parameters (named by
:func:`parameters_digest`), and its task timings go to the profile archive. Recording
never fails a run that succeeded: it says why at WARNING in the run's logs instead.
``flow`` below is the :class:`~.decorator.WiseFuseFlow`.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wisefuse_plugins.errors import WiseFuseError
from wisefuse_plugins.ir import Source, Workflow
from wisefuse_plugins.providers.prefect.notices import tell, telling
from wisefuse_plugins.providers.prefect.plancheck import fix_hint

__all__ = [
    "archive",
    "jsonable",
    "parameters_digest",
    "plain_json",
    "record",
    "returning",
    "task_runs",
    "traced_call",
]


def traced_call(
    flow: Any, args: tuple, kwargs: dict[str, Any], notice: tuple[int, str] | None = None
) -> Any:
    """Run the flow as it is, once, traced; return what ``flow()`` returns (or raise).

    ``notice``: (level, message) to log in the flow run's logs as it starts."""
    from wisefuse_plugins.adapters.prefect import trace_flow

    box: dict[str, Any] = {}

    def keep_state(flow: Any, flow_run: Any, state: Any) -> None:
        box["state"] = state

    traced = flow.plain(
        on_completion=[*flow.on_completion_hooks, keep_state],
        on_failure=[*flow.on_failure_hooks, keep_state],
        on_crashed=[*flow.on_crashed_hooks, keep_state],
        on_cancellation=[*flow.on_cancellation_hooks, keep_state],
    )
    body = telling(flow.own_fn, notice) if notice else flow.own_fn
    traced.fn = returning(body, box, flow.own_fn)
    try:
        workflow = trace_flow(traced, *args, root=flow.code_root, **kwargs)
    except Exception as err:
        state = box.get("state")
        if state is None:
            raise
        if state.is_completed():  # the flow ran; only the trace failed
            tell(
                logging.WARNING,
                f"flow {flow.name!r} ran, but its trace could not be recorded: {err}",
                state.state_details.flow_run_id,
                flow,
            )
        return state.result()  # raises the flow's own error when it failed
    value = box["state"].result()
    try:
        record(flow, workflow, box, args, kwargs)
    except Exception as err:  # recording must never fail a run that succeeded
        tell(
            logging.WARNING,
            f"flow {flow.name!r} ran, but its trace could not be recorded: {err}",
            box["state"].state_details.flow_run_id,
            flow,
        )
    return value


def record(
    flow: Any, workflow: Workflow, box: dict[str, Any], args: tuple, kwargs: dict[str, Any]
) -> None:
    """Complete the traced run's IR (returns, SLO, source) and write it as the latest trace
    and the trace for its parameters; file its timings; say where, with the next step."""
    from wisefuse_plugins.ir import dump
    from wisefuse_plugins.providers.prefect.returns import ReturnsUnknown, resolve_runs

    meta = dict(workflow.meta)
    if "returns" in box:
        try:
            order = box.get("run_order")
            runs = None if order is not None else task_runs(meta.get("flow_run_id"))
            meta["returns"] = resolve_runs(box["returns"], workflow, order=order, task_runs=runs)
        except ReturnsUnknown as err:
            meta["returns_problem"] = str(err)
    else:
        meta["returns_problem"] = box.get("returns_problem", "the flow did not return")
    if flow._wisefuse.slo is not None:
        meta["slo"] = flow._wisefuse.slo
    flow_file = Path(inspect.getsourcefile(flow.own_fn) or "").resolve()
    root = flow.code_root
    rel = flow_file.relative_to(root).as_posix() if flow_file.is_relative_to(root) else None
    data = workflow.model_dump()
    data.update(
        meta=meta,
        source=Source(framework="prefect", root=str(root), path=rel, entry=flow.own_fn.__name__),
    )
    workflow = Workflow.model_validate(data)

    params = meta.get("parameters") or flow.call_parameters(*args, **kwargs)
    latest, exact = flow.trace_paths(params)
    assert exact is not None
    exact.parent.mkdir(parents=True, exist_ok=True)
    dump(workflow, exact)
    dump(workflow, latest)
    archived = archive(workflow, flow._wisefuse.trace_memory_mb)
    tell(
        logging.WARNING,
        f"recorded the trace of flow {flow.name!r} at {latest} "
        f"({len(workflow.stages)} stages){archived}; to plan it: "
        + fix_hint(flow).removeprefix("re-plan from the latest trace: "),
        box["state"].state_details.flow_run_id,
        flow,
    )


def archive(workflow: Workflow, memory_mb: int) -> str:
    """File the traced run's task timings in the profile archive (when it exists), under
    ``memory_mb``; say what was filed where (the end of the recorded-trace notice)."""
    try:
        from wisefuse_plugins.profiles.archive import Sample, open_archive
    except ImportError:
        return " (no profile archive in this version: the timings stay in the IR's meta)"
    run_id = workflow.meta.get("flow_run_id", "?")
    samples = [
        Sample(
            workflow=workflow.name,
            stage=s.id,
            code_hash=s.callable.code_hash,
            memory_mb=memory_mb,
            duration_ms=float(ms),
            backend="prefect",
            instance=i if s.mapped else None,
            source="prefect",
            ref=f"prefect:{run_id}:{s.id}:{i}",
        )
        for s in workflow.python_stages
        if s.callable is not None
        for i, ms in enumerate(s.meta.get("observed_ms") or [])  # type: ignore[arg-type]
        if isinstance(ms, int | float) and ms >= 0
    ]
    with open_archive() as opened:
        added = opened.add(samples)
        shown = opened._shown_url()
    return f" and {added} task timings in the profile archive {shown}"


def returning(fn: Callable, box: dict[str, Any], source: Callable | None = None) -> Callable:
    """``fn``, noting in ``box`` what its return value is made of (inside the flow run);
    ``source``: the function whose code makes that value (default ``fn``)."""
    from wisefuse_plugins.providers.prefect.returns import (
        ReturnsUnknown,
        describe_return,
        run_order_from_tracer,
    )

    @functools.wraps(fn)
    def body(*args: Any, **kwargs: Any) -> Any:
        value = fn(*args, **kwargs)
        box.pop("returns", None)
        try:
            box["run_order"] = run_order_from_tracer()
            box["returns"] = describe_return(value, source or fn)
        except ReturnsUnknown as err:
            box["returns_problem"] = str(err)
        except Exception as err:
            box["returns_problem"] = f"the returned value could not be analysed: {err}"
        return value

    return body


def task_runs(flow_run_id: Any) -> list[Any]:
    """Every task run of one flow run (paged), from the Prefect API."""
    if not flow_run_id:
        raise WiseFuseError("the trace has no flow run id")
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    runs: list[Any] = []
    with get_client(sync_client=True) as client:
        while True:
            page = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                limit=200,
                offset=len(runs),
            )
            runs += page
            if len(page) < 200:
                return runs


def parameters_digest(parameters: dict[str, Any]) -> str:
    """A short, stable name for a set of parameter values."""
    text = json.dumps(parameters, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def jsonable(value: Any) -> Any:
    """The value as the Prefect adapter records parameters: a JSON copy, else its repr."""
    try:
        return json.loads(json.dumps(value, allow_nan=False)) if plain_json(value) else repr(value)
    except (TypeError, ValueError):
        return repr(value)


def plain_json(value: Any) -> bool:
    if value is None or type(value) in (bool, str, int, float):
        return True
    if type(value) is list:
        return all(plain_json(v) for v in value)
    if type(value) is dict:
        return all(isinstance(k, str) and plain_json(v) for k, v in value.items())
    return False
