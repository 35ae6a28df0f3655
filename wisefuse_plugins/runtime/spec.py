"""The unit spec: what one Lambda function of a plan runs, fixed at deploy time.

It is the serialised form of the plan's lowering (:mod:`wisefuse_plugins.plan.lower`):
the stages, reads and writes of one unit, plus the callables and bindings to run them.

The handler reads its spec from the deployment (``WISEFUSE_UNIT_SPEC``: a file beside the
code), never from the event: an event only says which run and which instances, and where
upstream values are. That is what keeps an invocation from running arbitrary code.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from wisefuse_plugins.ir import Binding, CallableRef, Workflow
from wisefuse_plugins.ir.serde import write_atomic
from wisefuse_plugins.plan.lower import CountOrigin, chunk_slot, count_source, unit_io
from wisefuse_plugins.plan.schema import Plan

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


def _bundles(workflow: Workflow, plan: Plan, unit_id: str) -> list[BundleSpec]:
    found = []
    for u in sorted(plan.units, key=lambda u: u.id):
        src = count_source(workflow, plan, u.id)
        if isinstance(src, CountOrigin) and src.unit == unit_id:
            found.append(
                BundleSpec(
                    unit=u.id,
                    slot=chunk_slot(u.id),
                    stage=src.stage,
                    key=src.key,
                    size=u.bundle_size,
                )
            )
    return found


def unit_spec(workflow: Workflow, plan: Plan, unit_id: str) -> UnitSpec:
    """Build the spec of ``unit_id`` (at deploy time; the handler only reads specs)."""
    io = unit_io(workflow, plan, unit_id)
    stages = []
    for sid in io.stages:
        s = workflow.stage(sid)
        assert s.callable is not None  # a plan only holds python stages (check_plan)
        stages.append(StageSpec(id=s.id, callable=s.callable, bindings=s.bindings, mapped=s.mapped))
    return UnitSpec(
        workflow=workflow.name,
        unit=io.unit,
        bundled=io.bundled,
        stages=stages,
        exports=list(io.exports),
        scatter=list(io.scatter),
        mapped_upstream=list(io.mapped_upstream),
        bundles=_bundles(workflow, plan, io.unit),
    )


def write_spec(spec: UnitSpec, path: str | Path) -> Path:
    return write_atomic(Path(path), spec.model_dump_json(indent=2))


def read_spec(path: str | Path) -> UnitSpec:
    return UnitSpec.model_validate_json(Path(path).read_text(encoding="utf-8"))
