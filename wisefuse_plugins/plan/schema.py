"""The execution plan: units of fused stages, their bundle size, memory and architecture.

A :class:`Unit` is one Lambda function. Its stages run in one invocation, passing values
in memory (fusion). A unit whose stages are all mapped runs ``ceil(N / bundle_size)``
invocations, each running ``bundle_size`` instances (bundling); a unit with an unmapped
stage runs once, with every instance of its mapped stages inside that invocation. Counting
them is the lowering's (:func:`wisefuse_plugins.plan.lower.invocation_count`).

:func:`check_plan` validates a plan against the workflow it was made for; every rule
names the unit and what to change. Plans are versioned JSON like the IR.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from wisefuse_plugins.ir import IRError, Workflow
from wisefuse_plugins.ir.graphs import adjacency, find_cycle, is_connected, topological_order
from wisefuse_plugins.ir.names import is_safe_name
from wisefuse_plugins.ir.nodes import EdgePattern
from wisefuse_plugins.ir.serde import dump_document, load_document, read_text, write_atomic
from wisefuse_plugins.plan.limits import MAX_MEMORY_MB, MIN_MEMORY_MB
from wisefuse_plugins.plan.scheduling import scheduling_problem

PLAN_FORMAT = "wisefuse-plan"
PLAN_VERSION = 1

if TYPE_CHECKING:
    import networkx as nx

Arch = Literal["x86_64", "arm64"]


class Unit(BaseModel):
    """One Lambda function of the plan."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    stages: list[str] = Field(min_length=1)
    bundle_size: int = Field(default=1, ge=1)
    memory_mb: int = Field(default=1769, ge=MIN_MEMORY_MB, le=MAX_MEMORY_MB)
    arch: Arch = "x86_64"


class Plan(BaseModel):
    """Units covering every Python stage of ``workflow`` exactly once.

    ``code_hashes`` records each stage's code hash when the plan was made, so a plan for
    an older version of the code is detected instead of silently run.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    workflow: str
    units: list[Unit]
    code_hashes: dict[str, str] = Field(default_factory=dict)
    meta: dict[str, JsonValue] = Field(default_factory=dict)

    def unit_of(self, stage_id: str) -> Unit | None:
        for u in self.units:
            if stage_id in u.stages:
                return u
        return None

    def unit(self, unit_id: str) -> Unit:
        for u in self.units:
            if u.id == unit_id:
                return u
        raise KeyError(f"plan has no unit {unit_id!r}")


def is_bundled_unit(unit: Unit, workflow: Workflow) -> bool:
    """True when every stage of the unit is mapped: it runs once per bundle of instances."""
    return all(workflow.stage(s).mapped for s in unit.stages)


def hashes_of(workflow: Workflow) -> dict[str, str]:
    """The code hash of every Python stage, as a plan records them."""
    return {s.id: s.callable.code_hash for s in workflow.python_stages if s.callable}


# --------------------------------------------------------------------------- rules

Problems = Iterator[tuple[str, str]]


def _names(plan: Plan, wf: Workflow) -> Problems:
    if plan.workflow != wf.name:
        yield "$.workflow", f"plan is for workflow {plan.workflow!r}, not {wf.name!r}"
    counts = Counter(u.id for u in plan.units)
    for i, u in enumerate(plan.units):
        if counts[u.id] > 1:
            yield f"$.units[{i}].id", f"unit id {u.id!r} is used {counts[u.id]} times"
        if not is_safe_name(u.id):
            yield (
                f"$.units[{i}].id",
                f"unit id {u.id!r} is not a valid Lambda name (1-64 chars of A-Z a-z 0-9 _ -)",
            )


def _coverage(plan: Plan, wf: Workflow) -> Problems:
    ids = {s.id for s in wf.stages}
    owner: dict[str, str] = {}
    for i, u in enumerate(plan.units):
        for s in u.stages:
            path = f"$.units[{i}].stages"
            if s not in ids:
                yield path, f"unit {u.id!r} names stage {s!r}, which the workflow does not have"
            elif not wf.stage(s).is_python:
                yield (
                    path,
                    f"unit {u.id!r} contains opaque stage {s!r} ({wf.stage(s).opaque_reason}); opaque stages stay in their framework",
                )
            elif s in owner:
                yield (
                    path,
                    f"stage {s!r} is in units {owner[s]!r} and {u.id!r}; each stage belongs to exactly one unit",
                )
            else:
                owner[s] = u.id
    for s in wf.python_stages:
        if s.id not in owner:
            yield "$.units", f"python stage {s.id!r} is in no unit; add it to a unit"


def _shape(plan: Plan, wf: Workflow) -> Problems:
    ids = {s.id for s in wf.stages}
    for i, u in enumerate(plan.units):
        members = [s for s in u.stages if s in ids]
        if len(members) != len(u.stages):
            continue  # reported by _coverage
        inside = set(members)
        if not is_connected(members, {s: wf.successors(s) for s in members}):
            yield (
                f"$.units[{i}].stages",
                f"unit {u.id!r} joins stages that are not connected: {members}",
            )
        if is_bundled_unit(u, wf):
            inner = [wf.edge(a, b) for a in members for b in wf.successors(a) if b in inside]
            if any(e.pattern != EdgePattern.ONE_TO_ONE for e in inner):
                yield (
                    f"$.units[{i}].stages",
                    f"unit {u.id!r} fuses mapped stages that are not linked instance to instance (one_to_one)",
                )
            counts = {wf.stage(s).parallelism for s in members}
            if len(counts) > 1:
                yield (
                    f"$.units[{i}].stages",
                    f"unit {u.id!r} fuses mapped stages with different parallelism {sorted(counts)}",
                )
        elif u.bundle_size != 1:
            yield (
                f"$.units[{i}].bundle_size",
                f"unit {u.id!r} has bundle_size {u.bundle_size} but contains unmapped stages; "
                "bundling applies only to units whose stages are all mapped",
            )


def _scheduling(plan: Plan, wf: Workflow) -> Problems:
    ids = {s.id for s in wf.stages}
    for i, u in enumerate(plan.units):
        problem = scheduling_problem(u.id, wf, [s for s in u.stages if s in ids])
        if problem:
            yield f"$.units[{i}].stages", problem


def _acyclic_units(plan: Plan, wf: Workflow) -> Problems:
    cycle = find_cycle(adjacency([u.id for u in plan.units], _unit_edges(plan, wf)))
    if not cycle:
        return
    loop = " -> ".join([*cycle, cycle[0]])
    yield (
        "$.units",
        f"units depend on each other in a cycle ({loop}): a unit may not contain both ends of a path that leaves it",
    )


def _code(plan: Plan, wf: Workflow) -> Problems:
    current = hashes_of(wf)
    for stage, h in plan.code_hashes.items():
        if stage in current and current[stage] != h:
            yield (
                f"$.code_hashes.{stage}",
                f"stage {stage!r} changed since the plan was made (code hash differs)",
            )


RULES: tuple[Callable[[Plan, Workflow], Problems], ...] = (
    _names,
    _coverage,
    _shape,
    _scheduling,
    _acyclic_units,
    _code,
)


def plan_problems(plan: Plan, workflow: Workflow) -> list[tuple[str, str]]:
    return [p for rule in RULES for p in rule(plan, workflow)]


def check_plan(plan: Plan, workflow: Workflow) -> Plan:
    """Raise :class:`IRError` when ``plan`` cannot run ``workflow``; return it otherwise."""
    found = plan_problems(plan, workflow)
    if found:
        stale = any("changed since" in r for _, r in found)
        raise IRError(
            found,
            what=f"plan for workflow {workflow.name!r}",
            hint="re-run `wisefuse optimize` for the current code" if stale else None,
        )
    return plan


def _unit_edges(plan: Plan, workflow: Workflow) -> list[tuple[str, str]]:
    """The dependencies between units and opaque stages (an edge per workflow edge)."""
    owner = {s: u.id for u in plan.units for s in u.stages}
    ends = ((owner.get(e.src, e.src), owner.get(e.dst, e.dst)) for e in workflow.edges)
    return [(a, b) for a, b in ends if a != b]


def _unit_nodes(plan: Plan, workflow: Workflow) -> list[str]:
    owned = {s for u in plan.units for s in u.stages}
    return [u.id for u in plan.units] + [s.id for s in workflow.stages if s.id not in owned]


def unit_graph(plan: Plan, workflow: Workflow) -> nx.DiGraph:
    """Units and opaque stages as nodes, their dependencies as edges (for orchestration)."""
    import networkx as nx

    g = nx.DiGraph()
    g.add_nodes_from(_unit_nodes(plan, workflow))
    g.add_edges_from(_unit_edges(plan, workflow))
    return g


def unit_order(plan: Plan, workflow: Workflow) -> list[str]:
    """The nodes of :func:`unit_graph` in topological order, ties in the graph's node order
    (without networkx: the drop-in rewrite calls this at every parse of a DAG file)."""
    return topological_order(adjacency(_unit_nodes(plan, workflow), _unit_edges(plan, workflow)))


# --------------------------------------------------------------------------- JSON


def plan_to_json(plan: Plan) -> str:
    return dump_document(PLAN_FORMAT, PLAN_VERSION, "plan", plan)


def plan_from_json(
    text: str | bytes, workflow: Workflow | None = None, *, what: str = "plan"
) -> Plan:
    """Parse a plan; with ``workflow``, also check that it can run that workflow."""
    plan = load_document(text, PLAN_FORMAT, {PLAN_VERSION}, "plan", Plan, what)
    if workflow is not None:
        try:
            check_plan(plan, workflow)
        except IRError as err:
            raise IRError(err.prefixed("$.plan").problems, what=what, hint=err.hint) from None
    return plan


def dump_plan(plan: Plan, path: str | Path) -> Path:
    return write_atomic(Path(path), plan_to_json(plan))


def load_plan(path: str | Path, workflow: Workflow | None = None) -> Plan:
    what = f"plan file {str(path)!r}"
    return plan_from_json(read_text(Path(path), what), workflow, what=what)


# --------------------------------------------------------------------------- simple plans


def single_stage_plan(workflow: Workflow, memory_mb: int = 1769, arch: Arch = "x86_64") -> Plan:
    """No fusion, no bundling: one unit per Python stage (how the workflow runs today)."""
    units = [
        Unit(id=s.id, stages=[s.id], memory_mb=memory_mb, arch=arch) for s in workflow.python_stages
    ]
    return Plan(workflow=workflow.name, units=units, code_hashes=hashes_of(workflow))
