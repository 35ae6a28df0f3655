"""The Airflow emitter: a DAG file to commit instead of the drop-in, with the plan and IR
files it reads, written side by side.

The source itself is rendered next to the layout it draws, in
:mod:`wisefuse_plugins.providers.airflow.source` (:func:`emit_dag` is its
:func:`~wisefuse_plugins.providers.airflow.source.dag_source`): see there for what the
emitted file holds and where it must live.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from wisefuse_plugins.ir import Workflow, dump
from wisefuse_plugins.plan.schema import Plan, dump_plan
from wisefuse_plugins.providers.airflow.source import DEFAULT_SUFFIX
from wisefuse_plugins.providers.airflow.source import dag_source as emit_dag

if TYPE_CHECKING:
    from airflow.sdk import DAG

__all__ = ["emit_dag", "write_dag"]


def write_dag(
    workflow: Workflow,
    plan: Plan,
    folder: str | Path,
    *,
    dag_id: str | None = None,
    dag: DAG | None = None,
    file_name: str | None = None,
    **kwargs: Any,
) -> Path:
    """Write the emitted DAG file and the plan and IR files it reads into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dag_id = dag_id or f"{workflow.name}{DEFAULT_SUFFIX}"
    plan_file = kwargs.pop("plan_file", None) or f"{dag_id}.plan.json"
    workflow_file = kwargs.pop("workflow_file", None) or f"{dag_id}.ir.json"
    source = emit_dag(
        workflow,
        plan,
        dag_id=dag_id,
        dag=dag,
        plan_file=plan_file,
        workflow_file=workflow_file,
        **kwargs,
    )
    dump_plan(plan, folder / plan_file)
    dump(workflow, folder / workflow_file)
    path = folder / (file_name or f"{dag_id}.py")
    path.write_text(source, encoding="utf-8")
    return path
