"""Instances of mapped tasks in a past run: a ``DagRun``, or the latest successful run in
an Airflow metadata database."""

from __future__ import annotations

from typing import Any

from wisefuse_plugins.errors import WiseFuseError


def observed_counts(dag_id: str, history: Any) -> tuple[dict[str, int], str | None]:
    """Instances per mapped task in a past run (task id -> max map_index + 1), and its run id."""
    if history is None:
        return {}, None
    if hasattr(history, "get_task_instances") and hasattr(history, "run_id"):
        if getattr(history, "dag_id", dag_id) != dag_id:
            raise WiseFuseError(
                f"history is a run of DAG {history.dag_id!r}, not of {dag_id!r}",
                hint="pass a DagRun of the same DAG",
            )
        counts: dict[str, int] = {}
        for ti in history.get_task_instances():
            if ti.map_index is not None and ti.map_index >= 0:
                counts[ti.task_id] = max(counts.get(ti.task_id, 0), ti.map_index + 1)
        return counts, history.run_id
    return _counts_from_db(dag_id, history)


_LATEST_SUCCESS = (
    "SELECT run_id FROM dag_run WHERE dag_id = :dag_id AND state = 'success' "
    "ORDER BY end_date DESC, id DESC LIMIT 1"
)


_INSTANCES = (
    "SELECT task_id, MAX(map_index) + 1 FROM task_instance "
    "WHERE dag_id = :dag_id AND run_id = :run_id AND map_index >= 0 GROUP BY task_id"
)


def _counts_from_db(dag_id: str, history: Any) -> tuple[dict[str, int], str | None]:
    """Read the latest successful run of ``dag_id`` from an Airflow metadata database."""
    from sqlalchemy import text

    from wisefuse_plugins.adapters.airflow_db import connect, readable

    if not readable(history):
        raise WiseFuseError(
            "history must be a DagRun, a database URL, Engine, Connection or Session,"
            f" not {type(history).__name__}",
            hint="pass the DagRun of a past run, or Airflow's metadata database URL",
        )
    with connect(history, what="Airflow run history") as conn:
        run_id = conn.execute(text(_LATEST_SUCCESS), {"dag_id": dag_id}).scalar()
        if run_id is None:
            return {}, None
        rows = conn.execute(text(_INSTANCES), {"dag_id": dag_id, "run_id": run_id}).all()
    return {task_id: int(n) for task_id, n in rows if n}, str(run_id)
