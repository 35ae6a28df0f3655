"""The unit spec: what one Lambda function of a plan runs, fixed at deploy time.

The handler reads its spec from the deployment (``WISEFUSE_UNIT_SPEC``: a file beside the
code), never from the event: an event only says which run and which instances, and where
upstream values are. That is what keeps an invocation from running arbitrary code.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from wisefuse_plugins.ir import Binding, CallableRef, ConstItem, Item, Workflow
from wisefuse_plugins.ir.serde import write_atomic
from wisefuse_plugins.plan.schema import Plan, is_bundled_unit

SPEC_VERSION = 1


class StageSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    callable: CallableRef
    bindings: dict[str, Binding]
    mapped: bool


class BundleSpec(BaseModel):
    """A bundled unit downstream whose instance count this unit is the first to know.

    Orchestrators that cannot count for themselves (Step Functions) take the bundled
    unit's chunk lists from this unit's response: ``"chunks": {slot: [[0, 1], [2, 3]]}``,
    ``size`` instances per chunk, counted from ``stage`` (an unmapped stage's list
    output, at ``key`` if set, or the number of instances of a mapped stage).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    unit: str
    slot: str
    stage: str
    key: str | None = None
    size: int


class UnitSpec(BaseModel):
    """Stages in execution order, and which outputs leave the unit.

    ``bundled``: every stage is mapped, and one invocation runs the instances the event
    names. ``exports``: outputs read outside the unit, or final results; they go to the
    store. ``scatter``: exported unmapped outputs that another unit maps over; they are
    also written element by element. ``mapped_upstream``: mapped stages outside the unit
    that it reads (their outputs are stored per instance). ``bundles``: the bundled units
    downstream whose chunk lists this unit's response carries (see :class:`BundleSpec`).
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
    bundles: list[BundleSpec] = Field(default_factory=list)


def chunk_slot(unit_id: str) -> str:
    """A name for ``unit_id`` that JSONPath accepts in dot notation, distinct per unit id.

    Step Functions paths need ``[A-Za-z_][A-Za-z0-9_]*`` members; unit ids may hold ``-``
    and start with a digit.
    """
    safe = unit_id.replace("-", "_")
    if safe == unit_id:
        return f"u_{unit_id}"
    return f"u_{safe}_{hashlib.sha1(unit_id.encode()).hexdigest()[:6]}"


def count_source(
    workflow: Workflow, plan: Plan, unit_id: str
) -> tuple[str, str, str | None] | int | None:
    """Where the number of instances of bundled unit ``unit_id`` becomes known.

    An ``int``: it is static (a literal list). A ``(unit, stage, key)``: the unbundled unit
    whose stage produces the list mapped over (or the mapped stage whose instances are
    paired one to one), following chains of bundled units back to it. None: not a
    bundled unit, or the count comes from a stage outside the plan (opaque).
    """
    owner = {s: u for u in plan.units for s in u.stages}
    unit = plan.unit(unit_id)
    seen: set[str] = set()
    order = workflow.topological_order()
    while is_bundled_unit(unit, workflow) and unit.id not in seen:
        seen.add(unit.id)
        members = set(unit.stages)
        source: Item | None = None
        for sid in (s for s in order if s in members):
            for b in workflow.stage(sid).bindings.values():
                if isinstance(b, ConstItem):
                    return len(b.values)
                if isinstance(b, Item) and b.stage not in members:
                    source = b
                    break
            if source is not None:
                break
        if source is None or source.stage not in owner:
            return None
        unit = owner[source.stage]
        if not is_bundled_unit(unit, workflow):
            key = None if workflow.stage(source.stage).mapped else source.key
            return unit.id, source.stage, key
    return None


def _bundles(workflow: Workflow, plan: Plan, unit_id: str) -> list[BundleSpec]:
    found = []
    for u in sorted(plan.units, key=lambda u: u.id):
        src = count_source(workflow, plan, u.id)
        if isinstance(src, tuple) and src[0] == unit_id:
            found.append(
                BundleSpec(
                    unit=u.id, slot=chunk_slot(u.id), stage=src[1], key=src[2], size=u.bundle_size
                )
            )
    return found


def unit_spec(workflow: Workflow, plan: Plan, unit_id: str) -> UnitSpec:
    """Build the spec of ``unit_id`` (at deploy time; the handler only reads specs)."""
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
        bundles=_bundles(workflow, plan, unit.id),
    )


def write_spec(spec: UnitSpec, path: str | Path) -> Path:
    return write_atomic(Path(path), spec.model_dump_json(indent=2))


def read_spec(path: str | Path) -> UnitSpec:
    return UnitSpec.model_validate_json(Path(path).read_text(encoding="utf-8"))
