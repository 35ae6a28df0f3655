"""The three example apps on the embedded local Lambda, under several plans: exactly the plain results.

The IR comes from each app's Airflow DAG (the adapter), with the callables pointed at the
app module's plain functions (the DAG tasks are thin wrappers of them), so workers import
numpy only and cold starts stay short. The DAG and flow paths themselves run in
tests/providers.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from tests.plans import chains_plan
from wisefuse_plugins.ir import Source, Workflow, callable_ref
from wisefuse_plugins.plan.schema import single_stage_plan
from wisefuse_plugins.runtime import store as st
from wisefuse_plugins.runtime.backends.local import LocalLambda
from wisefuse_plugins.runtime.backends.units import LocalUnits
from wisefuse_plugins.runtime.compare import differences
from wisefuse_plugins.runtime.executor import execute
from wisefuse_plugins.runtime.observe import observe

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
APPS = {"video_analytics.py": "video", "ml_pipeline.py": "ml_pipeline", "approx_svd.py": "svd"}


def app_workflow(dag_file: str) -> tuple[Workflow, object]:
    from wisefuse_plugins.adapters.airflow import workflow_from_file

    module = importlib.import_module(f"examples.apps.{APPS[dag_file]}")
    wf = workflow_from_file(REPO / "airflow" / dag_file)
    stages = [
        s.model_copy(update={"callable": callable_ref(getattr(module, s.id), REPO)})
        for s in wf.stages
    ]
    source = Source(
        framework="ir", root=str(REPO), path=f"examples/apps/{APPS[dag_file]}.py", entry=wf.name
    )
    wf = Workflow(name=wf.name, stages=stages, edges=wf.edges, source=source)
    observed, _ = observe(wf)
    return observed, module


@pytest.fixture(scope="module")
def lam():
    with LocalLambda(keep_alive_s=300, concurrency_limit=12) as backend:
        yield backend


@pytest.mark.parametrize("dag_file", list(APPS))
def test_app_under_several_plans_gives_the_plain_result(lam, tmp_path, dag_file):
    wf, module = app_workflow(dag_file)
    expected = module.run(**module.SIZES["small"])
    sink = next(s.id for s in wf.stages if not wf.successors(s.id))
    store = st.LocalStore(tmp_path / "store")
    units = LocalUnits(lam, store.url, REPO, timeout_s=120)
    plans = {
        "no fusion": single_stage_plan(wf),
        "chains fused": chains_plan(wf),
        "bundles of 2": chains_plan(wf, bundle_size=2),
        "bundles of 5": chains_plan(wf, bundle_size=5),
    }
    mapped = max(s.parallelism for s in wf.stages if s.mapped)
    assert mapped >= 4  # the small sizes still map over several instances
    for name, plan in plans.items():
        # one workdir: a unit that several plans share keeps its warm workers
        result = execute(wf, plan, units, store, workdir=tmp_path / "units")
        assert not (diff := differences(result.outputs[sink], expected)), (name, diff)
        if name.startswith("bundles of"):
            b = int(name.rsplit(" ", 1)[1])
            bundled = [c for c in result.calls if c.instances is not None]
            assert len(bundled) == -(-mapped // b) * len({c.unit for c in bundled}), name
