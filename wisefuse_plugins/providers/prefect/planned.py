"""Running a (workflow, plan) inside a Prefect flow run: one task run per unit invocation.

Both the ``@wisefuse`` decorator and the flow files :mod:`wisefuse_plugins.emitters.prefect`
writes go through :class:`PlannedRun`, so they behave the same: the plan's units are
deployed as functions on the block's backend, each invocation of a unit is a Prefect task
run named after the unit's stages (a bundled unit: one task run per chunk of instances,
via ``.map``), dependencies between units are Prefect ``wait_for`` links, and the flow's
return value is rebuilt from the stages' outputs (see
:mod:`~wisefuse_plugins.providers.prefect.returns`). Data never passes through Prefect:
tasks exchange only the run id, the unit id and instance numbers.

Small outputs are passed by value (:mod:`wisefuse_plugins.runtime.passing`), as Prefect
itself passes task results: they come back in a unit's response, stay in this process
(:attr:`PlannedRun.values`) and go into the events of the units that read them, so they
cost no store request; larger ones go through the store. A block with ``keep_outputs``
passes nothing by value: it keeps every output in the store, to be looked at there.

Unit tasks find their run through a registry in this process, so they need a task runner
that runs tasks in the flow's process (Prefect's default thread pool; the decorator sets
one). Unit specs are written content-addressed (``<unit>-<hash>.unit.json``): a unit whose
spec did not change keeps its deployed function and its warm workers from run to run.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from wisefuse_plugins.errors import WiseFuseError
from wisefuse_plugins.ir import Workflow
from wisefuse_plugins.ir.names import safe_name
from wisefuse_plugins.plan.lower import (
    CountOrigin,
    chunks,
    count_source,
    take_counts,
    unit_instance_count,
)
from wisefuse_plugins.plan.schema import Plan, Unit, check_plan, is_bundled_unit, unit_graph
from wisefuse_plugins.providers.prefect.returns import rebuild, stages_read
from wisefuse_plugins.runtime import capture, passing
from wisefuse_plugins.runtime import store as st
from wisefuse_plugins.runtime.spec import UnitSpec, unit_spec, write_spec

if TYPE_CHECKING:
    from wisefuse_plugins.providers.prefect.blocks import WiseFuseLambda
    from wisefuse_plugins.runtime.invoker import Invoker

__all__ = [
    "PlannedRun",
    "UnitFailed",
    "chunk_labels",
    "invoke_unit",
    "run_in_flow",
    "unit_label",
    "unit_task",
]


class UnitFailed(WiseFuseError):
    """A unit invocation failed: names the stage, the instance and the task's error."""

    def __init__(self, unit: str, error: dict[str, Any]) -> None:
        stage, inst = error.get("stage", "?"), error.get("instance")
        where = f"stage {stage!r}" + ("" if inst is None else f" instance {inst}")
        message = (
            f"unit {unit!r} failed in {where}: "
            f"{error.get('type', 'Error')}: {error.get('message', '')}"
        )
        remote = str(error.get("traceback") or "").strip()
        if remote:
            message += "\n\nTraceback in the unit's function:\n" + remote[-4000:]
        super().__init__(message, hint="fix the task, then run the flow again")
        self.unit = unit
        self.error = error


def opaque_problem(workflow: Workflow) -> str | None:
    """Why the plan's units cannot run this workflow outside Prefect (None when they can)."""
    opaque = [f"{s.id} ({s.opaque_reason})" for s in workflow.stages if not s.is_python]
    if opaque:
        return f"it has opaque stages that only Prefect can run: {'; '.join(opaque)}"
    return None


@dataclass
class PlannedRun:
    """One run of a workflow under a plan, on one backend; unit tasks look it up by id."""

    workflow: Workflow
    plan: Plan
    invoker: Invoker
    store: st.Store
    workdir: Path
    run_id: str
    concurrency: int = 16
    keep_outputs: bool = False
    backend: str = "local"
    counts: dict[str, int] = field(default_factory=dict)  # as the units' responses report
    lowered: dict[str, int] = field(default_factory=dict)  # instances of bundled units' stages
    calls: list[dict[str, Any]] = field(default_factory=list)
    values: passing.Values = field(default_factory=passing.Values)
    specs: dict[str, UnitSpec] = field(default_factory=dict)  # as deployed, by unit id
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _slots: threading.BoundedSemaphore | None = None

    _active: ClassVar[dict[str, PlannedRun]] = {}
    _active_lock: ClassVar[threading.Lock] = threading.Lock()

    # ---------------------------------------------------------------- life cycle

    @classmethod
    def start(
        cls,
        workflow: Workflow,
        plan: Plan,
        block: WiseFuseLambda | str | None = None,
        *,
        namespace: str | None = None,
        code_root: str | Path | None = None,
        run_id: str | None = None,
    ) -> PlannedRun:
        """Check the plan, build the block's backend and store, deploy the units."""
        from wisefuse_plugins.providers.prefect.blocks import WiseFuseLambda
        from wisefuse_plugins.runtime.store import wisefuse_home

        check_plan(plan, workflow)
        problem = opaque_problem(workflow)
        if problem is not None:
            raise WiseFuseError(
                f"workflow {workflow.name!r} cannot run as plan units: {problem}",
                hint="run the flow itself in Prefect",
            )
        if block is None:
            block = WiseFuseLambda()
        elif isinstance(block, str):
            block = WiseFuseLambda.load(block)
        namespace = namespace or workflow.name
        root = Path(code_root or workflow.source.root).resolve()
        run = cls(
            workflow=workflow,
            plan=plan,
            invoker=block.make_backend(root, namespace),
            store=block.make_store(),
            workdir=wisefuse_home() / "units" / safe_name(namespace),
            run_id=run_id or f"r-{uuid.uuid4().hex[:16]}",
            concurrency=block.concurrency_limit,
            keep_outputs=block.keep_outputs,
            backend=block.backend,
        )
        run._slots = threading.BoundedSemaphore(run.concurrency)
        st.check_key(run.run_id)
        run.deploy()
        with cls._active_lock:
            cls._active[run.run_id] = run
        return run

    @classmethod
    def get(cls, run_id: str) -> PlannedRun:
        with cls._active_lock:
            run = cls._active.get(run_id)
        if run is None:
            raise WiseFuseError(
                f"no planned run {run_id!r} in this process",
                hint="unit tasks must run in the flow's process: use Prefect's thread-pool task runner",
            )
        return run

    def deploy(self) -> None:
        """Write each unit's spec (content-addressed) and deploy its function."""
        returns = self.workflow.meta.get("returns")
        needed = stages_read(returns) if isinstance(returns, dict) else set()
        self.workdir.mkdir(parents=True, exist_ok=True)
        for unit in self.plan.units:
            spec = unit_spec(self.workflow, self.plan, unit.id)
            extra = [s for s in unit.stages if s in needed and s not in spec.exports]
            # Exports: the flow may return a stage that a fused consumer reads in memory.
            # Bundles: chunks are counted here, so a unit's spec (hence its function and
            # warm workers) does not change with the bundle sizes downstream.
            spec = spec.model_copy(update={"exports": [*spec.exports, *extra], "bundles": []})
            self.specs[unit.id] = spec  # what invoke asks for the values the unit reads
            text = spec.model_dump_json(indent=2)
            digest = hashlib.sha256(text.encode()).hexdigest()[:12]
            path = self.workdir / f"{unit.id}-{digest}.unit.json"
            if not path.exists():
                write_spec(spec, path)
            self.invoker.deploy(unit, path)

    def close(self) -> None:
        """Forget the run; drop its outputs from the store unless the block keeps them."""
        with self._active_lock:
            self._active.pop(self.run_id, None)
        if not self.keep_outputs:
            # cleaning up must never hide the run's own outcome
            with contextlib.suppress(Exception):
                self.store.delete_prefix(f"runs/{self.run_id}")

    # ---------------------------------------------------------------- units

    def invoke(self, unit_id: str, instances: list[int] | None = None) -> dict[str, Any]:
        """Invoke one unit (one chunk of a bundled unit); raise :class:`UnitFailed` on error.

        Small values go by value unless the block keeps outputs. The record keeps the
        store requests the unit reported (``store``: gets, puts) and the PUTs made here of
        values too large together for the event (``values_stored``): S3 bills both.
        """
        event: dict[str, Any] = {
            "run_id": self.run_id,
            "counts": self._counts(),
            "log_bytes": capture.LOG_BYTES,  # what the unit prints goes into the task run's log
        }
        if instances is not None:
            event["instances"] = list(instances)
        stored = 0
        if not self.keep_outputs:  # kept outputs must all be in the store
            event["by_value"] = passing.BY_VALUE_BYTES  # read here: tests change it
            event["values"], stored = self.values.for_event(
                self.specs[unit_id],
                self.run_id,
                event.get("instances"),
                event["counts"],
                self.store,
            )
        assert self._slots is not None
        with self._slots:
            invoked = self.invoker.invoke(unit_id, event)
        payload = invoked.payload or {}
        forward_logs(payload)
        record = {
            "unit": unit_id,
            "instances": instances,
            "cold": invoked.cold,
            "duration_ms": round(invoked.duration_ms, 3),
            "billed_ms": invoked.billed_ms,
            "init_ms": invoked.init_ms,
            "cost_usd": invoked.cost_usd,
            "store": dict(payload.get("store") or {}),
            "values_stored": stored,
        }
        with self._lock:
            self.calls.append(record)
        if invoked.error is not None or not payload.get("ok"):
            raise UnitFailed(
                unit_id,
                invoked.error or payload.get("error") or {"message": "the unit reported failure"},
            )
        self.values.take(payload)
        with self._lock:
            take_counts(self.counts, payload.get("outputs", []))
        return record

    def _counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)

    def chunks(self, unit_id: str) -> list[list[int]]:
        """Instance chunks of a bundled unit, once the unit that knows its size has run.

        The lowering counts them (:func:`~wisefuse_plugins.plan.lower.unit_chunks`) from
        what the responses reported, so a count not known yet is a
        :class:`~wisefuse_plugins.plan.lower.LoweringError` naming the unit and what it
        waits for, never a guess. A bundled unit mapping over another bundled unit's
        instances is counted from that unit's own lowering: its chunks may still run.
        """
        unit = self.plan.unit(unit_id)
        with self._lock:
            counts = {**self.counts, **self.lowered}
        n = unit_instance_count(self.workflow, unit, counts)
        with self._lock:
            self.lowered.update(dict.fromkeys(unit.stages, n))
        return chunks(n, unit.bundle_size)

    def count_source_unit(self, unit_id: str) -> str | None:
        """The unit that must finish before a bundled unit's chunks are known."""
        src = count_source(self.workflow, self.plan, unit_id)
        return src.unit if isinstance(src, CountOrigin) else None

    # ---------------------------------------------------------------- results

    def instance_count(self, stage: str) -> int:
        """Instances of a mapped stage: counted from the responses, else those stored or
        passed by value (a stage no response named, e.g. mapped over an empty list)."""
        with self._lock:
            if stage in self.counts:
                return self.counts[stage]
        stored = set(self.store.list(f"runs/{self.run_id}/{stage}"))
        n = 0
        while (key := st.output_key(self.run_id, stage, n)) in stored or key in self.values:
            n += 1
        return n

    def output(self, stage: str, instance: int | None = None) -> Any:
        """A stage's output (one instance's): passed by value, else from the store."""
        return self.values.get(self.store, st.output_key(self.run_id, stage, instance))

    def result(self) -> Any:
        """What the flow returns: its return spec rebuilt, else ``{sink stage: output}``."""
        returns = self.workflow.meta.get("returns")
        if isinstance(returns, dict):
            return rebuild(returns, self.output, self.output, self.instance_count)
        out: dict[str, Any] = {}
        for s in self.workflow.python_stages:
            if self.workflow.successors(s.id):
                continue
            if s.mapped:
                out[s.id] = [self.output(s.id, i) for i in range(self.instance_count(s.id))]
            else:
                out[s.id] = self.output(s.id)
        return out

    def finish(self, futures: list[Any]) -> Any:
        """Wait for every unit task run, raise the first failure, return the flow's value."""
        from prefect.futures import wait

        wait(futures)
        for f in futures:  # in dependency order: the first failure is the cause
            f.result()
        return self.result()

    def summary(self) -> str:
        calls = list(self.calls)
        cost = sum(c["cost_usd"] for c in calls)
        cold = sum(1 for c in calls if c["cold"])
        return (
            f"{len(calls)} invocations of {len(self.plan.units)} units on {self.backend}: "
            f"${cost:.8f}, {cold} cold starts"
        )


# =========================================================================== Prefect tasks


def invoke_unit(
    run_id: str, unit: str, chunk: str = "", instances: list[int] | None = None
) -> dict[str, Any]:
    """The body of every unit task: invoke the unit (``chunk`` only names the task run)."""
    return PlannedRun.get(run_id).invoke(unit, instances)


def forward_logs(payload: dict[str, Any]) -> None:
    """Write the lines a unit's functions printed and logged (the response's ``logs``) into
    the log of the Prefect task run that invoked it, as a plain task's output would be; the
    stage and instance come first on each line. Outside a task run: nowhere."""
    lines = capture.log_lines(payload)
    if not lines:
        return
    from prefect.context import TaskRunContext
    from prefect.logging import get_run_logger

    if TaskRunContext.get() is None:
        return
    logger = get_run_logger()
    for level, text in lines:
        logger.log(level, "%s", text)


def unit_label(unit: Unit) -> str:
    """A unit's name in Prefect: its stages joined by ``+`` (what the UI shows)."""
    return "+".join(unit.stages)


def chunk_labels(chunks: list[list[int]]) -> list[str]:
    """How each chunk of instances shows in a task run's name: ``0-4``, ``5``, ``1,3``."""
    labels = []
    for c in chunks:
        if c and c == list(range(c[0], c[-1] + 1)):
            labels.append(f"{c[0]}" if len(c) == 1 else f"{c[0]}-{c[-1]}")
        else:
            labels.append(",".join(map(str, c)) or "-")
    return labels


def unit_task(unit: Unit, workflow: Workflow) -> Any:
    """A Prefect task that invokes ``unit``; retried as often as its stages allow."""
    from prefect import task
    from prefect.cache_policies import NO_CACHE

    label = unit_label(unit)
    retries = max((workflow.stage(s).retries for s in unit.stages), default=0)
    bundled = is_bundled_unit(unit, workflow)
    return task(
        invoke_unit,
        name=label,
        task_run_name=f"{label} [{{chunk}}]" if bundled else label,
        retries=retries,
        cache_policy=NO_CACHE,
        persist_result=False,
    )


def run_in_flow(run: PlannedRun) -> Any:
    """Submit every unit as Prefect task runs, in dependency order; return the flow's value.

    Units are submitted as soon as the units they depend on are submitted (Prefect's
    ``wait_for`` holds them back); a bundled unit also needs its instance count, so the
    flow waits for the unit that knows it -- but only when nothing else can be submitted.
    """
    import networkx as nx
    from prefect import unmapped

    wf, plan = run.workflow, run.plan
    graph = unit_graph(plan, wf)
    tasks = {u.id: unit_task(u, wf) for u in plan.units}
    order = [n for n in nx.topological_sort(graph) if n in tasks]
    futures: dict[str, list[Any]] = {}
    pending = list(order)

    def ready(uid: str) -> bool:
        return all(p in futures for p in graph.predecessors(uid))

    def submit(uid: str) -> None:
        unit = plan.unit(uid)
        wait_for = [f for p in graph.predecessors(uid) for f in futures[p]]
        if is_bundled_unit(unit, wf):
            chunks = run.chunks(uid)
            futures[uid] = list(
                tasks[uid].map(
                    unmapped(run.run_id),
                    unmapped(uid),
                    chunk=chunk_labels(chunks),
                    instances=chunks,
                    wait_for=wait_for,
                )
            )
        else:
            futures[uid] = [tasks[uid].submit(run.run_id, uid, wait_for=wait_for)]
        pending.remove(uid)

    def known(uid: str) -> bool:
        source = run.count_source_unit(uid)
        return source is None or all(_done(f) for f in futures.get(source, [None]))

    while pending:
        progressed = False
        for uid in list(pending):
            unbounded = not is_bundled_unit(plan.unit(uid), wf)
            if ready(uid) and (unbounded or known(uid)):
                submit(uid)
                progressed = True
        if progressed:
            continue
        uid = next(u for u in pending if ready(u))  # a bundled unit whose size is not known yet
        source = run.count_source_unit(uid)
        for f in futures.get(source or "", []):
            f.result()  # waits; raises the source unit's failure
        submit(uid)
    return run.finish([f for uid in order for f in futures[uid]])


def _done(future: Any) -> bool:
    wrapped = getattr(future, "wrapped_future", None)
    if wrapped is not None:
        return bool(wrapped.done())
    state = getattr(future, "state", None)
    return bool(state is not None and state.is_final())
