"""The exhaustive oracle: exact against brute force, never beaten on its grid, and the
pieces it shares with the optimizer (valid partitions, the incremental evaluator)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from wisefuse_plugins.model.predict import Model
from wisefuse_plugins.optimizer.oracle import oracle
from wisefuse_plugins.optimizer.partition import set_partitions, valid_partitions
from wisefuse_plugins.optimizer.search import PLANNERS, baseline, optimize
from wisefuse_plugins.optimizer.space import Space, bundle_candidates
from wisefuse_plugins.optimizer.state import State, q95
from wisefuse_plugins.plan.schema import Plan, Unit, check_plan, plan_problems

from .randomdags import random_workflow, realistic_profiles, realistic_workflow

GRID = (256, 1024, 1769, 3538, 10240)


def case(seed: int, n: int, width: int = 6, draws: int = 200):
    rng = np.random.default_rng([7, seed])
    wf = realistic_workflow(rng, n, max_width=width)
    return wf, Model(realistic_profiles(rng, wf), draws=draws, seed=seed)


def slo_of(wf, model, factor: float) -> float:
    return factor * baseline(wf, model, "user-max").prediction.p95_s


def brute_force(space: Space):
    """Score every plan on the grid with the model; the best key."""
    wf = space.workflow
    order = wf.topological_order()
    best = None
    for part in set_partitions([s.id for s in wf.python_stages]):
        units = [Unit(id=f"u{i}", stages=[s for s in order if s in b]) for i, b in enumerate(part)]
        if plan_problems(space.plan(units), wf):
            continue
        choices = []
        for u in units:
            sizes = bundle_candidates(space.instances(u)) if space.bundled(u) else [1]
            choices.append(
                [
                    u.model_copy(update={"bundle_size": b, "memory_mb": m})
                    for b in sizes
                    for m in space.memories(u.stages)
                ]
            )
        for combo in itertools.product(*choices):
            key = space.score(space.plan(list(combo))).key()
            if best is None or key < best:
                best = key
    return best


@pytest.mark.parametrize(("seed", "factor"), [(1, 1.5), (2, 1.1), (3, 3.0), (4, 0.6)])
def test_oracle_equals_brute_force_on_three_stages(seed, factor):
    wf, model = case(seed, 3, width=4)
    space = Space(wf, model, memory_grid=GRID, slo_s=slo_of(wf, model, factor))
    plan = oracle(space)
    check_plan(plan, wf)
    assert space.score(plan).key() == pytest.approx(brute_force(space), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("seed", range(6))
def test_oracle_is_never_beaten_on_its_grid(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 6))
    wf, model = case(100 + seed, n)
    slo = slo_of(wf, model, float(rng.uniform(1.2, 5)))
    best = baseline(wf, model, "oracle", slo, memory_grid=GRID)
    assert best.meets_slo  # User-Max is on the grid and meets any SLO >= 1x its P95
    ours = optimize(wf, model, slo, arches=("x86_64",), memory_grid=GRID)
    assert ours.meets_slo
    assert best.prediction.cost_usd <= ours.prediction.cost_usd * (1 + 1e-12)
    for name in PLANNERS:
        other = baseline(wf, model, name, slo, memory_grid=GRID)
        on_grid = all(
            u.memory_mb in GRID
            and u.bundle_size in bundle_candidates(wf.stage(u.stages[0]).parallelism)
            for u in other.plan.units
        )
        if other.meets_slo and on_grid:
            assert best.prediction.cost_usd <= other.prediction.cost_usd * (1 + 1e-12), name


def test_valid_partitions_are_what_plan_problems_accepts():
    for seed in range(8):
        rng = np.random.default_rng(seed)
        wf = realistic_workflow(rng, 6, max_width=5) if seed % 2 else random_workflow(rng, 6, 5)
        python = [s for s in wf.topological_order() if wf.stage(s).is_python]
        fast = {frozenset(map(frozenset, p)) for p in valid_partitions(wf, python)}
        slow = set()
        for part in set_partitions(python):
            units = [Unit(id=f"u{i}", stages=list(b)) for i, b in enumerate(part)]
            if not plan_problems(Plan(workflow=wf.name, units=units), wf):
                slow.add(frozenset(map(frozenset, part)))
        assert fast == slow


def test_oracle_refuses_too_many_stages():
    wf, model = case(5, 7)
    with pytest.raises(ValueError, match="too many"):
        oracle(Space(wf, model), max_stages=6)


def test_incremental_state_matches_the_model():
    """Finish times kept by State equal Model.predict's after any sequence of changes."""
    wf, model = case(11, 7, width=8)
    space = Space(wf, model, slo_s=slo_of(wf, model, 1.5))
    blocks = [(s.id,) for s in wf.python_stages]
    state = State(space, blocks)
    rng = np.random.default_rng(0)
    for _ in range(25):
        i = int(rng.choice(state.units))
        c = int(rng.integers(len(state.menus[i])))
        peeked = state.peek(i, state.menus[i].durations[c])
        state.set(i, c)
        assert np.array_equal(peeked, state.E)
        pred = model.predict(wf, state.plan())
        assert np.allclose(state.E / 1000, pred.samples_s, rtol=1e-12)
        assert state.cost == pytest.approx(pred.cost_usd, rel=1e-12)
        assert q95(state.E) / 1000 == pytest.approx(pred.p95_s, rel=1e-12)
        upper = state.bound(i, state.menus[i].durations)
        lower = state.lower(i, state.menus[i].durations)
        for c2 in range(len(state.menus[i])):
            exact = state.peek(i, state.menus[i].durations[c2])
            assert np.all(lower[c2] <= exact + 1e-6) and np.all(exact <= upper[c2] + 1e-6)
    tails = state.T.copy()
    state.full()
    assert np.allclose(tails, state.T)
