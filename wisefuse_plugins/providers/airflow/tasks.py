"""Build a layout's unit, chunk and relay tasks into a DAG (the in-process renderer).

:func:`~wisefuse_plugins.providers.airflow.layout.layout` decides the tasks; this module
makes them as operator objects, for the drop-in :func:`~.rewrite.rewrite`. The source
emitter (:mod:`wisefuse_plugins.emitters.airflow`) writes the same tasks as Python.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk import DAG

    from wisefuse_plugins.providers.airflow.layout import Layout

__all__ = ["build_tasks"]


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
        common.update(_kept_settings(original, u.stage_tasks[u.last_stage]))
        if not u.bundled:
            made[u.task_id] = WiseFuseLambdaOperator(
                task_id=u.task_id, multiple_outputs=u.multiple_outputs, **common
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
        made[u.task_id] = WiseFuseLambdaOperator.partial(task_id=u.task_id, **common).expand(
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


_KEPT = ("owner", "pool", "queue")


def _kept_settings(original: DAG | None, task_id: str) -> dict[str, Any]:
    """Scheduling settings of the original task that the unit's task keeps."""
    if original is None or task_id not in original.task_dict:
        return {}
    task = original.task_dict[task_id]
    found: dict[str, Any] = {}
    for attr in _KEPT:
        with contextlib.suppress(Exception):
            value = getattr(task, attr)
            if isinstance(value, str) and value:
                found[attr] = value
    return found
