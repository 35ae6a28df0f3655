""":func:`from_history`: rebuild a flow's graph from past runs on the Prefect API alone.

Separate from the trace because it reads a different witness: no argument values, only
Prefect's identity-based ``task_inputs``, so it filters them (siblings, impossible times,
non-uniform links), merges all runs of one task into one stage, and guesses scatter vs
broadcast from type annotations.
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from wisefuse_plugins.adapters.prefect.context import lambda_problems
from wisefuse_plugins.adapters.prefect.errors import PrefectAdapterError, require_prefect
from wisefuse_plugins.adapters.prefect.load import find_flow
from wisefuse_plugins.adapters.prefect.refs import reference, workflow_source
from wisefuse_plugins.adapters.prefect.runs import (
    duration_ms,
    input_runs,
    read_task_runs,
    task_name,
)
from wisefuse_plugins.adapters.prefect.snapshot import jsonable
from wisefuse_plugins.ir import (
    Binding,
    Collect,
    ConstItem,
    Item,
    Output,
    Stage,
    StageKind,
    Workflow,
    derive_edges,
    safe_name,
)


def from_history(
    flow_name: str,
    *,
    limit: int = 1,
    root: str | Path | None = None,
    path: str | Path | None = None,
) -> Workflow:
    """Rebuild a flow's graph from its latest completed run on the Prefect API alone.

    ``limit`` runs (newest first) are read: the newest gives the graph, all of them the
    ``observed_ms`` samples. Task functions are found by importing the flow's file
    (``path``, or the file under ``root`` that defines a flow of that name) and matching
    Prefect's task keys; without them stages are opaque.

    Less precise than :func:`trace_flow` -- the API keeps no argument values, only
    identity-based links (see docs/prefect-adapter.md):

    * literal arguments are unknown: such parameters get no binding and are listed in
      ``Stage.meta["params_unknown"]`` (the stage stays ``python`` so the optimizer sees it,
      but the IR is not executable: ``Workflow.meta["executable"]`` is False). A mapped
      stage that iterated over a literal gets a placeholder ``ConstItem`` of ``None``\\ s;
    * all runs of one task are one stage (mapped when there are several): separate calls
      of a task -- a loop, a chain, two ``.map()`` calls -- are merged, since links between
      runs of one task cannot be told from the sibling collisions of the identity pitfall;
    * scatter vs broadcast of an unmapped upstream into a mapped stage is guessed from the
      type annotations (``Stage.meta["guessed"]``);
    * spurious inputs are dropped when they cannot be real (a sibling of the same mapped
      stage; a producer that finished after the consumer started; an input that only some
      instances of a mapped stage list), but a collision with an earlier producer cannot be
      told apart, and results Prefect does not track (small ints, bools, None) leave no edge.
    """
    require_prefect()
    from prefect.client.orchestration import get_client

    if limit < 1:
        raise PrefectAdapterError(f"limit must be at least 1, not {limit}")
    with get_client(sync_client=True) as client:
        flow_runs = _completed_runs(client, flow_name, limit)
        if not flow_runs:
            raise PrefectAdapterError(
                f"the Prefect API has no completed run of flow {flow_name!r}",
                hint="run the flow once, or check PREFECT_API_URL",
            )
        histories = [_History.read(client, fr) for fr in flow_runs]
    flow, flow_file = find_flow(flow_name, root, path)
    root_path = Path(root).resolve() if root else (flow_file.parent if flow_file else Path.cwd())
    objects = _objects_by_key(flow) if flow is not None else {}
    stages, control = histories[0].stages(objects, root_path, histories[1:])
    return Workflow(
        name=flow_name,
        stages=stages,
        edges=derive_edges(stages, control=control),
        source=workflow_source(flow_file, root_path, flow.fn.__name__ if flow else None),
        meta={
            "parameters": {k: jsonable(v) for k, v in (flow_runs[0].parameters or {}).items()},
            "flow_run_id": str(flow_runs[0].id),
            "built_by": "history",
            "executable": not any(s.meta.get("params_unknown") for s in stages),
        },
    )


def _completed_runs(client: Any, flow_name: str, limit: int) -> list[Any]:
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    return client.read_flow_runs(
        flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.COMPLETED]))
        ),
        sort=FlowRunSort.START_TIME_DESC,
        limit=limit,
    )


def _objects_by_key(flow: Any) -> dict[str, Any]:
    """Task key -> Task (and subflow name -> Flow) among the flow module's globals."""
    from prefect.flows import Flow
    from prefect.tasks import Task

    found: dict[str, Any] = {}
    for value in list(flow.fn.__globals__.values()):
        if isinstance(value, Task):
            found.setdefault(value.task_key, value)
            found.setdefault(f"name:{value.name}", value)
        elif isinstance(value, Flow) and value is not flow:
            found.setdefault(f"flow:{value.name}", value)
    return found


@dataclass(eq=False)
class _Node:
    """The runs of one task (one task key): one stage, in instance order.

    History cannot tell a run that really reads another run of the same task (a chain, a
    loop) from the identity pitfall's sibling links, so runs of one task are never split
    and links between them are dropped.
    """

    key: str
    runs: list[Any]
    name: str
    subflow: Any = None  # the child flow run, for a subflow's tracking task run

    @property
    def mapped(self) -> bool:
        return len(self.runs) > 1


class _History:
    """The task runs of one flow run, with Prefect's inputs filtered (see from_history)."""

    def __init__(self, runs: list[Any], children: dict[UUID, Any]) -> None:
        self.runs = {r.id: r for r in runs}
        self.children = children  # tracking task run id -> child flow run
        self.tracking = {child.id: rid for rid, child in children.items()}
        self.inputs = {r.id: self._inputs(r) for r in runs}
        self.nodes = self._nodes()
        self.node_of = {r.id: (n, i) for n in self.nodes for i, r in enumerate(n.runs)}

    @classmethod
    def read(cls, client: Any, flow_run: Any) -> _History:
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentTaskRunId

        runs = read_task_runs(client, flow_run.id)
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_task_run_id=FlowRunFilterParentTaskRunId(any_=[r.id for r in runs])
            )
        )
        return cls(runs, {c.parent_task_run_id: c for c in children})

    def _inputs(self, run: Any) -> dict[str, set[UUID]]:
        """Inputs that can be real: other tasks' runs of this flow run, finished before ``run`` began."""
        kept: dict[str, set[UUID]] = {}
        for param, items in (run.task_inputs or {}).items():
            if param == "__parents__":
                continue
            producers = {self.tracking.get(rid, rid) for rid in input_runs(items)}
            kept[param] = {
                rid
                for rid in producers
                if rid in self.runs
                and self.runs[rid].task_key != run.task_key  # itself or a sibling
                and _finished_before(self.runs[rid], run)
            }
        return kept

    def _nodes(self) -> list[_Node]:
        """One node per task key, nodes and runs in creation order."""
        nodes: dict[str, _Node] = {}
        for run in sorted(self.runs.values(), key=_created):
            node = nodes.get(run.task_key)
            if node is None:
                node = nodes[run.task_key] = _Node(run.task_key, [], task_name(run))
            node.runs.append(run)
            node.subflow = node.subflow or self.children.get(run.id)
        return list(nodes.values())

    # ---------------------------------------------------------------- stages

    def stages(
        self, objects: dict[str, Any], root: Path, older: list[_History]
    ) -> tuple[list[Stage], list[tuple[str, str]]]:
        ids: dict[int, str] = {}
        taken: set[str] = set()
        for node in self.nodes:
            obj = _object_for(node, objects)
            name = obj.name if obj is not None else node.name
            ids[id(node)] = safe_name(name, taken)
            taken.add(ids[id(node)])
        stages, control = [], []
        for node in self.nodes:  # creation order is topological: producers first
            bindings, notes = self._bindings(node, ids, objects)
            stages.append(self._stage(node, ids[id(node)], bindings, notes, objects, root, older))
            for run in node.runs:
                for rid in self.inputs[run.id].get("wait_for", ()):
                    src = self.node_of[rid][0]
                    if src is not node:
                        control.append((ids[id(src)], ids[id(node)]))
        return stages, sorted(set(control), key=control.index)

    def _bindings(
        self, node: _Node, ids: dict[int, str], objects: dict[str, Any]
    ) -> tuple[dict[str, Binding], dict[str, Any]]:
        """Bindings of ``node``'s parameters read from upstream runs, and notes for its meta."""
        found: dict[str, tuple[str, _Node]] = {}  # param -> (how, producer)
        ignored: dict[str, list[str]] = {}
        for param in _params(node):
            ranked = self._candidates(node, param)
            if ranked:
                found[param] = ranked[0]
            if len(ranked) > 1:
                ignored[param] = sorted(ids[id(src)] for _, src in ranked[1:])
        self._pair_order(node, found)
        scatter, guessed = _scatter_params(node, found, objects)
        bindings: dict[str, Binding] = {}
        for param, (how, src) in found.items():
            sid = ids[id(src)]
            if how == "pairs" or (how == "one" and param in scatter):
                bindings[param] = Item(stage=sid)
            elif how == "all":
                bindings[param] = Collect(stage=sid)
            else:
                bindings[param] = Output(stage=sid)
        notes: dict[str, Any] = {}
        if guessed:
            notes["guessed"] = guessed
        if ignored:
            notes["ignored_api_inputs"] = ignored
        return bindings, notes

    def _candidates(self, node: _Node, param: str) -> list[tuple[str, _Node]]:
        """Producers whose links to ``param`` are uniform, best first.

        A pairing beats a gather beats a whole output; among equals the most recent producer
        wins: a value passed through several tasks is linked to each of them, and the last
        one is the one that handed it over.
        """
        per_instance = [
            {self.node_of[r] for r in self.inputs[run.id].get(param, ())} for run in node.runs
        ]
        ranked = []
        for src in {n for inst in per_instance for n, _ in inst if n is not node}:
            seen = [{i for n, i in inst if n is src} for inst in per_instance]
            how = _pattern(node, src, seen)
            if how is not None:
                rank = ("pairs", "all", "one").index(how)
                ranked.append((rank, -_created(src.runs[0])[0], how, src))
        return [(how, src) for *_, how, src in sorted(ranked, key=lambda r: r[:2])]

    def _pair_order(self, node: _Node, found: dict[str, tuple[str, _Node]]) -> None:
        """Order a mapped node's instances so that instance i reads its producer's instance i."""
        for param, (how, src) in found.items():
            if how == "pairs":
                pos = {r.id: i for i, r in enumerate(src.runs)}
                node.runs.sort(
                    key=lambda run, p=param, s=src: min(
                        pos[r] for r in self.inputs[run.id][p] if self.node_of[r][0] is s
                    )
                )
                break
        self.node_of.update({r.id: (node, i) for i, r in enumerate(node.runs)})

    def _stage(
        self,
        node: _Node,
        sid: str,
        bindings: dict[str, Binding],
        notes: dict[str, Any],
        objects: dict[str, Any],
        root: Path,
        older: list[_History],
    ) -> Stage:
        unknown = [p for p in _params(node) if p not in bindings]
        meta: dict[str, Any] = {"how": "history", "task_key": node.key}
        if node.mapped and not any(isinstance(b, Item) for b in bindings.values()):
            slot = unknown[0] if unknown else "__mapped__"
            bindings[slot] = ConstItem(values=[None] * len(node.runs))
            meta["placeholder"] = slot
        if unknown:
            meta["params_unknown"] = unknown
        meta.update(notes)
        samples = [h.matching(node) for h in [self, *older]]
        meta["observed_ms"] = [
            d for runs in samples for r in runs if (d := duration_ms(r)) is not None
        ]
        obj = _object_for(node, objects)
        reasons, ref = [], None
        if node.subflow is not None:
            reasons.append(f"Prefect subflow {node.name!r}: its tasks stay in Prefect")
        if obj is None:
            reasons.append(
                f"task function of {node.key!r} not found: pass root= or path= to from_history"
            )
        else:
            ref, problem = reference(obj.fn, root)
            reasons += [problem] if problem else []
            if node.subflow is None:
                reasons += lambda_problems(obj)
        retries = 0 if node.subflow else getattr(node.runs[0].empirical_policy, "retries", 0)
        return Stage(
            id=sid,
            name=obj.name if obj is not None else node.name,
            kind=StageKind.OPAQUE if reasons else StageKind.PYTHON,
            callable=ref,
            bindings=bindings,
            parallelism=len(node.runs),
            parallelism_source="observed" if node.mapped else "static",
            opaque_reason="; ".join(reasons) if reasons else None,
            retries=int(retries or 0),
            meta=meta,
        )

    def matching(self, node: _Node) -> list[Any]:
        """This run's runs of the stage ``node`` describes (a subflow: its child flow run)."""
        for mine in self.nodes:
            if mine.key == node.key:
                return [mine.subflow] if mine.subflow is not None else mine.runs
        return []


def _params(node: _Node) -> list[str]:
    """The task's parameters, as Prefect recorded them (defaults included)."""
    inputs = node.runs[0].task_inputs or {}
    return [p for p in inputs if p not in ("__parents__", "wait_for")]


def _object_for(node: _Node, objects: dict[str, Any]) -> Any:
    """The Task (or subflow Flow) behind a node, by task key, else by name."""
    if node.subflow is not None:
        return objects.get(f"flow:{node.name}")
    return objects.get(node.key) or objects.get(f"name:{node.name}")


def _created(run: Any) -> tuple[float, int]:
    """When a task run was created: uuid7 ids carry it (with the order within a millisecond);
    others (a subflow's tracking run) fall back to their expected start."""
    if run.id.version == 7:
        return float(run.id.int >> 80), run.id.int
    when = run.expected_start_time or run.start_time
    return (when.timestamp() * 1000 if when else math.inf), 0


def _finished_before(producer: Any, consumer: Any) -> bool:
    end, start = producer.end_time, consumer.start_time
    return end is None or start is None or end <= start


def _pattern(consumer: _Node, producer: _Node, seen: list[set[int]]) -> str | None:
    """How ``consumer`` reads ``producer`` given which producer instances each instance lists.

    Real inputs are uniform across a mapped stage's instances; anything else is a collision.
    Returns ``one`` (an unmapped producer, read whole), ``all`` (a gather), ``pairs``
    (instance i reads instance i), or None.
    """
    n = len(producer.runs)
    if not all(seen):
        return None
    if not producer.mapped:
        return "one"
    if all(len(s) == n for s in seen):
        return "all"
    one_each = consumer.mapped and len(consumer.runs) == n and all(len(s) == 1 for s in seen)
    if one_each and len({next(iter(s)) for s in seen}) == n:
        return "pairs"
    return None


def _scatter_params(
    node: _Node, found: dict[str, tuple[str, _Node]], objects: dict[str, Any]
) -> tuple[set[str], list[str]]:
    """Which unmapped producers a mapped stage iterates over (history cannot tell; guess).

    A producer annotated to return a list, feeding a parameter that is not annotated as one,
    is a scatter; with no such evidence and no other source of items, the first candidate is.
    """
    whole = [p for p, (how, _) in found.items() if how == "one"]
    if not node.mapped or not whole:
        return set(), []
    consumer = _object_for(node, objects)
    evidence = set()
    for param in whole:
        src = found[param][1]
        producer = _object_for(src, objects)
        out = _listlike(_hints(producer).get("return"))
        into = _listlike(_hints(consumer).get(param))
        if out and into is not True:
            evidence.add(param)
    if evidence:
        return evidence, sorted(evidence)
    if any(how == "pairs" for how, _ in found.values()):
        return set(), []
    return {whole[0]}, [whole[0]]


def _hints(obj: Any) -> dict[str, Any]:
    fn = getattr(obj, "fn", None)
    if fn is None:
        return {}
    try:
        return typing.get_type_hints(fn)
    except Exception:
        return dict(getattr(fn, "__annotations__", {}))


def _listlike(annotation: Any) -> bool | None:
    """True for list/tuple/sequence-like annotations, False for others, None when absent."""
    import collections.abc as cabc

    if annotation is None:
        return None
    if isinstance(annotation, str):
        head = annotation.split("[", 1)[0].strip().rsplit(".", 1)[-1].lower()
        return head in ("list", "tuple", "sequence", "iterable", "set")
    origin = typing.get_origin(annotation) or annotation
    return (
        isinstance(origin, type)
        and issubclass(origin, list | tuple | set | frozenset | cabc.Sequence | cabc.Iterator)
        and not issubclass(origin, str | bytes)
    )
