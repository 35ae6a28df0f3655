"""Plans run on the embedded local Lambda (real worker processes) give the plain results."""

from __future__ import annotations

import pytest

from wisefuse_plugins.runtime import store as st
from wisefuse_plugins.runtime.backends.local import LocalLambda
from wisefuse_plugins.runtime.backends.units import LocalUnits
from wisefuse_plugins.runtime.executor import RunFailed, execute

from .toy import toy_app
from .toyflows import PLANS, ROOT, expected_total, plan, toy_workflow


@pytest.fixture(scope="module")
def lam():
    with LocalLambda(keep_alive_s=60, concurrency_limit=8) as backend:
        yield backend


def test_plans_on_real_workers(lam, tmp_path):
    wf = toy_workflow()
    store = st.LocalStore(tmp_path / "store")
    units = LocalUnits(lam, store.url, ROOT, timeout_s=30)
    for name in ("no-fusion", "bundles-of-2", "all-in-one"):
        groups, bundle = PLANS[name]
        result = execute(wf, plan(wf, groups, bundle), units, store, workdir=tmp_path / name)
        assert result.outputs == {"total": expected_total()}, name
        assert all(c.invoked.billed_ms >= 1 and c.invoked.cost_usd > 0 for c in result.calls)
    # the same plan again runs warm: no cold starts
    groups, bundle = PLANS["all-in-one"]
    again = execute(wf, plan(wf, groups, bundle), units, store, workdir=tmp_path / "all-in-one")
    assert not any(c.invoked.cold for c in again.calls)


def test_task_error_names_stage_and_instance_through_workers(lam, tmp_path):
    wf = toy_workflow(middle=toy_app.boom)
    store = st.LocalStore(tmp_path / "store")
    units = LocalUnits(lam, store.url, ROOT, timeout_s=30)
    with pytest.raises(RunFailed) as info:
        execute(wf, plan(wf, *PLANS["bundles-of-2"]), units, store, workdir=tmp_path / "u")
    assert info.value.error["stage"] == "middle" and info.value.error["instance"] == 2
    assert "ValueError: cannot handle 4" in info.value.error["traceback"]


def test_unit_timeout_is_a_runtime_error(lam, tmp_path):
    wf = toy_workflow(n=2, middle=toy_app.nap, middle_args={"seconds": 5.0})
    store = st.LocalStore(tmp_path / "store")
    units = LocalUnits(lam, store.url, ROOT, timeout_s=1.0)
    p = plan(wf, [["make"], ["square"], ["middle"], ["config"], ["total"]])
    with pytest.raises(RunFailed) as info:
        execute(wf, p, units, store, workdir=tmp_path / "u")
    assert "timed out" in info.value.error["message"].lower()


def test_measure_reports_lambda_equivalent_latency_and_cost(lam, tmp_path):
    from wisefuse_plugins.runtime.measure import measure

    wf = toy_workflow(n=4, middle=toy_app.nap, middle_args={"seconds": 0.3})
    store = st.LocalStore(tmp_path / "store")
    units = LocalUnits(lam, store.url, ROOT, timeout_s=30)
    groups, bundle = PLANS["bundles-of-2"]
    m = measure(wf, plan(wf, groups, bundle), units, store, workdir=tmp_path / "u", runs=2)
    assert len(m.e2e_s) == 2 and m.cold_starts == 0  # the warm-up paid the cold starts
    # two chunks of two 0.3 s naps each, in parallel on one thread per chunk: >= 0.6 s
    assert 0.6 <= m.p50_s <= m.wall_s[0] + 0.05
    assert m.mean_cost_usd > 0
    assert store.list("runs") == []


def test_values_pass_by_value_through_real_workers(lam, tmp_path):
    """The events and responses cross the worker's pipe as JSON, as Lambda's do."""
    from wisefuse_plugins.runtime.passing import BY_VALUE_BYTES

    wf = toy_workflow()
    store = st.LocalStore(tmp_path / "store")
    units = LocalUnits(lam, store.url, ROOT, timeout_s=30)
    p = plan(wf, *PLANS["bundles-of-2"])
    result = execute(wf, p, units, store, workdir=tmp_path / "u", by_value=BY_VALUE_BYTES)
    assert result.outputs == {"total": expected_total()}
    assert all(c.invoked.payload["store"] == {"gets": 0, "puts": 0} for c in result.calls)
    assert store.list("runs") == []
