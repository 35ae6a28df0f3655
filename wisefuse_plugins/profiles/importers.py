"""Samples from history a workflow already has: Lambda logs, Airflow and Prefect runs.

A workflow that already runs somewhere has measurements for free. Each importer turns
them into :class:`~wisefuse_plugins.profiles.archive.Sample` s and records them; every
sample carries a ``ref`` naming its origin, so importing the same history twice records
it once. What the durations mean differs by source (``docs/profiles.md``):

- Lambda ``REPORT`` lines: the whole invocation as Lambda bills it (the stage, its store
  I/O and the handler), at the function's memory size, with INIT on cold starts;
- Airflow task instances: the task's run time under its worker (``duration``), which
  includes XCom reads and writes and the operator's own overhead;
- Prefect task runs: start to end of each completed task run.

History cannot say which version of the code ran, so imported samples are attributed to
the workflow's *current* code hashes: import soon after a change (``since`` filters out
older runs). Airflow and Prefect are imported inside the functions that need them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from wisefuse_plugins.adapters.airflow_db import HistoryError, connect
from wisefuse_plugins.adapters.prefect import task_name as _task_name
from wisefuse_plugins.ir import Stage, Workflow
from wisefuse_plugins.profiles.archive import OPAQUE_HASH, Archive, Sample
from wisefuse_plugins.runtime.lambda_report import Report
from wisefuse_plugins.runtime.lambda_report import full_report as parse_report

__all__ = [
    "HistoryError",
    "ImportResult",
    "ReportLine",
    "import_airflow",
    "import_lambda_reports",
    "import_prefect",
    "parse_report",
    "parse_reports",
]


@dataclass
class ImportResult:
    """What an import found: samples recorded, already known, and names matching no stage."""

    recorded: int = 0
    seen: int = 0  # matching records read (recorded + already in the archive)
    unmatched: dict[str, int] = field(default_factory=dict)  # task name -> records


def _code_hash(stage: Stage) -> str:
    return stage.callable.code_hash if stage.callable is not None else OPAQUE_HASH


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _record(archive: Archive, samples: list[Sample], unmatched: Counter[str]) -> ImportResult:
    return ImportResult(recorded=archive.add(samples), seen=len(samples), unmatched=dict(unmatched))


# =========================================================================== Lambda REPORT

ReportLine = Report  # one REPORT line (runtime.lambda_report), by its older name here


def parse_reports(lines: str | Iterable[str]) -> list[ReportLine]:
    """Every REPORT line in a log (a text or an iterable of lines); other lines are ignored."""
    if isinstance(lines, str):
        lines = lines.splitlines()
    return [r for line in lines if (r := parse_report(line)) is not None]


def import_lambda_reports(
    archive: Archive,
    lines: str | Iterable[str],
    *,
    workflow: Workflow | str,
    stage: str,
    code_hash: str | None = None,
    arch: str = "x86_64",
    bundle_size: int = 1,
    backend: str = "aws",
) -> ImportResult:
    """Record the REPORT lines of one function (a unit running ``stage``) as samples.

    ``code_hash`` defaults to the stage's current one when ``workflow`` is a Workflow.
    Duration is the whole invocation (stage, store I/O, handler), as billed.
    """
    if isinstance(workflow, Workflow):
        name = workflow.name
        code_hash = code_hash if code_hash is not None else _code_hash(workflow.stage(stage))
    else:
        name = workflow
        if code_hash is None:
            raise ValueError("pass code_hash= when workflow is a name, not a Workflow")
    samples = [
        Sample(
            workflow=name,
            stage=stage,
            code_hash=code_hash,
            memory_mb=r.memory_mb,
            duration_ms=r.duration_ms,
            arch=arch,
            bundle_size=bundle_size,
            backend=backend,
            init_ms=r.init_ms,
            cold=r.cold,
            peak_memory_mb=float(r.max_memory_mb),
            source="lambda-report",
            ref=f"lambda:{r.request_id}",
        )
        for r in parse_reports(lines)
    ]
    return _record(archive, samples, Counter())


# =========================================================================== Airflow


def _stages_by_name(workflow: Workflow) -> dict[str, Stage]:
    """Framework task name (``Stage.name``, else the id) -> stage; ambiguous names dropped."""
    names = Counter(s.name for s in workflow.stages)
    found = {s.name: s for s in workflow.stages if names[s.name] == 1}
    for s in workflow.stages:
        found.setdefault(s.id, s)
    return found


def import_airflow(
    archive: Archive,
    db_url: str,
    workflow: Workflow,
    *,
    dag_id: str | None = None,
    memory_mb: int,
    arch: str = "x86_64",
    since: datetime | None = None,
    states: Sequence[str] = ("success",),
    backend: str = "airflow",
) -> ImportResult:
    """Record task-instance durations of ``dag_id`` from an Airflow metadata database.

    ``db_url`` is Airflow's ``[database] sql_alchemy_conn``; only the ``task_instance``
    table is read, with SQLAlchemy Core (no Airflow import needed; a SQLite file that
    does not exist is refused: :func:`wisefuse_plugins.adapters.airflow_db.connect`). ``memory_mb`` is what
    the Airflow worker had per task (a parameter: Airflow does not record it). Mapped
    instances keep their ``map_index`` as ``instance``. Task instances of tasks the
    workflow does not have are counted in ``unmatched``.
    """
    from sqlalchemy import column, select, table

    dag_id = dag_id or workflow.source.entry or workflow.name
    ti = table(
        "task_instance",
        column("dag_id"),
        column("task_id"),
        column("run_id"),
        column("map_index"),
        column("try_number"),
        column("start_date"),
        column("end_date"),
        column("duration"),
        column("state"),
    )
    query = select(ti).where(ti.c.dag_id == dag_id, ti.c.state.in_(list(states)))
    if since is not None:
        query = query.where(ti.c.start_date >= since)
    with connect(db_url, what="task_instance of Airflow's metadata database") as conn:
        rows = conn.execute(query).mappings().all()
    stages = _stages_by_name(workflow)
    unmatched: Counter[str] = Counter()
    samples = []
    for r in rows:
        stage = stages.get(r["task_id"])
        if stage is None:
            unmatched[r["task_id"]] += 1
            continue
        duration_s = r["duration"]
        if duration_s is None and r["start_date"] is not None and r["end_date"] is not None:
            duration_s = (
                _as_datetime(r["end_date"]) - _as_datetime(r["start_date"])
            ).total_seconds()
        if duration_s is None:
            continue
        map_index = r["map_index"] if r["map_index"] is not None else -1
        samples.append(
            Sample(
                workflow=workflow.name,
                stage=stage.id,
                code_hash=_code_hash(stage),
                memory_mb=memory_mb,
                duration_ms=max(float(duration_s), 0.0) * 1000,
                arch=arch,
                backend=backend,
                instance=map_index if map_index >= 0 else None,
                timestamp=_utc(_as_datetime(r["start_date"])) or datetime.now(UTC),
                source="airflow",
                ref=f"airflow:{dag_id}:{r['run_id']}:{r['task_id']}:{map_index}:{r['try_number']}",
            )
        )
    return _record(archive, samples, unmatched)


def _as_datetime(value: Any) -> datetime:
    """Airflow stores UTC datetimes; SQLite hands them back as text without a type."""
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


# =========================================================================== Prefect

PREFECT_PAGE = 200


def import_prefect(
    archive: Archive,
    workflow: Workflow,
    *,
    flow_name: str | None = None,
    memory_mb: int,
    arch: str = "x86_64",
    since: datetime | None = None,
    limit: int = 50,
    backend: str = "prefect",
) -> ImportResult:
    """Record the completed task runs of the last ``limit`` completed runs of a flow.

    Reads the Prefect API configured in this process (``PREFECT_API_URL``, or the
    temporary server). Task runs map to stages by task key (``Stage.meta["task_key"]``,
    which the Prefect adapter records) when it names one stage, else by task name.
    ``memory_mb`` is what the Prefect worker had per task (Prefect does not record it).
    """
    try:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import (
            FlowFilter,
            FlowFilterName,
            FlowRunFilter,
            FlowRunFilterId,
            FlowRunFilterStartTime,
            FlowRunFilterState,
            FlowRunFilterStateType,
            TaskRunFilter,
            TaskRunFilterState,
            TaskRunFilterStateType,
        )
        from prefect.client.schemas.objects import StateType
        from prefect.client.schemas.sorting import FlowRunSort, TaskRunSort
    except ModuleNotFoundError as err:
        from wisefuse_plugins.errors import MissingExtraError

        raise MissingExtraError("prefect", "prefect", "importing Prefect task runs") from err

    flow_name = flow_name or workflow.name
    by_key: dict[str, list[Stage]] = {}
    for s in workflow.stages:
        key = s.meta.get("task_key")
        if isinstance(key, str):
            by_key.setdefault(key, []).append(s)
    by_name = _stages_by_name(workflow)
    run_filter = FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.COMPLETED])),
        start_time=FlowRunFilterStartTime(after_=since) if since is not None else None,
    )
    with get_client(sync_client=True) as client:
        flow_runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
            flow_run_filter=run_filter,
            sort=FlowRunSort.START_TIME_DESC,
            limit=limit,
        )
        task_runs: list[Any] = []
        while flow_runs:  # page through: the server caps one answer at its page size
            page = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[fr.id for fr in flow_runs])),
                task_run_filter=TaskRunFilter(
                    state=TaskRunFilterState(
                        type=TaskRunFilterStateType(any_=[StateType.COMPLETED]), name=None
                    )
                ),
                sort=TaskRunSort.ID_DESC,  # a total order, so that pages neither skip nor repeat
                limit=PREFECT_PAGE,
                offset=len(task_runs),
            )
            task_runs += page
            if len(page) < PREFECT_PAGE:
                break
    unmatched: Counter[str] = Counter()
    samples = []
    for run in task_runs:
        keyed = by_key.get(run.task_key, [])
        stage = keyed[0] if len(keyed) == 1 else by_name.get(_task_name(run))
        if stage is None:
            unmatched[_task_name(run)] += 1
            continue
        start, end = _utc(run.start_time), _utc(run.end_time)
        if start is not None and end is not None:
            duration_ms = (end - start).total_seconds() * 1000
        elif run.total_run_time:
            duration_ms = run.total_run_time.total_seconds() * 1000
        else:
            continue
        samples.append(
            Sample(
                workflow=workflow.name,
                stage=stage.id,
                code_hash=_code_hash(stage),
                memory_mb=memory_mb,
                duration_ms=max(duration_ms, 0.0),
                arch=arch,
                backend=backend,
                timestamp=start or datetime.now(UTC),
                source="prefect",
                ref=f"prefect:{run.id}",
            )
        )
    return _record(archive, samples, unmatched)
