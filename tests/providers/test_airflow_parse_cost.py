"""What parsing a rewritten DAG file imports: nothing heavy the plain DAG file does not.

Airflow parses a DAG file in a fresh process every time (the dag-processor forks one per
parse; every task's process parses it again at start-up), so every module the drop-in
``rewrite(dag, plan)`` or an emitted file imports is paid at every parse. networkx alone
made the drop-in's first parse 0.15-0.5 s slower than the plain DAG's (issue 19 item 6;
``benchmarks/airflow_parse.py`` measures it). Here a fresh interpreter imports Airflow's
parser, as the dag-processor has it, then parses the plain, the drop-in and the emitted
file of one DAG, each in a child forked from it: the rewritten forms may add modules of
``wisefuse_plugins``, Airflow and the standard library, and no other package; and, once
the drop-in's first parse has prepared its layout (:mod:`wisefuse_plugins.providers.airflow.prepared`),
none of the adapter, the pydantic IR, plan and spec models, the hook or the optimizer.
The prepared layout must follow everything the adapter reads: the other tests here
change a function, an argument, a task and the plan, and check that no record is reused.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.plans import chains_plan

from ..airflow_helpers import write_app

pytestmark = pytest.mark.airflow

REPO = Path(__file__).resolve().parents[2]

DAG_FILE = '''
"""Fused, bundled and opaque tasks; no import of its own beyond Airflow."""

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import dag, task


@task
def numbers() -> list[int]:
    return [1, 2, 3, 4, 5]


@task
def double(x: int) -> int:
    return 2 * x


@task
def plus_one(x: int) -> int:
    return x + 1


@task
def total(xs) -> int:
    return sum(xs)


@task
def describe(t: int) -> str:
    return f"total {t}"


@dag(dag_id="parse_cost", schedule=None)
def parse_cost():
    told = describe(total(plus_one.expand(x=double.expand(x=numbers()))))
    told >> BashOperator(task_id="announce", bash_command="echo {{ ti.xcom_pull('describe') }}")


dag = parse_cost()
'''

#: Run in a fresh interpreter: Airflow's parser imported, then one forked child per file
#: parses it and reports the modules it added and the operator classes of its DAGs.
PARSER = r"""
import gc, json, os, sys
from airflow.dag_processing.dagbag import DagBag

out = {}
for rnd in ("first", "again"):  # the first round prepares the drop-in's layouts
    for path in sys.argv[1:]:
        gc.freeze()
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            before = set(sys.modules)
            bag = DagBag(dag_folder=path, load_op_links=False)
            added = sorted(set(sys.modules) - before)
            import pydantic  # after the parse: which of our new modules hold a model

            models = sorted(
                m for m in added
                if m.startswith("wisefuse_plugins") and any(
                    isinstance(v, type) and issubclass(v, pydantic.BaseModel)
                    for v in vars(sys.modules[m]).values()
                )
            )
            found = {
                "modules": added,
                "models": models,
                "errors": {k: v[-500:] for k, v in bag.import_errors.items()},
                "operators": {d: sorted({type(t).__name__ for t in dag.tasks}) for d, dag in bag.dags.items()},
            }
            os.write(w, json.dumps(found).encode())
            os._exit(0)
        os.close(w)
        with os.fdopen(r, "rb") as f:
            out[rnd + ":" + path] = json.loads(f.read() or b"{}")
        os.waitpid(pid, 0)
print(json.dumps(out))
"""

#: What only planning, profiling or running a unit needs: never imported by a parse
#: that has its prepared layout (nor by an emitted file's parse).
HEAVY_OURS = (
    "wisefuse_plugins.adapters",
    "wisefuse_plugins.ir",
    "wisefuse_plugins.plan",
    "wisefuse_plugins.runtime.spec",
    "wisefuse_plugins.runtime.backends",
    "wisefuse_plugins.providers.airflow.hooks",
    "wisefuse_plugins.optimizer",
    "wisefuse_plugins.profiles",
    "wisefuse_plugins.model",
)


def heavy_ours(modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == h or m.startswith(f"{h}.") for h in HEAVY_OURS)]


def parse_in_fresh_processes(files: list[Path], env: dict[str, str]) -> dict[str, dict]:
    done = subprocess.run(
        [sys.executable, "-c", PARSER, *map(str, files)],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def packages(modules: list[str]) -> set[str]:
    """Top-level packages outside the standard library, our own and Airflow's."""
    tops = {m.split(".")[0] for m in modules}
    ours = {"wisefuse_plugins", "airflow"}
    return {
        t
        for t in tops
        if t not in sys.stdlib_module_names
        and t not in ours
        and not t.startswith(("unusual_prefix_", "wisefuse_original_"))  # the DAG files
    }


def test_rewritten_dag_files_import_nothing_heavy(tmp_path: Path) -> None:
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "plain_parse_cost.py").write_text(DAG_FILE)
    _, plans = write_app(
        "parse_cost", folder, DAG_FILE, lambda wf: {"bundled": chains_plan(wf, bundle_size=2)}
    )
    assert any(u.bundle_size == 2 for u in plans["bundled"].units)  # a mapped, fused unit
    env = {
        **os.environ,
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(folder),
        "WISEFUSE_HOME": str(tmp_path / "home"),
        "PYTHONPATH": str(REPO),
    }
    files = {
        "plain": folder / "plain_parse_cost.py",
        "drop-in": folder / "parse_cost.py",
        "emitted": folder / "emitted_parse_cost_bundled.py",
        "stale": folder / "stale_parse_cost.py",  # a function changed since the plan
    }
    drop_in = files["drop-in"].read_text()
    assert drop_in.count("return 2 * x") == 1
    files["stale"].write_text(drop_in.replace("return 2 * x", "return 3 * x"))
    parsed = parse_in_fresh_processes(list(files.values()), env)
    got = {form: parsed[f"first:{path}"] for form, path in files.items()}
    again = {form: parsed[f"again:{path}"] for form, path in files.items()}
    layouts = sorted((tmp_path / "home" / "airflow-plans").glob("dags/*/layouts/*.json"))
    assert len(layouts) == 2, layouts  # the drop-in's and the stale one's (its problems)
    for form, found in again.items():  # the same DAGs, from the prepared layouts
        assert found["errors"] == {} and found["operators"] == got[form]["operators"], form
    # A parse with its prepared layout imports neither the adapter nor a pydantic model
    # of ours (nor does an emitted file's parse, ever): the first parse did that work.
    for form in ("drop-in", "stale", "emitted"):
        assert heavy_ours(again[form]["modules"]) == [], form
        assert again[form]["models"] == [], form
    assert heavy_ours(got["emitted"]["modules"]) == [] and got["emitted"]["models"] == []
    assert "wisefuse_plugins.adapters.airflow" in got["drop-in"]["modules"]  # it prepared
    # however cheap the parse, the stale-plan check still runs: the original DAG stays
    assert set(got["stale"]["operators"]) == {"parse_cost"}
    for form, found in got.items():
        assert found["errors"] == {}, (form, found["errors"])
    # the rewrite really happened (a fallback to the original would import almost nothing)
    assert "WiseFuseLambdaOperator" in got["drop-in"]["operators"]["parse_cost__bundled"]
    assert "MappedOperator" in got["drop-in"]["operators"]["parse_cost__bundled"]
    assert "WiseFuseLambdaOperator" in got["emitted"]["operators"]["parse_cost__emitted_bundled"]

    plain = packages(got["plain"]["modules"])
    for form in ("drop-in", "emitted"):
        modules = got[form]["modules"]
        assert not [m for m in modules if m.split(".")[0] == "networkx"], form
        extra = packages(modules) - plain
        assert extra == set(), f"parsing the {form} DAG file imports {sorted(extra)}"
        # nor our own modules that only planning, profiling or running need
        for prefix in ("profiles", "model.predict", "optimizer.search", "runtime.backends"):
            name = f"wisefuse_plugins.{prefix}"
            assert not [m for m in modules if m == name or m.startswith(f"{name}.")], (form, name)


@pytest.mark.slow
def test_parse_benchmark_runs_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "parse.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "airflow_parse.py"), "--dags", "assets",
         "--repeats", "1", "--steady", "1", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "drop-in over plain" in done.stdout and "goal (drop-in and emitted" in done.stdout
    figures = json.loads(out.read_text())
    (entry,) = figures["dags"]
    assert entry["name"] == "corpus/assets" and entry["rewritten"]
    for form in ("plain", "drop-in", "emitted", "no-record"):
        found = entry["forms"][form]
        assert found["runs"] == 1 and found["import_errors"] == []
        assert found["first_cpu_ms"] > 0 and found["steady_wall_ms"] > 0
    assert entry["forms"]["drop-in"]["heavy_modules"] == []
    assert set(figures["summaries"]) == {"drop-in", "emitted", "no-record"}


# --------------------------------------------------------------------------- prepared layouts

LIB = '''
"""The DAG's functions, in a module of their own (as in most real DAG folders)."""


def numbers(n: int) -> list[int]:
    return list(range(n))


def double(x: int) -> int:
    return 2 * x


def total(xs: list[int]) -> int:
    return sum(xs)
'''

ENV_DAG = '''
"""Its argument and one of its tasks come from the environment (as config-driven DAGs do)."""

import os

import parse_cost_lib as lib
from airflow.sdk import dag, task


@dag(dag_id="parse_cost_env", schedule=None)
def parse_cost_env():
    xs = task(lib.double).expand(x=task(lib.numbers)(n=int(os.environ.get("PARSE_COST_N", "4"))))
    task(lib.total)(xs)
    if os.environ.get("PARSE_COST_EXTRA"):
        task(lib.double, task_id="extra")(x=1)


dag = parse_cost_env()
'''


@pytest.fixture
def env_dag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The DAG file (drop-in line, plan beside it) with its functions in a sibling module."""
    from wisefuse_plugins.adapters.airflow import from_dag, load_dag_file
    from wisefuse_plugins.plan.schema import dump_plan

    folder = tmp_path / "dags"
    folder.mkdir()
    monkeypatch.setenv("WISEFUSE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("WISEFUSE_PLAN_STATE", raising=False)
    monkeypatch.delenv("PARSE_COST_N", raising=False)
    monkeypatch.delenv("PARSE_COST_EXTRA", raising=False)
    monkeypatch.syspath_prepend(str(folder))
    (folder / "parse_cost_lib.py").write_text(LIB)
    plain = folder / "plain_parse_cost_env.py"  # the plan is made from it
    plain.write_text(ENV_DAG)
    sys.modules.pop("parse_cost_lib", None)
    wf = from_dag(load_dag_file(plain))
    dump_plan(chains_plan(wf, bundle_size=2), folder / "parse_cost_env.plan.json")
    path = folder / "parse_cost_env.py"
    path.write_text(
        ENV_DAG
        + "\nfrom wisefuse_plugins.airflow import rewrite  # noqa: E402\n\n"
        + 'dag = rewrite(dag, "parse_cost_env.plan.json")\n'
    )
    return path


def parse_here(path: Path) -> Any:
    """The file's one DAG, parsed by Airflow in this process (its module imported afresh)."""
    from airflow.dag_processing.dagbag import DagBag

    sys.modules.pop("parse_cost_lib", None)  # a new parse process imports it anew
    bag = DagBag(dag_folder=str(path), load_op_links=False)
    assert bag.import_errors == {}
    (dag,) = bag.dags.values()
    return dag


def records(path: Path) -> list[Path]:
    home = path.parent.parent / "home"
    return sorted((home / "airflow-plans").glob("dags/*/layouts/*.json"))


def rewritten(dag: Any) -> bool:
    return any(type(t).__name__ == "WiseFuseLambdaOperator" for t in dag.tasks) or any(
        getattr(t, "operator_class", None).__name__ == "WiseFuseLambdaOperator"
        for t in dag.tasks
        if getattr(t, "operator_class", None) is not None
    )


def serialized(dag: Any) -> str:
    from airflow.serialization.serialized_objects import DagSerialization

    return json.dumps(DagSerialization.to_dict(dag), sort_keys=True, default=str)


def test_a_prepared_layout_builds_the_same_dag_without_the_adapter(
    env_dag: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = parse_here(env_dag)
    assert rewritten(first) and len(records(env_dag)) == 1
    import wisefuse_plugins.adapters.airflow as adapter

    def unused(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a parse with its prepared layout ran the adapter")

    monkeypatch.setattr(adapter, "from_dag", unused)
    again = parse_here(env_dag)
    assert serialized(again) == serialized(first)
    assert len(records(env_dag)) == 1


def test_a_prepared_layout_is_not_reused_when_what_the_adapter_reads_changes(
    env_dag: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from wisefuse_plugins.providers.airflow.planfiles import TAG_NOT_USED

    base = parse_here(env_dag)
    assert rewritten(base) and '"value": 4' in json.dumps(base.task_dict["numbers"].unit_spec)
    # an argument read from the environment: the unit carries the new value
    monkeypatch.setenv("PARSE_COST_N", "6")
    six = parse_here(env_dag)
    assert rewritten(six) and '"value": 6' in json.dumps(six.task_dict["numbers"].unit_spec)
    assert len(records(env_dag)) == 2
    monkeypatch.delenv("PARSE_COST_N")
    # a task that config adds: the plan no longer covers the DAG (cached or not)
    monkeypatch.setenv("PARSE_COST_EXTRA", "1")
    for _ in range(2):
        caplog.clear()
        extra = parse_here(env_dag)
        assert not rewritten(extra) and TAG_NOT_USED in extra.tags
        assert "no longer matches" in caplog.text and "'extra'" in caplog.text
    assert len(records(env_dag)) == 3
    monkeypatch.delenv("PARSE_COST_EXTRA")
    # a function changed in the module the DAG file imports (not in the DAG file)
    lib = env_dag.parent / "parse_cost_lib.py"
    lib.write_text(LIB.replace("return 2 * x", "return 3 * x"))
    for _ in range(2):
        caplog.clear()
        stale = parse_here(env_dag)
        assert not rewritten(stale) and "changed since the plan was made" in caplog.text
    lib.write_text(LIB)
    assert rewritten(parse_here(env_dag))
    # a new plan file
    plan = env_dag.with_name("parse_cost_env.plan.json")
    doc = json.loads(plan.read_text())
    for unit in doc["plan"]["units"] if "plan" in doc else doc["units"]:
        unit["memory_mb"] = 2048
    plan.write_text(json.dumps(doc))
    bigger = parse_here(env_dag)
    assert rewritten(bigger) and bigger.task_dict["numbers"].memory_mb == 2048
    assert len(records(env_dag)) == 5


def test_prepared_layouts_can_be_turned_off(env_dag: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WISEFUSE_LAYOUT_CACHE", "0")
    assert rewritten(parse_here(env_dag)) and records(env_dag) == []


def test_a_value_the_key_cannot_encode_means_no_record() -> None:
    from airflow.sdk import DAG, task

    from wisefuse_plugins.providers.airflow.prepared import fingerprint

    deep: list[Any] = []
    for _ in range(60):  # deeper than the key encodes (a cycle Airflow itself refuses)
        deep = [deep]

    @task
    def use(x: Any) -> None:
        return None

    with DAG("parse_cost_deep", schedule=None) as dag:
        use(x=deep)
    assert fingerprint(dag, "0" * 64) is None
    with DAG("parse_cost_plain", schedule=None) as plain:
        use(x=[1, 2])
    assert (
        fingerprint(plain, "0" * 64) == fingerprint(plain, "0" * 64) != fingerprint(plain, "1" * 64)
    )


# --------------------------------------------------------------------------- made at plan time


def _served_from_plan_time(path: Path, dag_id: str, parsed: Path | None = None) -> None:
    """``wisefuse optimize`` prepares the layout (:mod:`~wisefuse_plugins.providers.airflow.ahead`):
    the dag-processor's first parse of the DAG file after the plan change, in a fresh
    process, finds it under the key it computes, and so imports none of the adapter
    (``parsed``: the path the parse is given, when not ``path``)."""
    from wisefuse_plugins.providers.airflow.ahead import prepare_dag_file

    parsed = parsed or path
    said = prepare_dag_file(path)
    assert len(said) == 1 and "prepared layout kept" in said[0], said
    (kept,) = records(path)
    assert json.loads(kept.read_text())["made"] == "plan"
    assert prepare_dag_file(path)[0].endswith("its prepared layout is there already")
    env = {
        **os.environ,
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(parsed.parent),
        "PYTHONPATH": os.pathsep.join([str(parsed.parent), str(REPO)]),
    }
    first = parse_in_fresh_processes([parsed], env)[f"first:{parsed}"]
    assert first["errors"] == {}
    assert "WiseFuseLambdaOperator" in first["operators"][dag_id]  # rewritten
    assert heavy_ours(first["modules"]) == [] and first["models"] == []
    assert records(path) == [kept]  # the parse computed the very key: no record of its own


def test_a_layout_prepared_at_plan_time_serves_the_first_parse(env_dag: Path) -> None:
    """Tasks from a module the DAG file imports; an argument from the environment."""
    _served_from_plan_time(env_dag, "parse_cost_env")


def test_a_layout_prepared_at_plan_time_for_tasks_of_the_dag_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tasks defined in the DAG file: Airflow names its module after the path it was given
    (``unusual_prefix_<sha1>_parse_cost``), which the key must not depend on: here the
    dags folder is a symlink, which the dag-processor's paths keep and ours resolve."""
    folder = tmp_path / "dags"
    folder.mkdir()
    monkeypatch.setenv("WISEFUSE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("WISEFUSE_PLAN_STATE", raising=False)
    write_app("parse_cost", folder, DAG_FILE, lambda wf: {"b2": chains_plan(wf, bundle_size=2)})
    for stale in folder.glob("emitted_*.py"):
        stale.unlink()
    linked = tmp_path / "linked"
    linked.symlink_to(folder, target_is_directory=True)
    _served_from_plan_time(folder / "parse_cost.py", "parse_cost__b2", linked / "parse_cost.py")


def test_the_adapter_reads_the_original_of_a_drop_in_dag_file(env_dag: Path) -> None:
    """A plan change means running ``wisefuse optimize`` on the DAG file, which now ends
    with the drop-in line and has a current plan: the adapter must read the DAG as written,
    not the rewritten one (whose unit tasks it cannot plan)."""
    from airflow.dag_processing.dagbag import DagBag

    from wisefuse_plugins.adapters.airflow import workflow_from_file

    wf = workflow_from_file(env_dag)
    assert [s.id for s in wf.python_stages] == ["numbers", "double", "total"]
    bag = DagBag(dag_folder=str(env_dag), load_op_links=False)  # as Airflow parses it
    assert rewritten(bag.dags["parse_cost_env"])


def test_optimize_prepares_the_layout_of_the_dag_file_it_plans(env_dag: Path) -> None:
    """What ``wisefuse optimize TARGET`` calls after writing the plan: a DAG file with its
    drop-in line gets its layout, one without is told how; other targets get nothing."""
    from wisefuse_plugins.providers.airflow.ahead import prepare_target

    plan = env_dag.with_name("parse_cost_env.plan.json")
    (said,) = prepare_target(str(env_dag), plan)
    assert "prepared layout kept" in said and len(records(env_dag)) == 1
    plain = env_dag.with_name("plain_parse_cost_env.py")
    (told,) = prepare_target(f"{plain}::parse_cost_env", plan)
    assert "has no `rewrite(dag, " in told and "line yet" in told
    assert prepare_target(str(plan), plan) == []  # not a DAG file
