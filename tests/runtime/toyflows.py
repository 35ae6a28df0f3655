"""Workflows and plans over tests/runtime/toy/toy_app.py, built by hand (no adapter)."""

from __future__ import annotations

from pathlib import Path

from wisefuse_plugins.ir import (
    Collect,
    Const,
    Item,
    Output,
    Stage,
    Workflow,
    callable_ref,
    derive_edges,
)
from wisefuse_plugins.plan.schema import Plan, Unit, hashes_of

from .toy import toy_app

ROOT = Path(toy_app.__file__).resolve().parent


def stage(fn, sid: str | None = None, **kw) -> Stage:
    return Stage(id=sid or fn.__name__, callable=callable_ref(fn, ROOT), **kw)


def toy_workflow(
    n: int = 5, middle=toy_app.add, retries: int = 0, middle_args: dict | None = None
) -> Workflow:
    """make -> square (mapped) -> middle (mapped) -> total (gather), config -> total."""
    extra = {k: Const(value=v) for k, v in (middle_args or {}).items()}
    stages = [
        stage(toy_app.make, bindings={"n": Const(value=n)}),
        stage(
            toy_app.square,
            bindings={"x": Item(stage="make")},
            parallelism=n,
            parallelism_source="expected",
        ),
        stage(
            middle,
            "middle",
            bindings={"y": Item(stage="square"), **extra},
            parallelism=n,
            retries=retries,
        ),
        stage(toy_app.config),
        stage(
            toy_app.total,
            bindings={"values": Collect(stage="middle"), "base": Output(stage="config")},
        ),
    ]
    return Workflow(name="toy", stages=stages, edges=derive_edges(stages))


def expected_total(n: int = 5) -> dict:
    return {"sum": sum(i * i + 1 for i in range(n)) + 100, "n": n}


def plan(
    wf: Workflow,
    groups: list[list[str]],
    bundle: dict[str, int] | None = None,
    memory_mb: int = 1769,
) -> Plan:
    bundle = bundle or {}
    units = [
        Unit(id="-".join(g), stages=g, bundle_size=bundle.get(g[0], 1), memory_mb=memory_mb)
        for g in groups
    ]
    return Plan(workflow=wf.name, units=units, code_hashes=hashes_of(wf))


PLANS = {
    "no-fusion": ([["make"], ["square"], ["middle"], ["config"], ["total"]], {}),
    "chain-fused": ([["make"], ["square", "middle"], ["config", "total"]], {}),
    "bundles-of-2": ([["make"], ["square", "middle"], ["config"], ["total"]], {"square": 2}),
    "bundles-of-5": ([["make"], ["square", "middle"], ["config"], ["total"]], {"square": 5}),
    "scatter-fused": ([["make", "square"], ["middle"], ["config", "total"]], {"middle": 3}),
    "all-in-one": ([["make", "square", "middle", "config", "total"]], {}),
}
