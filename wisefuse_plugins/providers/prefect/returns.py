"""Which value a flow returns, in terms of its stages: ``Workflow.meta["returns"]``.

Why: under a plan the flow's tasks run as Lambda units and only the stages' outputs come
back (from the store), so the decorated flow must know how to rebuild what the plain flow
returned. The IR from :func:`~wisefuse_plugins.adapters.prefect.trace_flow` does not say,
so the decorator works it out during the traced run (a small cooperation: it wraps the
flow's function for that run and stores the answer in the IR's ``meta``).

The answer is a *return spec*, JSON::

    {"kind": "output", "stage": "combine"}              the whole output of a stage
    {"kind": "instance", "stage": "square", "index": 2}  one instance of a mapped stage
    {"kind": "collect", "stage": "square"}             all instances, in order (a list)
    {"kind": "const", "value": ...}                      a literal or a flow parameter
    {"kind": "list" | "tuple", "items": [spec, ...]}
    {"kind": "dict", "items": [[key, spec], ...]}

How it is found, inside the traced run, right after the flow's function returns: each
part of the returned value is looked up in Prefect's own result links (the flow run's
``run_results``, keyed by ``id()``); containers that are not task outputs are walked. The
flow's source keeps that honest: identity is only trusted where the return expression
reads a value (a name, a call, ``future.result()``), never for a display the flow builds,
and not at all when the flow returns an *element* of a task's output (``res["k"]``,
``a, b = t()``), which Prefect links to the whole output. A part that is no task output
may be a constant only when it is ``None``, a literal, or a flow parameter (the IR is
specialised to the parameters); an atom Prefect cannot track (``True``, ``3``) is matched
to ``return some_task(...)`` by the task called. Anything else -- futures or states
(the plain flow returns Prefect states for those), values computed in the flow body --
gives no spec but a reason, and the decorator then runs the flow as it is.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import sys
import textwrap
from collections.abc import Callable
from typing import Any
from uuid import UUID

from wisefuse_plugins.ir import Workflow

__all__ = [
    "ReturnsUnknown",
    "describe_return",
    "rebuild",
    "resolve_runs",
    "run_order_from_tracer",
    "stages_read",
]

_ATOMS = (type(None), bool, int, float, str, bytes)


class ReturnsUnknown(Exception):
    """The returned value cannot be expressed with the flow's stages (the message says why)."""


# =========================================================================== source


class _Source:
    """What the flow function's source says about its return expressions."""

    def __init__(self, fn: Callable) -> None:
        self.returns: list[ast.expr] = []
        self.assigned: dict[str, list[ast.AST]] = {}
        self.unpacked: set[str] = set()
        self.params: set[str] = set()
        self.globals: dict[str, Any] = getattr(fn, "__globals__", {})
        with contextlib.suppress(OSError, TypeError, SyntaxError):
            tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
            func = next(
                n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
            )
            args = func.args
            self.params = {
                a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]
            }  # fmt: skip
            self._scan(func.body)

    def _scan(self, body: list[ast.stmt]) -> None:
        for node in body:
            for sub in _walk_scope(node):
                if isinstance(sub, ast.Return) and sub.value is not None:
                    self.returns.append(sub.value)
                elif isinstance(sub, ast.Assign):
                    for target in sub.targets:
                        self._bind(target, sub.value)
                elif isinstance(sub, ast.AnnAssign) and sub.value is not None:
                    self._bind(sub.target, sub.value)
                elif isinstance(sub, ast.AugAssign | ast.For | ast.AsyncFor | ast.withitem):
                    target = sub.optional_vars if isinstance(sub, ast.withitem) else sub.target
                    if target is not None:
                        self.unpacked |= _names(target)
                elif isinstance(sub, ast.NamedExpr):
                    self._bind(sub.target, sub.value)

    def _bind(self, target: ast.expr, value: ast.expr) -> None:
        if isinstance(target, ast.Name):
            self.assigned.setdefault(target.id, []).append(value)
        else:
            self.unpacked |= _names(target)

    @property
    def single(self) -> ast.expr | None:
        """The one return expression, when the function has exactly one."""
        return self.returns[0] if len(self.returns) == 1 else None

    def reads_element(self, expr: ast.expr | None) -> str | None:
        """Why a value linked to a task run by identity may be an element of its output."""
        exprs = [expr] if expr is not None else self.returns
        for e in exprs:
            for node in _value_nodes(e):
                if isinstance(node, ast.Subscript):
                    return f"returns an element of a value ({ast.unparse(node)})"
                if isinstance(node, ast.Name):
                    if node.id in self.unpacked:
                        return f"returns {node.id!r}, bound by unpacking, a loop or an update"
                    for value in self.assigned.get(node.id, []):
                        if any(isinstance(v, ast.Subscript) for v in _value_nodes(value)):
                            return (
                                f"returns {node.id!r} = {ast.unparse(value)}, an element of a value"
                            )
        return None

    def task_called(self, expr: ast.expr | None) -> Any:
        """The Prefect task ``expr`` calls: ``t(...)``, ``t.submit(...).result()``, or a name
        assigned once from either (``f = t.submit(...)`` then ``f.result()`` too)."""
        from prefect.tasks import Task

        expr = self._once(expr)
        if (
            isinstance(expr, ast.Call)
            and isinstance(expr.func, ast.Attribute)
            and expr.func.attr == "result"
        ):  # future.result() of the future a .submit() made
            future = self._once(expr.func.value)
            if not (
                isinstance(future, ast.Call)
                and isinstance(future.func, ast.Attribute)
                and future.func.attr == "submit"
            ):
                return None
            expr = ast.Call(func=future.func.value, args=[], keywords=[])
        if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name):
            obj = self.globals.get(expr.func.id)
            if isinstance(obj, Task):
                return obj
        return None

    def _once(self, expr: ast.expr | None) -> ast.expr | None:
        """What a name assigned exactly once holds (else ``expr`` itself)."""
        if isinstance(expr, ast.Name) and len(self.assigned.get(expr.id, [])) == 1:
            return self.assigned[expr.id][0]
        return expr

    def is_literal(self, expr: ast.expr | None) -> bool:
        """A constant, or a flow parameter the body never rebinds (fixed by the IR's parameters)."""
        if isinstance(expr, ast.Constant):
            return True
        return (
            isinstance(expr, ast.Name)
            and expr.id in self.params
            and expr.id not in self.assigned
            and expr.id not in self.unpacked
        )


def _walk_scope(node: ast.AST):
    """``ast.walk`` that stays in the function: nested functions and classes are skipped."""
    todo = [node]
    while todo:
        current = todo.pop()
        yield current
        for child in ast.iter_child_nodes(current):
            if not isinstance(
                child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda
            ):
                todo.append(child)


def _names(target: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}


def _value_nodes(expr: ast.expr):
    """Nodes of ``expr`` that can *be* the returned value (not call arguments or indices)."""
    todo = [expr]
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, ast.List | ast.Tuple | ast.Set):
            todo.extend(node.elts)
        elif isinstance(node, ast.Dict):
            todo.extend(v for v in node.values if v is not None)
        elif isinstance(node, ast.ListComp | ast.GeneratorExp | ast.SetComp):
            todo.append(node.elt)
        elif isinstance(node, ast.DictComp):
            todo.append(node.value)
        elif isinstance(node, ast.IfExp):
            todo.extend([node.body, node.orelse])
        elif isinstance(node, ast.Starred):
            todo.append(node.value)


# =========================================================================== in the run


def _is_future_or_state(value: Any) -> bool:
    from prefect.futures import PrefectFuture
    from prefect.states import State

    return isinstance(value, PrefectFuture | State)


def _has_futures(value: Any, depth: int = 0) -> bool:
    """Futures or states in the value (a ``PrefectFutureList`` is a list of futures)."""
    if _is_future_or_state(value):
        return True
    if depth < 3 and isinstance(value, list | tuple):
        return any(_has_futures(v, depth + 1) for v in value)
    if depth < 3 and isinstance(value, dict):
        return any(_has_futures(v, depth + 1) for v in value.values())
    return False


def _linked_run(value: Any) -> UUID | None:
    """The task run Prefect linked ``value`` to (the current flow run's result links)."""
    from prefect.client.schemas.objects import RunType
    from prefect.utilities.engine import get_state_for_result

    if type(value) in (type(None), bool) or type(value) is type(Ellipsis):
        return None
    found = get_state_for_result(value)
    if found is None:
        return None
    state, run_type = found
    if run_type != RunType.TASK_RUN:
        return None
    return state.state_details.task_run_id


def _sub_exprs(value: Any, expr: ast.expr | None) -> list[ast.expr | None] | None:
    """The expressions of a container's parts, when ``expr`` is a display of that shape."""
    if isinstance(expr, ast.ListComp | ast.GeneratorExp) and isinstance(value, list | tuple):
        return [expr.elt] * len(value)
    if (
        isinstance(expr, ast.List | ast.Tuple)
        and isinstance(value, list | tuple)
        and len(expr.elts) == len(value)
        and not any(isinstance(e, ast.Starred) for e in expr.elts)
    ):
        return list(expr.elts)
    if isinstance(expr, ast.Dict) and isinstance(value, dict) and None not in expr.keys:
        keys = [k.value if isinstance(k, ast.Constant) else object() for k in expr.keys]
        if len(keys) == len(value) and keys == list(value):
            return list(expr.values)
    return None


def _is_display(expr: ast.expr | None) -> bool:
    return isinstance(
        expr, ast.List | ast.Tuple | ast.Dict | ast.Set | ast.ListComp | ast.DictComp | ast.SetComp
    )


def describe_return(value: Any, fn: Callable) -> dict[str, Any]:
    """The raw return spec of ``value`` (task runs as ``{"kind": "run"}``); call it inside
    the flow run, right after ``fn`` returned. Raises :class:`ReturnsUnknown`."""
    source = _Source(fn)
    return _describe(value, source.single, source, depth=0)


def _describe(value: Any, expr: ast.expr | None, src: _Source, depth: int) -> dict[str, Any]:
    if depth > 8:
        raise ReturnsUnknown("the returned value nests too deeply")
    if _has_futures(value):
        raise ReturnsUnknown(
            "the flow returns Prefect futures or states (the plain flow hands back states); "
            "return their .result() instead"
        )
    if not _is_display(expr):
        run = _linked_run(value)
        if run is not None:
            why = src.reads_element(expr)
            if why is not None:
                raise ReturnsUnknown(
                    f"the flow {why}, which Prefect cannot tell from the whole task output; "
                    "return the task's output itself"
                )
            return {"kind": "run", "run": str(run)}
    if type(value) in (list, tuple):
        subs = _sub_exprs(value, expr) or [None] * len(value)
        items = [_describe(v, e, src, depth + 1) for v, e in zip(value, subs, strict=True)]
        return {"kind": type(value).__name__, "items": items}
    if type(value) is dict:
        subs = _sub_exprs(value, expr) or [None] * len(value)
        pairs = []
        for (k, v), e in zip(value.items(), subs, strict=True):
            if not isinstance(k, str | int | float | bool) and k is not None:
                raise ReturnsUnknown(f"the returned dict has a key {k!r} that JSON cannot carry")
            pairs.append([k, _describe(v, e, src, depth + 1)])
        return {"kind": "dict", "items": pairs}
    if isinstance(value, _ATOMS) and not isinstance(value, bytes):
        task = src.task_called(expr)
        if task is not None:
            return {"kind": "task", "task_key": task.task_key}
        if value is None or src.is_literal(expr):
            return {"kind": "const", "value": value}
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    raise ReturnsUnknown(
        f"the flow returns {shown}, which is neither a task's output nor a literal or parameter "
        "(a value computed in the flow body cannot be rebuilt from the units' outputs)"
    )


# =========================================================================== after the run


def run_order_from_tracer() -> dict[str, list[Any]] | None:
    """Which stage call and instance each task run is, from the adapter's live tracer.

    Called inside the traced run (by the decorator's wrapper of the flow function). It is
    the one place that reads the Prefect adapter's internals (its tracer's calls, in call
    order, with their task runs in instance order), guarded so that a change there only
    falls back to :func:`resolve_runs`' reading of the API. Returns
    ``{run id: [task key, call number, instance or None]}``, numbered as the adapter
    numbers ``Stage.meta["call"]``.
    """
    adapter = sys.modules.get("wisefuse_plugins.adapters.prefect.patch")
    active = getattr(adapter, "_ACTIVE", None)
    tracer = active.get() if active is not None else None
    calls = getattr(tracer, "calls", None)
    if not isinstance(calls, list):
        return None
    order: dict[str, list[Any]] = {}
    seen: dict[int, int] = {}
    try:
        for call in calls:
            seen[id(call.obj)] = seen.get(id(call.obj), -1) + 1
            key = getattr(call.obj, "task_key", None)
            for i, run in enumerate(call.runs):
                index = i if call.how == "map" else None
                order[str(run)] = [key, seen[id(call.obj)], index]
    except AttributeError:
        return None
    return order


def resolve_runs(
    spec: dict[str, Any],
    workflow: Workflow,
    *,
    order: dict[str, list[Any]] | None = None,
    task_runs: list[Any] | None = None,
) -> dict[str, Any]:
    """Turn task run ids into stages.

    With ``order`` (from :func:`run_order_from_tracer`) a run is the stage of its task key
    and call number (``Stage.meta["task_key"]``, ``["call"]``). Without it, the traced flow
    run's ``task_runs`` (from the API) are matched to stages by task key: the stages of one
    task in call order, each taking as many runs as it has instances, in the order their
    ids were made (uuid7: milliseconds, so two runs of one task made in the same
    millisecond leave the order unknown -- then only unmapped outputs resolve).
    """
    if order is not None:
        where = _stages_from_order(workflow, order)
    else:
        where = _stages_from_api(workflow, task_runs or [])
    by_task: dict[str, list[str]] = {}
    for s in workflow.stages:
        key = s.meta.get("task_key")
        if isinstance(key, str) and not s.mapped:
            by_task.setdefault(key, []).append(s.id)
    return _resolve(spec, workflow, where, by_task)


def _stages_from_order(
    workflow: Workflow, order: dict[str, list[Any]]
) -> dict[str, tuple[str, int | None] | None]:
    stage_of = {(s.meta.get("task_key"), s.meta.get("call")): s for s in workflow.stages}
    where: dict[str, tuple[str, int | None] | None] = {}
    for run, (key, call, index) in order.items():
        s = stage_of.get((key, call))
        if s is not None:
            where[run] = (s.id, index if s.mapped else None)
    return where


def _stages_from_api(
    workflow: Workflow, task_runs: list[Any]
) -> dict[str, tuple[str, int | None] | None]:
    runs_by_key: dict[str, list[Any]] = {}
    for run in task_runs:
        runs_by_key.setdefault(run.task_key, []).append(run)
    where: dict[str, tuple[str, int | None] | None] = {}
    for key, runs in runs_by_key.items():
        runs.sort(key=lambda r: r.id.int)
        millis = [r.id.int >> 80 for r in runs]
        ordered = len(set(millis)) == len(millis)  # else: ties within a millisecond
        stages = sorted(
            (s for s in workflow.stages if s.meta.get("task_key") == key),
            key=lambda s: int(s.meta.get("call", 0)),  # type: ignore[arg-type]
        )
        pos = 0
        for s in stages:
            n = s.parallelism if s.meta.get("how") == "map" else 1
            for i, run in enumerate(runs[pos : pos + n]):
                if len(stages) == 1 and not s.mapped:
                    where[str(run.id)] = (s.id, None)
                else:
                    where[str(run.id)] = (s.id, i if s.mapped else None) if ordered else None
            pos += n
    return where


def _resolve(
    spec: dict[str, Any],
    wf: Workflow,
    where: dict[str, tuple[str, int | None] | None],
    by_task: dict[str, list[str]],
) -> dict[str, Any]:
    kind = spec["kind"]
    if kind == "run":
        if spec["run"] not in where:
            raise ReturnsUnknown("the flow returns the output of a task run that is not a stage")
        found = where[spec["run"]]
        if found is None:
            raise ReturnsUnknown("the order of the task runs it returns is unknown")
        stage, index = found
        if index is None:
            return {"kind": "output", "stage": stage}
        return {"kind": "instance", "stage": stage, "index": index}
    if kind == "task":
        stages = by_task.get(spec["task_key"], [])
        if len(stages) != 1:
            raise ReturnsUnknown(
                f"the flow returns a task's output, but that task is {len(stages)} stages"
            )
        return {"kind": "output", "stage": stages[0]}
    if kind in ("list", "tuple"):
        items = [_resolve(i, wf, where, by_task) for i in spec["items"]]
        collected = _whole_stage(items, wf)
        if collected is not None:
            out: dict[str, Any] = {"kind": "collect", "stage": collected}
            return out if kind == "list" else {**out, "as": "tuple"}
        return {"kind": kind, "items": items}
    if kind == "dict":
        return {"kind": "dict", "items": [[k, _resolve(v, wf, where, by_task)] for k, v in spec["items"]]}  # fmt: skip
    return spec


def _whole_stage(items: list[dict[str, Any]], wf: Workflow) -> str | None:
    """The mapped stage whose instances, all and in order, these items are."""
    if not items or any(i["kind"] != "instance" for i in items):
        return None
    stage = items[0]["stage"]
    ok = all(i["stage"] == stage and i["index"] == n for n, i in enumerate(items))
    return stage if ok and len(items) == wf.stage(stage).parallelism else None


def stages_read(spec: dict[str, Any]) -> set[str]:
    """The stages whose outputs a return spec reads (they must reach the store)."""
    kind = spec["kind"]
    if kind in ("output", "instance", "collect"):
        return {spec["stage"]}
    if kind in ("list", "tuple"):
        return set().union(*(stages_read(i) for i in spec["items"])) if spec["items"] else set()
    if kind == "dict":
        return set().union(*(stages_read(v) for _, v in spec["items"])) if spec["items"] else set()
    return set()


def rebuild(
    spec: dict[str, Any],
    output: Callable[[str], Any],
    instance: Callable[[str, int], Any],
    count: Callable[[str], int],
) -> Any:
    """The flow's return value from stage outputs (read through the three callbacks)."""
    kind = spec["kind"]
    if kind == "const":
        return spec["value"]
    if kind == "output":
        return output(spec["stage"])
    if kind == "instance":
        return instance(spec["stage"], spec["index"])
    if kind == "collect":
        values = [instance(spec["stage"], i) for i in range(count(spec["stage"]))]
        return tuple(values) if spec.get("as") == "tuple" else values
    if kind in ("list", "tuple"):
        items = [rebuild(i, output, instance, count) for i in spec["items"]]
        return items if kind == "list" else tuple(items)
    if kind == "dict":
        return {k: rebuild(v, output, instance, count) for k, v in spec["items"]}
    raise ReturnsUnknown(f"unknown return spec kind {kind!r}")
