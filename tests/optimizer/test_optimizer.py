"""The planner on hand-built cases with known best plans, baselines, and constraints (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wisefuse_plugins.model.predict import Model
from wisefuse_plugins.model.profile import Platform
from wisefuse_plugins.optimizer.baselines import BASELINES
from wisefuse_plugins.optimizer.search import baseline, frontier, optimize
from wisefuse_plugins.optimizer.space import SLOError, Space, bundle_candidates, parse_slo
from wisefuse_plugins.plan.limits import MAX_MEMORY_MB, MAX_TIMEOUT_S
from wisefuse_plugins.plan.schema import Unit, check_plan

from ..model.synthetic import SIZES, profile
from ..runtime.toyflows import toy_workflow
from .randomdags import random_profiles, random_workflow

NO_ORCH = Platform(orchestration_ms=0.0, orchestration_usd_per_step=0.0)


def model_for(wf, cpu, output_bytes=1e3, platform=NO_ORCH, wait=None, peak=None):
    wait = wait or {}
    peak = peak or {}
    profiles = {}
    for i, s in enumerate(wf.python_stages):
        p = profile(
            s.id,
            s.callable.code_hash,
            cpu=cpu[s.id],
            wait=wait.get(s.id, 0.0),
            output_bytes=output_bytes,
            seed=i,
            noise=0.05,
        )
        p.peak_memory_mb = peak.get(s.id, 100.0)
        profiles[s.id] = p
    return Model(profiles, platform, draws=600)


CPU = {"make": 20.0, "square": 300.0, "middle": 300.0, "config": 5.0, "total": 40.0}


def test_parse_slo():
    assert parse_slo(12) == 12.0
    assert parse_slo("12.5s") == 12.5
    assert parse_slo("1.5x", user_max_p95_s=4.0) == 6.0
    for bad in ("fast", "-1", "0x", "1.5x"):
        with pytest.raises(SLOError):
            parse_slo(bad)


def test_bundle_candidates_give_distinct_invocation_counts():
    assert bundle_candidates(10) == [1, 2, 3, 4, 5, 10]
    big = bundle_candidates(10_900)
    assert big[0] == 1 and big[-1] == 10_900 and len(big) <= 24
    assert len({-(-10_900 // b) for b in big}) == len(big)


def test_big_hand_offs_get_fused():
    wf = toy_workflow(n=4)
    m = model_for(wf, CPU, output_bytes=40e6)  # 40 MB between every pair: the store dominates
    apart = baseline(wf, m, "power-tuning")
    result = optimize(wf, m, apart.prediction.p95_s)  # as fast as the unfused plan, at most
    fused = [u for u in result.plan.units if len(u.stages) > 1]
    assert fused, result.plan.units
    assert result.meets_slo
    assert result.prediction.cost_usd < apart.prediction.cost_usd


def test_tight_slo_buys_memory_and_loose_slo_saves():
    wf = toy_workflow(n=4)
    m = model_for(wf, CPU)
    tight = optimize(wf, m, "1.2x")
    loose = optimize(wf, m, "6x")
    assert tight.meets_slo and loose.meets_slo
    assert tight.prediction.p95_s <= tight.slo_s and loose.prediction.p95_s <= loose.slo_s
    assert loose.prediction.cost_usd <= tight.prediction.cost_usd
    assert max(u.memory_mb for u in tight.plan.units) > max(u.memory_mb for u in loose.plan.units)


def test_headroom_plans_under_the_slo_and_names_the_slo_asked_for():
    wf = toy_workflow(n=4)
    m = model_for(wf, CPU)
    plain = optimize(wf, m, "3x")
    under = optimize(wf, m, "3x", headroom=0.2)
    assert under.slo_s == pytest.approx(plain.slo_s)  # the SLO asked for, not the target
    assert under.meets_slo and under.plan.meta["headroom"] == 0.2
    assert under.plan.meta["slo_s"] == pytest.approx(plain.slo_s)
    assert under.prediction.p95_s <= 0.8 * plain.slo_s
    assert under.prediction.cost_usd >= plain.prediction.cost_usd  # less slack costs more
    with pytest.raises(ValueError, match="headroom"):
        optimize(wf, m, "3x", headroom=1.0)


def test_no_unit_below_the_smallest_profiled_memory_but_user_min_may_go():
    """Profiled at 512/1769/3538 MB: the optimizer and the oracle stay at 512 MB or more
    (below it memory pressure, not only the CPU share, sets the time); User-Min keeps its
    definition, the smallest memory that runs every function."""
    wf = toy_workflow(n=3)
    m = model_for(wf, {k: 1.0 for k in CPU})  # tiny stages: the cheapest is the smallest
    for planned in (optimize(wf, m, "50x"), baseline(wf, m, "oracle", "50x")):
        assert min(u.memory_mb for u in planned.plan.units) >= 512, planned.planner
    assert min(u.memory_mb for u in baseline(wf, m, "user-min").plan.units) < 512


def test_no_unit_above_the_vcpus_the_platform_gives():
    """On a 2-core host (the local platform) the optimizer keeps units at 2 vCPUs or less,
    even for a tight SLO that would buy more; User-Max keeps its definition."""
    import dataclasses

    wf = toy_workflow(n=12)

    def model(platform):
        m = model_for(wf, CPU, platform=platform)
        for p in m.profiles.values():
            p.parallel_fraction = 1.0  # bundles use every vCPU they get
        return m

    free = optimize(wf, model(NO_ORCH), 1e9, objective="latency")
    assert max(u.memory_mb for u in free.plan.units) > 2 * 1769  # what the cap prevents
    capped = model(dataclasses.replace(NO_ORCH, max_vcpus=2.0))
    for planned in (optimize(wf, capped, "1.1x"), optimize(wf, capped, 1e9, objective="latency")):
        assert max(u.memory_mb for u in planned.plan.units) <= 2 * 1769
    assert max(u.memory_mb for u in baseline(wf, capped, "user-max").plan.units) == 10240


def test_above_the_host_cores_only_where_profiled_there():
    """A share above the platform's vCPUs is emulated on the local backend: planned only
    for stages profiled at such a size (here 10,240 MB), where the model measured it."""
    import dataclasses

    wf = toy_workflow(n=12)
    capped = dataclasses.replace(NO_ORCH, max_vcpus=2.0)
    m = model_for(wf, CPU, platform=capped)
    for sid, p in m.profiles.items():
        high = profile(sid, p.code_hash, cpu=CPU[sid], sizes=(*SIZES, 10240))
        high.peak_memory_mb, high.parallel_fraction = 100.0, 1.0
        m.profiles[sid] = high
    fastest = optimize(wf, m, 1e9, objective="latency")
    assert max(u.memory_mb for u in fastest.plan.units) > 2 * 1769


def test_no_unit_runs_contending_instances_on_several_threads():
    """Instances that fight over the interpreter lock (parallel fraction < 0) run on one
    thread only: bundled at 1769 MB or less, or one per invocation."""
    wf = toy_workflow(n=8)
    m = model_for(wf, CPU)
    for sid in ("square", "middle"):
        m.profiles[sid].parallel_fraction = -0.4
    unit = Unit(id="u", stages=["square", "middle"], bundle_size=2, memory_mb=3538)
    assert m.contended(wf, unit)
    assert not m.contended(wf, unit.model_copy(update={"memory_mb": 1769}))
    assert not m.contended(wf, unit.model_copy(update={"bundle_size": 1}))
    for slo in ("1.2x", "3x", 1e9):
        planned = optimize(wf, m, slo)
        assert not any(m.contended(wf, u) for u in planned.plan.units), planned.plan.units
    assert m.contended(wf, *baseline(wf, m, "faastlane").plan.units)  # keeps its definition


def test_unreachable_slo_returns_the_fastest_plan_and_says_so():
    wf = toy_workflow(n=4)
    m = model_for(wf, CPU)
    result = optimize(wf, m, 0.001)
    fastest = optimize(wf, m, 1e9, objective="latency")
    assert not result.meets_slo
    assert result.prediction.p95_s == pytest.approx(fastest.prediction.p95_s, rel=0.05)


def test_memory_never_below_what_a_stage_needs():
    wf = toy_workflow(n=4)
    m = model_for(wf, CPU, peak={"square": 2000.0})
    result = optimize(wf, m, "10x")
    unit = next(u for u in result.plan.units if "square" in u.stages)
    assert unit.memory_mb >= 2200
    assert baseline(wf, m, "user-min").plan.units[0].memory_mb >= 2200


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_baselines_give_valid_plans_with_their_shape(name):
    wf = toy_workflow(n=6)
    m = model_for(wf, CPU)
    planned = baseline(wf, m, name)
    check_plan(planned.plan, wf)
    units = planned.plan.units
    if name == "user-max":
        assert {u.memory_mb for u in units} == {MAX_MEMORY_MB} and len(units) == 5
    if name == "faastlane":
        assert len(units) == 1
    if name == "photons":
        assert {u.bundle_size for u in units if u.stages[0] in ("square", "middle")} == {6}


def test_ours_is_no_worse_than_any_baseline_that_meets_the_slo():
    wf = toy_workflow(n=8)
    m = model_for(wf, CPU, output_bytes=5e6)
    for slo in ("1.5x", "3x"):
        ours = optimize(wf, m, slo)
        assert ours.meets_slo
        for name in BASELINES:
            other = baseline(wf, m, name, slo)
            if other.meets_slo:
                assert ours.prediction.cost_usd <= other.prediction.cost_usd * 1.001, name


def test_frontier_is_pareto():
    wf = toy_workflow(n=4)
    m = model_for(wf, CPU)
    points = frontier(wf, m, points=6)
    assert len(points) >= 2
    p95 = [p.prediction.p95_s for p in points]
    cost = [p.prediction.cost_usd for p in points]
    assert p95 == sorted(p95) and cost == sorted(cost, reverse=True)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), n=st.integers(3, 6), slo=st.sampled_from(["1.2x", "2x", "5x"]))
def test_constraints_hold_on_random_workflows(seed, n, slo):
    rng = np.random.default_rng(seed)
    wf = random_workflow(rng, n, max_width=12)
    m = Model(random_profiles(rng, wf), draws=300)
    result = optimize(wf, m, slo)
    check_plan(result.plan, wf)
    space = Space(wf, m)
    for unit in result.plan.units:
        assert 128 <= unit.memory_mb <= MAX_MEMORY_MB
        assert unit.memory_mb >= space.min_memory(unit.stages)
    assert all(u.p99_invocation_ms < 0.8 * MAX_TIMEOUT_S * 1000 for u in result.prediction.units)
    if result.meets_slo:
        assert result.prediction.p95_s <= result.slo_s + 1e-9
