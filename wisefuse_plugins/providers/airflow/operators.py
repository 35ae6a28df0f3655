"""The provider's operators: a plan unit's task, and the two helper tasks a rewritten DAG needs.

:class:`WiseFuseLambdaOperator` deploys its unit (idempotently: the same spec, memory and
architecture reuse the deployed function) and invokes it once, or once per chunk of
instances when it is mapped (a bundled unit). :class:`WiseFuseChunksOperator` cuts a bundled
unit's instances into the chunks its mapped task expands over; :class:`WiseFuseXComRelayOperator`
hands a unit's value to opaque consumers as a ``return_value``.

The classes live here, and only here, because DAG files name them by this import path
(the emitted ones, :mod:`.source`) and Airflow serializes each task's ``__module__``. What
they use lives beside them and is imported when a task runs, not when a DAG file is parsed
(Airflow parses in a fresh process each time, issue 19 item 6): :mod:`.unitspec` (which
unit, inline or from the plan files), :mod:`.xcomvalues` (data between unit tasks through
XCom and the store), :mod:`.invoking` (the invocation and its task log), :mod:`.timings`
(samples for the profile archive), :mod:`.runids` (one store run id per DAG run, from the
dag_id and the Airflow run id). Their public names are importable from here too.

What Airflow tasks see through XCom: the unit's last stage as ``return_value`` (for a
chunk: the list of its instances' values), every other exported stage under its original
task id, and the instance counts of the bundled units downstream (see :mod:`.layout`). A
failed stage raises an :class:`AirflowException` that names the stage and instance and
carries the task's traceback, so Airflow's retries apply; outputs a failed attempt already
stored are reused by the next one, never recomputed or overwritten.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException

from wisefuse_plugins.lazy import lazy_exports
from wisefuse_plugins.providers.airflow.layout import count_key
from wisefuse_plugins.providers.airflow.planfiles import beside

if TYPE_CHECKING:
    from airflow.sdk import Context

    from wisefuse_plugins.plan.schema import Arch
    from wisefuse_plugins.providers.airflow.hooks import Backend, WiseFuseLambdaHook
    from wisefuse_plugins.providers.airflow.invoking import failure_message_for, invoke_logged
    from wisefuse_plugins.providers.airflow.runids import store_run_id
    from wisefuse_plugins.providers.airflow.timings import record_timings
    from wisefuse_plugins.providers.airflow.unitspec import DEFAULT_MEMORY_MB, ResolvedUnit
    from wisefuse_plugins.providers.airflow.xcomvalues import (
        VALUES_KEY,
        output_values,
        passed_on,
        pull_upstream,
        stage_in,
    )
    from wisefuse_plugins.runtime.spec import UnitSpec

# What only a running task needs (the hook, the store, the spec and plan models: pydantic)
# is imported where it runs: a DAG file's parse makes these operators for every unit task.

_PKG = "wisefuse_plugins.providers.airflow"
_WHERE = {
    "DEFAULT_MEMORY_MB": f"{_PKG}.unitspec",
    "ResolvedUnit": f"{_PKG}.unitspec",
    "VALUES_KEY": f"{_PKG}.xcomvalues",
    "passed_on": f"{_PKG}.xcomvalues",
    "pull_upstream": f"{_PKG}.xcomvalues",
    "stage_in": f"{_PKG}.xcomvalues",
    "output_values": f"{_PKG}.xcomvalues",
    "invoke_logged": f"{_PKG}.invoking",
    "failure_message_for": f"{_PKG}.invoking",
    "record_timings": f"{_PKG}.timings",
    "store_run_id": f"{_PKG}.runids",
}

__all__ = [
    "DEFAULT_MEMORY_MB",
    "VALUES_KEY",
    "ResolvedUnit",
    "WiseFuseChunksOperator",
    "WiseFuseLambdaOperator",
    "WiseFuseXComRelayOperator",
    "failure_message_for",
    "invoke_logged",
    "output_values",
    "passed_on",
    "pull_upstream",
    "record_timings",
    "stage_in",
    "store_run_id",
]


__getattr__, __dir__ = lazy_exports(__name__, _WHERE)


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
        from wisefuse_plugins.providers.airflow.unitspec import inline_unit, planned_unit

        if self.unit_spec is not None:
            spec = self.unit_spec
            return inline_unit(
                self._path(spec) if isinstance(spec, str) else spec,
                memory_mb=self.memory_mb,
                arch=self.arch,
                code_root=self.code_root,
                stage_tasks=self.stage_tasks,
                opaque_inputs=self.opaque_inputs,
            )
        assert self.plan is not None and self.workflow is not None
        return planned_unit(
            self._path(self.plan),
            self._path(self.workflow),
            self.unit_id,
            plan_sha=self.plan_sha,
            workflow_sha=self.workflow_sha,
            memory_mb=self.memory_mb,
            arch=self.arch,
            code_root=self.code_root,
            warn=lambda note: self.log.warning("%s", note),
        )

    def get_hook(self) -> WiseFuseLambdaHook:
        from wisefuse_plugins.providers.airflow.hooks import WiseFuseLambdaHook

        return WiseFuseLambdaHook(
            backend=self.backend, aws_conn_id=self.aws_conn_id, store=self.store, **self.hook_params
        )

    # -- running ----------------------------------------------------------------------

    def execute(self, context: Context) -> Any:
        from wisefuse_plugins.providers.airflow.invoking import invoke_logged
        from wisefuse_plugins.providers.airflow.runids import store_run_id
        from wisefuse_plugins.providers.airflow.timings import record_timings
        from wisefuse_plugins.providers.airflow.xcomvalues import (
            VALUES_KEY,
            output_values,
            passed_on,
            pull_upstream,
            stage_in,
        )
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
