"""Property tests (hypothesis): loaders that only ever raise IRError, and an optimizer
whose plans always respect Lambda's limits.

- IR and plan documents: random mutations of valid documents (a field removed, replaced
  by any JSON value or a wrong type, a key added, a list element duplicated or dropped,
  the text truncated or a character changed) either load, and then round-trip, or raise
  :class:`IRError`; never another exception.
- The optimizer on random workflows (chains, scatters, one-to-one mapped steps, gathers,
  joins) with random profiles up to minutes per stage: the plan is valid for its
  workflow, every unit's memory is within 128-10,240 MB and above its stages' peak, every
  unit's predicted P99 invocation stays under the 900 s timeout with margin, and a plan
  said to meet the SLO does.
"""

from __future__ import annotations

import contextlib
import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wisefuse_plugins.ir import (
    CallableRef,
    Collect,
    Const,
    IRError,
    Item,
    Output,
    Stage,
    Workflow,
    derive_edges,
    from_json,
    to_json,
)
from wisefuse_plugins.model.predict import Model
from wisefuse_plugins.model.profile import StageProfile
from wisefuse_plugins.optimizer.search import optimize
from wisefuse_plugins.optimizer.space import Space
from wisefuse_plugins.plan.limits import MAX_MEMORY_MB, MAX_TIMEOUT_S, MIN_MEMORY_MB, vcpus
from wisefuse_plugins.plan.schema import check_plan, plan_from_json, plan_to_json

from .harness import PLANS, fault_workflow, plan_of

DATA = Path(__file__).resolve().parent.parent / "data"
LOADER = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


def _containers(doc: Any, path: tuple = ()) -> list[tuple]:
    """Paths of every dict and list in ``doc`` (where a mutation can happen)."""
    found = []
    if isinstance(doc, dict | list):
        found.append(path)
        items = doc.items() if isinstance(doc, dict) else enumerate(doc)
        for k, v in items:
            found += _containers(v, (*path, k))
    return found


def _at(doc: Any, path: tuple) -> Any:
    for k in path:
        doc = doc[k]
    return doc


@st.composite
def mutated(draw, text: str) -> str:
    """``text`` (a JSON document) after one to three random mutations."""
    doc = json.loads(text)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["drop", "replace", "add", "dup", "swap-type", "text"]))
        if kind == "text":
            raw = json.dumps(doc)
            how = draw(st.sampled_from(["truncate", "flip", "insert"]))
            i = draw(st.integers(0, max(len(raw) - 1, 0)))
            if how == "truncate":
                return raw[:i]
            char = draw(st.characters(codec="utf-8"))
            return raw[:i] + char + raw[i + (how == "flip") :]
        target = _at(doc, draw(st.sampled_from(_containers(doc))))
        keys = list(target) if isinstance(target, dict) else list(range(len(target)))
        if kind == "add" or not keys:
            if isinstance(target, dict):
                target[draw(st.text(max_size=10))] = draw(json_values)
            else:
                target.append(draw(json_values))
            continue
        key = draw(st.sampled_from(keys))
        if kind == "drop":
            del target[key]
        elif kind == "replace":
            target[key] = draw(json_values)
        elif kind == "dup" and isinstance(target, list):
            target.insert(key, copy.deepcopy(target[key]))
        else:  # a value of the wrong type where a known one was
            value = target[key]
            target[key] = (
                str(value) if not isinstance(value, str) else draw(st.sampled_from([0, None, []]))
            )
    return json.dumps(doc)


IR_DOCS = [
    to_json(fault_workflow("/tmp/ctl", n=4)),
    (DATA / "video_analytics.ir.json").read_text(),
]


@LOADER
@given(data=st.data(), which=st.sampled_from(range(len(IR_DOCS))))
def test_ir_loader_only_raises_irerror(data, which):
    text = data.draw(mutated(IR_DOCS[which]))
    try:
        wf = from_json(text)
    except IRError as err:
        assert err.problems and all(p.startswith("$") for p, _ in err.problems)
        return
    assert from_json(to_json(wf)) == wf  # whatever loads is a workflow that round-trips


_WF = fault_workflow("/tmp/ctl", n=4)
PLAN_DOCS = [plan_to_json(plan_of(_WF, *PLANS[name])) for name in ("bundled", "fused")]


@LOADER
@given(data=st.data(), which=st.sampled_from(range(len(PLAN_DOCS))))
def test_plan_loader_only_raises_irerror(data, which):
    text = data.draw(mutated(PLAN_DOCS[which]))
    try:
        plan = plan_from_json(text, _WF)
    except IRError as err:
        assert err.problems and all(p.startswith("$") for p, _ in err.problems)
        return
    assert check_plan(plan, _WF) is plan
    assert plan_from_json(plan_to_json(plan), _WF) == plan


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash_the_loaders(data):
    for load in (from_json, lambda t: plan_from_json(t, _WF)):
        with contextlib.suppress(IRError):
            load(data)


# --------------------------------------------------------------------------- optimizer


@st.composite
def workflows(draw) -> Workflow:
    """A random DAG: each stage reads one or two earlier ones, the way its kind allows."""
    n = draw(st.integers(2, 6))
    stages: list[Stage] = []
    for i in range(n):
        sid = f"s{i}"
        ref = CallableRef(path="app.py", qualname=sid, code_hash=f"{i:064x}")
        if i == 0:
            stages.append(Stage(id=sid, callable=ref, bindings={"x": Const(value=1)}))
            continue
        src = stages[draw(st.integers(0, i - 1))]
        unmapped = [s for s in stages if not s.mapped and s.id != src.id]
        if src.mapped:
            if draw(st.booleans()):  # one to one, maybe with a broadcast input
                bindings: dict[str, Any] = {"x": Item(stage=src.id)}
                if unmapped and draw(st.booleans()):
                    bindings["cfg"] = Output(stage=draw(st.sampled_from(unmapped)).id)
                stages.append(
                    Stage(id=sid, callable=ref, bindings=bindings, parallelism=src.parallelism)
                )
            else:  # gather
                stages.append(Stage(id=sid, callable=ref, bindings={"x": Collect(stage=src.id)}))
        elif draw(st.booleans()):  # scatter
            width = draw(st.integers(2, 24))
            stages.append(
                Stage(id=sid, callable=ref, bindings={"x": Item(stage=src.id)}, parallelism=width)
            )
        else:  # chain, maybe a join
            bindings = {"x": Output(stage=src.id)}
            if unmapped and draw(st.booleans()):
                bindings["y"] = Output(stage=draw(st.sampled_from(unmapped)).id)
            stages.append(Stage(id=sid, callable=ref, bindings=bindings))
    return Workflow(name="random", stages=stages, edges=derive_edges(stages))


@st.composite
def modelled(draw) -> tuple[Workflow, Model]:
    wf = draw(workflows())
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    profiles = {}
    for s in wf.python_stages:
        # from milliseconds to minutes per instance (at most ~250 s at one vCPU: every
        # stage fits in the timeout alone, but fusing or bundling long ones would not)
        cpu = float(np.exp(rng.uniform(np.log(5), np.log(250_000))))
        wait = float(np.exp(rng.uniform(np.log(1), np.log(5_000))))
        threads = int(rng.choice([1, 1, 2, 4]))
        sigma = float(rng.uniform(0.02, 0.3))
        samples = {
            ("x86_64", m): (wait + cpu / min(vcpus(m), threads)) * rng.lognormal(0, sigma, 25)
            for m in (512, 1769, 3538)
        }
        profiles[s.id] = StageProfile(
            stage=s.id,
            code_hash=s.callable.code_hash,
            samples=samples,
            output_bytes=float(np.exp(rng.uniform(np.log(1e2), np.log(1e8)))),
            peak_memory_mb=float(rng.uniform(40, 3000)),
        )
    return wf, Model(profiles, draws=200, seed=seed)


@pytest.mark.slow
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=modelled(), slo=st.sampled_from(["1.1x", "1.5x", "3x", 60.0]))
def test_optimizer_plans_respect_lambda_limits(case, slo):
    wf, model = case
    planned = optimize(wf, model, slo)
    check_plan(planned.plan, wf)  # covers every Python stage once, shapes allowed
    space = Space(wf, model)
    for unit in planned.plan.units:
        assert MIN_MEMORY_MB <= unit.memory_mb <= MAX_MEMORY_MB
        assert unit.memory_mb >= space.min_memory(unit.stages)
    limit_ms = 0.8 * MAX_TIMEOUT_S * 1000
    assert all(u.p99_invocation_ms < limit_ms for u in planned.prediction.units), [
        (u.unit, round(u.p99_invocation_ms / 1000)) for u in planned.prediction.units
    ]
    if planned.meets_slo:
        assert planned.prediction.p95_s <= planned.slo_s + 1e-9
