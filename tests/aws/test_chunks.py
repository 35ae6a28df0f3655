"""The spec's ``bundles`` and the handler's ``chunks``: how a Step Functions Map gets its items.

In-process, in the style of tests/runtime/test_handler.py: the unbundled unit that first
knows how many instances a bundled unit has returns that unit's chunk lists.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from wisefuse_plugins.ir import ConstItem, Stage, Workflow, callable_ref, derive_edges
from wisefuse_plugins.plan.lower import chunk_slot, count_source
from wisefuse_plugins.plan.schema import Plan, Unit, hashes_of
from wisefuse_plugins.runtime import store as st
from wisefuse_plugins.runtime.backends.inprocess import InProcessBackend
from wisefuse_plugins.runtime.executor import execute, prepare
from wisefuse_plugins.runtime.handler import LoadedUnit, WiseFuseUnitFailed, handler, run_unit
from wisefuse_plugins.runtime.loader import load_callable
from wisefuse_plugins.runtime.spec import read_spec

from ..runtime.toy import toy_app
from ..runtime.toyflows import PLANS, ROOT, expected_total, plan, toy_workflow


def _dep(wf, p, unit_id: str, tmp_path: Path, store) -> LoadedUnit:
    spec = read_spec(prepare(wf, p, tmp_path / "units")[unit_id])
    return LoadedUnit(
        spec, ROOT, store, {s.id: load_callable(s.callable, ROOT) for s in spec.stages}
    )


def test_chunk_slots_are_jsonpath_names_and_distinct():
    ids = ["make", "square-middle", "square_middle", "1st", "a-b-c"]
    slots = [chunk_slot(i) for i in ids]
    assert len(set(slots)) == len(ids)
    assert all(s[0].isalpha() and s.replace("_", "").isalnum() for s in slots)


def test_producer_response_carries_the_chunks_of_the_bundled_unit(tmp_path):
    wf = toy_workflow(n=5)
    p = plan(wf, *PLANS["bundles-of-2"])
    assert count_source(wf, p, "square-middle") == ("make", "make", None)
    store = st.LocalStore(tmp_path / "store")
    make = _dep(wf, p, "make", tmp_path, store)
    assert [b.unit for b in make.spec.bundles] == ["square-middle"]
    out = run_unit(make, {"run_id": "r1"}, 1769)
    assert out["ok"] and out["chunks"] == {chunk_slot("square-middle"): [[0, 1], [2, 3], [4]]}
    # units that count nothing keep their response as it was
    config = _dep(wf, p, "config", tmp_path, store)
    assert "chunks" not in run_unit(config, {"run_id": "r1"}, 1769)


def test_chunks_counted_inside_a_fused_unit_and_through_chained_bundles(tmp_path):
    wf = toy_workflow(n=5)
    store = st.LocalStore(tmp_path / "store")
    # make+square fused (square mapped inside an unbundled unit); middle bundled by 3
    p = plan(wf, *PLANS["scatter-fused"])
    dep = _dep(wf, p, "make-square", tmp_path / "a", store)
    out = run_unit(dep, {"run_id": "r1"}, 1769)
    assert out["chunks"] == {chunk_slot("middle"): [[0, 1, 2], [3, 4]]}
    # square bundled by 2 and middle by 3 in two units: make counts both
    p2 = plan(
        wf, [["make"], ["square"], ["middle"], ["config"], ["total"]], {"square": 2, "middle": 3}
    )
    assert count_source(wf, p2, "middle") == ("make", "make", None)
    out = run_unit(_dep(wf, p2, "make", tmp_path / "b", store), {"run_id": "r2"}, 1769)
    assert out["chunks"] == {
        chunk_slot("middle"): [[0, 1, 2], [3, 4]],
        chunk_slot("square"): [[0, 1], [2, 3], [4]],
    }
    # the executor ignores the extra response field: same result as before
    result = execute(wf, p2, InProcessBackend(store, ROOT), store, workdir=tmp_path / "c")
    assert result.outputs == {"total": expected_total(5)}


def test_static_count_from_a_literal_list():
    stages = [
        Stage(
            id="sq",
            callable=callable_ref(toy_app.square, ROOT),
            bindings={"x": ConstItem(values=[1, 2, 3])},
            parallelism=3,
        )
    ]
    wf = Workflow(name="lit", stages=stages, edges=derive_edges(stages))
    p = Plan(
        workflow="lit",
        units=[Unit(id="sq", stages=["sq"], bundle_size=2)],
        code_hashes=hashes_of(wf),
    )
    assert count_source(wf, p, "sq") == 3


def test_raise_errors_turns_a_failed_unit_into_a_function_error(tmp_path, monkeypatch):
    wf = toy_workflow(middle=toy_app.boom)
    p = plan(wf, *PLANS["bundles-of-2"])
    specs = prepare(wf, p, tmp_path / "units")
    store = st.LocalStore(tmp_path / "store")
    good = toy_workflow()
    backend = InProcessBackend(store, ROOT)
    execute(
        good,
        plan(good, *PLANS["bundles-of-2"]),
        backend,
        store,
        workdir=tmp_path / "ok",
        run_id="r1",
    )
    store.delete_prefix("runs/r1/middle")
    monkeypatch.setenv("WISEFUSE_UNIT_SPEC", str(specs["square-middle"]))
    monkeypatch.setenv("WISEFUSE_CODE_ROOT", str(ROOT))
    monkeypatch.setenv("WISEFUSE_STORE", str(tmp_path / "store"))
    event = {"run_id": "r1", "instances": [2, 3]}
    assert handler(event, None)["ok"] is False  # reported, as the executor expects
    with pytest.raises(WiseFuseUnitFailed) as info:
        handler({**event, "raise_errors": True}, None)
    assert info.value.error["stage"] == "middle" and info.value.error["instance"] == 2
    assert '"type": "ValueError"' in str(info.value) and "cannot handle 4" in str(info.value)
