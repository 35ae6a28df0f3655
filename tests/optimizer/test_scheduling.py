"""Stages whose scheduling settings differ never share a unit (one task has one pool...).

Input: the IR the Airflow adapter makes of the corpus DAG ``pools_queues`` (the expected
file ``tests/airflow_corpus/expected/pools_queues.ir.json``, which the corpus test checks
against the adapter), a chain ``read -> parse -> crunch -> crunch_again``: ``read`` and
``parse`` alike (pool ``io_pool``...), ``crunch`` differing from ``parse`` only in its pool,
``crunch_again`` from ``crunch`` in nearly everything. With 40 MB between every pair, one
invocation for all four would be cheapest: the expected plans keep only the alike pair
together, whichever planner makes them. A plan that fuses them anyway is refused.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from wisefuse_plugins.ir import IRError, from_json
from wisefuse_plugins.optimizer.passes import fuse
from wisefuse_plugins.optimizer.search import baseline, initial_plan, optimize
from wisefuse_plugins.optimizer.space import Space
from wisefuse_plugins.plan.schema import (
    Plan,
    Unit,
    check_plan,
    hashes_of,
    plan_from_json,
    plan_problems,
    plan_to_json,
)

from .test_optimizer import model_for

IR = Path(__file__).resolve().parents[1] / "airflow_corpus" / "expected" / "pools_queues.ir.json"
CPU = {"read": 50.0, "parse": 50.0, "crunch": 50.0, "crunch_again": 50.0}
APART = [["read", "parse"], ["crunch"], ["crunch_again"]]


@pytest.fixture(scope="module")
def case():
    wf = from_json(IR.read_text())
    return wf, model_for(wf, CPU, output_bytes=40e6)


def test_the_ir_records_the_settings_that_keep_stages_apart(case):
    wf, _ = case
    got = {s.id: s.meta["scheduling"] for s in wf.stages}
    assert got["read"] == got["parse"]
    assert {k: v for k, v in got["parse"].items() if got["crunch"].get(k) != v} == {
        "pool": "io_pool"
    }
    assert got["crunch_again"]["queue"] == "cpu" and got["crunch_again"]["owner"] == "data-team"


@pytest.mark.parametrize("slo", [math.inf, "3x"])
def test_optimize_fuses_only_stages_with_the_same_settings(case, slo):
    wf, model = case
    result = optimize(wf, model, slo)
    assert [u.stages for u in result.plan.units] == APART
    assert plan_problems(result.plan, wf) == []


def test_the_fusion_pass_keeps_them_apart(case):
    wf, model = case
    space = Space(wf, model)  # no SLO: fusing all four would be cheapest
    assert [u.stages for u in fuse(space, initial_plan(space)).units] == APART


def test_the_oracle_keeps_them_apart(case):
    wf, model = case
    assert [u.stages for u in baseline(wf, model, "oracle").plan.units] == APART


@pytest.mark.parametrize(
    ("stages", "shown"),
    [
        (["parse", "crunch"], "pool is 'io_pool' in 'parse' and the default in 'crunch'"),
        (
            ["crunch", "crunch_again"],
            "owner is 'analytics' in 'crunch' and 'data-team' in 'crunch_again'",
        ),
    ],
)
def test_a_plan_fusing_them_is_refused_with_the_settings_and_the_fix(case, stages, shown):
    wf, _ = case
    units = [Unit(id="-".join(stages), stages=stages)]
    units += [Unit(id=s.id, stages=[s.id]) for s in wf.python_stages if s.id not in stages]
    plan = Plan(workflow=wf.name, units=units, code_hashes=hashes_of(wf))
    with pytest.raises(IRError) as err:
        check_plan(plan, wf)
    text = str(err.value)
    assert f"unit {'-'.join(stages)!r} fuses stages whose scheduling settings differ: " in text
    assert shown in text
    assert "split the unit where the settings change, or give these tasks the same" in text
    with pytest.raises(IRError, match="scheduling settings differ"):
        plan_from_json(plan_to_json(plan), wf)  # what `wisefuse report/deploy` and runs load
