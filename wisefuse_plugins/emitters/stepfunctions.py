"""Step Functions: a (workflow, plan) as an Amazon States Language state machine.

Shape of the machine:

- a ``Pass`` state first keeps only ``run_id`` from the execution input (``{"run_id":
  "r-1"}``), plus the chunk lists fixed by the plan;
- one ``Task`` state (``arn:aws:states:::lambda:invoke``) per unbundled unit, with a
  ``Retry`` on Lambda service errors and throttling, and one on any task failure as often
  as the unit's stages allow (``Stage.retries``);
- one ``Map`` state per bundled unit (``MaxConcurrency``), iterating over the unit's
  chunks of instances: each iteration invokes the function with ``{"run_id",
  "instances"}``;
- ``Parallel`` states for independent branches of the unit DAG.

Events carry only ``run_id``, ``instances`` (a Map iteration) and ``raise_errors`` (so a
failed unit is a Lambda ``FunctionError`` that ``Retry`` sees): the handler reads its
inputs from the store and counts upstream instances there itself.

How a Map gets its items: the number of instances is known only at run time (the length
of an upstream list). The unbundled unit that produces that list (followed back through
chains of bundled units, see :func:`~wisefuse_plugins.plan.lower.count_source`) lists
the bundled unit in its spec's ``bundles``, and its handler response carries
``"chunks": {slot: [[0, 1], [2, 3], [4]]}``. That Task's ``ResultSelector`` keeps only
those lists, at ``$.<producer slot>`` in the state; the Map's ``ItemsPath`` points there.
Counts fixed in the IR (a literal list) are written into the first ``Pass`` state, at
``$.static``. A ``Parallel`` state merges its branches' outputs with ``States.JsonMerge``
(shallow: each producer has its own top-level key), so the state stays one flat object
``{"run_id", "static"?, "<producer slot>": {...}}``. Paths index the Parallel's output
only as ``$[i]``, which AWS and moto's interpreter read alike.

A unit DAG is turned into sequences and parallel branches without losing parallelism
where it is series-parallel; otherwise (an "N" shape) some units wait for a unit they do
not depend on, which costs latency, never correctness.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any, Union

import networkx as nx

from wisefuse_plugins.errors import WiseFuseError
from wisefuse_plugins.ir import Workflow
from wisefuse_plugins.plan.lower import chunk_slot, chunks, count_source
from wisefuse_plugins.plan.schema import Plan, Unit, check_plan, is_bundled_unit, unit_graph

LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
MAX_STATE_NAME = 80
#: AWS's recommended retrier for Lambda tasks, plus throttling.
SERVICE_ERRORS = [
    "Lambda.ClientExecutionTimeoutException",
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
]
STATIC_SLOT = "static"
#: Step Functions allows this many nested intrinsic function calls in one field.
MAX_INTRINSIC_NESTING = 10

Step = Union[str, "list[list[Step]]"]  # a unit id, or parallel branches (each a sequence)


class EmitError(WiseFuseError):
    """The plan cannot be expressed as a state machine."""


class _Names:
    """Unique state names of at most 80 characters."""

    def __init__(self) -> None:
        self.taken: set[str] = set()

    def take(self, base: str) -> str:
        base = base[:MAX_STATE_NAME]
        name, n = base, 1
        while name in self.taken:
            n += 1
            suffix = f" {n}"
            name = base[: MAX_STATE_NAME - len(suffix)] + suffix
        self.taken.add(name)
        return name


def check_emittable(workflow: Workflow, plan: Plan) -> None:
    """Raise :class:`EmitError` for plans Step Functions cannot run (opaque stages)."""
    units = {u.id for u in plan.units}
    opaque = sorted(n for n in unit_graph(plan, workflow).nodes if n not in units)
    if opaque:
        reasons = ", ".join(
            f"{s!r} ({workflow.stage(s).opaque_reason or 'not a Python function'})" for s in opaque
        )
        raise EmitError(
            f"Step Functions cannot run the opaque stages {reasons} of workflow {workflow.name!r}",
            hint="run this workflow through its Airflow or Prefect integration, which keeps "
            "opaque tasks in place, or deploy without a state machine (--no-state-machine)",
        )
    for u in plan.units:
        if is_bundled_unit(u, workflow) and count_source(workflow, plan, u.id) is None:
            raise EmitError(
                f"cannot tell where the instance count of bundled unit {u.id!r} comes from",
                hint="a bundled unit must map over a literal list or an upstream unit's output",
            )


def _decompose(g: nx.DiGraph, nodes: set[str], rank: Mapping[str, int]) -> list[Step]:
    """A sequence of steps that runs ``nodes`` respecting every edge of ``g`` among them."""
    sub = g.subgraph(nodes)
    components = sorted(
        (set(c) for c in nx.weakly_connected_components(sub)),
        key=lambda c: min(rank[n] for n in c),
    )
    if len(components) > 1:
        return [[_decompose(g, c, rank) for c in components]]
    if len(nodes) == 1:
        return [next(iter(nodes))]
    order = list(nx.lexicographical_topological_sort(sub, key=rank.__getitem__))
    ancestors = {n: nx.ancestors(sub, n) for n in order}
    for k in range(1, len(order)):
        head = set(order[:k])
        if all(head <= ancestors[n] for n in order[k:]):  # a cut that loses no parallelism
            return _decompose(g, head, rank) + _decompose(g, nodes - head, rank)
    sources = {n for n in nodes if not any(p in nodes for p in g.predecessors(n))}
    return _decompose(g, sources, rank) + _decompose(g, nodes - sources, rank)


def _merge(paths: list[str]) -> str:
    """A JSONPath / intrinsic expression that shallow-merges the objects at ``paths``."""
    if len(paths) == 1:
        return paths[0]
    mid = len(paths) // 2
    return f"States.JsonMerge({_merge(paths[:mid])}, {_merge(paths[mid:])}, false)"


class _Emitter:
    def __init__(
        self,
        workflow: Workflow,
        plan: Plan,
        arns: Mapping[str, str],
        max_concurrency: int,
    ) -> None:
        self.workflow = workflow
        self.plan = plan
        self.arns = arns
        self.max_concurrency = max_concurrency
        self.names = _Names()
        self.parallels = 0
        self.static: dict[str, list[list[int]]] = {}
        self.produces: dict[str, list[str]] = {}  # producer unit -> bundled units it counts
        self.items_path: dict[str, str] = {}
        for u in plan.units:
            if not is_bundled_unit(u, workflow):
                continue
            src = count_source(workflow, plan, u.id)
            if isinstance(src, int):
                self.static[chunk_slot(u.id)] = chunks(src, u.bundle_size)
                self.items_path[u.id] = f"$.{STATIC_SLOT}.{chunk_slot(u.id)}"
            else:
                assert src is not None  # check_emittable
                self.produces.setdefault(src.unit, []).append(u.id)
                self.items_path[u.id] = f"$.{chunk_slot(src.unit)}.{chunk_slot(u.id)}"

    def retry(self, unit: Unit) -> list[dict[str, Any]]:
        retriers: list[dict[str, Any]] = [
            {
                "ErrorEquals": SERVICE_ERRORS,
                "IntervalSeconds": 2,
                "MaxAttempts": 6,
                "BackoffRate": 2.0,
                "JitterStrategy": "FULL",
            }
        ]
        retries = max(self.workflow.stage(s).retries for s in unit.stages)
        if retries:
            retriers.append(
                {
                    "ErrorEquals": ["States.ALL"],
                    "IntervalSeconds": 1,
                    "MaxAttempts": retries,
                    "BackoffRate": 2.0,
                }
            )
        return retriers

    def invoke(self, unit: Unit, payload: dict[str, Any]) -> dict[str, Any]:
        return {
            "Type": "Task",
            "Resource": LAMBDA_INVOKE,
            "Parameters": {
                "FunctionName": self.arns[unit.id],
                "Payload": {**payload, "raise_errors": True},
            },
            "Retry": self.retry(unit),
        }

    def unit_state(self, unit: Unit) -> tuple[str, dict[str, Any]]:
        if not is_bundled_unit(unit, self.workflow):
            state = self.invoke(unit, {"run_id.$": "$.run_id"})
            consumers = self.produces.get(unit.id)
            if consumers:
                state["ResultSelector"] = {
                    f"{chunk_slot(c)}.$": f"$.Payload.chunks.{chunk_slot(c)}" for c in consumers
                }
                state["ResultPath"] = f"$.{chunk_slot(unit.id)}"
            else:
                state["ResultPath"] = None
            return self.names.take(unit.id), state
        name = self.names.take(f"{unit.id} (bundles)")
        inner_name = self.names.take(unit.id)
        inner = self.invoke(unit, {"run_id.$": "$.run_id", "instances.$": "$.instances"})
        inner.update({"ResultPath": None, "OutputPath": None, "End": True})
        return name, {
            "Type": "Map",
            "Comment": f"{unit.bundle_size} instance(s) of {', '.join(unit.stages)} per invocation",
            "ItemsPath": self.items_path[unit.id],
            "ItemSelector": {"run_id.$": "$.run_id", "instances.$": "$$.Map.Item.Value"},
            "MaxConcurrency": self.max_concurrency,
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "INLINE"},
                "StartAt": inner_name,
                "States": {inner_name: inner},
            },
            "ResultPath": None,
        }

    def produced_in(self, steps: list[Step]) -> bool:
        for step in steps:
            if isinstance(step, str):
                if step in self.produces:
                    return True
            elif any(self.produced_in(branch) for branch in step):
                return True
        return False

    def sequence(self, steps: list[Step]) -> tuple[str, dict[str, Any]]:
        """States of a sequence of steps, chained; returns (StartAt, States)."""
        states: dict[str, Any] = {}
        names = []
        for step in steps:
            if isinstance(step, str):
                name, state = self.unit_state(self.plan.unit(step))
            else:
                name, state = self.parallel(step)
            states[name] = state
            names.append(name)
        for here, nxt in itertools.pairwise(names):
            states[here]["Next"] = nxt
        states[names[-1]]["End"] = True
        return names[0], states

    def parallel(self, branches: list[list[Step]]) -> tuple[str, dict[str, Any]]:
        self.parallels += 1
        name = self.names.take(f"Parallel {self.parallels}")
        rendered = []
        for branch in branches:
            start, states = self.sequence(branch)
            rendered.append({"StartAt": start, "States": states})
        producing = [f"$[{i}]" for i, b in enumerate(branches) if self.produced_in(b)]
        if _depth(len(producing)) > MAX_INTRINSIC_NESTING:
            raise EmitError(
                f"{len(producing)} parallel branches produce chunk lists; Step Functions nests "
                f"at most {MAX_INTRINSIC_NESTING} intrinsic functions"
            )
        return name, {
            "Type": "Parallel",
            "Branches": rendered,
            # every branch passes run_id and the chunk lists it received; merging the
            # branches that add chunk lists (or taking branch 0) gives one flat state again
            "ResultSelector": {"merged.$": _merge(producing or ["$[0]"])},
            "OutputPath": "$.merged",
        }


def _depth(n: int) -> int:
    depth = 0
    while n > 1:
        n = (n + 1) // 2
        depth += 1
    return depth


def to_asl(
    workflow: Workflow,
    plan: Plan,
    function_arns: Mapping[str, str],
    *,
    max_concurrency: int = 16,
    comment: str | None = None,
) -> dict[str, Any]:
    """The state machine (ASL as a dict) that runs ``workflow`` under ``plan``.

    ``function_arns``: unit id -> the Lambda function (version) ARN to invoke.
    ``max_concurrency``: concurrent invocations per Map state (0: no limit).
    Start an execution with input ``{"run_id": "<id>"}``.
    """
    check_plan(plan, workflow)
    check_emittable(workflow, plan)
    missing = sorted(u.id for u in plan.units if u.id not in function_arns)
    if missing:
        raise EmitError(f"no function ARN for units {missing}", hint="deploy the plan first")
    if max_concurrency < 0:
        raise EmitError(f"max_concurrency must be >= 0, got {max_concurrency}")
    em = _Emitter(workflow, plan, function_arns, max_concurrency)
    graph = unit_graph(plan, workflow)
    rank = {u.id: i for i, u in enumerate(plan.units)}
    steps = _decompose(graph, set(graph.nodes), rank)
    start_name = em.names.take("Start")
    first, states = em.sequence(steps)
    start = {
        "Type": "Pass",
        "Comment": "keep run_id from the execution input; chunk lists fixed by the plan",
        "Parameters": {"run_id.$": "$.run_id", **({STATIC_SLOT: em.static} if em.static else {})},
        "Next": first,
    }
    return {
        "Comment": comment or f"wisefuse: workflow {workflow.name}, {len(plan.units)} unit(s)",
        "StartAt": start_name,
        "States": {start_name: start, **states},
    }


def state_names(asl: Mapping[str, Any]) -> list[str]:
    """Every state name in a machine, nested ones included (for checks and tests)."""
    found: list[str] = []
    for name, state in asl["States"].items():
        found.append(name)
        for branch in state.get("Branches", []):
            found.extend(state_names(branch))
        if "ItemProcessor" in state:
            found.extend(state_names(state["ItemProcessor"]))
    return found
