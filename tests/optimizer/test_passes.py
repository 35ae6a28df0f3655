"""Each pass of the optimizer alone: a workflow, its model and a starting plan in, the plan
after that one pass out (input/expected pairs), and the rule each pass states for when it
applies. The toy workflow: make -> square (x4) -> middle (x4) -> total, config -> total."""

from __future__ import annotations

import numpy as np
import pytest

from wisefuse_plugins.model.predict import Model
from wisefuse_plugins.optimizer.baselines import user_max
from wisefuse_plugins.optimizer.passes import PASSES, choose_bundles, fuse, right_size
from wisefuse_plugins.optimizer.search import initial_plan
from wisefuse_plugins.optimizer.sizing import SMALL_UNITS
from wisefuse_plugins.optimizer.space import ArchError, Space
from wisefuse_plugins.plan.schema import plan_problems

from ..runtime.toyflows import plan as toy_plan
from ..runtime.toyflows import toy_workflow
from .randomdags import random_profiles, random_workflow
from .test_optimizer import CPU, model_for

APART = [["make"], ["square"], ["middle"], ["config"], ["total"]]


@pytest.fixture(scope="module")
def toy():
    wf = toy_workflow(n=4)
    model = model_for(wf, CPU, output_bytes=1e3)
    space = Space(wf, model)
    return wf, space, space.score(user_max(space)).p95_s


def settings(plan) -> list[tuple[list[str], int, int]]:
    return [(u.stages, u.bundle_size, u.memory_mb) for u in plan.units]


def test_the_rule_list_is_fuse_bundle_right_size():
    assert (fuse, choose_bundles, right_size) == PASSES


# --------------------------------------------------------------------------- fuse


@pytest.mark.parametrize(
    ("factor", "expected"),
    [
        # no SLO to meet: one invocation is cheapest (no hand-offs, no cold starts)
        (None, [(["make", "square", "middle", "config", "total"], 1, 128)]),
        # 1.5x User-Max's P95: the mapped stages keep their own unit (one-to-one fused)
        (1.5, [(["make"], 1, 128), (["square", "middle"], 1, 1536), (["config", "total"], 1, 256)]),
        (3.0, [(["make", "square", "middle", "config", "total"], 1, 1769)]),
    ],
)
def test_fuse_from_every_stage_alone(toy, factor, expected):
    _, space, ref = toy
    space = space if factor is None else space.with_slo(factor * ref)
    after = fuse(space, initial_plan(space))
    assert settings(after) == expected
    assert space.score(after).violation_s == 0


def test_fuse_only_makes_valid_units(toy):
    """Rule: a merge applies only when the merged unit is valid and the units acyclic."""
    wf, space, ref = toy
    for factor in (1.05, 1.1, 1.5, 2.0):
        after = fuse(space.with_slo(factor * ref), initial_plan(space))
        assert not plan_problems(after, wf), factor


# --------------------------------------------------------------------------- choose_bundles


@pytest.mark.parametrize(
    ("factor", "expected"),
    [
        # no SLO: all four instances in one invocation, at the least memory
        (None, [(["square"], 4, 128), (["middle"], 4, 128)]),
        (1.5, [(["square"], 1, 768), (["middle"], 1, 1536)]),
        (3.0, [(["square"], 1, 256), (["middle"], 1, 1024)]),
    ],
)
def test_choose_bundles_sets_only_bundled_units(toy, factor, expected):
    wf, space, ref = toy
    space = space if factor is None else space.with_slo(factor * ref)
    after = choose_bundles(space, toy_plan(wf, APART, memory_mb=1769))
    got = settings(after)
    assert [g for g in got if g[0][0] in ("square", "middle")] == expected
    # unmapped units are not this pass's: they keep their settings
    assert [g for g in got if g[0][0] not in ("square", "middle")] == [
        (["make"], 1, 1769),
        (["config"], 1, 1769),
        (["total"], 1, 1769),
    ]


def test_choose_bundles_leaves_large_plans_alone():
    """Rule: beyond SMALL_UNITS units the pass does not apply (right-sizing moves bundles)."""
    rng = np.random.default_rng(3)
    wf = random_workflow(rng, SMALL_UNITS + 4, max_width=6)
    space = Space(wf, Model(random_profiles(rng, wf), draws=100))
    plan = initial_plan(space)
    assert choose_bundles(space, plan) is plan


# --------------------------------------------------------------------------- right_size


@pytest.mark.parametrize(
    ("factor", "expected"),
    [
        (1.1, [(["make"], 1, 512), (["square", "middle"], 1, 1769), (["config"], 1, 128), (["total"], 1, 512)]),
        (1.5, [(["make"], 1, 128), (["square", "middle"], 1, 1536), (["config"], 1, 128), (["total"], 1, 256)]),
    ],
)  # fmt: skip
def test_right_size_meets_the_slo_keeping_the_fusion(toy, factor, expected):
    wf, space, ref = toy
    space = space.with_slo(factor * ref)
    start = toy_plan(wf, [["make"], ["square", "middle"], ["config"], ["total"]], memory_mb=128)
    assert space.score(start).violation_s > 0
    after = right_size(space, start)
    assert settings(after) == expected
    assert space.score(after).violation_s == 0


def test_right_size_without_an_slo_takes_each_units_cheapest(toy):
    wf, space, _ = toy
    start = toy_plan(wf, [["make"], ["square", "middle"], ["config"], ["total"]], memory_mb=10240)
    after = right_size(space, start)
    cheapest = [space.menu(tuple(u.stages)).units[0] for u in after.units]
    assert settings(after) == [(u.stages, u.bundle_size, u.memory_mb) for u in cheapest]


# --------------------------------------------------------------------------- the space


def test_passes_change_neither_the_slo_nor_the_space(toy):
    _, space, ref = toy
    tight = space.with_slo(1.2 * ref)
    assert tight is not space and tight.slo_s == 1.2 * ref and space.slo_s == float("inf")
    assert tight._menus is space._menus and tight._cache is not space._cache
    plan = initial_plan(tight)
    for rule in PASSES:
        plan = rule(tight, plan)
    assert tight.slo_s == 1.2 * ref
    other = space.variant(memory_grid=(128, 1769))
    assert other._menus is not space._menus and other.memory_grid == (128, 1769)


def test_asking_for_an_unprofiled_architecture_is_an_error(toy):
    wf, space, _ = toy
    with pytest.raises(ArchError, match="arm64"):
        Space(wf, space.model, arches=("x86_64", "arm64"))
