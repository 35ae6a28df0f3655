"""What a unit printed and logged is in the real task log, under a real Airflow scheduler.

The DAGs of tests/providers/test_airflow_logs.py (a DAG whose tasks print and log, with a
task group and a mapped task; one whose unit fails after printing; one written with
``@task.wisefuse_lambda``) are written into the live deployment's dags folder, drop-in and
emitted, triggered together, and their task logs read from the files Airflow wrote
(``AIRFLOW_HOME/logs/.../attempt=N.log``): each task process ran its unit on the local
Lambda's workers, so the lines crossed a process boundary to get there.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import pytest

from ..airflow_helpers import fused_groups, make_plan, write_app
from ..providers.test_airflow_logs import CHATTY, DECORATED, FAILING
from .airflow_live import AirflowLive

SUBFOLDER = "task_logs"
CHATTY_ID, FAILING_ID, DECORATED_ID = "live_logs_chatty", "live_logs_failing", "live_logs_decorated"


@dataclass
class Runs:
    live: AirflowLive
    runs: dict[str, str] = field(default_factory=dict)  # dag_id -> run id
    states: dict[str, str] = field(default_factory=dict)

    def log(self, dag_id: str, task_id: str, map_index: int = -1) -> str:
        return self.live.task_log(dag_id, self.runs[dag_id], task_id, map_index=map_index)

    def raw(self, dag_id: str, task_id: str) -> list[dict]:
        """The task log's JSON events, in order (the failure's details are fields of them)."""
        path = self.live.task_log_path(dag_id, self.runs[dag_id], task_id)
        return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def runs(airflow_live: AirflowLive) -> Runs:
    staging = airflow_live.root / "staging-task-logs"
    staging.mkdir()
    chatty = CHATTY.replace('dag_id="chatty"', f'dag_id="{CHATTY_ID}"')
    failing = FAILING.replace('dag_id="failing"', f'dag_id="{FAILING_ID}"')
    write_app(CHATTY_ID, staging, chatty, lambda wf: {"b2": make_plan(wf, fused_groups(wf), 2)})
    write_app(FAILING_ID, staging, failing, lambda wf: {"one": make_plan(wf, fused_groups(wf))})
    decorated = DECORATED.replace('dag_id="decorated_logs"', f'dag_id="{DECORATED_ID}"')
    (staging / f"{DECORATED_ID}.py").write_text(decorated)
    target = airflow_live.dags / SUBFOLDER
    os.replace(staging, target)  # at once: the dag-processor never sees half of it
    wanted = [
        f"{CHATTY_ID}__b2",
        f"{CHATTY_ID}__emitted_b2",
        f"{FAILING_ID}__one",
        f"{FAILING_ID}__emitted_one",
        DECORATED_ID,
    ]
    airflow_live.wait_parsed(*wanted, files=sorted(target.rglob("*.py")), timeout_s=300)
    out = Runs(airflow_live)
    for dag_id in wanted:
        out.runs[dag_id] = airflow_live.trigger(dag_id)
    states = airflow_live.wait_runs(out.runs.items(), timeout_s=600)
    out.states = {dag_id: state for (dag_id, _), state in states.items()}
    return out


@pytest.mark.parametrize("dag_id", [f"{CHATTY_ID}__b2", f"{CHATTY_ID}__emitted_b2"])
def test_each_task_log_has_the_lines_its_unit_printed(runs: Runs, dag_id: str) -> None:
    assert runs.states[dag_id] == "success"
    assert runs.live.xcom(dag_id, runs.runs[dag_id], "total") == 60
    make = runs.log(dag_id, "make")
    assert "make stdout | making 4 numbers" in make
    assert "grp-shout" not in make  # each task's log has its own unit's lines only
    for chunk, instances in enumerate([(0, 1), (2, 3)]):  # bundles of 2: one task per chunk
        text = runs.log(dag_id, "grp.shout", map_index=chunk)
        for i in instances:
            where = f"grp-shout (task grp.shout)[{i}]"
            assert f"{where} stdout | shout {i}" in text
            assert f"{where} stderr | shout {i} on stderr" in text
            assert "[warning] airflow.task.operators." in text
            assert f"{where} log | WARNING {CHATTY_ID}: shout warning {i}" in text
        other = {0, 1, 2, 3} - set(instances)
        assert not any(f"[{i}] stdout" in text for i in other)
        report = f"unit grp-shout instances {list(instances)}: "
        assert report in text and text.index(report) > text.index(f"[{instances[-1]}] stdout")
    assert f"total log | INFO {CHATTY_ID}: adding 4 values" in runs.log(dag_id, "total")


@pytest.mark.parametrize("dag_id", [f"{FAILING_ID}__one", f"{FAILING_ID}__emitted_one"])
def test_a_failed_tasks_log_has_what_it_printed_before_the_error(runs: Runs, dag_id: str) -> None:
    assert runs.states[dag_id] == "failed"
    events = [json.dumps(e) for e in runs.raw(dag_id, "explode")]
    printed = next(i for i, e in enumerate(events) if "explode stdout | exploding 3" in e)
    report = next(i for i, e in enumerate(events) if "unit start-explode: " in e)
    error = next(i for i, e in enumerate(events) if "cannot take 3" in e)
    assert printed < report < error
    assert "failed in stage 'explode'" in events[error]


def test_a_task_wisefuse_lambda_log_has_its_lines(runs: Runs) -> None:
    assert runs.states[DECORATED_ID] == "failed"  # sulk raises, after hello succeeded
    hello = runs.log(DECORATED_ID, "hello")
    assert "hello stdout | hello 1" in hello
    assert f"hello log | INFO {DECORATED_ID}: said hello 1" in hello
    events = [json.dumps(e) for e in runs.raw(DECORATED_ID, "sulk")]
    printed = next(i for i, e in enumerate(events) if "sulk stdout | sulking on 2" in e)
    error = next(i for i, e in enumerate(events) if "not today" in e)
    assert printed < error
