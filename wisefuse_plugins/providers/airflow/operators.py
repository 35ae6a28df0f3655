"""Operators: run one plan unit on Lambda, and the two helpers a rewritten DAG needs.

:class:`WiseFuseLambdaOperator` deploys its unit (idempotently: the same spec, memory and
architecture reuse the deployed function) and invokes it once, or once per chunk of
instances when it is mapped (a bundled unit). The unit is given either inline (``unit_spec``:
a spec or the path of one, as :func:`wisefuse_plugins.airflow.rewrite` does) or as the
``plan`` and ``workflow`` files to build it from when the task runs (as emitted DAG files
do, so that parsing them reads no file).

Data between units: small values by value (:mod:`wisefuse_plugins.runtime.passing`),
through XCom like any Airflow value, the rest through the store. Each unit task pushes the
pickles its response passed by value, and the counts of its mapped stages and scattered
lists, under :data:`VALUES_KEY`; a unit task pulls them from the unit tasks upstream and
puts those its invocation reads into its event. What Airflow tasks see through XCom: the
unit's last stage as ``return_value`` (for a chunk: the list of its instances' values),
every other exported stage under its original task id, and the instance counts of the
bundled units downstream (see :mod:`.layout`). A failed stage raises an
:class:`AirflowException` that names the stage and instance and carries the task's
traceback, so Airflow's retries apply; outputs a failed attempt already stored are reused
by the next one, never recomputed or overwritten.

Run ids: every task of one DAG run uses the same store run id, made from the dag_id and
the Airflow run id (see :func:`store_run_id`).
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException

from wisefuse_plugins.providers.airflow.layout import OpaqueInput, count_key
from wisefuse_plugins.providers.airflow.planfiles import (
    EMITTED_FIX,
    PlanFileError,
    beside,
    pinned_bytes,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

    from wisefuse_plugins.plan.schema import Arch
    from wisefuse_plugins.providers.airflow.hooks import Backend, Deployed, WiseFuseLambdaHook
    from wisefuse_plugins.runtime import passing
    from wisefuse_plugins.runtime import store as st
    from wisefuse_plugins.runtime.invoker import Invoked
    from wisefuse_plugins.runtime.spec import UnitSpec

# What only a running task needs (the hook, the store, the spec and plan models: pydantic)
# is imported where it runs: a DAG file's parse makes these operators for every unit task,
# and Airflow parses it in a fresh process each time (issue 19 item 6).

DEFAULT_MEMORY_MB = 1769
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")

VALUES_KEY = "wisefuse_values"
"""The XCom a unit task pushes for the unit tasks downstream: ``{"outputs": [{"key": store
key, "pickle": base64}, ...], "counts": {stage: n}}``, the outputs its response passed by
value (shaped as response records, for :meth:`passing.Values.take`) and how many instances
each exported mapped stage ran, or elements each exported list had (the store may no longer
hold them all to count)."""


def store_run_id(dag_id: str, run_id: str, *extra: str) -> str:
    """A store-safe run id for a DAG run: readable, at most 128 characters, collision-free.

    Airflow run ids hold ``:`` and ``+`` (``manual__2025-01-01T00:00:00+00:00``); the store
    accepts ``[A-Za-z0-9_.-]``. A hash of the raw ids keeps two runs apart after cleaning.
    """
    from wisefuse_plugins.runtime import store as st

    raw = "\x1f".join([dag_id, run_id, *extra])
    digest = hashlib.sha256(raw.encode()).hexdigest()[:10]
    text = re.sub(r"\.{2,}", ".", _UNSAFE.sub("_", ".".join([dag_id, run_id, *extra])))
    text = text.strip(".-")[:100] or "run"
    if not (text[0].isalnum() or text[0] == "_"):
        text = "r" + text
    return st.check_key(f"{text}-{digest}")


@dataclass(frozen=True)
class ResolvedUnit:
    """Everything the operator needs about its unit, however it was given."""

    spec: UnitSpec
    memory_mb: int
    arch: Arch
    code_root: str | None
    stage_tasks: dict[str, str]
    opaque_inputs: dict[str, OpaqueInput]

    @property
    def last_stage(self) -> str:
        return self.spec.stages[-1].id


@functools.lru_cache(maxsize=64)
def _from_files(plan: bytes, workflow: bytes, unit_id: str, names: tuple[str, str]) -> Any:
    """Build a unit's layout from the bytes of an IR file and a plan file (``names``: how
    errors name them); cached by content, so a replaced file is never served from the cache."""
    from wisefuse_plugins.ir.serde import from_json
    from wisefuse_plugins.plan.schema import plan_from_json
    from wisefuse_plugins.providers.airflow.layout import layout

    wf = from_json(workflow, what=names[1])
    lay = layout(wf, plan_from_json(plan, wf, what=names[0]))
    try:
        return wf, lay.unit_task(unit_id)
    except KeyError:
        raise PlanFileError(
            f"{names[0]} has no unit {unit_id!r}",
            hint="the DAG file and its plan do not belong together: " + EMITTED_FIX,
        ) from None


class WiseFuseLambdaOperator(BaseOperator):
    """Run one unit of a WiseFuse plan on Lambda (local or AWS) and push its outputs to XCom.

    Give the unit as ``unit_spec`` (a :class:`UnitSpec`, its JSON dict, or the path of a spec
    file, also accepted as ``unit_spec_path``; then ``stage_tasks`` maps stage ids to original task ids for XCom keys and
    ``opaque_inputs`` says which opaque tasks' XComs to copy into the store), or as
    ``plan`` + ``workflow`` (paths of a plan JSON and an IR JSON, relative to the DAG file;
    with ``plan_sha`` / ``workflow_sha``, the SHA-256 of the files the DAG was emitted for,
    a replaced file is not used: the snapshot of the emitted one is, see :mod:`.planfiles`).
    ``memory_mb`` / ``arch`` default to the plan's. ``instances``: the instance numbers this
    task runs, for a bundled unit (map it with ``.expand(instances=...)``). ``code_root``:
    the folder the workflow's callables are relative to (default: the IR's root, else the
    DAG file's folder). ``archive``: record per-stage timings to the profile archive: a
    SQLAlchemy URL, True for the default archive, None to record only when
    ``$WISEFUSE_DB_URL`` is set, False never. ``hook_params``: more keyword arguments of
    :class:`WiseFuseLambdaHook`.
    """

    ui_color = "#fbd38d"
    template_fields: Sequence[str] = ()

    def __init__(
        self,
        *,
        unit_id: str,
        unit_spec: UnitSpec | Mapping[str, Any] | str | os.PathLike[str] | None = None,
        unit_spec_path: str | os.PathLike[str] | None = None,
        plan: str | os.PathLike[str] | None = None,
        workflow: str | os.PathLike[str] | None = None,
        plan_sha: str | None = None,
        workflow_sha: str | None = None,
        memory_mb: int | None = None,
        arch: Arch | None = None,
        instances: Sequence[int] | None = None,
        backend: Backend = "local",
        aws_conn_id: str | None = None,
        store: str | None = None,
        code_root: str | os.PathLike[str] | None = None,
        stage_tasks: Mapping[str, str] | None = None,
        opaque_inputs: Mapping[str, Mapping[str, Any]] | None = None,
        archive: str | bool | None = None,
        hook_params: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        unit_spec = unit_spec if unit_spec is not None else unit_spec_path
        if (unit_spec is None) == (plan is None or workflow is None):
            raise ValueError(
                f"{self.task_id}: give either unit_spec, or both plan and workflow (files)"
            )
        if hasattr(unit_spec, "model_dump"):  # a UnitSpec (not imported: a parse needs no model)
            unit_spec = unit_spec.model_dump(mode="json")  # type: ignore[union-attr]
        elif isinstance(unit_spec, os.PathLike):
            unit_spec = os.fspath(unit_spec)
        self.unit_id = unit_id
        self.unit_spec = unit_spec
        self.plan = os.fspath(plan) if plan is not None else None
        self.workflow = os.fspath(workflow) if workflow is not None else None
        self.plan_sha = plan_sha
        self.workflow_sha = workflow_sha
        self.memory_mb = memory_mb
        self.arch = arch
        self.instances = list(instances) if instances is not None else None
        self.backend = backend
        self.aws_conn_id = aws_conn_id
        self.store = store
        self.code_root = os.fspath(code_root) if code_root is not None else None
        self.stage_tasks = dict(stage_tasks or {})
        self.opaque_inputs = {k: dict(v) for k, v in (opaque_inputs or {}).items()}
        self.archive = archive
        self.hook_params = dict(hook_params or {})

    # -- what to run ------------------------------------------------------------------

    def _dag_folder(self) -> Path:
        return beside(".", self._fileloc())

    def _fileloc(self) -> str | None:
        return getattr(self.dag, "fileloc", None) if self.has_dag() else None

    def _path(self, value: str) -> Path:
        return beside(value, self._fileloc())

    def resolve(self) -> ResolvedUnit:
        """The unit spec and its settings, from the inline spec or from the plan files."""
        from wisefuse_plugins.runtime.spec import UnitSpec, read_spec

        if self.unit_spec is not None:
            if isinstance(self.unit_spec, str):
                spec = read_spec(self._path(self.unit_spec))
            else:
                spec = UnitSpec.model_validate(self.unit_spec)
            return ResolvedUnit(
                spec=spec,
                memory_mb=self.memory_mb or DEFAULT_MEMORY_MB,
                arch=self.arch or "x86_64",
                code_root=self.code_root,
                stage_tasks=self.stage_tasks or {s.id: s.id for s in spec.stages},
                opaque_inputs={k: OpaqueInput.from_json(v) for k, v in self.opaque_inputs.items()},
            )
        assert self.plan is not None and self.workflow is not None
        plan, workflow = self._path(self.plan), self._path(self.workflow)
        plan_text, plan_note = pinned_bytes(plan, self.plan_sha, "plan file")
        wf_text, wf_note = pinned_bytes(workflow, self.workflow_sha, "IR file")
        for note in (plan_note, wf_note):
            if note:
                self.log.warning("%s", note)
        names = (f"plan file {str(plan)!r}", f"IR file {str(workflow)!r}")
        wf, task = _from_files(plan_text, wf_text, self.unit_id, names)
        return ResolvedUnit(
            spec=task.spec,
            memory_mb=self.memory_mb or task.unit.memory_mb,
            arch=self.arch or task.unit.arch,
            code_root=self.code_root or wf.source.root,
            stage_tasks=task.stage_tasks,
            opaque_inputs=task.opaque_inputs,
        )

    def get_hook(self) -> WiseFuseLambdaHook:
        from wisefuse_plugins.providers.airflow.hooks import WiseFuseLambdaHook

        return WiseFuseLambdaHook(
            backend=self.backend, aws_conn_id=self.aws_conn_id, store=self.store, **self.hook_params
        )

    # -- running ----------------------------------------------------------------------

    def execute(self, context: Context) -> Any:
        from wisefuse_plugins.runtime import passing

        unit = self.resolve()
        if unit.spec.bundled and not self.instances:
            raise AirflowException(
                f"unit {self.unit_id!r} is bundled: map this task over chunks of instances "
                "(.expand(instances=...))"
            )
        if not unit.spec.bundled and self.instances is not None:
            raise AirflowException(f"unit {self.unit_id!r} is not bundled: do not pass instances")
        ti = context["ti"]
        run_id = store_run_id(self.dag_id, context["dag_run"].run_id)
        hook = self.get_hook()
        store = hook.get_store()
        upstream, counts = pull_upstream(ti, self.upstream_units())
        counts.update(stage_in(ti, store, run_id, unit.opaque_inputs))
        instances = list(self.instances or ()) if unit.spec.bundled else None
        values, stored = upstream.for_event(unit.spec, run_id, instances, counts, store)
        if stored:
            self.log.info(
                "%d values passed by value went to the store: too many for one event", stored
            )
        deployed = hook.deploy(
            unit.spec,
            memory_mb=unit.memory_mb,
            arch=unit.arch,
            code_root=unit.code_root or self._dag_folder(),
        )
        event: dict[str, Any] = {"run_id": run_id, "by_value": passing.BY_VALUE_BYTES}
        if counts:
            event["counts"] = counts
        if values:
            event["values"] = values
        if instances is not None:
            event["instances"] = instances
        invoked = invoke_logged(
            self.log,
            hook,
            deployed,
            event,
            unit_id=self.unit_id,
            label=f"unit {self.unit_id}"
            + (f" instances {self.instances}" if self.instances is not None else ""),
            memory_mb=unit.memory_mb,
            stage_tasks=unit.stage_tasks,
        )
        payload = invoked.payload
        passed = passed_on(payload)
        if passed["outputs"] or passed["counts"]:
            ti.xcom_push(key=VALUES_KEY, value=passed)
        values = output_values(payload, store, unit.spec.exports)
        for stage in unit.spec.exports:
            if stage != unit.last_stage:
                ti.xcom_push(key=unit.stage_tasks.get(stage, stage), value=values.get(stage))
        for b in unit.spec.bundles:  # how many instances each bundled unit downstream has
            chunks = (payload.get("chunks") or {}).get(b.slot)
            if chunks is not None:
                ti.xcom_push(key=count_key(b.unit), value=sum(len(c) for c in chunks))
        record_timings(
            self.log,
            context,
            unit.spec,
            invoked,
            memory_mb=unit.memory_mb,
            arch=unit.arch,
            backend=self.backend,
            bundle_size=len(self.instances or ()) if unit.spec.bundled else 1,
            archive=self.archive,
            init_measured=not hook.preloads,
        )
        return values.get(unit.last_stage)

    def upstream_units(self) -> list[str]:
        """The unit tasks upstream of this one, however far: its invocation may read a value
        any of them passed by value, and chunk, relay or opaque tasks may sit in between."""
        if not self.has_dag():
            return []
        return sorted(
            t
            for t in self.get_flat_relative_ids(upstream=True)
            if _is_unit_task(self.dag.get_task(t))
        )


def _is_unit_task(task: Any) -> bool:
    """A :class:`WiseFuseLambdaOperator`, mapped (``.partial().expand()``) or not."""
    cls = getattr(task, "operator_class", type(task))  # a MappedOperator's class
    return isinstance(cls, type) and issubclass(cls, WiseFuseLambdaOperator)


def passed_on(payload: Mapping[str, Any]) -> dict[str, Any]:
    """What a unit's response hands to the units downstream (:data:`VALUES_KEY`)."""
    outputs = payload.get("outputs") or []
    counts: dict[str, int] = {}
    for rec in outputs:
        stage = rec["stage"]
        if rec.get("instance") is not None:
            counts[stage] = max(counts.get(stage, 0), int(rec["instance"]) + 1)
        elif "count" in rec:
            counts[stage] = int(rec["count"])
    return {
        "outputs": [{"key": r["key"], "pickle": r["pickle"]} for r in outputs if "pickle" in r],
        "counts": counts,
    }


def pull_upstream(ti: Any, task_ids: Sequence[str]) -> tuple[passing.Values, dict[str, int]]:
    """The values the unit tasks ``task_ids`` passed by value, and the counts they pushed.

    A mapped unit task pushes once per chunk: the chunks' counts of a stage are merged by
    their largest (instance numbers are the stage's own, chunk after chunk).
    """
    from wisefuse_plugins.runtime import passing

    values = passing.Values()
    counts: dict[str, int] = {}
    pushed = ti.xcom_pull(task_ids=list(task_ids), key=VALUES_KEY) if task_ids else []
    for passed in pushed or []:
        if not passed:  # a task (or chunk) that passed nothing on
            continue
        values.take(passed)
        for stage, n in (passed.get("counts") or {}).items():
            counts[stage] = max(counts.get(stage, 0), n)
    return values, counts


def stage_in(
    ti: Any, store: st.Store, run_id: str, inputs: Mapping[str, OpaqueInput]
) -> dict[str, int]:
    """Copy opaque tasks' XComs that the unit reads into the store; returns their counts.

    Writes are first-write-wins, so the tasks of a run that read the same opaque value
    store it once.
    """
    from wisefuse_plugins.runtime import store as st

    counts: dict[str, int] = {}
    for stage, src in inputs.items():
        what = f"the XCom of task {src.task_id!r}"
        if src.mapped:
            values = list(ti.xcom_pull(task_ids=[src.task_id]) or [])
            for i, v in enumerate(values):
                st.put(store, st.output_key(run_id, stage, i), v, what)
            counts[stage] = len(values)
            continue
        value = ti.xcom_pull(task_ids=src.task_id)
        for key in src.keys:
            if not (isinstance(value, Mapping) and key in value):
                extra = ti.xcom_pull(task_ids=src.task_id, key=key)
                value = {**(value if isinstance(value, Mapping) else {}), key: extra}
        st.put(store, st.output_key(run_id, stage), value, what)
        if src.elements:
            items = list(value or [])
            for i, item in enumerate(items):
                st.put(store, st.element_key(run_id, stage, i), item, f"{what}, element {i}")
            counts[stage] = len(items)
    return counts


_EXACT_IN_JSON = (str, int, float, bool, type(None))


def output_values(payload: Mapping[str, Any], store: st.Store, stages: Sequence[str]) -> dict:
    """Each exported stage's value (a list over instances for a mapped stage), exactly.

    A scalar comes inline in the response; anything else from its pickle when the response
    passed it by value (it is in no store), else from the store: the inline copy went
    through JSON (a tuple would come back a list, an int dict key a string) and XCom must
    see what the function returned.
    """
    from wisefuse_plugins.runtime import passing
    from wisefuse_plugins.runtime import store as st

    whole: dict[str, Any] = {}
    per_instance: dict[str, dict[int, Any]] = {}
    for rec in payload.get("outputs", []):
        stage = rec.get("stage")
        if stage not in stages:
            continue
        inline = "value" in rec and isinstance(rec["value"], _EXACT_IN_JSON)
        if inline:
            value = rec["value"]
        elif "pickle" in rec:
            value = st.loads(passing.decode(rec["pickle"]))
        else:
            value = st.get(store, rec["key"])
        if rec.get("instance") is None:
            whole[stage] = value
        else:
            per_instance.setdefault(stage, {})[int(rec["instance"])] = value
    for stage, found in per_instance.items():
        whole[stage] = [found[i] for i in sorted(found)]
    return whole


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


# --------------------------------------------------------------------------- archive


def record_timings(
    log: Any,
    context: Context,
    spec: UnitSpec,
    invoked: Invoked,
    *,
    memory_mb: int,
    arch: str,
    backend: str,
    bundle_size: int,
    archive: str | bool | None,
    init_measured: bool = True,
) -> int:
    """Record one sample per stage instance in the profile archive, when one is configured.

    Configured: ``archive`` (a SQLAlchemy URL, or True for the default archive), else
    ``$WISEFUSE_DB_URL``. Samples are keyed by the Airflow task instance and try, so a
    re-recorded run adds nothing. ``init_measured`` False (a local cold start forked from
    preloaded modules) records no init time: it would leave out imports Lambda pays. A
    failure to record is logged, never fails the task.
    """
    if archive is False or (archive is None and not os.environ.get("WISEFUSE_DB_URL")):
        return 0
    try:
        from wisefuse_plugins.profiles.archive import Archive, Sample
    except ImportError as err:  # pragma: no cover - the archive ships with the package
        log.warning("no profile archive to record timings in: %s", err)
        return 0
    ti = context["ti"]
    hashes = {s.id: s.callable.code_hash for s in spec.stages}
    out_bytes = {
        (o.get("stage"), o.get("instance")): o.get("bytes")
        for o in invoked.payload.get("outputs", [])
    }
    base = f"airflow:{ti.dag_id}/{context['dag_run'].run_id}/{ti.task_id}/{ti.map_index}/{ti.try_number}"
    samples = [
        Sample(
            workflow=spec.workflow,
            stage=t["stage"],
            code_hash=hashes.get(t["stage"], ""),
            memory_mb=memory_mb,
            duration_ms=float(t.get("fn_ms", 0.0)),
            arch=arch,
            bundle_size=bundle_size,
            backend=backend,
            instance=t.get("instance"),
            init_ms=invoked.init_ms if invoked.cold and init_measured else None,
            cold=invoked.cold,
            output_bytes=out_bytes.get((t["stage"], t.get("instance"))),
            peak_memory_mb=invoked.max_memory_mb or None,
            source="airflow",
            ref=f"{base}/{t['stage']}/{t.get('instance')}",
        )
        for t in invoked.payload.get("timings", [])
        if not t.get("resumed")
    ]
    try:
        with Archive(archive if isinstance(archive, str) else None) as db:
            return db.add(samples)
    except Exception as err:
        log.warning("could not record timings in the profile archive: %s", err)
        return 0


# --------------------------------------------------------------------------- helpers


class WiseFuseChunksOperator(BaseOperator):
    """Return the chunks of instance numbers a bundled unit's mapped task expands over.

    Airflow maps only over a ``return_value``; this task cuts ``range(n)`` into chunks of
    ``size`` (the plan's bundle size). ``n``: what the counting unit's task pushed under
    ``key`` (``mode="unit"``), or an opaque task's output counted (``mode="opaque"``: the
    length of its value, or of its value at ``key``; its number of map indexes when
    ``mapped``).
    """

    ui_color = "#fefcbf"
    template_fields: Sequence[str] = ()

    def __init__(
        self,
        *,
        source_task_id: str,
        size: int,
        mode: str = "unit",
        key: str | None = None,
        mapped: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if mode not in ("unit", "opaque"):
            raise ValueError(f"mode must be 'unit' or 'opaque', got {mode!r}")
        self.source_task_id = source_task_id
        self.size = size
        self.mode = mode
        self.key = key
        self.mapped = mapped

    def execute(self, context: Context) -> list[list[int]]:
        from wisefuse_plugins.plan.lower import chunks

        ti = context["ti"]
        if self.mode == "unit":
            n = ti.xcom_pull(task_ids=self.source_task_id, key=self.key)
            if not isinstance(n, int):
                raise AirflowException(
                    f"task {self.source_task_id!r} pushed no instance count under {self.key!r}"
                )
        elif self.mapped:
            n = len(list(ti.xcom_pull(task_ids=[self.source_task_id]) or []))
        else:
            value = ti.xcom_pull(task_ids=self.source_task_id)
            if self.key is not None:
                value = (
                    value[self.key]
                    if isinstance(value, Mapping) and self.key in value
                    else ti.xcom_pull(task_ids=self.source_task_id, key=self.key)
                )
            n = len(value or [])
        return chunks(n, self.size)


class WiseFuseXComRelayOperator(BaseOperator):
    """Return another task's XCom as this task's ``return_value`` (for opaque consumers).

    ``flatten``: the source is a mapped chunk task; its chunks' lists are concatenated in
    instance order, which is what the original mapped task's consumers saw.
    """

    ui_color = "#fefcbf"
    template_fields: Sequence[str] = ()

    def __init__(
        self,
        *,
        source_task_id: str,
        key: str = "return_value",
        flatten: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.source_task_id = source_task_id
        self.key = key
        self.flatten = flatten

    def execute(self, context: Context) -> Any:
        ti = context["ti"]
        if self.flatten:
            chunks = ti.xcom_pull(task_ids=[self.source_task_id], key=self.key) or []
            return [value for chunk in chunks for value in (chunk or [])]
        return ti.xcom_pull(task_ids=self.source_task_id, key=self.key)
