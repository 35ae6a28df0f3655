"""Values passed by value (runtime/passing.py): the same results with no store traffic,
the store for what is too large, and a model that prices exactly that."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from wisefuse_plugins.runtime import passing
from wisefuse_plugins.runtime import store as st
from wisefuse_plugins.runtime.backends.inprocess import InProcessBackend
from wisefuse_plugins.runtime.executor import execute, prepare
from wisefuse_plugins.runtime.handler import LoadedUnit, run_unit
from wisefuse_plugins.runtime.loader import load_callable
from wisefuse_plugins.runtime.spec import read_spec, unit_spec

from ..model.test_predict import QUIET, toy_model
from .toyflows import PLANS, ROOT, expected_total, plan, toy_workflow


def run(wf, p, tmp_path: Path, by_value: int):
    store = st.LocalStore(tmp_path / "store")
    result = execute(
        wf, p, InProcessBackend(store, ROOT), store, workdir=tmp_path / "units",
        run_id="r1", by_value=by_value,
    )  # fmt: skip
    requests = {
        kind: sum(c.invoked.payload["store"][kind] for c in result.calls)
        for kind in ("gets", "puts")
    }
    return result, store, requests


@pytest.mark.parametrize("name", list(PLANS))
def test_values_by_value_give_the_same_results_without_the_store(tmp_path, name):
    wf = toy_workflow()
    p = plan(wf, *PLANS[name])
    through_store, _, before = run(wf, p, tmp_path / "store", 0)
    by_value, store, after = run(wf, p, tmp_path / "value", passing.BY_VALUE_BYTES)
    assert by_value.outputs == through_store.outputs == {"total": expected_total()}
    assert before["puts"] > 0  # the sink at least
    assert after == {"gets": 0, "puts": 0}
    assert store.list("runs") == []
    assert by_value.cost_usd < through_store.cost_usd


def test_a_value_over_the_limit_goes_through_the_store(tmp_path):
    wf = toy_workflow()
    p = plan(wf, *PLANS["bundles-of-2"])
    limit = len(st.dumps({"start": 100}, "config"))  # config's output fits, make's list not
    assert len(st.dumps(list(range(5)), "make")) > limit
    result, store, requests = run(wf, p, tmp_path, limit)
    assert result.outputs == {"total": expected_total()}
    keys = store.list("runs/r1")
    assert "runs/r1/make/out.pkl" in keys  # too large: stored, with its elements
    assert st.element_key("r1", "make", 4) in keys
    assert not any(k.startswith(("runs/r1/middle/", "runs/r1/config/")) for k in keys)
    assert requests["gets"] == 5  # each square instance reads its element of make's list


def test_values_beyond_an_event_are_stored_by_the_orchestrator(tmp_path):
    wf = toy_workflow()
    p = plan(wf, *PLANS["no-fusion"])
    store = st.LocalStore(tmp_path / "store")
    dep = _deployment(wf, p, "make", tmp_path, store)
    made = run_unit(dep, {"run_id": "r1", "by_value": passing.BY_VALUE_BYTES}, 1769)
    assert made["ok"] and "pickle" in made["outputs"][0] and store.list("runs") == []
    values = passing.Values(event_bytes=0)  # no room at all: every value goes to the store
    values.take(made)
    spec = unit_spec(wf, p, "square")
    chosen, stored = values.for_event(spec, "r1", [3], {"make": 5}, store)
    assert chosen == {} and stored == 1 and store.exists("runs/r1/make/out.pkl")
    square = _deployment(wf, p, "square", tmp_path, store)
    out = run_unit(square, {"run_id": "r1", "instances": [3], "counts": {"make": 5}}, 1769)
    assert out["ok"] and out["outputs"][0]["value"] == 9  # read make's list whole: element 3
    assert values.get(store, "runs/r1/make/out.pkl") == [0, 1, 2, 3, 4]


def test_a_unit_counts_instances_passed_by_value(tmp_path):
    wf = toy_workflow()
    p = plan(wf, *PLANS["bundles-of-2"])
    store = st.LocalStore(tmp_path / "store")
    dep = _deployment(wf, p, "square-middle", tmp_path, store)
    pickles = {}
    for chunk in ([0, 1], [2, 3], [4]):
        event = {"run_id": "r1", "instances": chunk, "by_value": 1024}
        event["values"] = {"runs/r1/make/out.pkl": passing.encode(st.dumps(list(range(5)), "x"))}
        out = run_unit(dep, event, 1769)
        pickles.update({rec["key"]: rec["pickle"] for rec in out["outputs"]})
    assert store.list("runs") == []
    total = _deployment(wf, p, "total", tmp_path, store)
    config = {"runs/r1/config/out.pkl": passing.encode(st.dumps({"start": 100}, "x"))}
    # no counts in the event: the handler counts middle's instances among the values
    out = run_unit(total, {"run_id": "r1", "values": {**pickles, **config}}, 1769)
    assert out["ok"] and out["outputs"][0]["value"] == expected_total()
    # the LIST that found nothing stored, and total's own output (this event has no by_value)
    assert out["store"] == {"gets": 0, "puts": 2}


@pytest.mark.parametrize(
    ("event", "text"),
    [
        ({"by_value": -1}, "by_value"),
        ({"by_value": True}, "by_value"),
        ({"values": {"k": 3}}, "values"),
        ({"values": ["k"]}, "values"),
    ],
)
def test_bad_by_value_events_are_reported(tmp_path, event, text):
    wf = toy_workflow()
    p = plan(wf, *PLANS["no-fusion"])
    dep = _deployment(wf, p, "make", tmp_path, st.LocalStore(tmp_path / "store"))
    out = run_unit(dep, {"run_id": "r1", **event}, 1769)
    assert not out["ok"] and text in out["error"]["message"]


def test_the_model_prices_values_passed_by_value_without_requests():
    wf = toy_workflow(n=5)
    p = plan(wf, [["make"], ["square"], ["middle"], ["config"], ["total"]])
    billed = dataclasses.replace(QUIET, bill_store_requests=True)
    stored = toy_model(wf, billed).predict(wf, p)
    passed = toy_model(wf, dataclasses.replace(billed, by_value_bytes=1024)).predict(wf, p)
    assert sum(u.puts for u in stored.units) == (1 + 5) + 5 + 5 + 1 + 1  # make scatters 5
    assert sum(u.puts for u in passed.units) == sum(u.gets for u in passed.units) == 0
    puts, gets = (sum(getattr(u, k) for u in stored.units) for k in ("puts", "gets"))
    requests = puts * 0.005 / 1000 + gets * 0.0004 / 1000
    # the requests, and the billed ms they took
    assert stored.cost_usd - passed.cost_usd > requests
    # QUIET's 10 ms per request is gone from every hand-off on the critical path
    assert passed.p50_s < stored.p50_s - 0.1
    # an output over the limit still goes through the store
    large = toy_model(wf, dataclasses.replace(billed, by_value_bytes=1024))
    large.profiles["make"] = dataclasses.replace(large.profiles["make"], output_bytes=4096.0)
    assert sum(u.puts for u in large.predict(wf, p).units) == 1 + 5


def _deployment(wf, p, unit_id, tmp_path, store):
    spec = read_spec(prepare(wf, p, tmp_path / "units")[unit_id])
    return LoadedUnit(
        spec, ROOT, store, {s.id: load_callable(s.callable, ROOT) for s in spec.stages}
    )
