"""A ``@wisefuse`` flow deployed as Prefect users deploy flows, against a real server.

The example flow ``prefect/approx_svd.py``, with ``@wisefuse`` added above its ``@flow``,
sits in a project folder of its own (outside the repository, with the ``examples``
package it imports), as a user's flow file does. Prefect's engine, not ``Flow.__call__``,
runs a deployment's flow run: this is what the decorator must handle (issue 22 item 1).
Two ways, each started as users start them:

* **served**: ``python serve_svd.py`` calls ``approx_svd.serve(...)``; runs are created
  from the deployment through the API, and the serving process runs each one in a
  subprocess of its own;
* **worker**: ``prefect work-pool create --type process``, ``python deploy_svd.py``
  (``flow.from_source(<the project folder>, ...).deploy(work_pool_name=...)``) and
  ``prefect worker start``: the worker runs each flow run with ``python -m prefect.engine``.

The flow is called directly once first (``python first_run.py``: plain and traced, as the
decorator's first call always is), and a plan is written from that trace to
``$WISEFUSE_HOME/plans/approx-svd.plan.json``. Runs of both deployments must then run
under it: the task runs are the plan's units, the logs say so, and the persisted result
is the plain run's. A run with parameters that were never traced runs plain and says why
at WARNING in its logs. Everything is read from the server's REST API.
"""

from __future__ import annotations

import pickle
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from wisefuse_plugins.ir import load
from wisefuse_plugins.plan.schema import Plan, Unit, dump_plan, hashes_of, plan_problems
from wisefuse_plugins.runtime.compare import differences

from .prefect_live import PrefectLive

REPO_ROOT = Path(__file__).resolve().parents[2]
FLOW = "approx-svd"
POOL = "wisefuse-live-pool"
SERVED = f"{FLOW}/served"
ON_WORKER = f"{FLOW}/on-worker"
#: the units of the plan (ids, stages, bundle size) and the task runs each makes
UNITS = [
    ("matrix", ["make_matrix", "split_blocks"], 1),
    ("products", ["block_product"], 2),
    ("combine", ["combine"], 1),
]
PLANNED_TASK_RUNS = Counter(
    {
        "make_matrix+split_blocks": 1,
        "block_product [0-1]": 1,
        "block_product [2-3]": 1,
        "combine": 1,
    }
)
PLAIN_TASKS = {"make_matrix": 1, "split_blocks": 1, "block_product": 4, "combine": 1}
UNTRACED_BLOCKS = 3  # a run with n_blocks=3: parameters the first run did not have

DECORATOR = """from wisefuse_plugins.prefect import WiseFuseLambda, wisefuse


# fast cold starts: the local Lambda's fork server imports Prefect once
@wisefuse(block=WiseFuseLambda(local_preload=["prefect"]))
@flow(name="approx-svd")
"""

SERVE = """from svd_flow import approx_svd

if __name__ == "__main__":
    approx_svd.serve(name="served")
"""

DEPLOY = f"""from pathlib import Path

from prefect import flow

if __name__ == "__main__":
    flow.from_source(
        source=str(Path(__file__).resolve().parent), entrypoint="svd_flow.py:approx_svd"
    ).deploy(name="on-worker", work_pool_name="{POOL}")
"""

# the first, direct call; its value is kept for the test to compare with
FIRST_RUN = """import pickle
from pathlib import Path

from svd_flow import approx_svd

if __name__ == "__main__":
    Path("plain_result.pkl").write_bytes(pickle.dumps(approx_svd()))
"""


def flow_file() -> str:
    """``prefect/approx_svd.py`` with ``@wisefuse`` above its ``@flow``."""
    text = (REPO_ROOT / "prefect" / "approx_svd.py").read_text()
    marker = '@flow(name="approx-svd")\n'
    assert text.count(marker) == 1, "the example flow's decorator moved: update this test"
    return text.replace(marker, DECORATOR)


@pytest.fixture(scope="module")
def project(prefect_live: PrefectLive) -> dict[str, Any]:
    """The user's project, run once directly (plain, traced), served and deployed to a
    process worker (both running), with a plan from the trace: the plain run's value."""
    live = prefect_live
    folder = live.root / "project"
    folder.mkdir()
    (folder / "svd_flow.py").write_text(flow_file())
    shutil.copytree(
        REPO_ROOT / "examples", folder / "examples", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name, text in [
        ("serve_svd.py", SERVE),
        ("deploy_svd.py", DEPLOY),
        ("first_run.py", FIRST_RUN),
    ]:
        (folder / name).write_text(text)
    # what a user runs, each in a shell of its own: at once, as they do not depend on each other
    live.spawn("first-run", [live.python, "first_run.py"], cwd=folder, ends=True)
    live.spawn("serve", [live.python, "serve_svd.py"], cwd=folder)
    live.spawn("pool", [live.prefect, "work-pool", "create", POOL, "--type", "process"], ends=True)
    live.finish("pool")  # deploying to a pool needs the pool
    live.spawn("deploy", [live.python, "deploy_svd.py"], cwd=folder, ends=True)
    live.spawn("worker", [live.prefect, "worker", "start", "--pool", POOL, "--type", "process"])
    first = live.finish("first-run")
    assert "no WiseFuse plan for flow 'approx-svd'" in first, first

    trace = live.wisefuse_home / "traces" / f"{FLOW}.ir.json"
    assert trace.exists(), f"the first run recorded no trace at {trace}:\n{first}"
    wf = load(trace)
    plan = Plan(
        workflow=wf.name,
        units=[Unit(id=u, stages=s, bundle_size=b) for u, s, b in UNITS],
        code_hashes=hashes_of(wf),
    )
    assert plan_problems(plan, wf) == []
    dump_plan(plan, live.wisefuse_home / "plans" / f"{FLOW}.plan.json")
    live.finish("deploy")
    return {
        "folder": folder,
        "plan": plan,
        "plain": pickle.loads((folder / "plain_result.pkl").read_bytes()),
    }


@pytest.fixture(scope="module")
def runs(prefect_live: PrefectLive, project: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """One run of each deployment, and one of the served deployment with parameters that
    were never traced: created at once, each read back once final (run, logs, task runs)."""
    live = prefect_live
    asked = {
        "served": (SERVED, None),
        "worker": (ON_WORKER, None),
        "untraced": (SERVED, {"n_blocks": UNTRACED_BLOCKS}),
    }
    ids = {k: live.create_run(live.wait_deployment(d), p) for k, (d, p) in asked.items()}
    out = {}
    for key, run_id in ids.items():
        run = live.wait_run(run_id)
        planned = key != "untraced"
        out[key] = {
            "run": run,
            "logs": live.logs(run_id, until="WiseFuse plan:" if planned else "not traced"),
            "task_runs": live.task_runs(run_id, expected=4 if planned else 3 + UNTRACED_BLOCKS),
        }
    return out


def messages(records: list[dict[str, Any]], level: int | None = None) -> list[str]:
    return [r["message"] for r in records if level is None or r["level"] == level]


def test_a_run_with_untraced_parameters_runs_plain_and_says_why(
    prefect_live: PrefectLive, runs: dict[str, dict[str, Any]]
) -> None:
    got = runs["untraced"]
    assert got["run"]["state"]["type"] == "COMPLETED", got["run"]["state"]
    warned = [m for m in messages(got["logs"], 30) if "not under its WiseFuse plan" in m]
    assert len(warned) == 1, messages(got["logs"])
    assert "other parameters" in warned[0] and "n_blocks" in warned[0]
    assert "runs that Prefect's engine starts from a deployment" in warned[0]
    assert "call the flow directly with these parameters once" in warned[0]
    names = Counter(r["name"].rsplit("-", 1)[0] for r in got["task_runs"])
    assert names == {**PLAIN_TASKS, "block_product": UNTRACED_BLOCKS}
    from examples.apps import svd

    expected = svd.run(**{**svd.SIZES["small"], "n_blocks": UNTRACED_BLOCKS})
    value = prefect_live.result(got["run"])
    assert {k: v for k, v in value.items() if k != "singular_values"} == {
        k: v for k, v in expected.items() if k != "singular_values"
    }
    assert value["singular_values"] == pytest.approx(expected["singular_values"], rel=1e-9)


@pytest.mark.parametrize("key", ["served", "worker"])
def test_a_deployment_run_runs_under_the_plan(
    key: str, prefect_live: PrefectLive, project: dict[str, Any], runs: dict[str, dict[str, Any]]
) -> None:
    live = prefect_live
    got = runs[key]
    run, logs = got["run"], got["logs"]
    assert run["state"]["type"] == "COMPLETED", (run["state"], messages(logs))
    assert run["deployment_id"] == live.wait_deployment(SERVED if key == "served" else ON_WORKER)

    # the task runs are the plan's unit invocations, not the flow's tasks
    assert Counter(r["name"] for r in got["task_runs"]) == PLANNED_TASK_RUNS, messages(logs)
    assert all(r["state"]["type"] == "COMPLETED" for r in got["task_runs"])

    # the run's logs say it ran under the plan, and nothing said it did not
    summary = [m for m in messages(logs, 20) if m.startswith("WiseFuse plan:")]
    assert len(summary) == 1 and "4 invocations of 3 units on local" in summary[0], messages(logs)
    assert not [m for m in messages(logs, 30) if "WiseFuse" in m], messages(logs)

    # the plain flow's value (floats to BLAS rounding: wisefuse_plugins.runtime.compare)
    assert not differences(live.result(run), project["plain"])
