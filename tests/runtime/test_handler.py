"""The unit handler and the executor, in-process: data flow, fusion, bundles, errors, retries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wisefuse_plugins.errors import WiseFuseError
from wisefuse_plugins.ir import IRError
from wisefuse_plugins.plan.schema import (
    Unit,
    check_plan,
    plan_from_json,
    plan_to_json,
    single_stage_plan,
)
from wisefuse_plugins.runtime import store as st
from wisefuse_plugins.runtime.backends.inprocess import InProcessBackend
from wisefuse_plugins.runtime.executor import RunFailed, execute, prepare
from wisefuse_plugins.runtime.handler import LoadedUnit, run_unit
from wisefuse_plugins.runtime.loader import CodeLoadError, load_callable
from wisefuse_plugins.runtime.spec import read_spec

from .toy import toy_app
from .toyflows import PLANS, ROOT, expected_total, plan, toy_workflow


def run(wf, p, tmp_path: Path, **kw):
    store = st.LocalStore(tmp_path / "store")
    backend = InProcessBackend(store, ROOT)
    return execute(wf, p, backend, store, workdir=tmp_path / "units", **kw), store


@pytest.mark.parametrize("name", list(PLANS))
def test_every_plan_gives_the_plain_result(tmp_path, name):
    wf = toy_workflow()
    groups, bundle = PLANS[name]
    p = check_plan(plan(wf, groups, bundle), wf)
    result, _ = run(wf, p, tmp_path)
    assert result.outputs == {"total": expected_total()}
    expected_calls = {"bundles-of-2": 3 + 3, "bundles-of-5": 1 + 3}.get(name)
    if expected_calls:
        assert len(result.calls) == expected_calls


def test_plan_json_round_trip_and_single_stage_plan():
    wf = toy_workflow()
    p = single_stage_plan(wf)
    assert plan_from_json(plan_to_json(p), wf) == p
    assert [u.id for u in p.units] == ["make", "square", "middle", "config", "total"]


@pytest.mark.parametrize(
    ("groups", "bundle", "message"),
    [
        ([["make"], ["square"], ["middle"], ["config"]], {}, "'total' is in no unit"),
        ([["make"], ["square", "middle"], ["middle"], ["config", "total"]], {}, "is in units"),
        ([["make", "total"], ["square", "middle"], ["config"]], {}, "not connected"),
        (
            [["make"], ["square"], ["middle", "config", "total"]],
            {"middle": 2},
            "bundling applies only",
        ),
        ([["make", "middle"], ["square"], ["config", "total"]], {}, "not connected"),
        ([["make"], ["square"], ["middle"], ["config"], ["total", "ghost"]], {}, "does not have"),
    ],
)
def test_bad_plans_name_the_unit_and_the_rule(groups, bundle, message):
    wf = toy_workflow()
    with pytest.raises(IRError) as info:
        check_plan(plan(wf, groups, bundle), wf)
    assert message in str(info.value)


def test_plan_with_path_out_and_back_is_a_cycle():
    # square and total in one unit, middle outside: square -> middle -> total re-enters the unit
    wf = toy_workflow()
    p = plan(wf, [["make"], ["square"], ["middle"], ["config", "total"]])
    bad = p.model_copy(
        update={"units": [*p.units[:1], Unit(id="sq-total", stages=["square", "middle", "total"])]}
    )
    with pytest.raises(IRError):
        check_plan(bad, wf)
    looped = toy_workflow()
    p2 = plan(looped, [["make", "square"], ["middle"], ["config", "total"]])
    check_plan(p2, looped)


def test_stale_plan_is_detected():
    wf = toy_workflow()
    p = single_stage_plan(wf)
    stale = p.model_copy(update={"code_hashes": {**p.code_hashes, "square": "f" * 64}})
    with pytest.raises(IRError) as info:
        check_plan(stale, wf)
    assert "changed since the plan was made" in str(info.value)
    assert "wisefuse optimize" in (info.value.hint or "")


def test_memory_limits_in_plan_json():
    wf = toy_workflow()
    doc = json.loads(plan_to_json(single_stage_plan(wf)))
    doc["plan"]["units"][1]["memory_mb"] = 20_000
    with pytest.raises(IRError) as info:
        plan_from_json(json.dumps(doc), wf)
    assert info.value.path == "$.plan.units[1].memory_mb"


def test_task_error_is_structured_with_stage_instance_and_traceback(tmp_path):
    wf = toy_workflow(middle=toy_app.boom)
    with pytest.raises(RunFailed) as info:
        run(wf, plan(wf, *PLANS["bundles-of-2"]), tmp_path)
    err = info.value.error
    assert err["stage"] == "middle" and err["instance"] == 2
    assert err["type"] == "ValueError" and "cannot handle 4" in err["message"]
    assert "Traceback" in err["traceback"] and "toy_app.py" in err["traceback"]
    assert "stage 'middle' instance 2" in str(info.value)


def test_retries_follow_the_stage_policy(tmp_path):
    marker = str(tmp_path / "attempted")
    wf = toy_workflow(middle=toy_app.flaky, retries=1, middle_args={"marker": marker})
    result, store = run(wf, plan(wf, *PLANS["bundles-of-2"]), tmp_path)
    assert result.outputs["total"]["sum"] == sum(i * i for i in range(5)) + 100
    attempts = [c for c in result.calls if c.unit == "square-middle" and c.instances == [2, 3]]
    assert [c.attempt for c in attempts] == [0, 1]
    # the retry reused instance 2's stored square output and the stored middle output of 3? no:
    # middle[2] failed first, so it was computed on the retry; every output exists exactly once
    keys = store.list("runs/" + result.run_id + "/middle")
    assert keys == sorted(f"runs/{result.run_id}/middle/i{i}.pkl" for i in range(5))


def test_no_retries_fails(tmp_path):
    wf = toy_workflow(middle=toy_app.flaky, retries=0, middle_args={"marker": str(tmp_path / "m")})
    with pytest.raises(RunFailed):
        run(wf, plan(wf, *PLANS["bundles-of-2"]), tmp_path)


def _deployment(wf, p, unit_id, tmp_path, store):
    spec = read_spec(prepare(wf, p, tmp_path / "units")[unit_id])
    fns = {s.id: load_callable(s.callable, ROOT) for s in spec.stages}
    return LoadedUnit(spec, ROOT, store, fns)


def test_rerun_of_same_invocation_leaves_store_unchanged(tmp_path):
    wf = toy_workflow()
    p = plan(wf, *PLANS["bundles-of-2"])
    store = st.LocalStore(tmp_path / "store")
    result = execute(
        wf, p, InProcessBackend(store, ROOT), store, workdir=tmp_path / "units", run_id="r1"
    )
    snapshot = {
        k: ((store.root / k).stat().st_mtime_ns, store.get_bytes(k)) for k in store.list("runs/r1")
    }
    dep = _deployment(wf, p, "square-middle", tmp_path, store)
    again = run_unit(
        dep, {"run_id": "r1", "instances": [0, 1], "counts": {"make": 5}, "resume": True}, 1769
    )
    assert again["ok"]
    # exported outputs are loaded, not recomputed; in-memory intermediates are recomputed
    assert {(t["stage"], t["resumed"]) for t in again["timings"]} == {
        ("square", False),
        ("middle", True),
    }
    assert not any(o["written"] for o in again["outputs"])
    after = {
        k: ((store.root / k).stat().st_mtime_ns, store.get_bytes(k)) for k in store.list("runs/r1")
    }
    assert after == snapshot
    assert result.outputs["total"] == expected_total()
    # without resume the work is redone, yet nothing stored is overwritten
    redo = run_unit(dep, {"run_id": "r1", "instances": [0, 1], "counts": {"make": 5}}, 1769)
    assert redo["ok"] and not any(t["resumed"] for t in redo["timings"])
    assert not any(o["written"] for o in redo["outputs"])
    assert {
        k: ((store.root / k).stat().st_mtime_ns, store.get_bytes(k)) for k in store.list("runs/r1")
    } == snapshot


def test_bundle_reads_shared_input_once_and_scatter_elements(tmp_path):
    wf = toy_workflow()
    p = plan(wf, *PLANS["bundles-of-5"])
    result, store = run(wf, p, tmp_path)
    # make's list was split into elements because another unit maps over it
    assert store.exists(st.element_key(result.run_id, "make", 4))
    bundle_call = next(c for c in result.calls if c.unit == "square-middle")
    assert bundle_call.instances == [0, 1, 2, 3, 4]
    assert bundle_call.invoked.payload["threads"] == 1  # 1769 MB: one vCPU


def test_outputs_inline_when_small_and_by_reference_when_large(tmp_path, monkeypatch):
    wf = toy_workflow(n=3)
    p = plan(wf, [["make"], ["square", "middle"], ["config", "total"]])
    result, _ = run(wf, p, tmp_path)
    make_out = next(c for c in result.calls if c.unit == "make").invoked.payload["outputs"][0]
    assert make_out["value"] == [0, 1, 2] and make_out["count"] == 3
    monkeypatch.setenv("WISEFUSE_INLINE_BYTES", "2")
    result, _ = run(wf, p, tmp_path / "again")
    make_out = next(c for c in result.calls if c.unit == "make").invoked.payload["outputs"][0]
    assert "value" not in make_out and make_out["key"].endswith("make/out.pkl")


def test_unserialisable_output_is_a_clear_error(tmp_path):
    wf = toy_workflow(middle=toy_app.unpicklable)
    with pytest.raises(RunFailed) as info:
        run(wf, plan(wf, *PLANS["no-fusion"]), tmp_path)
    assert "cannot be serialised" in info.value.error["message"]


def test_bad_events_are_reported_not_raised(tmp_path):
    wf = toy_workflow()
    p = plan(wf, *PLANS["bundles-of-2"])
    store = st.LocalStore(tmp_path / "store")
    dep = _deployment(wf, p, "square-middle", tmp_path, store)
    for event, text in [
        ([], "JSON object"),
        ({"run_id": "../../etc"}, "unsafe store key"),
        ({"run_id": "r1"}, "bundled"),
        ({"run_id": "r1", "instances": [0], "counts": {"make": -1}}, "counts"),
    ]:
        out = run_unit(dep, event, 1769)
        assert not out["ok"] and text in out["error"]["message"]


def test_store_rejects_traversal(tmp_path):
    store = st.LocalStore(tmp_path / "s")
    for key in ["../x", "/abs", "a/../../b", "a//b", "", "a/.."]:
        with pytest.raises(st.StoreError):
            store.put_bytes(key, b"x")
    assert store.put_bytes("a/b.pkl", b"1") is True
    assert store.put_bytes("a/b.pkl", b"2") is False
    assert store.get_bytes("a/b.pkl") == b"1"
    assert not list((tmp_path / "s" / "a").glob(".tmp-*"))


def test_loader_only_imports_files_inside_the_root(tmp_path):
    wf = toy_workflow()
    ref = wf.stage("square").callable
    assert load_callable(ref, ROOT)(3) == 9
    with pytest.raises(CodeLoadError, match="inside the code root"):
        load_callable(ref.model_copy(update={"path": "../../../wisefuse_plugins/cli/app.py"}), ROOT)
    with pytest.raises(CodeLoadError, match="code hash differs"):
        load_callable(ref.model_copy(update={"code_hash": "a" * 64}), ROOT)
    with pytest.raises(CodeLoadError, match="no attribute"):
        load_callable(ref.model_copy(update={"qualname": "nope"}), ROOT)


def test_opaque_stages_cannot_run_outside_their_framework(tmp_path):
    from wisefuse_plugins.ir import Stage, Workflow, derive_edges

    wf0 = toy_workflow()
    stages = [*wf0.stages, Stage(id="bash", kind="opaque", opaque_reason="BashOperator")]
    wf = Workflow(
        name="toy", stages=stages, edges=derive_edges(stages, control=[("total", "bash")])
    )
    with pytest.raises(WiseFuseError, match="opaque stages"):
        run(wf, single_stage_plan(wf), tmp_path)


def test_counts_come_from_the_store_when_the_event_has_none(tmp_path):
    wf = toy_workflow()
    p = plan(wf, *PLANS["bundles-of-2"])
    store = st.LocalStore(tmp_path / "store")
    execute(wf, p, InProcessBackend(store, ROOT), store, workdir=tmp_path / "units", run_id="r1")
    total = _deployment(wf, p, "total", tmp_path, store)
    store.delete_prefix("runs/r1/total")
    out = run_unit(total, {"run_id": "r1"}, 1769)
    assert out["ok"] and out["outputs"][0]["value"] == expected_total()
    middle = _deployment(wf, p, "square-middle", tmp_path, store)
    store.delete_prefix("runs/r1/middle")
    out = run_unit(middle, {"run_id": "r1", "instances": [4]}, 1769)
    assert out["ok"] and out["outputs"][0]["value"] == 17


def test_observe_learns_parallelism_from_a_run():
    from wisefuse_plugins.runtime.observe import observe, with_parallelism

    wf = toy_workflow(n=7)
    guessed = with_parallelism(wf, {"square": 3, "middle": 3}, source="expected")
    assert guessed.stage("square").parallelism == 3
    observed, outputs = observe(guessed, ROOT)
    assert (
        observed.stage("square").parallelism == 7
        and observed.stage("middle").parallelism_source == "observed"
    )
    assert outputs == {"total": expected_total(7)}


@pytest.mark.parametrize(
    "value",
    [[1.5, "a", None, True], list(range(300)), {"a": [1, 2], "b": {"c": "d"}}, "text", 7, []],
)
def test_json_size_is_the_length_of_the_json(value):
    import json

    from wisefuse_plugins.runtime.handler import _json_size

    assert _json_size(value, 10**6) == len(json.dumps(value))


def test_json_size_gives_up_past_the_limit_and_on_non_json():
    import numpy as np

    from wisefuse_plugins.runtime.handler import _json_size

    assert _json_size([1.0 / 3] * 6000, 65536) is None  # 120 KB of JSON
    assert _json_size({"k": [0.5] * 10_000}, 1000) is None
    assert _json_size(np.zeros(3), 65536) is None  # not JSON
    assert _json_size([float("nan")], 65536) is None  # not strict JSON
