"""The example DAGs, rewritten in process and emitted as source, run on the local Lambda with the
original results.

For each example app a folder holds a copy of its DAG file that ends with one ``rewrite``
line per plan (dag_id ``<app>__<plan>``), the plans, and one emitted DAG file per plan
(dag_id ``<app>__emitted_<plan>``). Plans are built by hand from the adapter's workflow:
no fusion, every one-to-one chain fused, and the fused plan with bundles of 2 and of 5.
Every DAG runs with ``dag.test()`` against the folder (Airflow parses it as its DAG
folder); all tasks share the process-wide local Lambda, so a unit's worker stays warm
across the plans that deploy the same unit spec.
"""

from __future__ import annotations

import logging
import math
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from wisefuse_plugins.ir import Workflow, dump
from wisefuse_plugins.plan.schema import Plan, dump_plan, is_bundled_unit
from wisefuse_plugins.runtime.compare import differences

from ..airflow_helpers import (
    ADOPT,
    dags_folder,
    make_plan,
    plans_for,
    wisefuse_env_fixture,  # noqa: F401  (the wisefuse_env fixture)
    with_dag_variable,
    write_app,
)

pytestmark = pytest.mark.airflow

REPO = Path(__file__).resolve().parents[2]
APPS = ("video_analytics", "ml_pipeline", "approx_svd", "mixed_operators")
PLANS = ("nofusion", "b2", "b5")  # no fusion; every chain fused, with bundles of 2 / of 5
FINAL = {  # the tasks whose results must match the original's
    "video_analytics": ("aggregate",),
    "ml_pipeline": ("pick_best",),
    "approx_svd": ("combine",),
    "mixed_operators": ("summarize", "publish"),
}


@dataclass
class App:
    name: str
    folder: Path
    workflow: Workflow
    plans: dict[str, Plan]
    bag: Any = None
    results: dict[str, Any] = field(default_factory=dict)


def build_app(name: str, folder: Path) -> App:
    """Copy the example DAG, make its plans, add the rewrite lines and the emitted files."""
    folder.mkdir(parents=True)
    source = (REPO / "airflow" / f"{name}.py").read_text()
    source = with_dag_variable(source)
    assert "\ndag = " in source, name
    wf, plans = write_app(name, folder, source, plans_for)
    return App(name, folder, wf, plans)


@pytest.fixture(scope="module")
def apps(
    airflow_home: Path, wisefuse_env: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, App]:
    from airflow.dag_processing.dagbag import DagBag

    root = tmp_path_factory.mktemp("dags")
    found = {}
    for name in APPS:
        app = build_app(name, root / name)
        with dags_folder(app.folder):
            app.bag = DagBag(dag_folder=str(app.folder))
        found[name] = app
    return found


# --------------------------------------------------------------------------- running


def run(app: App, dag_id: str) -> tuple[Any, dict[tuple[str, int], Any]]:
    with dags_folder(app.folder):
        dag_run = app.bag.dags[dag_id].test()
    tis = {(ti.task_id, ti.map_index): ti for ti in dag_run.get_task_instances()}
    return dag_run, tis


def results(app: App, dag_id: str) -> dict[str, Any]:
    """The final tasks' values of one run of ``dag_id`` (every task must have succeeded)."""
    if dag_id not in app.results:
        dag_run, tis = run(app, dag_id)
        failed = sorted(
            f"{t}[{m}]: {ti.state}" for (t, m), ti in tis.items() if ti.state != "success"
        )
        assert dag_run.state == "success", failed
        assert not failed
        values = {t: tis[t, -1].xcom_pull(task_ids=t) for t in FINAL[app.name]}
        app.results[dag_id] = (values, tis)
    return app.results[dag_id][0]


def mapped_count(app: App, dag_id: str, task_id: str) -> int:
    results(app, dag_id)
    return sum(1 for (t, m) in app.results[dag_id][1] if t == task_id and m >= 0)


# --------------------------------------------------------------------------- tests


def test_the_folders_parse(apps: dict[str, App]) -> None:
    for app in apps.values():
        assert app.bag.import_errors == {}, app.name
        expected = {app.name}
        expected |= {f"{app.name}__{p}" for p in PLANS}
        expected |= {f"{app.name}__emitted_{p}" for p in PLANS}
        assert set(app.bag.dags) == expected


def test_rewritten_dag_has_one_task_per_unit(apps: dict[str, App]) -> None:
    from wisefuse_plugins.providers.airflow.operators import (
        WiseFuseChunksOperator,
        WiseFuseLambdaOperator,
    )

    video = apps["video_analytics"]
    dag = video.bag.dags["video_analytics__b2"]
    original = video.bag.dags["video_analytics"]
    assert set(dag.task_dict) == {"split_video", "classify", "classify__chunks", "aggregate"}
    assert isinstance(dag.task_dict["split_video"], WiseFuseLambdaOperator)
    mapped = dag.task_dict["classify"]
    assert type(mapped).__name__ == "MappedOperator"
    assert mapped.partial_kwargs["unit_id"] == "extract_features-classify"
    assert isinstance(dag.task_dict["classify__chunks"], WiseFuseChunksOperator)
    assert dag.get_task("aggregate").upstream_task_ids == {"classify"}
    assert dag.tags == original.tags and dag.schedule == original.schedule
    assert dag.default_args == original.default_args and dag.fileloc == original.fileloc
    # the original DAG object is untouched
    assert set(original.task_dict) == {"split_video", "extract_features", "classify", "aggregate"}


# app by app (the rewritten DAG, then the emitted one, under each plan), so that the units
# of one app stay warm in the local Lambda while its DAGs run. The no-fusion and b2 plans
# of every app (and b5 of video_analytics) run under the real scheduler in
# tests/live/test_example_dags.py, which this dag.test() run would only repeat: here, the
# plans it does not run.
LIVE = {app: ("nofusion", "b2") for app in APPS} | {"video_analytics": ("nofusion", "b2", "b5")}
CASES = [
    (name, kind, plan)
    for name in APPS
    for plan in PLANS
    if plan not in LIVE[name]
    for kind in ("rewritten", "emitted")
]


@pytest.mark.parametrize(("name", "kind", "plan"), CASES, ids=["-".join(c) for c in CASES])
def test_dag_gives_the_original_results(
    apps: dict[str, App], name: str, kind: str, plan: str
) -> None:
    app = apps[name]
    dag_id = f"{name}__{plan}" if kind == "rewritten" else f"{name}__emitted_{plan}"
    diff = differences(results(app, dag_id), results(app, name))
    assert not diff, diff
    for unit in app.plans[plan].units:  # one mapped task instance per chunk
        if is_bundled_unit(unit, app.workflow):
            task = app.workflow.stage(unit.stages[-1]).name
            n = mapped_count(app, name, task)
            assert mapped_count(app, dag_id, task) == math.ceil(n / unit.bundle_size)


def test_emitted_files_are_ruff_clean(apps: dict[str, App]) -> None:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent))
    if ruff is None:
        pytest.skip("ruff is not installed")
    files = [str(p) for app in apps.values() for p in sorted(app.folder.glob("emitted_*.py"))]
    rules = "E,F,W,I,B,UP,SIM"
    check = subprocess.run(
        [ruff, "check", "--isolated", "--select", rules, *files], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout
    fmt = subprocess.run(
        [ruff, "format", "--isolated", "--check", "--diff", *files], capture_output=True, text=True
    )
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_mixed_dag_keeps_its_bash_tasks(apps: dict[str, App]) -> None:
    app = apps["mixed_operators"]
    original = app.bag.dags["mixed_operators"]
    for dag_id in ("mixed_operators__b2", "mixed_operators__emitted_b2"):
        dag = app.bag.dags[dag_id]
        for task_id in ("fetch_dataset", "publish"):
            kept = dag.task_dict[task_id]
            assert type(kept).__name__ == "BashOperator"
            assert kept.bash_command == original.task_dict[task_id].bash_command
            assert kept.dag is dag
        assert dag.task_dict["publish"].upstream_task_ids == {"summarize"}
        assert dag.task_dict["summarize"].downstream_task_ids == {"publish"}
        assert dag.task_dict["fetch_dataset"].downstream_task_ids == {"summarize"}  # fused unit
    assert original.task_dict["publish"].dag is original
    # the Bash task's template pulls summarize's XCom: the fused unit's task carries it
    assert results(app, "mixed_operators__b2")["publish"].startswith("published ")


def test_stale_plan_falls_back_to_the_original(
    apps: dict[str, App], caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    from wisefuse_plugins.airflow import rewrite

    app = apps["video_analytics"]
    dag = app.bag.dags["video_analytics"]
    plan = app.plans["b2"]
    changed = plan.model_copy(update={"code_hashes": {**plan.code_hashes, "classify": "0" * 64}})
    dropped = plan.model_copy(update={"units": plan.units[:-1]})
    path = dump_plan(changed, tmp_path / "stale.plan.json")
    for given, reason in (
        (path, "changed since the plan was made"),
        (dropped, "is in no unit"),
        (tmp_path / "missing.plan.json", "does not exist"),
    ):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="wisefuse_plugins.airflow"):
            assert rewrite(dag, given) is dag
        text = " ".join(r.getMessage() for r in caplog.records)
        assert "runs unchanged" in text and reason in text and "wisefuse optimize" in text


def test_rewrite_is_a_no_op_inside_lambda(
    apps: dict[str, App], monkeypatch: pytest.MonkeyPatch
) -> None:
    from wisefuse_plugins.airflow import rewrite

    app = apps["ml_pipeline"]
    dag = app.bag.dags["ml_pipeline"]
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "ml_pipeline-pca")
    assert rewrite(dag, app.plans["b2"]) is dag
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME")
    assert rewrite(dag, app.plans["b2"]) is not dag


OPAQUE_IO = '''
"""Values crossing between Python and opaque tasks in both directions."""

from __future__ import annotations

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import dag, task


@task
def numbers() -> list[int]:
    return [1, 2, 3]


@task
def total(xs: list[int]) -> int:
    return sum(xs)


@task
def describe(t: int, listing: str) -> str:
    return f"{listing}: {t}"


@task
def tenfold(values, **context):
    return [v * 10 for v in values]


def as_command(n):
    return f"echo {n}"


@dag(dag_id="opaque_io", schedule=None)
def opaque_io():
    nums = numbers()
    t = total(nums)
    listing = BashOperator(task_id="listing", bash_command="echo files")
    describe(t, listing.output)
    BashOperator.partial(task_id="echo").expand(bash_command=nums.map(as_command))
    tenfold(nums)


dag = opaque_io()
'''


def test_values_cross_between_python_and_opaque_tasks(
    airflow_home: Path, wisefuse_env: Path, tmp_path: Path
) -> None:
    """A fused stage read by opaque tasks gets a relay; an opaque output reaches a unit."""
    from airflow.dag_processing.dagbag import DagBag

    from wisefuse_plugins.adapters.airflow import from_dag, load_dag_file
    from wisefuse_plugins.emitters.airflow import emit_dag

    (tmp_path / "opaque_io.py").write_text(OPAQUE_IO)
    original = load_dag_file(tmp_path / "opaque_io.py")
    wf = from_dag(original)
    assert {s.id for s in wf.python_stages} == {"numbers", "total", "describe"}
    plan = make_plan(wf, [["numbers", "total"], ["describe"]])
    dump_plan(plan, tmp_path / "opaque_io.plan.json")
    dump(wf, tmp_path / "opaque_io.ir.json")
    with open(tmp_path / "opaque_io.py", "a") as f:
        f.write(ADOPT)
        f.write('dag_wf = _rewrite(dag, _HERE / "opaque_io.plan.json", suffix="__wf")\n')
    (tmp_path / "emitted_opaque_io.py").write_text(
        emit_dag(
            wf, plan, dag=original, dag_id="opaque_io__emitted", plan_file="opaque_io.plan.json"
        )
    )
    with dags_folder(tmp_path):
        bag = DagBag(dag_folder=str(tmp_path))
    assert bag.import_errors == {}
    rewritten = bag.dags["opaque_io__wf"]
    assert "numbers__xcom" in rewritten.task_dict  # 'numbers' is not its unit's last stage
    assert rewritten.task_dict["tenfold"].upstream_task_ids == {"numbers__xcom", "total"}
    app = App("opaque_io", tmp_path, wf, {"wf": plan}, bag)
    FINAL["opaque_io"] = ("total", "describe", "tenfold")

    def echoed(dag_id: str) -> list[Any]:
        tis = app.results[dag_id][1]
        return [tis["echo", i].xcom_pull(task_ids="echo", map_indexes=i) for i in range(3)]

    expected = results(app, "opaque_io")
    assert expected == {"total": 6, "describe": "files: 6", "tenfold": [10, 20, 30]}
    for dag_id in ("opaque_io__wf", "opaque_io__emitted"):
        assert results(app, dag_id) == expected, dag_id
        assert echoed(dag_id) == echoed("opaque_io")
    assert len(echoed("opaque_io")) == 3


def test_write_dag_writes_a_parsable_folder(apps: dict[str, App], tmp_path: Path) -> None:
    from airflow.dag_processing.dagbag import DagBag

    from wisefuse_plugins.emitters.airflow import write_dag

    app = apps["mixed_operators"]
    shutil.copy(app.folder / "mixed_operators.py", tmp_path / "mixed_operators.py")
    path = write_dag(app.workflow, app.plans["b2"], tmp_path)  # the original DAG is loaded
    assert path.name == "mixed_operators_wisefuse.py"
    assert {p.name for p in tmp_path.iterdir()} >= {
        "mixed_operators_wisefuse.py",
        "mixed_operators_wisefuse.plan.json",
        "mixed_operators_wisefuse.ir.json",
    }
    with dags_folder(tmp_path):
        bag = DagBag(dag_folder=str(tmp_path))
    assert bag.import_errors == {}
    assert {"mixed_operators", "mixed_operators_wisefuse"} <= set(bag.dags)
    emitted = bag.dags["mixed_operators_wisefuse"]
    assert set(emitted.task_dict) == {"fetch_dataset", "summarize", "publish"}
    assert emitted.tags == {"wisefuse", "wisefuse-example"}


# --------------------------------------------------------------------------- by value

BY_VALUE = '''
"""Small values between units: a list scattered, mapped twice, gathered."""

from __future__ import annotations

from airflow.sdk import dag, task


@task
def make(n: int, width: int) -> list[str]:
    return [str(i) * width for i in range(n)]


@task
def measure(s: str) -> int:
    return len(s) + int(s[0])


@task
def double(x: int) -> int:
    return 2 * x


@task
def total(xs) -> int:
    return sum(xs)


@dag(dag_id="by_value", schedule=None)
def by_value():
    total(double.expand(x=measure.expand(s=make(6, 10))))


dag = by_value()
'''


@pytest.fixture(scope="module")
def by_value_app(
    airflow_home: Path, wisefuse_env: Path, tmp_path_factory: pytest.TempPathFactory
) -> App:
    """The DAG above rewritten and emitted under two plans: ``bundled`` scatters ``make``
    into a bundled unit (measure, double) and gathers it in ``total``; ``mixed`` fuses the
    scatter with the first map (an unbundled unit exporting instances) and the second map
    with the gather (an unbundled unit mapping over them)."""
    from airflow.dag_processing.dagbag import DagBag

    folder = tmp_path_factory.mktemp("by_value")
    wf, plans = write_app(
        "by_value",
        folder,
        BY_VALUE,
        lambda wf: {
            "bundled": make_plan(wf, [["make"], ["measure", "double"], ["total"]], 2),
            "mixed": make_plan(wf, [["make", "measure"], ["double", "total"]]),
        },
    )
    with dags_folder(folder):
        bag = DagBag(dag_folder=str(folder))
    assert bag.import_errors == {}
    FINAL["by_value"] = ("total",)
    return App("by_value", folder, wf, plans, bag)


@dataclass
class Spied:
    """One run of a rewritten DAG: its final values, what its run left in the store, and
    every unit invocation's (event, response)."""

    values: dict[str, Any]
    stored: list[str]  # store keys under the run's prefix
    calls: list[tuple[dict[str, Any], dict[str, Any]]]
    prefix: str  # runs/<store run id>/

    def requests(self) -> int:
        """Store requests the units made (GETs and PUTs, as S3 bills them)."""
        return sum(sum((p.get("store") or {}).values()) for _, p in self.calls)

    def events_of(self, stage: str) -> list[dict[str, Any]]:
        """The events of the invocations that ran ``stage``."""
        return [e for e, p in self.calls if any(o["stage"] == stage for o in p["outputs"])]


def spied_run(app: App, dag_id: str, monkeypatch: pytest.MonkeyPatch) -> Spied:
    from wisefuse_plugins.providers.airflow.hooks import WiseFuseLambdaHook
    from wisefuse_plugins.providers.airflow.operators import store_run_id

    calls: list[tuple[dict[str, Any], dict[str, Any]]] = []
    invoke = WiseFuseLambdaHook.invoke

    def spy(self: Any, deployed: Any, event: dict[str, Any]) -> Any:
        invoked = invoke(self, deployed, event)
        calls.append((event, invoked.payload))
        return invoked

    with monkeypatch.context() as m:
        m.setattr(WiseFuseLambdaHook, "invoke", spy)
        dag_run, tis = run(app, dag_id)
    assert dag_run.state == "success", {k: ti.state for k, ti in tis.items()}
    values = {t: tis[t, -1].xcom_pull(task_ids=t) for t in FINAL[app.name]}
    prefix = f"runs/{store_run_id(dag_id, dag_run.run_id)}/"
    stored = sorted(k.removeprefix(prefix) for k in WiseFuseLambdaHook().get_store().list(prefix))
    return Spied(values, stored, calls, prefix)


def test_small_values_pass_by_value_through_xcom(
    by_value_app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No unit writes or reads the store: the values come back in the responses, go
    through XCom and into the events of the units that read them, with the counts of the
    scattered list and the mapped stages (which the store can no longer count)."""
    from wisefuse_plugins.runtime import passing

    app = by_value_app
    expected = results(app, "by_value")
    assert expected == {"total": sum(2 * (10 + i) for i in range(6))}
    runs = {}
    for dag_id in ("by_value__bundled", "by_value__emitted_bundled", "by_value__mixed"):
        runs[dag_id] = spied_run(app, dag_id, monkeypatch)
        assert runs[dag_id].values == expected, dag_id
        assert runs[dag_id].stored == [], dag_id
        assert runs[dag_id].requests() == 0, dag_id
    bundled = runs["by_value__bundled"]
    assert all(e["by_value"] == passing.BY_VALUE_BYTES for e, _ in bundled.calls)
    chunks = bundled.events_of("double")  # each chunk reads the scattered list whole
    assert sorted(c["instances"] for c in chunks) == [[0, 1], [2, 3], [4, 5]]
    assert all(list(c["values"]) == [bundled.prefix + "make/out.pkl"] for c in chunks)
    (gather,) = bundled.events_of("total")
    assert gather["counts"]["double"] == 6 and len(gather["values"]) == 6
    (mixed,) = runs["by_value__mixed"].events_of("total")  # maps over 'measure' from outside
    assert mixed["counts"]["measure"] == 6 and len(mixed["values"]) == 6
    # the same run through the store: every unit writes, and reads what it needs
    monkeypatch.setattr(passing, "BY_VALUE_BYTES", 0)
    through_store = spied_run(app, "by_value__bundled", monkeypatch)
    assert through_store.values == expected
    assert len(through_store.stored) == 1 + 6 + 6 + 1  # make, its elements, double, total
    assert through_store.requests() == 14 + 12  # those PUTs, a GET per element and per value


def test_values_over_the_limit_still_go_through_the_store(
    by_value_app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the limit below the scattered list's pickle (and above an int's), the list and
    its elements go to the store and the chunks read their element there; the rest still
    passes by value."""
    from wisefuse_plugins.runtime import passing
    from wisefuse_plugins.runtime import store as st

    app = by_value_app
    made = [str(i) * 10 for i in range(6)]
    monkeypatch.setattr(passing, "BY_VALUE_BYTES", len(st.dumps(made, "make")) - 1)
    spied = spied_run(app, "by_value__emitted_bundled", monkeypatch)
    assert spied.values == results(app, "by_value")
    assert spied.stored == sorted(["make/out.pkl", *(f"make/e{i}.pkl" for i in range(6))])
    chunks = spied.events_of("double")
    assert all("values" not in c and c["counts"] == {"make": 6} for c in chunks)
    (gather,) = spied.events_of("total")
    assert gather["counts"]["double"] == 6 and len(gather["values"]) == 6
    assert spied.requests() == 7 + 6  # make's PUTs, one GET of its element per instance
