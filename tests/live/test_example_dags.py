"""The example DAGs under a real Airflow deployment: plain, drop-in and emitted, several plans.

Every example app of ``airflow/`` is written into the live deployment's dags folder (outside
the repository) by the same ``write_app`` as tests/providers/test_airflow_rewrite.py: its DAG
file with one ``rewrite(dag, plan)`` line per plan at its end, and one emitted DAG file per
plan. Plans: no fusion and every chain fused with bundles of 2 for every app, bundles of 5
for video_analytics too. With them a DAG written with ``@task.wisefuse_lambda``. Every DAG
is triggered at once through the REST API and all runs are awaited together; then each
run's task states and final XComs are checked against the plain DAG's.

Each task runs in its own task process under the scheduler's LocalExecutor; the units run
on the local Lambda service those processes start on demand and share (warm environments
outlive a task process). This checks correctness, not speed (benchmarks/airflow_scheduler.py
measures it).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from wisefuse_plugins.plan.schema import Plan, is_bundled_unit
from wisefuse_plugins.runtime.compare import differences

from ..airflow_helpers import plans_for, with_dag_variable, write_app
from ..providers.test_airflow_rewrite import APPS, FINAL, LIVE
from .airflow_live import AirflowLive

pytestmark = [pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
#: Plans per app: no fusion, and every chain fused with bundles of 2 (of 5 for one app
#: too); tests/providers/test_airflow_rewrite.py runs the other plans with dag.test().
PLANS = LIVE
SUBFOLDER = "examples"
RUNS_TIMEOUT_S = 600.0

DECORATED = '''
"""A DAG written for Lambda from the start, with @task.wisefuse_lambda."""

from __future__ import annotations

import os

from airflow.sdk import dag, task

# WISEFUSE_FRAMEWORK_SHIM=never: this unit imports the real Airflow, as units did before the
# framework shim (Airflow's ORM block, inherited from the task process, broke that import)
ENV = {"GREETING": "hello from the configuration", "WISEFUSE_FRAMEWORK_SHIM": "never"}


@task.wisefuse_lambda(memory_mb=512)
def double(x: int) -> int:
    return 2 * x


@task.wisefuse_lambda(memory_mb=1024, hook_params={"environment": ENV})
def stats(values: list[int]) -> dict:
    import airflow.sdk

    names = ("GREETING", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW_HOME", "WISEFUSE_HOME")
    env = {n: os.environ.get(n) for n in names}
    real = getattr(airflow.sdk, "__file__", None) is not None  # not the shim's stand-in
    return {"total": sum(values), "count": len(values), "env": env, "real_airflow": real}


@task
def report(summary: dict) -> str:
    return f"{summary['count']} values, total {summary['total']}"


@dag(dag_id="live_decorated", schedule=None)
def live_decorated():
    report(stats(double.expand(x=[1, 2, 3])))


live_decorated()
'''


@dataclass
class Deployed:
    """The example apps in the live deployment, and one run of each of their DAGs."""

    live: AirflowLive
    workflows: dict[str, Any] = field(default_factory=dict)
    plans: dict[str, dict[str, Plan]] = field(default_factory=dict)
    runs: dict[str, str] = field(default_factory=dict)  # dag_id -> run id
    states: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def xcom(self, dag_id: str, task_id: str) -> Any:
        return self.live.xcom(dag_id, self.runs[dag_id], task_id)

    def tasks(self, dag_id: str) -> dict[tuple[str, int], Any]:
        return self.live.task_instances(dag_id, self.runs[dag_id])


def dag_ids(app: str) -> dict[str, str]:
    """{case: dag_id} of one app: its plain DAG, and a drop-in and an emitted one per plan."""
    ids = {"plain": app}
    for plan in PLANS[app]:
        ids[f"dropin-{plan}"] = f"{app}__{plan}"
        ids[f"emitted-{plan}"] = f"{app}__emitted_{plan}"
    return ids


def write_examples(staging: Path) -> tuple[dict[str, Any], dict[str, dict[str, Plan]]]:
    """Each app's folder (DAG file with its rewrite lines, emitted files, plans, IR)."""
    workflows, plans = {}, {}
    for app in APPS:
        folder = staging / app
        folder.mkdir(parents=True)
        source = with_dag_variable((REPO / "airflow" / f"{app}.py").read_text())

        def chosen(wf: Any, app: str = app) -> dict[str, Plan]:
            return {k: p for k, p in plans_for(wf).items() if k in PLANS[app]}

        workflows[app], plans[app] = write_app(app, folder, source, chosen)
    return workflows, plans


@pytest.fixture(scope="module")
def deployed(airflow_live: AirflowLive) -> Deployed:
    """Write every DAG into the deployment, trigger them all at once, wait for them all."""
    t0 = time.monotonic()
    out = Deployed(airflow_live)
    staging = airflow_live.root / "staging-examples"
    out.workflows, out.plans = write_examples(staging)
    (staging / "live_decorated.py").write_text(DECORATED)
    target = airflow_live.dags / SUBFOLDER
    os.replace(staging, target)  # at once: the dag-processor never sees half an app
    files = sorted(target.rglob("*.py"))
    wanted = [d for app in APPS for d in dag_ids(app).values()] + ["live_decorated"]
    airflow_live.wait_parsed(*wanted, files=files, timeout_s=300)
    out.timings["written_and_parsed_s"] = time.monotonic() - t0
    for dag_id in wanted:
        out.runs[dag_id] = airflow_live.trigger(dag_id)
    t1 = time.monotonic()
    states = airflow_live.wait_runs(out.runs.items(), timeout_s=RUNS_TIMEOUT_S)
    out.states = {dag_id: state for (dag_id, _), state in states.items()}
    out.timings["runs_s"] = time.monotonic() - t1
    print(f"\nlive example DAGs: {len(wanted)} runs, timings {out.timings}")
    return out


CASES = [(app, case) for app in APPS for case in dag_ids(app) if case != "plain"]


@pytest.mark.parametrize("app", APPS)
def test_the_plain_dag_succeeds(deployed: Deployed, app: str) -> None:
    failed = {k: ti.state for k, ti in deployed.tasks(app).items() if ti.state != "success"}
    assert deployed.states[app] == "success" and not failed, failed


@pytest.mark.parametrize(("app", "case"), CASES, ids=[f"{a}-{c}" for a, c in CASES])
def test_the_rewritten_dag_gives_the_plain_results(deployed: Deployed, app: str, case: str) -> None:
    dag_id = dag_ids(app)[case]
    tis = deployed.tasks(dag_id)
    failed = {f"{t}[{m}]": ti.state for (t, m), ti in tis.items() if ti.state != "success"}
    assert deployed.states[dag_id] == "success" and not failed, failed
    for task_id in FINAL[app]:
        diff = differences(deployed.xcom(dag_id, task_id), deployed.xcom(app, task_id))
        assert not diff, (task_id, diff)
    plan = deployed.plans[app][case.split("-", 1)[1]]
    wf = deployed.workflows[app]
    plain = deployed.tasks(app)
    for unit in plan.units:  # a bundled unit: one mapped task instance per chunk of instances
        if is_bundled_unit(unit, wf):
            task = wf.stage(unit.stages[-1]).name
            n = sum(1 for t, m in plain if t == task and m >= 0)
            chunks = sum(1 for t, m in tis if t == task and m >= 0)
            assert n >= 2 and chunks == math.ceil(n / unit.bundle_size), task


def test_a_task_wisefuse_lambda_dag_runs_with_only_its_configured_environment(
    deployed: Deployed,
) -> None:
    tis = deployed.tasks("live_decorated")
    assert deployed.states["live_decorated"] == "success", {k: t.state for k, t in tis.items()}
    assert sorted(tis) == [
        ("double", 0),
        ("double", 1),
        ("double", 2),
        ("report", -1),
        ("stats", -1),
    ]
    assert deployed.xcom("live_decorated", "report") == "3 values, total 12"
    stats = deployed.xcom("live_decorated", "stats")
    assert stats["real_airflow"]  # configured: the worker imported Airflow itself
    env = stats["env"]
    # configured: arrives; the task process's own (Airflow's ORM block, its homes): never
    assert env == {
        "GREETING": "hello from the configuration",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": None,
        "AIRFLOW_HOME": None,
        "WISEFUSE_HOME": None,
    }
