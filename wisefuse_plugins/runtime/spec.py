"""The unit spec: what one Lambda function of a plan runs, fixed at deploy time.

The handler reads its spec from the deployment (``WISEFUSE_UNIT_SPEC``: a file beside the
code), never from the event: an event only says which run and which instances, and where
upstream values are. That is what keeps an invocation from running arbitrary code.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from wisefuse_plugins.ir import Binding, CallableRef, Item, Workflow
from wisefuse_plugins.ir.serde import write_atomic
from wisefuse_plugins.optimizer.plan import Plan, is_bundled_unit

SPEC_VERSION = 1


class StageSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    callable: CallableRef
    bindings: dict[str, Binding]
    mapped: bool


class UnitSpec(BaseModel):
    """Stages in execution order, and which outputs leave the unit.

    ``bundled``: every stage is mapped, and one invocation runs the instances the event
    names. ``exports``: outputs read outside the unit, or final results; they go to the
    store. ``scatter``: exported unmapped outputs that another unit maps over; they are
    also written element by element. ``mapped_upstream``: mapped stages outside the unit
    that it reads (their outputs are stored per instance).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = SPEC_VERSION
    workflow: str
    unit: str
    bundled: bool
    stages: list[StageSpec]
    exports: list[str]
    scatter: list[str]
    mapped_upstream: list[str]


def unit_spec(workflow: Workflow, plan: Plan, unit_id: str) -> UnitSpec:
    unit = plan.unit(unit_id)
    members = set(unit.stages)
    order = [s for s in workflow.topological_order() if s in members]
    exports, scatter = [], []
    for sid in order:
        outside = [d for d in workflow.successors(sid) if d not in members]
        if not workflow.successors(sid) or any(
            workflow.edge(sid, d).kind == "data" for d in outside
        ):
            exports.append(sid)
        if not workflow.stage(sid).mapped and any(
            isinstance(b, Item) and b.stage == sid and b.key is None
            for d in outside
            for b in workflow.stage(d).bindings.values()
        ):
            scatter.append(sid)
    mapped_upstream = sorted(
        {
            src
            for sid in order
            for src in workflow.stage(sid).upstream_ids()
            if src not in members and workflow.stage(src).mapped
        }
    )
    stages = []
    for sid in order:
        s = workflow.stage(sid)
        assert s.callable is not None  # a plan only holds python stages (check_plan)
        stages.append(StageSpec(id=s.id, callable=s.callable, bindings=s.bindings, mapped=s.mapped))
    return UnitSpec(
        workflow=workflow.name,
        unit=unit.id,
        bundled=is_bundled_unit(unit, workflow),
        stages=stages,
        exports=exports,
        scatter=scatter,
        mapped_upstream=mapped_upstream,
    )


def write_spec(spec: UnitSpec, path: str | Path) -> Path:
    return write_atomic(Path(path), spec.model_dump_json(indent=2))


def read_spec(path: str | Path) -> UnitSpec:
    return UnitSpec.model_validate_json(Path(path).read_text(encoding="utf-8"))
