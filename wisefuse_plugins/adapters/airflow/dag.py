"""A whole DAG -> a workflow: tasks in dependency order, stage ids, the code root and the
source, and the safety net that demotes a stage the IR rejects instead of raising."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wisefuse_plugins.adapters.airflow.access import airflow_names, airflow_version
from wisefuse_plugins.adapters.airflow.context import Context
from wisefuse_plugins.adapters.airflow.history import observed_counts
from wisefuse_plugins.adapters.airflow.load import load_dag_file
from wisefuse_plugins.adapters.airflow.task import convert_task
from wisefuse_plugins.errors import WiseFuseError
from wisefuse_plugins.ir import (
    IRError,
    Source,
    Stage,
    StageKind,
    Workflow,
    derive_edges,
    safe_name,
)
from wisefuse_plugins.ir.graphs import adjacency, topological_order

if TYPE_CHECKING:
    from airflow.sdk import DAG


def from_dag(
    dag: DAG,
    *,
    root: str | Path | None = None,
    parallelism: Mapping[str, int] | None = None,
    history: Any = None,
) -> Workflow:
    """The IR of ``dag``: one stage per task, one edge per upstream relation.

    ``root`` is the code root that callable paths are relative to (default: the DAG file's
    folder); functions outside it make their task opaque. The number of instances of a
    task mapped over a run-time list comes from, in order: ``parallelism`` (task id or
    stage id -> N, source ``override``), ``history`` (source ``observed``: the largest
    ``map_index + 1`` of the task in a past run: a ``DagRun`` such as ``dag.test()``
    returns, or the latest successful run of the DAG in an Airflow metadata database given
    as a SQLAlchemy URL, ``Engine``, ``Connection`` or ``Session``), else
    :data:`DEFAULT_EXPECTED_PARALLELISM` (source ``expected``). A task mapped one-to-one
    over a mapped upstream always has its upstream's count; literal lists give the exact
    count (``static``).
    """
    af = airflow_names()
    fileloc = Path(dag.fileloc).resolve() if getattr(dag, "fileloc", None) else None
    if root is not None:
        root_path = Path(root).resolve()
    else:
        root_path = fileloc.parent if fileloc else Path.cwd().resolve()
    tasks = _topological(dag)
    ids = _stage_ids(tasks)
    observed, run_id = observed_counts(dag.dag_id, history)
    ctx = Context(af, root_path, ids, _overrides(parallelism, dag.dag_id, ids), observed)
    stages = [convert_task(task, ctx) for task in tasks]
    control = [
        (ids[u], ids[t.task_id]) for t in tasks for u in sorted(t.upstream_task_ids) if u in ids
    ]
    source = Source(
        framework="airflow",
        root=str(root_path),
        path=_relative(fileloc, root_path),
        entry=dag.dag_id,
    )
    meta: dict[str, Any] = {"airflow_version": airflow_version()}
    if run_id is not None:
        meta["observed_run_id"] = run_id
    return _build(dag.dag_id, stages, control, source, meta)


def workflow_from_file(path: str | Path, dag_id: str | None = None, **kw: Any) -> Workflow:
    """:func:`load_dag_file` then :func:`from_dag` (``kw``: ``root``, ``parallelism``, ``history``)."""
    return from_dag(load_dag_file(path, dag_id), **kw)


def _topological(dag: DAG) -> list[Any]:
    """The tasks, producers before consumers; ties keep the DAG's own task order."""
    order = {tid: i for i, tid in enumerate(dag.task_dict)}
    edges = [(u, t.task_id) for t in dag.tasks for u in t.upstream_task_ids if u in order]
    return [dag.task_dict[tid] for tid in topological_order(adjacency(order, edges), order.get)]


def _stage_ids(tasks: list[Any]) -> dict[str, str]:
    """Lambda-safe, unique stage ids (task groups put dots in task ids)."""
    ids: dict[str, str] = {}
    for task in tasks:
        ids[task.task_id] = safe_name(task.task_id, ids.values())
    return ids


def _relative(file: Path | None, root: Path) -> str | None:
    if file is None:
        return None
    try:
        return file.relative_to(root).as_posix()
    except ValueError:
        return str(file)


def _overrides(given: Mapping[str, int] | None, dag_id: str, ids: dict[str, str]) -> dict[str, int]:
    """``parallelism=`` keyed by task id; stage ids are accepted too. Typos are errors."""
    by_stage = {sid: tid for tid, sid in ids.items()}
    out: dict[str, int] = {}
    for key, n in (given or {}).items():
        task_id = key if key in ids else by_stage.get(key)
        if task_id is None:
            raise WiseFuseError(
                f"parallelism override for {key!r}: DAG {dag_id!r} has no such task",
                hint=f"its tasks are: {', '.join(sorted(ids))}",
            )
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise WiseFuseError(
                f"parallelism override for {key!r} must be a whole number >= 1, got {n!r}"
            )
        out[task_id] = n
    return out


def _build(
    name: str,
    stages: list[Stage],
    control: list[tuple[str, str]],
    source: Source,
    meta: dict[str, Any],
) -> Workflow:
    """Construct the workflow; a stage the IR rejects is demoted to opaque, never raised.

    The conversion is meant to produce valid IR by construction; this is the safety net
    that keeps the "never crash on a valid DAG" promise if some construct slips through.
    """
    for _ in range(len(stages) + 1):
        edges = derive_edges(stages, control)
        try:
            return Workflow(name=name, stages=stages, edges=edges, source=source, meta=meta)
        except IRError as err:
            faulty = _faulty_stages(err, stages, edges)
            if not faulty:
                raise
            stages = [_demoted(s, faulty[s.id]) if s.id in faulty else s for s in stages]
    raise AssertionError("unreachable: every round demotes at least one stage")


def _faulty_stages(err: IRError, stages: list[Stage], edges: list[Any]) -> dict[str, str]:
    by_id = {s.id: s for s in stages}
    faulty: dict[str, str] = {}
    for path, reason in err.problems:
        if m := re.match(r"\$\.stages\[(\d+)\]", path):
            sid = stages[int(m.group(1))].id
        elif m := re.match(r"\$\.edges\[(\d+)\]", path):
            sid = edges[int(m.group(1))].dst
        else:
            continue
        if by_id[sid].kind == StageKind.OPAQUE and not by_id[sid].bindings:
            continue  # already as plain as it gets
        faulty.setdefault(sid, reason)
    return faulty


def _demoted(stage: Stage, reason: str) -> Stage:
    return Stage(
        id=stage.id,
        name=stage.name,
        kind=StageKind.OPAQUE,
        opaque_reason=f"could not be represented in the IR: {reason}",
        retries=stage.retries,
        meta=stage.meta,
    )
