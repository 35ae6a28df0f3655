"""Build a layout's unit, chunk and relay tasks into a DAG (the in-process renderer).

:func:`~wisefuse_plugins.providers.airflow.layout.layout` decides the tasks; this module
makes them as operator objects, for the drop-in :func:`~.rewrite.rewrite`. The source
emitter (:mod:`wisefuse_plugins.emitters.airflow`) writes the same tasks as Python.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk import DAG

    from wisefuse_plugins.providers.airflow.layout import Layout

__all__ = [
    "SETTINGS",
    "build_tasks",
    "unit_group",
    "unit_settings",
]


def build_tasks(
    dag: DAG,
    lay: Layout,
    original: DAG | None = None,
    *,
    code_root: str | None,
    backend: str,
    aws_conn_id: str | None,
    store: str | None,
    archive: str | bool | None,
    hook_params: dict[str, Any],
) -> dict[str, Any]:
    """Add the layout's unit, chunk and relay tasks to ``dag``; returns them by task id."""
    from wisefuse_plugins.providers.airflow.operators import (
        WiseFuseChunksOperator,
        WiseFuseLambdaOperator,
        WiseFuseXComRelayOperator,
    )

    made: dict[str, Any] = {}
    for u in lay.units:
        common: dict[str, Any] = {
            "unit_id": u.unit.id,
            "unit_spec": u.spec.model_dump(mode="json"),
            "memory_mb": u.unit.memory_mb,
            "arch": u.unit.arch,
            "backend": backend,
            "aws_conn_id": aws_conn_id,
            "store": store,
            "code_root": code_root,
            "stage_tasks": u.stage_tasks,
            "opaque_inputs": {k: v.to_json() for k, v in u.opaque_inputs.items()},
            "archive": archive,
            "hook_params": hook_params,
            "dag": dag,
        }
        if u.retries:
            common["retries"] = u.retries
        common.update(unit_settings(original, [u.stage_tasks[s.id] for s in u.spec.stages]))
        label, common["task_group"] = unit_group(dag, original, u.task_id)
        if not u.bundled:
            made[u.task_id] = WiseFuseLambdaOperator(
                task_id=label, multiple_outputs=u.multiple_outputs, **common
            )
            continue
        src = u.chunks
        assert src is not None
        if src.kind == "static":
            instances: Any = src.chunks
        else:
            assert src.chunk_task_id is not None and src.task_id is not None
            chunker = WiseFuseChunksOperator(
                task_id=src.chunk_task_id,
                source_task_id=src.task_id,
                size=src.size,
                mode=src.kind,
                key=src.key,
                mapped=src.mapped,
                dag=dag,
            )
            made[src.chunk_task_id] = chunker
            instances = chunker.output
        made[u.task_id] = WiseFuseLambdaOperator.partial(task_id=label, **common).expand(
            instances=instances
        )
    for r in lay.relays.values():
        made[r.task_id] = WiseFuseXComRelayOperator(
            task_id=r.task_id,
            source_task_id=r.source_task_id,
            key=r.key,
            flatten=r.flatten,
            multiple_outputs=r.multiple_outputs,
            dag=dag,
        )
    return made


#: The original tasks' settings a unit task carries (docs/airflow.md, "What a unit task
#: keeps"). A unit task stands for its stages' tasks, in stage order: outlets and inlets
#: are the union of theirs (every asset event still happens), retries the largest,
#: execution_timeout the sum (when every stage has one), each callback every distinct one
#: of theirs; every other setting is the last stage's (the task whose id the unit takes).
#: Scheduling settings (pool, queue, priority, owner...) are the same in every stage of a
#: unit: plans never fuse stages whose settings differ (wisefuse_plugins.plan.scheduling).
SETTINGS = (
    "owner",
    "email",
    "email_on_failure",
    "email_on_retry",
    "retries",
    "retry_delay",
    "retry_exponential_backoff",
    "max_retry_delay",
    "execution_timeout",
    "depends_on_past",
    "ignore_first_depends_on_past",
    "wait_for_past_depends_before_skipping",
    "wait_for_downstream",
    "priority_weight",
    "weight_rule",
    "queue",
    "pool",
    "pool_slots",
    "max_active_tis_per_dag",
    "max_active_tis_per_dagrun",
    "executor",
    "executor_config",
    "run_as_user",
    "on_execute_callback",
    "on_failure_callback",
    "on_success_callback",
    "on_retry_callback",
    "on_skipped_callback",
    "inlets",
    "outlets",
    "doc",
    "doc_md",
    "doc_json",
    "doc_yaml",
    "doc_rst",
    "task_display_name",
)
_UNION = ("inlets", "outlets")
_CALLBACKS = tuple(a for a in SETTINGS if a.startswith("on_") and a.endswith("_callback"))


def unit_settings(original: DAG | None, task_ids: Sequence[str]) -> dict[str, Any]:
    """The settings (of :data:`SETTINGS`) a unit task takes from its stages' original tasks.

    ``task_ids``: the unit's stages' task ids, in stage order. Only the settings a unit task
    would not get anyway are returned: those that differ from an operator's default or are
    in the DAG's ``default_args``. Both renderers use this: :func:`build_tasks` passes them
    to the operator, the source emitter writes them (as literals, or read from the original).
    """
    if original is None:
        return {}
    tasks = [original.task_dict[t] for t in task_ids if t in original.task_dict]
    if not tasks:
        return {}
    given = set(original.default_args or {})
    defaults = _defaults()
    found: dict[str, Any] = {}
    for attr in SETTINGS:
        try:
            values = [getattr(t, attr) for t in tasks]
        except Exception:
            continue
        value = _merged(attr, values)
        if attr == "task_display_name" and value == task_ids[-1]:
            continue  # Airflow's default: the task id
        if attr in given or attr not in defaults or value != defaults[attr]:
            found[attr] = value
    return found


def unit_group(dag: DAG, original: DAG | None, task_id: str) -> tuple[str, Any]:
    """The task group a unit task goes in (its last stage's, made in ``dag`` on first use)
    and the label that gives it ``task_id`` there; the root group when there is none."""
    from wisefuse_plugins.providers.airflow.groups import task_group_in

    task = original.task_dict.get(task_id) if original is not None else None
    if task is None or task.task_group is None or task.task_group.group_id is None:
        return task_id, None
    group = task_group_in(dag, task.task_group)
    prefix = f"{group.group_id}."
    if not group.prefix_group_id:
        return task_id, group
    if task_id.startswith(prefix):
        return task_id[len(prefix) :], group
    return task_id, None  # an id the group would not give: keep it, outside the group


def _merged(attr: str, values: list[Any]) -> Any:
    if attr in _UNION:
        out: list[Any] = []
        for v in values:
            out += [x for x in v or () if x not in out]
        return out
    if attr == "retries":
        return max(int(v or 0) for v in values)
    if attr == "execution_timeout":
        return None if any(v is None for v in values) else sum(values[1:], values[0])
    if attr in _CALLBACKS:
        found: list[Any] = []
        for v in values:
            for fn in v if isinstance(v, list | tuple) else [v] if v is not None else []:
                if all(fn is not f for f in found):
                    found.append(fn)
        if all(v == values[-1] for v in values):
            return values[-1]  # the stages agree: keep the value as the user gave it
        return found
    return values[-1]


@functools.cache
def _defaults() -> dict[str, Any]:
    """What an operator gets for each setting when nothing is given (resolved, as tasks hold them).

    The first call is often made while a DAG file is parsed, inside its ``with DAG()``
    block or ``@dag`` function: the bare operator is made outside every DAG and task
    group context (Airflow's own idiom: push ``None``), or it would join that DAG as a
    task of its own, which fails when it runs.
    """
    from airflow.sdk import BaseOperator
    from airflow.sdk.definitions._internal.contextmanager import DagContext, TaskGroupContext

    DagContext.push(None)  # type: ignore[arg-type]
    TaskGroupContext.push(None)  # type: ignore[arg-type]
    try:
        bare = BaseOperator(task_id="wisefuse_defaults")
    finally:
        TaskGroupContext.pop()
        DagContext.pop()
    assert not bare.has_dag()
    return {attr: getattr(bare, attr) for attr in SETTINGS if hasattr(bare, attr)}
