"""Airflow DAG files as input: retry policies carried to the runtime, DAG files that do not
import, and operators wisefuse does not know (opaque, never an error)."""

from __future__ import annotations

from pathlib import Path

import pytest

from wisefuse_plugins.errors import WiseFuseError
from wisefuse_plugins.plan.schema import check_plan, single_stage_plan
from wisefuse_plugins.runtime import store as st
from wisefuse_plugins.runtime.backends.units import LocalUnits
from wisefuse_plugins.runtime.executor import RunFailed, execute

from .faulty import faulty_app
from .harness import ROOT, arm

pytestmark = pytest.mark.airflow

DAGS = Path(__file__).resolve().parent / "dags"


@pytest.fixture
def read_dag(monkeypatch, tmp_path):
    def read(name: str, **kw):
        from wisefuse_plugins.adapters.airflow import workflow_from_file

        monkeypatch.setenv("WISEFUSE_RELIABILITY_CTL", str(tmp_path / "ctl"))
        return workflow_from_file(DAGS / name, root=ROOT, **kw)

    return read


def test_the_dags_retry_policy_is_the_runs(read_dag, tmp_path, backend):
    """``retries=2`` on the Airflow task: a transient fault recovers, a permanent one is
    tried three times and reported with the task and map index."""
    ctl = tmp_path / "ctl"
    ctl.mkdir()
    wf = read_dag("retry_dag.py", parallelism={"work": 4})
    assert wf.stage("work").retries == 2 and wf.stage("make").retries == 0
    assert wf.stage("work").callable.path == "faulty_app.py"
    plan = check_plan(single_stage_plan(wf), wf)
    store = st.LocalStore(tmp_path / "store")
    units = LocalUnits(backend, store.url, ROOT, timeout_s=30)
    arm(ctl, 1, "exit")  # the worker running input 1 dies once
    result = execute(wf, plan, units, store, workdir=tmp_path / "u", run_id="af1")
    assert result.outputs["total"] == faulty_app.expected_total(4)
    tries = sorted((c.instances[0], c.attempt) for c in result.calls if c.unit == "work")
    assert tries == [(0, 0), (1, 0), (1, 1), (2, 0), (3, 0)]
    arm(ctl, 2, "raise", always=True)
    with pytest.raises(RunFailed) as info:
        execute(wf, plan, units, store, workdir=tmp_path / "u", run_id="af2")
    tries = [c.attempt for c in info.value.calls if c.unit == "work" and c.instances == [2]]
    assert tries == [0, 1, 2]
    assert "stage 'work' instance 2: ValueError: injected failure for input 2" in str(info.value)
    assert store.list("runs/af2/total") == []


def test_a_dag_file_that_does_not_import_is_one_clear_error(read_dag):
    with pytest.raises(WiseFuseError) as info:
        read_dag("broken_dag.py")
    assert str(info.value) == (
        f"{str(DAGS / 'broken_dag.py')!r} failed to import: ModuleNotFoundError: "
        "No module named 'not_installed_anywhere_wisefuse'"
    )
    assert info.value.hint == f"run `python {DAGS / 'broken_dag.py'}` to see the full traceback"


def test_unknown_operators_stay_opaque_and_the_rest_is_planned(read_dag, tmp_path, backend):
    wf = read_dag("opaque_dag.py", parallelism={"crunch": 3})
    copy = wf.stage("copy_to_warehouse")
    assert copy.kind == "opaque" and "CopyToWarehouse" in (copy.opaque_reason or "")
    assert [s.id for s in wf.python_stages] == ["seeded", "crunch", "checksum"]
    plan = check_plan(single_stage_plan(wf), wf)  # opaque stages are in no unit
    store = st.LocalStore(tmp_path / "store")
    units = LocalUnits(backend, store.url, ROOT, timeout_s=30)
    with pytest.raises(WiseFuseError, match=r"opaque stages \['copy_to_warehouse'\]") as info:
        execute(wf, plan, units, store, workdir=tmp_path / "u")
    assert "Airflow or Prefect integration" in (info.value.hint or "")
    assert backend.worker_pids() == [] and store.list("runs") == []  # refused before running
