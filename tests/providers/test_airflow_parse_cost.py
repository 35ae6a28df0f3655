"""What parsing a rewritten DAG file imports: nothing heavy the plain DAG file does not.

Airflow parses a DAG file in a fresh process every time (the dag-processor forks one per
parse; every task's process parses it again at start-up), so every module the drop-in
``rewrite(dag, plan)`` or an emitted file imports is paid at every parse. networkx alone
made the drop-in's first parse 0.15-0.5 s slower than the plain DAG's (issue 19 item 6;
``benchmarks/airflow_parse.py`` measures it). Here a fresh interpreter imports Airflow's
parser, as the dag-processor has it, then parses the plain, the drop-in and the emitted
file of one DAG, each in a child forked from it: the rewritten forms may add modules of
``wisefuse_plugins``, Airflow and the standard library, and no other package.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
for path in sys.argv[1:]:
    gc.freeze()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        before = set(sys.modules)
        bag = DagBag(dag_folder=path, load_op_links=False)
        found = {
            "modules": sorted(set(sys.modules) - before),
            "errors": {k: v[-500:] for k, v in bag.import_errors.items()},
            "operators": {d: sorted({type(t).__name__ for t in dag.tasks}) for d, dag in bag.dags.items()},
        }
        os.write(w, json.dumps(found).encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        out[path] = json.loads(f.read() or b"{}")
    os.waitpid(pid, 0)
print(json.dumps(out))
"""


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
    got = {form: parsed[str(path)] for form, path in files.items()}
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
    assert "drop-in over plain" in done.stdout and "goal (drop-in first parse" in done.stdout
    figures = json.loads(out.read_text())
    (entry,) = figures["dags"]
    assert entry["name"] == "corpus/assets" and entry["rewritten"]
    for form in ("plain", "drop-in", "emitted"):
        found = entry["forms"][form]
        assert found["runs"] == 1 and found["import_errors"] == []
        assert found["first_cpu_ms"] > 0 and found["steady_wall_ms"] > 0
    assert entry["forms"]["drop-in"]["heavy_modules"] == []
