"""Importers: Lambda REPORT lines, Airflow task instances (real dag.test()), Prefect task runs."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from examples.apps import video
from wisefuse_plugins.ir import Stage, Workflow
from wisefuse_plugins.profiles import (
    Archive,
    HistoryError,
    import_airflow,
    import_lambda_reports,
    import_prefect,
    parse_report,
    parse_reports,
)

HASH = "a" * 64
LOG = """\
START RequestId: 1b2c Version: $LATEST
some output of the function
END RequestId: 1b2c
REPORT RequestId: 1b2c\tDuration: 12.34 ms\tBilled Duration: 13 ms\tMemory Size: 512 MB\tMax Memory Used: 80 MB\tInit Duration: 200.1 ms\t
2025-01-01T00:00:01.000Z REPORT RequestId: 3d4e Duration: 9.50 ms Billed Duration: 10 ms Memory Size: 512 MB Max Memory Used: 81 MB
{"time": "2025-01-01T00:00:02Z", "type": "platform.report", "record": {"requestId": "5f6a", "metrics": {"durationMs": 8.25, "billedDurationMs": 9, "memorySizeMB": 1024, "maxMemoryUsedMB": 90}, "status": "success"}}
"""


def archive_at(tmp_path: Path) -> Archive:
    return Archive(f"sqlite:///{tmp_path / 'p.sqlite'}")


def test_report_line_fields():
    r = parse_report(
        "REPORT RequestId: 3f1c Duration: 12.34 ms Billed Duration: 13 ms "
        "Memory Size: 512 MB Max Memory Used: 80 MB Init Duration: 200.1 ms"
    )
    assert r is not None
    assert (r.request_id, r.duration_ms, r.billed_ms, r.memory_mb, r.max_memory_mb, r.init_ms) == (
        "3f1c", 12.34, 13, 512, 80, 200.1,
    )  # fmt: skip
    assert r.cold
    assert parse_report("START RequestId: 3f1c Version: $LATEST") is None
    assert parse_report("not json {") is None
    with pytest.raises(ValueError, match="without Memory Size"):
        parse_report(
            "REPORT RequestId: x Duration: 1 ms Billed Duration: 1 ms Max Memory Used: 1 MB"
        )


def test_report_log_becomes_samples_once(tmp_path):
    assert [r.request_id for r in parse_reports(LOG)] == ["1b2c", "3d4e", "5f6a"]
    stage = Stage(id="f", callable={"path": "a.py", "qualname": "f", "code_hash": HASH})
    wf = Workflow(name="wf", stages=[stage])
    with archive_at(tmp_path) as archive:
        result = import_lambda_reports(archive, LOG, workflow=wf, stage="f", arch="arm64")
        assert (result.recorded, result.seen) == (3, 3)
        again = import_lambda_reports(
            archive, LOG.splitlines(), workflow=wf, stage="f", arch="arm64"
        )
        assert again.recorded == 0
        got = archive.samples("wf")
    assert [(s.memory_mb, s.duration_ms, s.cold, s.init_ms, s.peak_memory_mb) for s in got] == [
        (512, 12.34, True, 200.1, 80.0),
        (512, 9.5, False, None, 81.0),
        (1024, 8.25, False, None, 90.0),
    ]
    assert {(s.code_hash, s.arch, s.backend, s.source) for s in got} == {
        (HASH, "arm64", "aws", "lambda-report")
    }


def test_airflow_importer_needs_a_metadata_database(tmp_path):
    wf = Workflow(name="wf", stages=[Stage(id="f", kind="opaque", opaque_reason="bash")])
    with archive_at(tmp_path) as archive, pytest.raises(HistoryError, match="task_instance"):
        import_airflow(archive, f"sqlite:///{tmp_path / 'empty.db'}", wf, memory_mb=2048)


@pytest.mark.airflow
def test_airflow_task_instances_of_a_real_run(
    tmp_path: Path, airflow_home: Path, airflow_dagbag: Any, airflow_dags_folder: Path
) -> None:
    from airflow.configuration import conf

    from wisefuse_plugins.adapters.airflow import from_dag

    dag = airflow_dagbag.dags["video_analytics"]
    since = datetime.now(UTC) - timedelta(seconds=1)
    dag_run = dag.test()
    assert dag_run.state == "success"
    workflow = from_dag(dag, root=airflow_dags_folder, history=dag_run)
    db_url = conf.get("database", "sql_alchemy_conn")
    chunks = video.SIZES["small"]["n_chunks"]
    with archive_at(tmp_path) as archive:
        result = import_airflow(archive, db_url, workflow, memory_mb=2048, since=since)
        assert result.recorded == 2 + 2 * chunks and not result.unmatched
        assert import_airflow(archive, db_url, workflow, memory_mb=2048, since=since).recorded == 0
        got = archive.samples("video_analytics", backend="airflow")
        profiles = archive.profiles_for(workflow, backend="airflow")
    per_stage = Counter(s.stage for s in got)
    assert per_stage == {
        "split_video": 1,
        "extract_features": chunks,
        "classify": chunks,
        "aggregate": 1,
    }
    assert sorted(s.instance for s in got if s.stage == "classify") == list(range(chunks))
    assert all(s.duration_ms > 0 and s.memory_mb == 2048 and s.source == "airflow" for s in got)
    assert set(profiles) == set(per_stage)
    assert profiles["extract_features"].samples[("x86_64", 2048)].size == chunks


@pytest.mark.prefect
def test_prefect_task_runs_of_a_real_flow(
    tmp_path: Path, prefect_env: dict[str, str], prefect_flows_folder: Path, load_module: Any
) -> None:
    from wisefuse_plugins.adapters.prefect import trace_flow

    flow = load_module(prefect_flows_folder / "video_analytics.py").video_analytics
    since = datetime.now(UTC) - timedelta(seconds=1)
    workflow = trace_flow(flow, root=prefect_flows_folder)  # runs the flow once, for real
    chunks = video.SIZES["small"]["n_chunks"]
    with archive_at(tmp_path) as archive:
        result = import_prefect(archive, workflow, memory_mb=1024, since=since)
        assert result.recorded == 2 + 2 * chunks and not result.unmatched
        assert import_prefect(archive, workflow, memory_mb=1024, since=since).recorded == 0
        got = archive.samples(workflow.name, backend="prefect")
    assert Counter(s.stage for s in got) == {
        s.id: (chunks if s.mapped else 1) for s in workflow.python_stages
    }
    assert all(s.duration_ms > 0 and s.source == "prefect" for s in got)
    stage_hashes = {s.id: s.callable.code_hash for s in workflow.python_stages}
    assert all(s.code_hash == stage_hashes[s.stage] for s in got)
