"""Plan files under Airflow (providers/airflow/planfiles.py): pins, snapshots, the served plan,
relative paths, and problems shown where an Airflow user sees them.

The pin logic is tested on its own first (no Airflow), then through DAG files parsed by
Airflow's own DagBag, as the dag-processor parses them (no run context) and as a task
process does (inside Airflow's parsing context with the run id bound, as
``task_runner.startup`` does). tests/live/test_plan_files.py runs the same under a real
scheduler.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from wisefuse_plugins.providers.airflow import planfiles as pf
from wisefuse_plugins.providers.airflow.planfiles import (
    TAG_FILES,
    TAG_NOT_USED,
    TAG_WAITING,
    PlanFileError,
    PlanState,
    ReleasePin,
    beside,
    choose_plan,
    pin_ttl,
    pinned_bytes,
    sha_of,
    with_release,
)

P1 = b'{"plan": 1}'
P2 = b'{"plan": 2}'


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PlanState:
    monkeypatch.setenv(pf.STATE_ENV, str(tmp_path / "state"))
    monkeypatch.delenv(pf.PINS_ENV, raising=False)
    monkeypatch.delenv(pf.TTL_ENV, raising=False)
    return PlanState()


def _plan_file(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "dags" / "etl.plan.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# --------------------------------------------------------------------------- pin logic


def test_a_serving_parse_uses_the_file_and_keeps_a_snapshot(
    state: PlanState, tmp_path: Path
) -> None:
    path = _plan_file(tmp_path, P1)
    chosen = choose_plan("etl", path, state=state)
    assert (chosen.text, chosen.sha, chosen.origin) == (P1, sha_of(P1), "file")
    assert state.snapshot_bytes(sha_of(P1)) == P1
    assert state.served("etl") == (True, sha_of(P1))


def test_a_run_finishes_with_its_plan_and_the_next_run_gets_the_new_one(
    state: PlanState, tmp_path: Path
) -> None:
    path = _plan_file(tmp_path, P1)
    choose_plan("etl", path, state=state)  # the dag-processor serves P1
    first = choose_plan("etl", path, run=("etl", "run1"), state=state)  # run1's first task
    assert (first.text, first.origin) == (P1, "pinned")
    path.write_bytes(P2)  # replaced while run1 is in flight
    kept = choose_plan("etl", path, state=state)  # the dag-processor parses again
    assert (kept.text, kept.origin, kept.waiting) == (P1, "kept", ("run1",))
    later = choose_plan("etl", path, run=("etl", "run1"), state=state)  # run1's next task
    assert (later.text, later.origin) == (P1, "pinned")
    joined = choose_plan("etl", path, run=("etl", "run2"), state=state)  # run2 starts under P1
    assert joined.text == P1
    ReleasePin("etl", str(state.root))({"run_id": "run1"})
    assert choose_plan("etl", path, state=state).origin == "kept"  # run2 still holds P1
    ReleasePin("etl", str(state.root))({"run_id": "run2"})
    switched = choose_plan("etl", path, state=state)
    assert (switched.text, switched.origin, switched.waiting) == (P2, "file", ())
    assert choose_plan("etl", path, run=("etl", "run3"), state=state).text == P2


def test_a_pin_is_written_once(state: PlanState) -> None:
    first = state.pin("etl", "run1", "a" * 64)
    again = state.pin("etl", "run1", "b" * 64)
    assert first.sha == again.sha == "a" * 64
    pins = list((state.root / "dags").rglob("pins/*.json"))
    assert len(pins) == 1
    assert json.loads(pins[0].read_text())["run_id"] == "run1"
    assert not [p for p in state.root.rglob("*.tmp")]  # no temporary file left


def test_a_pin_whose_run_never_reports_expires(
    state: PlanState, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _plan_file(tmp_path, P1)
    choose_plan("etl", path, state=state)
    choose_plan("etl", path, run=("etl", "lost"), state=state)
    path.write_bytes(P2)
    ttl = dt.timedelta(hours=1)
    assert choose_plan("etl", path, ttl=ttl, state=state).origin == "kept"
    pin = next((state.root / "dags").rglob("pins/*.json"))
    old = time.time() - 2 * 3600
    os.utime(pin, (old, old))
    with caplog.at_level("WARNING", logger="wisefuse_plugins.airflow"):
        chosen = choose_plan("etl", path, ttl=ttl, state=state)
    assert (chosen.text, chosen.expired) == (P2, ("lost",))
    assert "expired" in caplog.text and "'lost'" in caplog.text
    assert not pin.exists()


def test_each_task_start_keeps_its_pin_alive(state: PlanState, tmp_path: Path) -> None:
    path = _plan_file(tmp_path, P1)
    choose_plan("etl", path, state=state)
    choose_plan("etl", path, run=("etl", "long"), state=state)
    pin = next((state.root / "dags").rglob("pins/*.json"))
    old = time.time() - 2 * 3600
    os.utime(pin, (old, old))
    choose_plan("etl", path, run=("etl", "long"), state=state)  # another task starts
    path.write_bytes(P2)
    assert choose_plan("etl", path, ttl=dt.timedelta(hours=1), state=state).origin == "kept"


def test_a_run_without_a_plan_keeps_running_the_original(state: PlanState, tmp_path: Path) -> None:
    path = tmp_path / "dags" / "etl.plan.json"  # not there yet
    served = choose_plan("etl", path, state=state)
    assert served.text is None and "does not exist" in str(served.problem)
    assert choose_plan("etl", path, run=("etl", "run1"), state=state).text is None
    _plan_file(tmp_path, P1)  # the plan arrives while run1 runs the original DAG
    kept = choose_plan("etl", path, state=state)
    assert (kept.text, kept.origin, kept.waiting) == (None, "none", ("run1",))
    assert choose_plan("etl", path, run=("etl", "run1"), state=state).text is None
    ReleasePin("etl", str(state.root))({"run_id": "run1"})
    assert choose_plan("etl", path, state=state).text == P1


def test_a_pinned_plan_whose_snapshot_is_gone_is_reported(state: PlanState, tmp_path: Path) -> None:
    path = _plan_file(tmp_path, P1)
    choose_plan("etl", path, state=state)
    choose_plan("etl", path, run=("etl", "run1"), state=state)
    path.write_bytes(P2)
    (state.root / "snapshots" / sha_of(P1)).unlink()
    chosen = choose_plan("etl", path, run=("etl", "run1"), state=state)
    assert chosen.text is None
    assert "run 'run1' is pinned to plan" in str(chosen.problem)
    assert "snapshot is missing" in str(chosen.problem)


def test_a_task_of_another_dag_writes_nothing(state: PlanState, tmp_path: Path) -> None:
    path = _plan_file(tmp_path, P1)
    chosen = choose_plan("etl_wisefuse", path, run=("etl", "run1"), state=state)
    assert chosen.text == P1
    assert not state.root.exists()


def test_pins_can_be_turned_off(
    state: PlanState, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(pf.PINS_ENV, "0")
    path = _plan_file(tmp_path, P1)
    assert choose_plan("etl", path, run=("etl", "run1"), state=state).origin == "file"
    assert not state.root.exists()


def test_an_unwritable_state_folder_falls_back_to_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    path = _plan_file(tmp_path, P1)
    with caplog.at_level("WARNING", logger="wisefuse_plugins.airflow"):
        chosen = choose_plan("etl", path, state=PlanState(blocker / "state"))
    assert (chosen.text, chosen.origin) == (P1, "file")
    assert "plan pins unavailable" in caplog.text


_RACER = f"""
import sys, time
from pathlib import Path
from wisefuse_plugins.providers.airflow.planfiles import PlanState, choose_plan

role, root, path, go = sys.argv[1:]
Path(go + "." + role).touch()  # ready
while not Path(go).exists():
    time.sleep(0.001)
state = PlanState(Path(root))
if role == "serve":
    Path(path).write_bytes({P2!r})
    choose_plan("etl", Path(path), state=state)
else:
    choose_plan("etl", Path(path), run=("etl", "run1"), state=state)
"""


def test_a_run_starting_while_the_plan_switches_gets_the_plan_that_is_served(
    tmp_path: Path,
) -> None:
    """A task process pinning its run and the dag-processor switching plans at the same
    moment, in real processes: whichever goes first, the run's pin is the served plan.

    The two are fresh interpreters, not forks of this process (a fork inherits the
    threads and locks other tests left behind)."""
    import subprocess
    import sys

    outcomes = set()
    for trial in range(12):
        state = PlanState(tmp_path / f"state{trial}")
        path = tmp_path / f"etl{trial}.plan.json"
        path.write_bytes(P1)
        choose_plan("etl", path, state=state)
        go = tmp_path / f"go{trial}"
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", _RACER, role, str(state.root), str(path), str(go)],
                stderr=subprocess.PIPE,
                text=True,
            )
            for role in ("serve", "run")
        ]
        deadline = time.monotonic() + 60
        while not all(Path(f"{go}.{r}").exists() for r in ("serve", "run")):
            assert time.monotonic() < deadline, "the racing processes did not start"
            time.sleep(0.01)
        go.touch()
        for proc in procs:
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
        pin = state.pin_of("etl", "run1")
        assert pin is not None and pin.sha == state.served("etl")[1]
        outcomes.add(pin.sha)
    assert outcomes <= {sha_of(P1), sha_of(P2)}


def test_pin_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    class Dag:
        dagrun_timeout: dt.timedelta | None = None

    monkeypatch.delenv(pf.TTL_ENV, raising=False)
    assert pin_ttl(Dag()) == pf.DEFAULT_PIN_TTL
    timed = Dag()
    timed.dagrun_timeout = dt.timedelta(hours=3)
    assert pin_ttl(timed) == dt.timedelta(hours=3)
    monkeypatch.setenv(pf.TTL_ENV, "0.5")
    assert pin_ttl(timed) == dt.timedelta(minutes=30)


def test_the_last_release_touches_the_dag_file_when_the_plan_changed(
    state: PlanState, tmp_path: Path
) -> None:
    path = _plan_file(tmp_path, P1)
    dag_file = path.with_name("etl.py")
    dag_file.write_text("# a DAG file\n")
    old = time.time() - 600
    os.utime(dag_file, (old, old))
    release = ReleasePin("etl", str(state.root), str(path), str(dag_file))
    choose_plan("etl", path, state=state)
    for run in ("run1", "run2"):
        choose_plan("etl", path, run=("etl", run), state=state)
    release({"run_id": "run1"})  # the plan did not change: no touch
    assert dag_file.stat().st_mtime == pytest.approx(old)
    path.write_bytes(P2)
    choose_plan("etl", path, state=state)  # kept for run2
    release({"run_id": "unknown"})  # a run that never pinned: nothing to do
    assert dag_file.stat().st_mtime == pytest.approx(old)
    release({"run_id": "run2"})  # the last pin: the dag-processor must parse again
    assert dag_file.stat().st_mtime > old + 300


def test_with_release_keeps_the_users_callbacks() -> None:
    def mine(context: Any) -> None: ...

    def other(context: Any) -> None: ...

    release = ReleasePin("etl", "/state")
    assert with_release(None, release) == [release]
    assert with_release(mine, release) == [mine, release]
    assert with_release([mine, other], release) == [mine, other, release]
    assert with_release([mine, release], release) == [mine, release]  # once


def test_relative_paths_are_beside_the_dag_file(tmp_path: Path) -> None:
    fileloc = str(tmp_path / "dags" / "etl.py")
    assert beside("etl.plan.json", fileloc) == tmp_path / "dags" / "etl.plan.json"
    assert beside("/abs/etl.plan.json", fileloc) == Path("/abs/etl.plan.json")
    assert beside("etl.plan.json", None) == Path.cwd() / "etl.plan.json"


# --------------------------------------------------------------------------- emitted files


def test_pinned_bytes(state: PlanState, tmp_path: Path) -> None:
    path = _plan_file(tmp_path, P1)
    assert pinned_bytes(path, sha_of(P1), "plan file") == (P1, None)
    path.write_bytes(P2)  # replaced without re-emitting: the emitted plan still runs
    data, note = pinned_bytes(path, sha_of(P1), "plan file")
    assert data == P1
    assert "is not the one this DAG file was emitted for" in str(note)
    assert pinned_bytes(path, None, "plan file") == (P2, None)  # no sha: the file as it is
    with pytest.raises(PlanFileError) as err:
        pinned_bytes(path, sha_of(b"never seen"), "plan file")
    assert str(path) in err.value.message and "keeps no copy" in err.value.message
    assert "re-emit the DAG file" in str(err.value.hint)
    path.unlink()
    with pytest.raises(PlanFileError, match="does not exist"):
        pinned_bytes(path, None, "plan file")


# --------------------------------------------------------------------------- DAG files

DAG_SOURCE = """
import time
from pathlib import Path

from airflow.sdk import dag, task

from wisefuse_plugins.airflow import rewrite

GATE = {gate!r}  # a file the first task waits for (None: it does not wait)
MARKS = {marks!r}  # a file the user's DAG callback appends each run id to (None: it does not)


@task
def numbers() -> list[int]:
    deadline = time.monotonic() + 120
    while GATE and not Path(GATE).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    return [1, 2, 3, 4, 5]


@task
def square(x: int) -> int:
    return x * x


@task
def total(values: list[int]) -> int:
    return sum(values)


@task
def half(value: int) -> float:
    return value / 2


def on_success(context):
    if MARKS:
        with open(MARKS, "a") as f:
            f.write(context["run_id"] + "\\n")


@dag(dag_id={dag_id!r}, schedule=None, on_success_callback=on_success, tags=["squares"])
def squares():
    half(total(square.expand(x=numbers())))


dag = rewrite(squares(), {plan!r})
"""
"""A DAG whose two plans give it two shapes: P1 runs each task as its own unit; P2 bundles
``square`` by 2 in a unit of another id (so its chunks come from another count key) and
fuses ``total -> half`` (so the task ``total`` is gone). A run switched from one to the
other half-way fails (``pushed no instance count``): issue 19, item 4."""

EXPECTED = {"total": 55, "half": 27.5}
TASKS = {
    "p1": {"numbers", "square", "square__chunks", "total", "half"},
    "p2": {"numbers", "square", "square__chunks", "half"},
}


def write_squares(
    folder: Path,
    dag_id: str,
    *,
    gate: str | None = None,
    marks: str | None = None,
    plain: Path | None = None,
) -> tuple[Path, dict]:
    """The DAG file (its plan path relative: ``<dag_id>.plan.json``) and its two plans' JSON.

    ``plain``: the folder for a copy without the drop-in line (default ``folder/.plain``),
    which the plans are made from; outside a dags folder, or Airflow would parse it too.
    """
    from wisefuse_plugins.adapters.airflow import from_dag, load_dag_file
    from wisefuse_plugins.plan.schema import (
        Plan,
        Unit,
        hashes_of,
        plan_problems,
        plan_to_json,
        single_stage_plan,
    )

    folder.mkdir(parents=True, exist_ok=True)
    source = DAG_SOURCE.format(gate=gate, marks=marks, dag_id=dag_id, plan=f"{dag_id}.plan.json")
    path = folder / f"{dag_id}.py"
    plain = (plain or folder / ".plain") / path.name  # the functions, without the drop-in
    plain.parent.mkdir(parents=True, exist_ok=True)
    plain.write_text(source.replace("dag = rewrite(squares(),", "dag = (squares(),"))
    wf = from_dag(load_dag_file(plain, dag_id))
    ids = {s.name: s.id for s in wf.stages}
    units = [
        Unit(id="numbers", stages=[ids["numbers"]]),
        Unit(id="square_b2", stages=[ids["square"]], bundle_size=2),
        Unit(id="total-half", stages=[ids["total"], ids["half"]]),
    ]
    p2 = Plan(workflow=wf.name, units=units, code_hashes=hashes_of(wf))
    assert plan_problems(p2, wf) == []
    plans = {"p1": plan_to_json(single_stage_plan(wf)), "p2": plan_to_json(p2)}
    path.write_text(source)
    return path, plans


@contextmanager
def task_parse(dag_id: str, run_id: str, task_id: str) -> Iterator[None]:
    """What a task process does around its parse (airflow/sdk/execution_time/task_runner.py)."""
    from airflow.sdk.definitions._internal.dag_parsing_context import (
        _airflow_parsing_context_manager,
    )
    from structlog.contextvars import bound_contextvars

    with (
        bound_contextvars(dag_id=dag_id, run_id=run_id, task_id=task_id),
        _airflow_parsing_context_manager(dag_id=dag_id, task_id=task_id),
    ):
        yield


def parse(path: Path) -> Any:
    """The file's DAGs as Airflow's parser builds them."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(path))
    assert bag.import_errors == {}
    return bag


@pytest.fixture
def squares(state: PlanState, tmp_path: Path) -> tuple[Path, dict]:
    return write_squares(tmp_path / "dags", "squares")


@pytest.mark.airflow
def test_the_compat_function_reads_the_run_of_a_task_parse() -> None:
    assert pf.airflow_run() is None
    with task_parse("squares", "manual__1", "total"):
        assert pf.airflow_run() == ("squares", "manual__1")
    assert pf.airflow_run() is None


@pytest.mark.airflow
def test_a_replaced_plan_waits_for_the_run_in_flight(
    squares: tuple[Path, dict], state: PlanState
) -> None:
    path, plans = squares
    plan = path.with_name("squares.plan.json")
    plan.write_text(plans["p1"])
    assert set(parse(path).dags["squares"].task_dict) == TASKS["p1"]
    with task_parse("squares", "run1", "numbers"):  # run1's first task: pinned to P1
        assert set(parse(path).dags["squares"].task_dict) == TASKS["p1"]
    plan.write_text(plans["p2"])
    served = parse(path).dags["squares"]  # the dag-processor keeps P1 for run1
    assert set(served.task_dict) == TASKS["p1"]
    assert TAG_WAITING in served.tags and "squares" in served.tags
    assert "while runs 'run1' are in flight" in served.doc_md
    with task_parse("squares", "run1", "total"):  # run1's last task still sees P1
        assert set(parse(path).dags["squares"].task_dict) == TASKS["p1"]
    callbacks = served.on_success_callback
    assert [c.__name__ for c in callbacks[:-1]] == ["on_success"]  # the user's, then ours
    assert isinstance(callbacks[-1], ReleasePin) and served.has_on_success_callback
    assert isinstance(served.on_failure_callback[-1], ReleasePin)
    for callback in callbacks:  # what the dag-processor does when run1 ends
        callback({"run_id": "run1", "dag": served})
    after = parse(path).dags["squares"]
    assert set(after.task_dict) == TASKS["p2"]
    assert TAG_WAITING not in after.tags and not (after.doc_md or "").startswith("> **WiseFuse")


@pytest.mark.airflow
def test_a_relative_plan_path_is_beside_the_dag_file(
    squares: tuple[Path, dict], state: PlanState, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path, plans = squares
    path.with_name("squares.plan.json").write_text(plans["p2"])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # a process whose working directory is not the DAG folder
    assert set(parse(path).dags["squares"].task_dict) == TASKS["p2"]


@pytest.mark.airflow
def test_a_missing_plan_is_shown_in_the_dag(
    squares: tuple[Path, dict], state: PlanState, caplog: pytest.LogCaptureFixture
) -> None:
    path, _ = squares
    with caplog.at_level("WARNING", logger="wisefuse_plugins.airflow"):
        dag = parse(path).dags["squares"]
    plan = path.with_name("squares.plan.json")
    assert set(dag.task_dict) == {"numbers", "square", "total", "half"}
    assert type(dag.task_dict["numbers"]).__name__ == "_PythonDecoratedOperator"
    assert TAG_NOT_USED in dag.tags
    assert f"the plan file {str(plan)!r} does not exist" in dag.doc_md
    assert "wisefuse optimize" in dag.doc_md
    assert dag.doc_md.splitlines()[0].removeprefix("> **WiseFuse:** ") in caplog.text


@pytest.mark.airflow
def test_a_stale_plan_is_shown_in_the_dag(squares: tuple[Path, dict], state: PlanState) -> None:
    path, plans = squares
    path.with_name("squares.plan.json").write_text(plans["p1"])
    path.write_text(path.read_text().replace("return x * x", "return x * x  # changed"))
    dag = parse(path).dags["squares"]
    assert TAG_NOT_USED in dag.tags
    assert "no longer matches it: stage 'square' changed" in dag.doc_md
    assert set(dag.task_dict) == {"numbers", "square", "total", "half"}  # the original's
    assert dag.task_dict["square"].operator_class.__name__ == "_PythonDecoratedOperator"


@pytest.mark.airflow
def test_a_corrupt_plan_is_shown_in_the_dag(squares: tuple[Path, dict], state: PlanState) -> None:
    path, _ = squares
    path.with_name("squares.plan.json").write_text("{not json")
    dag = parse(path).dags["squares"]
    assert TAG_NOT_USED in dag.tags
    assert "invalid plan file" in dag.doc_md


# --------------------------------------------------------------------------- emitted files


def _emit(folder: Path, source: Path, plan_json: str) -> Path:
    from wisefuse_plugins.adapters.airflow import from_dag, load_dag_file
    from wisefuse_plugins.emitters.airflow import write_dag
    from wisefuse_plugins.plan.schema import plan_from_json

    dag = load_dag_file(source, "squares")
    wf = from_dag(dag)
    return write_dag(wf, plan_from_json(plan_json, wf), folder, dag=dag)


@pytest.mark.airflow
def test_an_emitted_dag_runs_the_plan_it_was_emitted_for(
    squares: tuple[Path, dict], state: PlanState
) -> None:
    path, plans = squares
    plain = path.parent / ".plain" / path.name
    emitted = _emit(path.parent, plain, plans["p2"])
    dag = parse(emitted).dags["squares_wisefuse"]
    assert TAG_FILES not in dag.tags
    unit = dag.task_dict["numbers"]
    assert unit.plan_sha == sha_of(plans["p2"].encode())
    assert unit.resolve().spec.stages[0].id == "numbers"
    plan = emitted.with_name("squares_wisefuse.plan.json")
    plan.write_text(plans["p1"])  # replaced without re-emitting the DAG file
    dag = parse(emitted).dags["squares_wisefuse"]
    assert TAG_FILES in dag.tags
    assert "is not the one this DAG file was emitted for" in dag.doc_md
    assert "the units run the plan file it was emitted with" in dag.doc_md
    assert dag.task_dict["numbers"].resolve().spec.stages[0].id == "numbers"  # the snapshot


@pytest.mark.airflow
def test_an_emitted_dag_without_its_plan_says_which_file_and_what_to_do(
    squares: tuple[Path, dict], state: PlanState
) -> None:
    path, plans = squares
    plain = path.parent / ".plain" / path.name
    emitted = _emit(path.parent, plain, plans["p2"])
    plan = emitted.with_name("squares_wisefuse.plan.json")
    plan.unlink()  # never parsed with it: no snapshot either
    dag = parse(emitted).dags["squares_wisefuse"]
    assert TAG_FILES in dag.tags
    assert f"the plan file {str(plan)!r} does not exist and " in dag.doc_md
    assert "keeps no copy of it: its unit tasks will fail" in dag.doc_md
    with pytest.raises(PlanFileError) as err:
        dag.task_dict["numbers"].resolve()
    assert err.value.message.startswith(f"the plan file {str(plan)!r} does not exist and ")
    assert "put back the plan and IR files" in str(err.value.hint)


def test_state_files_are_where_the_docs_say(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(pf.STATE_ENV, raising=False)
    monkeypatch.setenv("WISEFUSE_HOME", str(tmp_path / "home"))
    assert pf.state_dir() == tmp_path / "home" / "airflow-plans"
    monkeypatch.setenv(pf.STATE_ENV, str(tmp_path / "elsewhere"))
    assert pf.state_dir() == tmp_path / "elsewhere"
