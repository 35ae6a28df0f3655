"""How a (workflow, plan) becomes Airflow tasks: the shared shape of a rewrite and of an emitted DAG.

Nothing here imports Airflow: :func:`layout` decides, from the IR and the plan alone, which
tasks the rewritten DAG has and how values reach them, and both the in-process rewrite
(:func:`wisefuse_plugins.airflow.rewrite`) and the source emitter
(:func:`wisefuse_plugins.emitters.airflow.emit_dag`) build exactly that.

The rules:

- **One task per unit**, named after the original task id of the unit's last stage (in
  topological order). Its ``return_value`` XCom is that stage's value, so a consumer that
  pulls the original task id by hand (a Jinja template, ``ti.xcom_pull``) still finds it.
  The other exported stages of the unit are pushed under their original task ids.
- **A bundled unit is a mapped task** over chunks of ``bundle_size`` instance numbers.
  Airflow maps only over a ``return_value``, so the chunks come from a small
  ``<task>__chunks`` task that cuts ``range(n)`` into chunks of the plan's size. ``n`` is
  pushed by the task of the unit that first knows it (the one producing the list mapped
  over, through chains of bundled units: its handler response carries the count), or
  counted from an opaque upstream's XCom. A count fixed by the IR (a literal list) is
  written into the DAG instead. Each chunk pushes the list of its instances' values.
- **Opaque tasks stay**, with their dependencies. One that reads a Python stage's value
  through an XComArg reads the unit task directly when that stage is the unit's last one
  and the unit is not bundled; otherwise a ``<task>__xcom`` relay task gathers the value
  (flattening chunk lists) and returns it as ``return_value``.
- **Values from opaque tasks** that Python stages read are copied from XCom into the store
  by the reading unit's task before it invokes (see :class:`OpaqueInput`).
- Every stage whose value an opaque task may read (any edge to an opaque task, data or
  ordering: templates read XCom invisibly), and the last stage of every unit, are
  exported by the unit, so their values exist outside the Lambda invocation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

if TYPE_CHECKING:
    from wisefuse_plugins.ir import Workflow
    from wisefuse_plugins.plan.schema import Plan, Unit
    from wisefuse_plugins.runtime.spec import UnitSpec

# The IR, plan and spec models (pydantic) are imported by the functions that compute a
# layout, not here: the operators and a drop-in DAG's parse read only the records below
# (a parse builds its tasks from a prepared layout, see :mod:`.prepared`). The records are
# NamedTuples: a dataclass costs ~1 ms to make, at every parse in a fresh process.

RETURN_KEY = "return_value"
CHUNKS_SUFFIX = "__chunks"
RELAY_SUFFIX = "__xcom"


def count_key(unit_id: str) -> str:
    """The XCom key under which the counting unit's task pushes a bundled unit's instance count."""
    return f"wisefuse_count__{unit_id}"


class OpaqueInput(NamedTuple):
    """An opaque task's XCom that a unit reads: how to copy it into the store.

    ``mapped``: the opaque task is mapped (one value per map index, stored per instance);
    ``keys``: XCom keys read besides the whole value (``Output(key=...)``); ``elements``:
    a mapped stage of the unit maps over the value, so its elements are stored one by one.
    """

    task_id: str
    mapped: bool = False
    keys: tuple[str, ...] = ()
    elements: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "mapped": self.mapped,
            "keys": list(self.keys),
            "elements": self.elements,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OpaqueInput:
        return cls(
            task_id=str(data["task_id"]),
            mapped=bool(data.get("mapped", False)),
            keys=tuple(data.get("keys") or ()),
            elements=bool(data.get("elements", False)),
        )


class ChunkSource(NamedTuple):
    """Where a bundled unit's chunks come from.

    ``static``: fixed by the IR (``chunks`` is set). ``unit``: the task ``task_id`` pushes
    the instance count under XCom ``key``. ``opaque``: counted from the opaque task
    ``task_id`` (the length of its value, at ``key`` if set, or its number of map indexes
    when ``mapped``). ``size``: the plan's bundle size.
    """

    kind: Literal["static", "unit", "opaque"]
    size: int
    task_id: str | None = None  # the chunk task's source
    key: str | None = None
    mapped: bool = False
    chunks: list[list[int]] | None = None
    chunk_task_id: str | None = None  # the <task>__chunks task (not for static counts)


class UnitTask(NamedTuple):
    """One unit as one Airflow task (a mapped task when bundled)."""

    unit: Unit
    task_id: str
    spec: UnitSpec
    bundled: bool
    last_stage: str
    stage_tasks: dict[str, str]  # stage id -> original task id, for the unit's stages
    multiple_outputs: bool  # the last stage returned a dict unrolled into XComs
    opaque_inputs: dict[str, OpaqueInput]
    chunks: ChunkSource | None
    retries: int

    @property
    def xcom_keys(self) -> dict[str, str]:
        """Exported stage -> the XCom key its value is pushed under (the last: return_value)."""
        return {
            s: RETURN_KEY if s == self.last_stage else self.stage_tasks[s]
            for s in self.spec.exports
        }


class Relay(NamedTuple):
    """A ``<task>__xcom`` task that hands a stage's value to opaque consumers as return_value."""

    task_id: str
    stage: str
    source_task_id: str
    key: str
    flatten: bool  # the source is a mapped chunk task: concatenate its chunks' lists
    multiple_outputs: bool


class Layout:
    """The Airflow tasks of a rewritten workflow and the dependencies between them."""

    def __init__(
        self,
        workflow: Workflow,
        plan: Plan,
        units: list[UnitTask],
        opaque: list[str],
        relays: dict[str, Relay],
        edges: list[tuple[str, str]],
        task_of: dict[str, str] | None = None,
    ) -> None:
        self.workflow = workflow
        self.plan = plan
        self.units = units
        self.opaque = opaque  # opaque stage ids, kept as the original tasks (same task ids)
        self.relays = relays  # python stage id -> relay for opaque consumers
        self.edges = edges  # (upstream task id, downstream task id)
        self.task_of = task_of if task_of is not None else {}  # stage id -> task id

    def unit_task(self, unit_id: str) -> UnitTask:
        for u in self.units:
            if u.unit.id == unit_id:
                return u
        raise KeyError(unit_id)

    def xcom_source(self, stage_id: str) -> str:
        """The task an opaque consumer of ``stage_id`` reads (with the XComArg's own key)."""
        if stage_id in self.relays:
            return self.relays[stage_id].task_id
        return self.task_of[stage_id]

    @property
    def unit_of_stage(self) -> dict[str, UnitTask]:
        return {s: u for u in self.units for s in u.unit.stages}


def _widened_spec(workflow: Workflow, plan: Plan, unit: Unit) -> UnitSpec:
    """The unit's spec, also exporting what opaque tasks may read and the last stage."""
    from wisefuse_plugins.runtime.spec import unit_spec

    spec = unit_spec(workflow, plan, unit.id)
    members = set(unit.stages)
    last = spec.stages[-1].id
    wanted = set(spec.exports) | {last}
    for sid in members:
        if any(
            d not in members and not workflow.stage(d).is_python for d in workflow.successors(sid)
        ):
            wanted.add(sid)
    exports = [s.id for s in spec.stages if s.id in wanted]
    # The handler answers chunks of BundleSpec.size; Airflow takes only the count from them
    # and cuts chunks of the plan's size in the DAG, so a new bundle size changes no spec
    # (no redeploy, warm workers stay warm).
    bundles = [b.model_copy(update={"size": 1}) for b in spec.bundles]
    return spec.model_copy(update={"exports": exports, "bundles": bundles})


def _opaque_inputs(workflow: Workflow, unit: Unit) -> dict[str, OpaqueInput]:
    from wisefuse_plugins.ir import Collect, Item, Output

    found: dict[str, dict[str, Any]] = {}
    for sid in unit.stages:
        for b in workflow.stage(sid).bindings.values():
            if not isinstance(b, Output | Item | Collect):
                continue
            src = workflow.stage(b.stage)
            if src.is_python:
                continue
            entry = found.setdefault(
                src.id,
                {"task_id": src.name, "mapped": src.mapped, "keys": set(), "elements": False},
            )
            key = getattr(b, "key", None)
            if key is not None:
                entry["keys"].add(key)
            elif isinstance(b, Item) and not src.mapped:
                entry["elements"] = True
    return {
        sid: OpaqueInput(e["task_id"], e["mapped"], tuple(sorted(e["keys"])), e["elements"])
        for sid, e in sorted(found.items())
    }


def _opaque_origin(workflow: Workflow, plan: Plan, unit: Unit) -> tuple[str, str | None] | None:
    """The opaque stage (and key) a chain of bundled units maps over, if that is where it starts."""
    from wisefuse_plugins.ir import Item
    from wisefuse_plugins.plan.schema import is_bundled_unit

    owner = {s: u for u in plan.units for s in u.stages}
    order = workflow.topological_order()
    seen: set[str] = set()
    while unit.id not in seen and is_bundled_unit(unit, workflow):
        seen.add(unit.id)
        members = set(unit.stages)
        source: Item | None = None
        for sid in (s for s in order if s in members):
            source = next(
                (
                    b
                    for b in workflow.stage(sid).bindings.values()
                    if isinstance(b, Item) and b.stage not in members
                ),
                None,
            )
            if source is not None:
                break
        if source is None:
            return None
        if not workflow.stage(source.stage).is_python:
            return source.stage, source.key
        unit = owner[source.stage]
    return None


def _unique(name: str, taken: set[str]) -> str:
    out, n = name, 1
    while out in taken:
        n += 1
        out = f"{name}_{n}"
    taken.add(out)
    return out


def layout(
    workflow: Workflow, plan: Plan, *, reads: Mapping[str, set[str]] | None = None
) -> Layout:
    """Decide the tasks and dependencies of ``workflow`` rewritten under ``plan``.

    The plan must be valid for the workflow (see
    :func:`~wisefuse_plugins.plan.schema.plan_problems`). ``reads``: opaque stage id ->
    the Python stages whose values it reads through XComArgs (the IR keeps opaque tasks'
    inputs as ordering edges); without it every Python stage directly upstream of an opaque
    one counts as read.
    """
    from wisefuse_plugins.plan.schema import is_bundled_unit, unit_order

    order = unit_order(plan, workflow)
    units_by_id = {u.id: u for u in plan.units}
    taken = {s.name for s in workflow.stages}
    task_of: dict[str, str] = {s.id: s.name for s in workflow.stages if not s.is_python}
    unit_task_ids: dict[str, str] = {}
    specs: dict[str, UnitSpec] = {}
    for node in order:
        if node not in units_by_id:
            continue
        unit = units_by_id[node]
        specs[unit.id] = _widened_spec(workflow, plan, unit)
        last = specs[unit.id].stages[-1].id
        unit_task_ids[unit.id] = workflow.stage(last).name  # unique: one last stage per unit
        for s in unit.stages:
            task_of[s] = unit_task_ids[unit.id]

    tasks: list[UnitTask] = []
    for node in order:
        if node not in units_by_id:
            continue
        unit = units_by_id[node]
        spec = specs[unit.id]
        bundled = is_bundled_unit(unit, workflow)
        task_id = unit_task_ids[unit.id]
        chunks = None
        if bundled:
            chunks = _chunk_source(workflow, plan, unit, task_id, unit_task_ids, taken)
        last = spec.stages[-1].id
        tasks.append(
            UnitTask(
                unit=unit,
                task_id=task_id,
                spec=spec,
                bundled=bundled,
                last_stage=last,
                stage_tasks={s: workflow.stage(s).name for s in unit.stages},
                multiple_outputs=not workflow.stage(last).mapped
                and bool(workflow.stage(last).meta.get("multiple_outputs")),
                opaque_inputs=_opaque_inputs(workflow, unit),
                chunks=chunks,
                retries=max((workflow.stage(s).retries for s in unit.stages), default=0),
            )
        )

    by_stage = {s: t for t in tasks for s in t.unit.stages}
    relays: dict[str, Relay] = {}
    for s in workflow.python_stages:
        readers = [
            d
            for d in workflow.successors(s.id)
            if not workflow.stage(d).is_python and (reads is None or s.id in reads.get(d, ()))
        ]
        t = by_stage[s.id]
        if not readers or (s.id == t.last_stage and not t.bundled):
            continue
        relays[s.id] = Relay(
            task_id=_unique(f"{s.name}{RELAY_SUFFIX}", taken),
            stage=s.id,
            source_task_id=t.task_id,
            key=t.xcom_keys[s.id],
            flatten=t.bundled,
            multiple_outputs=not s.mapped and bool(s.meta.get("multiple_outputs")),
        )

    edges: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()

    def edge(a: str, b: str) -> None:
        if a != b and (a, b) not in seen:
            seen.add((a, b))
            edges.append((a, b))

    for e in workflow.edges:
        edge(task_of[e.src], task_of[e.dst])
    for t in tasks:
        if t.chunks is not None and t.chunks.chunk_task_id is not None:
            assert t.chunks.task_id is not None
            edge(t.chunks.task_id, t.chunks.chunk_task_id)
            edge(t.chunks.chunk_task_id, t.task_id)
    for r in relays.values():
        edge(r.source_task_id, r.task_id)
        for d in workflow.successors(r.stage):
            if not workflow.stage(d).is_python and (reads is None or r.stage in reads.get(d, ())):
                edge(r.task_id, task_of[d])
    return Layout(
        workflow=workflow,
        plan=plan,
        units=tasks,
        opaque=[s.id for s in workflow.stages if not s.is_python],
        relays=relays,
        edges=edges,
        task_of=task_of,
    )


def _chunk_source(
    workflow: Workflow,
    plan: Plan,
    unit: Unit,
    task_id: str,
    unit_task_ids: dict[str, str],
    taken: set[str],
) -> ChunkSource:
    from wisefuse_plugins.plan.lower import CountOrigin, chunks, count_source

    size = unit.bundle_size
    src = count_source(workflow, plan, unit.id)
    if isinstance(src, int):
        return ChunkSource("static", size, chunks=chunks(src, size))
    chunk_task = _unique(f"{task_id}{CHUNKS_SUFFIX}", taken)
    if isinstance(src, CountOrigin):
        return ChunkSource(
            "unit",
            size,
            task_id=unit_task_ids[src.unit],
            key=count_key(unit.id),
            chunk_task_id=chunk_task,
        )
    origin = _opaque_origin(workflow, plan, unit)
    if origin is None:  # pragma: no cover - count_source covers every other case
        raise ValueError(f"cannot tell how many instances bundled unit {unit.id!r} has")
    stage = workflow.stage(origin[0])
    return ChunkSource(
        "opaque",
        size,
        task_id=stage.name,
        key=origin[1],
        mapped=stage.mapped,
        chunk_task_id=chunk_task,
    )
