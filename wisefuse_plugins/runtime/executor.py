"""Run a whole (workflow, plan) on a backend: units in dependency order, bundles in parallel.

This is the orchestrator the local backend, the profiler and the benchmarks use (Airflow,
Prefect and Step Functions orchestrate through their own emitters). Per run it:

1. writes one unit spec per unit (``prepare``) and registers one function per unit;
2. starts a unit when every unit it depends on has finished, after an orchestration delay
   that stands for the target framework's scheduling step;
3. splits a bundled unit's instances into ``ceil(N / bundle_size)`` invocations, run
   concurrently up to ``max_concurrency`` in all;
4. retries a failed invocation as often as its stages' ``retries`` allow (outputs already
   stored are reused, never rewritten), and otherwise stops the run with the stage, the
   instance and the task's traceback;
5. returns the sink stages' outputs, the end-to-end latency, the cost (Lambda bills plus
   the store's requests priced as S3 requests, whichever store is used) and one record
   per invocation.

With ``by_value`` it passes small values itself, as Airflow and Prefect do (see
:mod:`.passing`): they come back in the responses and go into the events of the units
that read them, and never touch the store.
"""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx

from wisefuse_plugins.errors import WiseFuseError
from wisefuse_plugins.ir import Workflow
from wisefuse_plugins.plan.lower import take_counts, unit_chunks
from wisefuse_plugins.plan.pricing import DEFAULT, Pricing, s3_cost
from wisefuse_plugins.plan.schema import Plan, Unit, check_plan, unit_graph
from wisefuse_plugins.runtime import store as st
from wisefuse_plugins.runtime.invoker import Invoked, Invoker
from wisefuse_plugins.runtime.passing import Values
from wisefuse_plugins.runtime.spec import unit_spec, write_spec


class RunFailed(WiseFuseError):
    """A unit failed after its retries; names the stage and instance and keeps the records."""

    def __init__(self, unit: str, error: dict[str, Any], calls: list[Call]) -> None:
        stage, inst = error.get("stage", "?"), error.get("instance")
        where = f"stage {stage!r}"
        if error.get("stages"):  # the runtime died in a fused unit: one of these stages
            where = "one of stages " + ", ".join(repr(s) for s in error["stages"])
        if inst is not None:
            where += f" instance {inst}"
        elif error.get("instances"):
            where += f" instances {error['instances']}"
        super().__init__(
            f"run failed in unit {unit!r}, {where}: {error.get('type', 'Error')}: {error.get('message', '')}",
            hint="see .error['traceback'] for the task's traceback; fix the task and re-run",
        )
        self.unit = unit
        self.error = error
        self.calls = calls


@dataclass
class Call:
    """One invocation of a unit within a run."""

    unit: str
    instances: list[int] | None
    attempt: int
    start_s: float
    end_s: float
    invoked: Invoked

    @property
    def ok(self) -> bool:
        return self.invoked.error is None and bool(self.invoked.payload.get("ok"))


@dataclass
class RunResult:
    run_id: str
    outputs: dict[str, Any]
    e2e_s: float
    cost_usd: float
    calls: list[Call] = field(default_factory=list)


def call_cost(call: Call, pricing: Pricing = DEFAULT) -> float:
    """An invocation's Lambda bill plus the S3 requests it made (as S3 would bill them)."""
    store = call.invoked.payload.get("store") or {}
    return call.invoked.cost_usd + s3_cost(store.get("puts", 0), store.get("gets", 0), pricing)


def prepare(workflow: Workflow, plan: Plan, workdir: Path) -> dict[str, Path]:
    """Write one unit spec per unit into ``workdir``; returns unit id -> spec path."""
    workdir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for unit in plan.units:
        paths[unit.id] = write_spec(
            unit_spec(workflow, plan, unit.id), workdir / f"{unit.id}.unit.json"
        )
    return paths


def _record_counts(payload: dict[str, Any], counts: dict[str, int], lock: threading.Lock) -> None:
    with lock:
        take_counts(counts, payload.get("outputs", []))


def execute(
    workflow: Workflow,
    plan: Plan,
    invoker: Invoker,
    store: st.Store,
    *,
    workdir: Path,
    run_id: str | None = None,
    max_concurrency: int = 16,
    orchestration_s: float = 0.0,
    deploy: bool = True,
    fetch_outputs: bool = True,
    by_value: int = 0,
) -> RunResult:
    """Run ``workflow`` under ``plan`` once; raises :class:`RunFailed` when a unit fails.

    ``by_value``: pass outputs whose pickle is at most this many bytes by value
    (:data:`wisefuse_plugins.runtime.passing.BY_VALUE_BYTES`), not through the store.
    """
    check_plan(plan, workflow)
    graph = unit_graph(plan, workflow)
    opaque = [n for n in graph.nodes if n not in {u.id for u in plan.units}]
    if opaque:
        raise WiseFuseError(
            f"workflow {workflow.name!r} has opaque stages {opaque} that only their framework can run",
            hint="run it through the Airflow or Prefect integration, which keeps opaque tasks in place",
        )
    run_id = run_id or f"r-{uuid.uuid4().hex[:12]}"
    st.check_run_id(run_id)
    if deploy:
        for unit_id, path in prepare(workflow, plan, workdir).items():
            invoker.deploy(plan.unit(unit_id), path)

    units = {u.id: u for u in plan.units}
    retries = {
        u.id: max((workflow.stage(s).retries for s in u.stages), default=0) for u in plan.units
    }
    counts: dict[str, int] = {}
    lock = threading.Lock()
    calls: list[Call] = []
    values = Values()
    specs = {u.id: unit_spec(workflow, plan, u.id) for u in plan.units} if by_value else {}
    stored = 0  # values this orchestrator wrote because an event could not hold them
    t0 = time.perf_counter()

    def one_call(unit: Unit, instances: list[int] | None) -> Call:
        nonlocal stored
        event: dict[str, Any] = {"run_id": run_id, "counts": dict(counts)}
        if instances is not None:
            event["instances"] = instances
        if by_value:
            event["by_value"] = by_value
            event["values"], puts = values.for_event(
                specs[unit.id], run_id, instances, event["counts"], store
            )
            with lock:
                stored += puts
        attempt = 0
        while True:
            if orchestration_s:
                time.sleep(orchestration_s)
            start = time.perf_counter() - t0
            invoked = invoker.invoke(unit.id, {**event, "resume": attempt > 0})
            call = Call(unit.id, instances, attempt, start, time.perf_counter() - t0, invoked)
            with lock:
                calls.append(call)
            if call.ok or attempt >= retries[unit.id]:
                return call
            attempt += 1

    remaining_preds = {n: set(graph.predecessors(n)) for n in graph.nodes}
    pending_calls: dict[str, int] = {}
    futures: dict[Future, str] = {}
    failure: tuple[str, dict[str, Any]] | None = None

    with ThreadPoolExecutor(max_workers=max_concurrency) as pool:

        def launch(unit_id: str) -> None:
            unit = units[unit_id]
            found = unit_chunks(workflow, unit, counts)  # None: not bundled, one invocation
            chunks: list[list[int] | None] = [None] if found is None else list(found)
            if not chunks:  # mapping over an empty list: nothing to run
                pending_calls[unit_id] = 0
                finish(unit_id)
                return
            pending_calls[unit_id] = len(chunks)
            for chunk in chunks:
                futures[pool.submit(one_call, unit, chunk)] = unit_id

        def finish(unit_id: str) -> None:
            for succ in graph.successors(unit_id):
                remaining_preds[succ].discard(unit_id)
                if not remaining_preds[succ]:
                    launch(succ)

        for node in nx.topological_sort(graph):
            if not remaining_preds[node] and node not in pending_calls:
                launch(node)
        while futures:
            done, _ = wait(list(futures), return_when=FIRST_COMPLETED)
            for fut in done:
                unit_id = futures.pop(fut)
                call = fut.result()
                if not call.ok:
                    failure = failure or (unit_id, _failure(units[unit_id], call))
                    continue
                _record_counts(call.invoked.payload, counts, lock)
                values.take(call.invoked.payload)
                pending_calls[unit_id] -= 1
                if pending_calls[unit_id] == 0 and failure is None:
                    finish(unit_id)
    e2e = time.perf_counter() - t0
    sweep = getattr(store, "sweep_temp", None)
    if sweep is not None:  # every invocation has returned: partial writes are orphans
        sweep(f"runs/{run_id}")
    if failure is not None:
        raise RunFailed(failure[0], failure[1], calls)
    outputs = _sink_outputs(workflow, store, values, run_id, counts) if fetch_outputs else {}
    cost = sum(call_cost(c) for c in calls) + s3_cost(puts=stored)
    return RunResult(run_id, outputs, e2e, cost, calls)


def _failure(unit: Unit, call: Call) -> dict[str, Any]:
    """Where and why ``call`` failed. When the runtime itself died (out of memory, timeout,
    killed) the handler could not say which stage was running: name the unit's stage if
    it has only one, and the instances the invocation ran."""
    if call.invoked.error is None:
        return call.invoked.payload.get("error") or {"message": "unknown failure"}
    error = dict(call.invoked.error)
    if len(unit.stages) == 1:
        error["stage"] = unit.stages[0]
    else:
        error["stages"] = list(unit.stages)
    if call.instances is not None:
        error["instances"] = list(call.instances)
        if len(call.instances) == 1:
            error["instance"] = call.instances[0]
    return error


def _sink_outputs(
    workflow: Workflow, store: st.Store, values: Values, run_id: str, counts: dict[str, int]
) -> dict[str, Any]:
    out = {}
    for s in workflow.python_stages:
        if workflow.successors(s.id):
            continue
        if s.mapped:
            out[s.id] = [
                values.get(store, st.output_key(run_id, s.id, i))
                for i in range(counts.get(s.id, 0))
            ]
        else:
            out[s.id] = values.get(store, st.output_key(run_id, s.id))
    return out
