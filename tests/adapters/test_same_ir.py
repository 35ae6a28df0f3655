"""The Airflow DAG and the Prefect flow of each example app give the same Workflow.

Same stages (matched by task name, since the two frameworks may id them differently),
kinds, bindings (kind, upstream stage, key, literal values), parallelism, and edges
(kind and pattern). Airflow cannot know how many instances a mapped task has before it
runs, so its parallelism is overridden with the count the Prefect trace observed.
Callables differ by design (two files, two code hashes) and are compared by function
name only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from wisefuse_plugins.ir import Workflow

pytestmark = [pytest.mark.airflow, pytest.mark.prefect]

APPS = {
    # app: (DAG file, flow file)
    "video_analytics": ("video_analytics.py", "video_analytics.py"),
    "ml_pipeline": ("ml_pipeline.py", "ml_pipeline.py"),
    "approx_svd": ("approx_svd.py", "approx_svd.py"),
}


def shape(wf: Workflow) -> dict[str, Any]:
    """The workflow modulo ids: everything keyed by stage name."""
    name = {s.id: s.name for s in wf.stages}
    stages = {}
    for s in wf.stages:
        bindings = {}
        for param, b in s.bindings.items():
            upstream = getattr(b, "stage", None)
            bindings[param] = (
                b.kind,
                name.get(upstream) if upstream else None,
                getattr(b, "key", None),
                getattr(b, "value", getattr(b, "values", None)),
            )
        stages[s.name] = {
            "kind": s.kind.value,
            "function": s.callable.qualname if s.callable else None,
            "parallelism": s.parallelism,
            "mapped": s.mapped,
            "bindings": bindings,
        }
    edges = {(name[e.src], name[e.dst], e.kind.value, e.pattern.value) for e in wf.edges}
    return {"stages": stages, "edges": edges}


@pytest.mark.parametrize("app", sorted(APPS))
def test_airflow_and_prefect_give_the_same_workflow(
    app: str,
    prefect_env: dict[str, str],
    airflow_dags_folder: Path,
    prefect_flows_folder: Path,
) -> None:
    from wisefuse_plugins.adapters.airflow import workflow_from_file
    from wisefuse_plugins.adapters.prefect import load_flow_file, trace_flow

    dag_file, flow_file = APPS[app]
    prefect_wf = trace_flow(load_flow_file(prefect_flows_folder / flow_file))
    counts = {s.name: s.parallelism for s in prefect_wf.stages if s.mapped}
    airflow_wf = workflow_from_file(airflow_dags_folder / dag_file, parallelism=counts)

    got, want = shape(airflow_wf), shape(prefect_wf)
    assert got["stages"].keys() == want["stages"].keys()
    for stage in want["stages"]:
        assert got["stages"][stage] == want["stages"][stage], stage
    assert got["edges"] == want["edges"]
    assert [s.name for s in airflow_wf.stages if s.mapped] == list(counts)
    assert all(s.is_python for s in airflow_wf.stages + prefect_wf.stages)
