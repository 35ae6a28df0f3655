"""``tests.plans.chains_plan`` (moved out of the package): valid on a diamond too."""

from __future__ import annotations

from tests.plans import chains_plan
from wisefuse_plugins.ir import (
    CallableRef,
    Collect,
    Const,
    Item,
    Output,
    Stage,
    Workflow,
    derive_edges,
)
from wisefuse_plugins.plan.schema import plan_problems


def _stage(sid: str, i: int, **kw) -> Stage:
    ref = CallableRef(path="app.py", qualname=sid, code_hash=f"{i:064x}")
    return Stage(id=sid, callable=ref, **kw)


def test_diamond_with_a_scatter_arm_gives_acyclic_units():
    # a -> b -> d one-to-one; a scatters to c, d gathers c: {a, b, d} would be before and after {c}
    stages = [
        _stage("a", 0, bindings={"x": Const(value=1)}),
        _stage("b", 1, bindings={"x": Output(stage="a")}),
        _stage(
            "c", 2, bindings={"x": Item(stage="a")}, parallelism=3, parallelism_source="expected"
        ),
        _stage("d", 3, bindings={"x": Output(stage="b"), "y": Collect(stage="c")}),
    ]
    wf = Workflow(name="diamond", stages=stages, edges=derive_edges(stages))
    plan = chains_plan(wf)
    assert not plan_problems(plan, wf)
    assert [u.stages for u in plan.units] == [["a", "b"], ["c"], ["d"]]


def test_chains_on_a_line_are_one_unit():
    stages = [
        _stage("a", 0, bindings={"x": Const(value=1)}),
        _stage("b", 1, bindings={"x": Output(stage="a")}),
        _stage("c", 2, bindings={"x": Output(stage="b")}),
    ]
    wf = Workflow(name="line", stages=stages, edges=derive_edges(stages))
    assert [u.stages for u in chains_plan(wf, memory_mb=512).units] == [["a", "b", "c"]]
