"""Lowering a plan: from (workflow, plan, instance counts) to the invocations that run it.

Every orchestrator of a plan (the executor, the Lambda handler, the Airflow layout, the
Prefect planned run, the Step Functions emitter) asks the same questions, answered here
once:

- which stages a unit runs, in which order, and what it reads and writes
  (:func:`unit_io`);
- how many instances a mapped stage or a bundled unit has: **every** mapped binding of
  a stage must agree (:func:`agreed_count`, :func:`stage_instance_count`,
  :func:`unit_instance_count`); there is no "first binding wins". Before a run the same
  rule reads the sizes the IR expects (:func:`expected_instances`,
  :func:`invocation_count`: the model's estimate); during one, what the responses
  reported (:func:`take_counts`);
- which instances go in which invocation of a bundled unit (:func:`chunks`,
  :func:`unit_chunks`);
- where a bundled unit's count becomes known (:func:`count_source`) and the name its
  chunk lists travel under in Step Functions (:func:`chunk_slot`).

Counts are keyed as a run reports them (:func:`count_name`): a stage id for the
instances of a mapped stage or the elements of a scattered list, ``stage[key]`` for the
list at ``key`` of an unmapped stage's dict output.

This module imports only the IR and the plan schema (no networkx): the Lambda handler
imports it at every cold start.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from wisefuse_plugins.errors import WiseFuseError
from wisefuse_plugins.ir import Binding, ConstItem, Item, Workflow
from wisefuse_plugins.plan.schema import Plan, Unit, is_bundled_unit, unit_order


class LoweringError(WiseFuseError, ValueError):
    """A plan cannot be lowered with these counts: names the unit or stage and why."""


# --------------------------------------------------------------------------- chunks


def chunks(n: int, size: int) -> list[list[int]]:
    """Instance numbers ``0..n-1`` in chunks of ``size``; the last one may be shorter.

    Parameters
    ----------
    n
        Instances of the bundled unit.
    size
        The unit's bundle size (instances per invocation), at least 1.

    Examples
    --------
    >>> chunks(5, 2)
    [[0, 1], [2, 3], [4]]
    >>> chunks(0, 3)
    []
    """
    if size < 1:
        raise LoweringError(f"bundle size must be at least 1, got {size}")
    return [list(range(i, min(i + size, n))) for i in range(0, n, size)]


def chunk_slot(unit_id: str) -> str:
    """A name for ``unit_id`` that JSONPath accepts in dot notation, distinct per unit id.

    Step Functions paths need ``[A-Za-z_][A-Za-z0-9_]*`` members; unit ids may hold ``-``
    and start with a digit.

    Examples
    --------
    >>> chunk_slot("square")
    'u_square'
    >>> chunk_slot("square-middle")
    'u_square_middle_48b7e7'
    """
    safe = unit_id.replace("-", "_")
    if safe == unit_id:
        return f"u_{unit_id}"
    return f"u_{safe}_{hashlib.sha1(unit_id.encode()).hexdigest()[:6]}"


# --------------------------------------------------------------------------- counting


def keyed_count(stage: str, key: str) -> str:
    """The counts entry of the list at ``key`` in an unmapped stage's dict output.

    >>> keyed_count("split", "frames")
    'split[frames]'
    """
    return f"{stage}[{key}]"


def take_counts(counts: dict[str, int], outputs: Iterable[Mapping[str, Any]]) -> None:
    """Add to ``counts`` what a unit's response reports in its ``outputs`` records.

    An instance's record counts that mapped stage's instances (the largest number seen
    plus one: a bundled unit's chunks report theirs one invocation at a time); an unmapped
    stage's record gives the length of a list output (``count``) and of the lists in a
    dict output (``key_counts``, under :func:`keyed_count`). Every orchestrator that reads
    responses keeps its counts with this, so the lowering sees them keyed one way.

    Examples
    --------
    >>> counts = {}
    >>> take_counts(counts, [{"stage": "split", "instance": None, "count": 3},
    ...                      {"stage": "cfg", "instance": None, "key_counts": {"xs": 2}},
    ...                      {"stage": "work", "instance": 1}])
    >>> counts
    {'split': 3, 'cfg[xs]': 2, 'work': 2}
    """
    for out in outputs:
        stage, instance = out["stage"], out.get("instance")
        if instance is None:
            if "count" in out:
                counts[stage] = int(out["count"])
            for key, n in (out.get("key_counts") or {}).items():
                counts[keyed_count(stage, key)] = int(n)
        else:
            counts[stage] = max(counts.get(stage, 0), int(instance) + 1)


def count_name(workflow: Workflow, binding: Item) -> str:
    """The counts entry that says how many elements ``binding`` maps over.

    The upstream stage's id when it is mapped (its instances; ``key`` picks a field of
    each) or when the whole list is mapped over; :func:`keyed_count` for a list inside an
    unmapped stage's dict output.
    """
    if binding.key is None or workflow.stage(binding.stage).mapped:
        return binding.stage
    return keyed_count(binding.stage, binding.key)


def agreed_count(
    what: str, bindings: Mapping[str, Binding], count_of: Callable[[Item], int]
) -> int:
    """The one instance count that all mapped bindings in ``bindings`` agree on.

    A ``ConstItem`` counts its values; an ``Item`` counts what ``count_of`` says. The
    instances of a mapped stage pair its inputs element by element, so inputs of
    different lengths are an error, never truncated.

    Parameters
    ----------
    what
        What is counted, for messages: ``"stage 'x'"`` or ``"unit 'u'"``.
    bindings
        Name -> binding; names appear in the error (``param`` or ``stage.param``).
    count_of
        How many elements an ``Item`` binding maps over.

    Raises
    ------
    LoweringError
        No binding is mapped, or the mapped ones disagree (each is named with its count).

    Examples
    --------
    >>> from wisefuse_plugins.ir import ConstItem, Item
    >>> agreed_count("stage 's'", {"x": Item(stage="up"), "k": ConstItem(values=[1, 2, 3])},
    ...              lambda b: 3)
    3
    """
    lengths: dict[str, int] = {}
    for name, b in bindings.items():
        if isinstance(b, ConstItem):
            lengths[name] = len(b.values)
        elif isinstance(b, Item):
            lengths[name] = count_of(b)
    if not lengths:
        raise LoweringError(f"{what} is not mapped: none of its bindings is an item binding")
    if len(set(lengths.values())) > 1:
        found = ", ".join(
            f"{name}={n} ({_describe(bindings[name])})" for name, n in sorted(lengths.items())
        )
        raise LoweringError(
            f"{what} maps over inputs of different lengths: {found}",
            hint="map over lists of one length (zip them in the upstream task)",
        )
    return next(iter(lengths.values()))


def _describe(binding: Binding) -> str:
    if isinstance(binding, ConstItem):
        return "a constant list"
    assert isinstance(binding, Item)
    return f"items of {binding.stage!r}" + (f"[{binding.key!r}]" if binding.key else "")


def _lookup(what: str, workflow: Workflow, counts: Mapping[str, int]) -> Callable[[Item], int]:
    def count_of(b: Item) -> int:
        name = count_name(workflow, b)
        if name not in counts:
            raise LoweringError(
                f"{what} maps over {b.stage!r}, whose size is not known yet",
                hint=f"run the unit that produces {b.stage!r} first (counts lack {name!r})",
            )
        return counts[name]

    return count_of


def stage_instance_count(workflow: Workflow, stage_id: str, counts: Mapping[str, int]) -> int:
    """Instances of mapped stage ``stage_id``, from the counts of what it maps over.

    Examples
    --------
    >>> from wisefuse_plugins.ir import CallableRef, Item, Stage, Workflow, derive_edges
    >>> ref = lambda q: CallableRef(path="app.py", qualname=q, code_hash="0" * 64)
    >>> stages = [Stage(id="split", callable=ref("split")),
    ...           Stage(id="work", callable=ref("work"), bindings={"x": Item(stage="split")})]
    >>> wf = Workflow(name="wf", stages=stages, edges=derive_edges(stages))
    >>> stage_instance_count(wf, "work", {"split": 4})
    4
    """
    stage = workflow.stage(stage_id)
    what = f"stage {stage_id!r}"
    return agreed_count(what, stage.bindings, _lookup(what, workflow, counts))


def unit_instance_count(workflow: Workflow, unit: Unit, counts: Mapping[str, int]) -> int:
    """Instances of bundled ``unit``: what its stages map over from outside the unit.

    Stages inside a bundled unit pair their instances one to one, so the count comes from
    the mapped bindings that read outside the unit (and constant lists); all must agree.
    """
    members = set(unit.stages)
    outside = {
        f"{sid}.{name}": b
        for sid in unit.stages
        for name, b in workflow.stage(sid).bindings.items()
        if isinstance(b, ConstItem) or (isinstance(b, Item) and b.stage not in members)
    }
    what = f"unit {unit.id!r}"
    if not is_bundled_unit(unit, workflow):
        raise LoweringError(f"{what} is not bundled: one invocation runs all its instances")
    return agreed_count(what, outside, _lookup(what, workflow, counts))


def expected_instances(workflow: Workflow, unit: Unit) -> int:
    """Instances of bundled ``unit`` before any run: :func:`unit_instance_count` fed with
    the sizes the IR expects (each outside input a stage maps over is as long as that
    stage's ``parallelism``), so the model and the optimizer count as a run does.

    Examples
    --------
    >>> from wisefuse_plugins.ir import CallableRef, Item, Stage, Workflow, derive_edges
    >>> ref = lambda q: CallableRef(path="app.py", qualname=q, code_hash="0" * 64)
    >>> stages = [Stage(id="split", callable=ref("split")),
    ...           Stage(id="work", callable=ref("work"), parallelism=5,
    ...                 bindings={"x": Item(stage="split")})]
    >>> wf = Workflow(name="wf", stages=stages, edges=derive_edges(stages))
    >>> expected_instances(wf, Unit(id="work", stages=["work"], bundle_size=2))
    5
    """
    members = set(unit.stages)
    counts = {
        count_name(workflow, b): workflow.stage(sid).parallelism
        for sid in unit.stages
        for b in workflow.stage(sid).bindings.values()
        if isinstance(b, Item) and b.stage not in members
    }
    return unit_instance_count(workflow, unit, counts)


def invocation_count(
    workflow: Workflow, unit: Unit, counts: Mapping[str, int] | None = None
) -> int:
    """How many invocations one run makes of ``unit``: one for an unbundled unit, else one
    per chunk of :func:`unit_chunks`. ``counts``: as a run reports them; None: the sizes
    the IR expects (:func:`expected_instances`), the model's static estimate.
    """
    if not is_bundled_unit(unit, workflow):
        return 1
    n = (
        expected_instances(workflow, unit)
        if counts is None
        else unit_instance_count(workflow, unit, counts)
    )
    return len(chunks(n, unit.bundle_size))


def unit_chunks(
    workflow: Workflow, unit: Unit, counts: Mapping[str, int]
) -> list[list[int]] | None:
    """The instances of each invocation of ``unit``; None: not bundled, one invocation.

    An empty list: a bundled unit mapped over an empty list, nothing to run.
    """
    if not is_bundled_unit(unit, workflow):
        return None
    return chunks(unit_instance_count(workflow, unit, counts), unit.bundle_size)


class CountOrigin(NamedTuple):
    """The unbundled unit whose ``stage`` produces the list a bundled unit maps over."""

    unit: str
    stage: str
    key: str | None  # a list inside the stage's dict output


def count_source(workflow: Workflow, plan: Plan, unit_id: str) -> CountOrigin | int | None:
    """Where the number of instances of bundled unit ``unit_id`` becomes known.

    An ``int``: it is static (a literal list). A :class:`CountOrigin`: the unbundled unit
    whose stage produces the list mapped over (or the mapped stage whose instances are
    paired one to one), following chains of bundled units back to it. None: not a
    bundled unit, or the count comes from a stage outside the plan (opaque). When a unit
    maps over several inputs this follows the first; they agree (:func:`agreed_count`).
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
            return CountOrigin(unit.id, source.stage, key)
    return None


# --------------------------------------------------------------------------- reads, writes


@dataclass(frozen=True)
class UnitIO:
    """What one unit runs, reads and writes; fixed by the plan, the same for every run.

    ``stages``: in execution order. ``bundled``: every stage is mapped, and one invocation
    runs a chunk of instances. ``exports``: outputs read outside the unit, or final
    results; they go to the store. ``scatter``: exported unmapped outputs that another
    unit maps over; they are also written element by element. ``mapped_upstream``: mapped
    stages outside the unit that it reads (their outputs are stored per instance).
    """

    unit: str
    stages: tuple[str, ...]
    bundled: bool
    exports: tuple[str, ...]
    scatter: tuple[str, ...]
    mapped_upstream: tuple[str, ...]


def unit_io(workflow: Workflow, plan: Plan, unit_id: str) -> UnitIO:
    """The stages, reads and writes of ``unit_id`` (see :class:`UnitIO`)."""
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
    return UnitIO(
        unit=unit.id,
        stages=tuple(order),
        bundled=is_bundled_unit(unit, workflow),
        exports=tuple(exports),
        scatter=tuple(scatter),
        mapped_upstream=tuple(mapped_upstream),
    )


# --------------------------------------------------------------------------- the whole plan


@dataclass(frozen=True)
class LoweredUnit:
    """One unit of a run: what it runs, reads and writes, and its invocations.

    ``chunks``: the instances of each invocation of a bundled unit (possibly none), or
    None for an unbundled unit, which runs once (its mapped stages run all their
    instances inside that one invocation).
    """

    io: UnitIO
    chunks: tuple[tuple[int, ...], ...] | None

    @property
    def unit(self) -> str:
        return self.io.unit

    @property
    def invocations(self) -> list[list[int] | None]:
        """What each invocation's event names as ``instances`` (None: the whole unit)."""
        if self.chunks is None:
            return [None]
        return [list(c) for c in self.chunks]


def lower_unit(
    workflow: Workflow, plan: Plan, unit_id: str, counts: Mapping[str, int]
) -> LoweredUnit:
    """Lower one unit; ``counts`` must hold what a bundled unit maps over from outside."""
    unit = plan.unit(unit_id)
    found = unit_chunks(workflow, unit, counts)
    return LoweredUnit(
        io=unit_io(workflow, plan, unit_id),
        chunks=None if found is None else tuple(tuple(c) for c in found),
    )


def lower(workflow: Workflow, plan: Plan, counts: Mapping[str, int]) -> list[LoweredUnit]:
    """Every unit of ``plan`` in dependency order, with its invocations under ``counts``.

    ``counts`` holds, as a run reports them (:func:`count_name`), the sizes of everything
    a bundled unit maps over from outside: orchestrators that learn counts as the run goes
    lower one unit at a time (:func:`lower_unit`) when its upstream units have finished.

    Examples
    --------
    >>> from wisefuse_plugins.ir import CallableRef, Item, Stage, Workflow, derive_edges
    >>> from wisefuse_plugins.plan.schema import Plan, Unit
    >>> ref = lambda q: CallableRef(path="app.py", qualname=q, code_hash="0" * 64)
    >>> stages = [Stage(id="split", callable=ref("split")),
    ...           Stage(id="work", callable=ref("work"), bindings={"x": Item(stage="split")})]
    >>> wf = Workflow(name="wf", stages=stages, edges=derive_edges(stages))
    >>> plan = Plan(workflow="wf", units=[Unit(id="split", stages=["split"]),
    ...                                   Unit(id="work", stages=["work"], bundle_size=2)])
    >>> [(u.unit, u.invocations) for u in lower(wf, plan, {"split": 3})]
    [('split', [None]), ('work', [[0, 1], [2]])]
    """
    units = {u.id for u in plan.units}
    return [
        lower_unit(workflow, plan, uid, counts)
        for uid in unit_order(plan, workflow)
        if uid in units
    ]
