""":func:`trace_flow`: run a flow once for real under the tracer, then turn the recorded
calls into the IR (one stage per call).

Separate from the recording (:mod:`.tracer`, :mod:`.patch`) because this is the graph
side: stage ids, bindings from the recorded parameters, control edges, and the API's
durations and states in ``Stage.meta``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from wisefuse_plugins.adapters.prefect.context import lambda_problems
from wisefuse_plugins.adapters.prefect.errors import PrefectAdapterError, require_prefect
from wisefuse_plugins.adapters.prefect.patch import instrumented
from wisefuse_plugins.adapters.prefect.refs import reference, workflow_source
from wisefuse_plugins.adapters.prefect.runs import (
    duration_ms,
    input_runs,
    state_name,
    wait_for_runs,
)
from wisefuse_plugins.adapters.prefect.snapshot import jsonable
from wisefuse_plugins.adapters.prefect.tracer import Call, Param, Tracer, same_runs
from wisefuse_plugins.ir import (
    Binding,
    Collect,
    Const,
    ConstItem,
    Item,
    Output,
    Stage,
    StageKind,
    Workflow,
    derive_edges,
    safe_name,
)


def trace_flow(flow: Any, *args: Any, root: str | Path | None = None, **kwargs: Any) -> Workflow:
    """Run ``flow(*args, **kwargs)`` once for real and return its graph as a Workflow.

    The run goes to whatever Prefect API the environment points at. ``root`` is the folder
    callables are referenced from (default: the flow file's folder); tasks defined outside
    it, lambdas and nested functions become opaque stages. The IR is specialised to this
    run: its parameters (``Workflow.meta["parameters"]``) and mapped lengths. A flow
    parameter literally named ``root`` must be passed positionally.
    """
    require_prefect()
    from prefect.client.orchestration import get_client
    from prefect.flows import Flow

    if not isinstance(flow, Flow):
        raise PrefectAdapterError(
            f"{flow!r} is not a Prefect flow",
            hint="decorate the function with @flow, or load it with load_flow_file(path)",
        )
    if flow.isasync:
        raise PrefectAdapterError(f"flow {flow.name!r} is async; only sync flows can be traced")
    flow_file = Path(inspect.getsourcefile(flow.fn) or "").resolve()
    root_path = Path(root).resolve() if root is not None else flow_file.parent
    try:
        parameters = inspect.signature(flow.fn).bind(*args, **kwargs)
    except TypeError as err:
        raise PrefectAdapterError(f"flow {flow.name!r}: {err}") from None
    parameters.apply_defaults()

    tracer = Tracer()
    with instrumented(tracer):
        state = flow(*args, return_state=True, **kwargs)
    if not state.is_completed():
        raise PrefectAdapterError(
            f"the traced run of flow {flow.name!r} ended {state.type.value}: {state.message}",
            hint="fix the flow (or its parameters) so that it completes, then trace it again",
        )
    flow_run_id = state.state_details.flow_run_id
    calls = tracer.final_calls()
    with get_client(sync_client=True) as client:
        expected = {r for c in calls if c.how != "subflow" for r in c.runs}
        api = wait_for_runs(client, flow_run_id, expected)
        for c in calls:
            if c.child_flow_run is not None:
                api[c.child_flow_run] = client.read_flow_run(c.child_flow_run)

    stages, control = _trace_stages(calls, api, root_path)
    meta: dict[str, Any] = {
        "parameters": {k: jsonable(v) for k, v in parameters.arguments.items()},
        "flow_run_id": str(flow_run_id),
        "built_by": "trace",
    }
    if tracer.notes:
        meta["notes"] = tracer.notes
    return Workflow(
        name=flow.name,
        stages=stages,
        edges=derive_edges(stages, control=control),
        source=workflow_source(flow_file, root_path, flow.fn.__name__),
        meta=meta,
    )


@dataclass
class _Index:
    """What building one stage needs to know about all the calls."""

    ids: dict[int, str]  # call order -> stage id
    owner: dict[UUID, tuple[Call, int]]  # run -> (call, instance)
    api: dict[UUID, Any]  # run -> the API's task run (or flow run, for a subflow)
    root: Path


def _trace_stages(
    calls: list[Call], api: dict[UUID, Any], root: Path
) -> tuple[list[Stage], list[tuple[str, str]]]:
    """Stages (one per call) and control edges from the recorded calls."""
    taken: set[str] = set()
    ids: dict[int, str] = {}
    for c in calls:
        ids[c.order] = safe_name(c.obj.name, taken)
        taken.add(ids[c.order])
    index = _Index(ids, {r: (c, i) for c in calls for i, r in enumerate(c.runs)}, api, root)
    stages, control, seen = [], [], {}
    for c in calls:
        stage, reads = _stage_from_call(c, index)
        seen[id(c.obj)] = seen.get(id(c.obj), -1) + 1
        stage.meta["call"] = seen[id(c.obj)]  # 0 for the first call of this task, 1 next...
        stages.append(stage)
        control += [(src, stage.id) for src in reads if src != stage.id]
    return stages, control


def _binding(
    name: str,
    param: Param,
    owner: dict[UUID, tuple[Call, int]],
    ids: dict[int, str],
) -> tuple[Binding | None, str | None, set[str]]:
    """The IR binding of one recorded parameter, or why it has none (and what it reads)."""
    if param.kind == "const":
        return Const(value=param.value), None, set()
    if param.kind == "items":
        return ConstItem(values=param.value), None, set()
    reads = {ids[owner[r][0].order] for r in _runs_read(param) if r in owner}
    if param.kind == "unbound":
        return None, f"parameter {name!r}: {param.reason}", reads
    if param.kind == "run":
        src = owner.get(param.run)  # type: ignore[arg-type]
        if src is None:
            return None, f"parameter {name!r} reads a run that is not a stage of this flow", reads
        producer, instance = src
        sid = ids[producer.order]
        if param.index is not None:
            why = (
                f"parameter {name!r} reads element {param.index} of {sid!r}'s output; "
                "return a dict and index it by key, or pass the whole output"
            )
            return None, why, reads
        if producer.how == "map":
            why = f"parameter {name!r} reads one instance (#{instance}) of mapped {sid!r}"
            return None, why, reads
        kind = Item if param.mapped else Output
        return kind(stage=sid, key=param.key), None, set()
    producer = _whole_map(param.cands, owner)  # runs: a list of outputs
    if producer is None:
        why = (
            f"parameter {name!r} is a list of outputs that are not all the instances of one "
            "mapped task, in order"
        )
        return None, why, reads
    sid = ids[producer.order]
    return (Item(stage=sid) if param.mapped else Collect(stage=sid)), None, set()


def _runs_read(param: Param) -> set[UUID]:
    """Every upstream run a parameter reads, whether the IR can bind it or not."""
    runs = set(param.deps)
    if param.run is not None:
        runs.add(param.run)
    for cands in param.cands:
        runs |= cands if len(cands) == 1 else set()
    return runs


def _whole_map(cands: list[frozenset[UUID]], owner: dict[UUID, tuple[Call, int]]) -> Call | None:
    """The ``.map()`` call whose runs, in order, are the given elements (a gather)."""
    calls = {owner[r][0].order: owner[r][0] for r in cands[0] if r in owner}
    for call in calls.values():
        if same_runs(call, cands):
            return call
    return None


def _stage_from_call(call: Call, index: _Index) -> tuple[Stage, list[str]]:
    """One call's stage, and the stages it depends on for ordering only."""
    sid, obj = index.ids[call.order], call.obj
    bindings: dict[str, Binding] = {}
    reasons = list(call.reasons)
    accounted: dict[str, set[str]] = {}  # param -> stages it really reads
    reads: list[str] = []
    for name, param in call.params.items():
        binding, why, unbound_reads = _binding(name, param, index.owner, index.ids)
        if binding is not None:
            bindings[name] = binding
        reasons += [why] if why else []
        reads += sorted(unbound_reads - set(reads))
        accounted[name] = unbound_reads | {getattr(binding, "stage", None)} - {None}
    for cands in call.wait_for:
        src = index.owner.get(next(iter(cands)))
        if src is not None and index.ids[src[0].order] not in reads:
            reads.append(index.ids[src[0].order])
    ref, problem = reference(obj.fn, index.root)
    reasons = ([problem] if problem else []) + reasons
    if call.how != "subflow":
        reasons += lambda_problems(obj)
    if call.how == "subflow":
        reasons.insert(0, f"Prefect subflow {obj.name!r}: its tasks stay in Prefect")
    n = len(call.runs) if call.how == "map" else 1
    if call.how == "map" and n == 0:
        reasons.append("mapped over an empty list in the traced run")
    if call.how == "map" and not any(isinstance(b, Item | ConstItem) for b in bindings.values()):
        placeholder = next((k for k, p in call.params.items() if p.mapped), "__mapped__")
        bindings[placeholder] = ConstItem(values=[None] * max(n, 1))
    stage = Stage(
        id=sid,
        name=obj.name,
        kind=StageKind.OPAQUE if reasons else StageKind.PYTHON,
        callable=ref,
        bindings=bindings,
        parallelism=max(n, 1),
        parallelism_source="observed" if call.how == "map" else "static",
        opaque_reason="; ".join(reasons) if reasons else None,
        retries=int(getattr(obj, "retries", 0) or 0) if call.how != "subflow" else 0,
        meta=_call_meta(call, index, accounted),
    )
    return stage, reads


def _call_meta(call: Call, index: _Index, accounted: dict[str, set[str]]) -> dict[str, Any]:
    """Observed durations and states from the API, and the inputs it recorded in vain."""
    runs = [index.api.get(r) for r in call.runs]
    meta: dict[str, Any] = {
        "how": call.how,
        "observed_ms": [d for r in runs if r is not None and (d := duration_ms(r)) is not None],
    }
    if call.how != "subflow":
        meta["task_key"] = call.obj.task_key
    states = sorted({state_name(r) for r in runs if r is not None})
    if states != ["COMPLETED"]:
        meta["states"] = states
    ignored = _ignored_inputs(call, runs, index, accounted)
    if ignored:
        meta["ignored_api_inputs"] = ignored
    return meta


def _ignored_inputs(
    call: Call, runs: list[Any], index: _Index, accounted: dict[str, set[str]]
) -> dict[str, list[str]]:
    """Inputs Prefect recorded that the trace found spurious (identity collisions)."""
    ignored: dict[str, set[str]] = {}
    for run in runs:
        for param, items in (getattr(run, "task_inputs", None) or {}).items():
            if param in ("__parents__", "wait_for"):
                continue
            for rid in input_runs(items):
                src = index.owner.get(rid)
                if src is None:
                    continue
                sid = index.ids[src[0].order]
                if src[0] is call:
                    ignored.setdefault(param, set()).add(f"{sid} (a sibling)")
                elif sid not in accounted.get(param, set()):
                    ignored.setdefault(param, set()).add(sid)
    return {k: sorted(v) for k, v in sorted(ignored.items())}
