"""Plan files under a real scheduler (issue 19, items 4 and 5): a plan replaced while a run
is in flight, stale and missing plans, for the drop-in and for emitted DAG files.

The DAG (tests/providers/test_airflow_planfiles.py, ``DAG_SOURCE``) has two plans that give
it two shapes; a run moved from one to the other half-way fails. Its first task waits for
a gate file, so the plan can be replaced, and the dag-processor made to parse the DAG file
again, while the run is surely in flight. What a user sees is read where the UI reads it:
the DAG's tags (``dag_tag``) and docs (REST ``/api/v2/dags/{dag_id}/details``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from wisefuse_plugins.providers.airflow.planfiles import (
    TAG_FILES,
    TAG_NOT_USED,
    TAG_WAITING,
    PlanState,
)

from ..providers.test_airflow_planfiles import EXPECTED, TASKS, write_squares
from .airflow_live import AirflowLive


def _until(what: str, check: Callable[[], Any], timeout_s: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def _tags(live: AirflowLive, dag_id: str) -> set[str]:
    return {r["name"] for r in live.query("SELECT name FROM dag_tag WHERE dag_id=?", (dag_id,))}


def _details(live: AirflowLive, dag_id: str) -> dict[str, Any]:
    """The DAG as the UI's details page reads it."""
    return live.request("GET", f"/api/v2/dags/{dag_id}/details")


def _served_tasks(live: AirflowLive, dag_id: str) -> set[str]:
    """The task ids of the DAG's latest serialized version (what the next run gets)."""
    return {t["task_id"] for t in live.request("GET", f"/api/v2/dags/{dag_id}/tasks")["tasks"]}


def _task_errors(live: AirflowLive, dag_id: str, run: str, task: str) -> list[tuple]:
    """``(type, message, notes)`` of each exception in a task's log, as the UI shows them
    (Airflow writes them as structlog's ``error_detail``)."""
    found = []
    for line in live.task_log_path(dag_id, run, task).read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        for exc in event.get("error_detail") or [] if isinstance(event, dict) else []:
            found.append((exc["exc_type"], exc["exc_value"], exc.get("exc_notes") or []))
    return found


def _results(live: AirflowLive, dag_id: str, run: str, tasks: set[str]) -> dict[str, Any]:
    tis = live.task_instances(dag_id, run)
    assert {t for t, _ in tis} == tasks
    assert all(ti.state == "success" for ti in tis.values()), tis
    return {t: live.xcom(dag_id, run, t) for t in EXPECTED if t in tasks}


def test_a_plan_replaced_mid_run(airflow_live: AirflowLive, tmp_path: Path) -> None:
    live, dag_id = airflow_live, "planfiles_replaced"
    gate, marks = tmp_path / "gate", tmp_path / "callbacks"
    path, plans = write_squares(
        live.dags / "plan_files", dag_id, gate=str(gate), marks=str(marks), plain=tmp_path / "plain"
    )
    plan = path.with_name(f"{dag_id}.plan.json")  # the DAG file names it relatively
    plan.write_text(plans["p1"])
    live.wait_parsed(dag_id, files=[path])
    assert _served_tasks(live, dag_id) == TASKS["p1"]

    run1 = live.trigger(dag_id)
    pins = PlanState(live.wisefuse_home / "airflow-plans")
    _until("run 1's first task to pin its plan", lambda: pins.pin_of(dag_id, run1))
    replaced = time.time()
    plan.write_text(plans["p2"])  # replaced while run 1 waits at the gate
    os.utime(path)  # the dag-processor's periodic parse, now
    live.wait_parsed(dag_id, since=replaced)
    assert live.run_state(dag_id, run1) == "running"
    assert TAG_WAITING in _tags(live, dag_id)
    assert f"while runs {run1!r} are in flight" in _details(live, dag_id)["doc_md"]
    assert _served_tasks(live, dag_id) == TASKS["p1"]  # the run's tasks stay as they were

    gate.touch()
    assert live.wait_runs([(dag_id, run1)], timeout_s=240) == {(dag_id, run1): "success"}
    assert _results(live, dag_id, run1, TASKS["p1"]) == EXPECTED

    # run 1's end released its pin; its callback had the DAG file parsed again: P2 now
    _until("the new plan to be served", lambda: _served_tasks(live, dag_id) == TASKS["p2"])
    assert pins.pin_of(dag_id, run1) is None
    assert TAG_WAITING not in _tags(live, dag_id)
    run2 = live.trigger(dag_id)
    assert live.wait_runs([(dag_id, run2)], timeout_s=240) == {(dag_id, run2): "success"}
    assert _results(live, dag_id, run2, TASKS["p2"]) == {"half": EXPECTED["half"]}
    # the user's own DAG callback ran for both runs, beside the one that releases pins
    _until("the user's callback of run 2", lambda: run2 in marks.read_text().split(), 60)
    assert marks.read_text().split() == [run1, run2]


@pytest.mark.parametrize("problem", ["stale", "missing"])
def test_a_drop_in_without_a_usable_plan_runs_the_original(
    airflow_live: AirflowLive, tmp_path: Path, problem: str
) -> None:
    live, dag_id = airflow_live, f"planfiles_{problem}"
    path, plans = write_squares(live.dags / "plan_files", dag_id, plain=tmp_path / "plain")
    plan = path.with_name(f"{dag_id}.plan.json")
    if problem == "stale":  # the plan was made before a function changed
        plan.write_text(plans["p1"])
        path.write_text(path.read_text().replace("return x * x", "return x * x  # changed"))
    live.wait_parsed(dag_id, files=[path])

    assert TAG_NOT_USED in _tags(live, dag_id)
    doc = _details(live, dag_id)["doc_md"]
    assert doc.startswith(f"> **WiseFuse:** DAG {dag_id!r} runs unchanged: ")
    if problem == "stale":
        assert "no longer matches it: stage 'square' changed since the plan was made" in doc
    else:
        assert f"the plan file {str(plan)!r} does not exist" in doc
    original = {"numbers", "square", "total", "half"}
    assert _served_tasks(live, dag_id) == original
    run = live.trigger(dag_id)
    assert live.wait_runs([(dag_id, run)], timeout_s=240) == {(dag_id, run): "success"}
    assert _results(live, dag_id, run, original) == EXPECTED
    pins = PlanState(live.wisefuse_home / "airflow-plans")  # the original DAG pins its runs
    _until("the run's end to release its pin", lambda: pins.pin_of(dag_id, run) is None, 60)


def _emit(live: AirflowLive, tmp_path: Path, dag_id: str) -> tuple[Path, dict]:
    """The original DAG file (plain: no drop-in line) in a folder of its own, the files
    emitted for P2 beside it, and the plans' JSON."""
    from wisefuse_plugins.adapters.airflow import from_dag, load_dag_file
    from wisefuse_plugins.emitters.airflow import write_dag
    from wisefuse_plugins.plan.schema import plan_from_json

    _, plans = write_squares(tmp_path / "source", dag_id, plain=tmp_path / "plain")
    original = live.put_file(tmp_path / "plain" / f"{dag_id}.py", f"{dag_id}/{dag_id}.py")
    dag = load_dag_file(original, dag_id)
    wf = from_dag(dag)
    emitted = write_dag(wf, plan_from_json(plans["p2"], wf), original.parent, dag=dag)
    return emitted, plans


def test_an_emitted_dag_keeps_its_plan_when_the_file_is_replaced(
    airflow_live: AirflowLive, tmp_path: Path
) -> None:
    live, dag_id = airflow_live, "planfiles_emitted"
    emitted, plans = _emit(live, tmp_path, dag_id)
    wisefuse_id = f"{dag_id}_wisefuse"
    live.wait_parsed(dag_id, wisefuse_id, files=[emitted])
    assert TAG_FILES not in _tags(live, wisefuse_id)

    replaced = time.time()
    emitted.with_name(f"{wisefuse_id}.plan.json").write_text(plans["p1"])  # not re-emitted
    os.utime(emitted)
    live.wait_parsed(wisefuse_id, since=replaced)
    assert TAG_FILES in _tags(live, wisefuse_id)
    assert "is not the one this DAG file was emitted for" in _details(live, wisefuse_id)["doc_md"]
    run = live.trigger(wisefuse_id)
    assert live.wait_runs([(wisefuse_id, run)], timeout_s=240) == {(wisefuse_id, run): "success"}
    assert _results(live, wisefuse_id, run, TASKS["p2"]) == {"half": EXPECTED["half"]}
    log = live.task_log(wisefuse_id, run, "numbers")
    assert "the units run the plan file it was emitted with (a snapshot)" in log


def test_an_emitted_dag_without_its_plan_fails_clearly(
    airflow_live: AirflowLive, tmp_path: Path
) -> None:
    live, dag_id = airflow_live, "planfiles_emitted_missing"
    emitted, _ = _emit(live, tmp_path, dag_id)
    plan = emitted.with_name(f"{dag_id}_wisefuse.plan.json")
    plan.unlink()  # deployed without it, before any parse
    wisefuse_id = f"{dag_id}_wisefuse"
    live.wait_parsed(wisefuse_id, files=[emitted])
    assert TAG_FILES in _tags(live, wisefuse_id)
    doc = _details(live, wisefuse_id)["doc_md"]
    assert f"the plan file {str(plan)!r} does not exist" in doc
    run = live.trigger(wisefuse_id)
    assert live.wait_runs([(wisefuse_id, run)], timeout_s=240) == {(wisefuse_id, run): "failed"}
    errors = _task_errors(live, wisefuse_id, run, "numbers")
    assert errors, live.task_log(wisefuse_id, run, "numbers")
    kind, message, notes = errors[-1]
    assert kind.endswith("PlanFileError")
    assert message.startswith(f"the plan file {str(plan)!r} does not exist and ")
    assert notes[0].startswith("hint: put back the plan and IR files written with this DAG file")
