"""The tracer: what each call of the traced flow passed, decided when the call was made.

A :class:`Tracer` records each task (or subflow) call as a :class:`Call` whose parameters
are :class:`Param`\\ s -- a constant, mapped items, one upstream run, a list of upstream
runs, or unbound with the reason -- and remembers every returned object with the run
that produced it. Separate from the patching (:mod:`.patch`, which feeds it) and from the
IR (:mod:`.trace`, which reads it): this is the record and its rules, no graph.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from uuid import UUID

from wisefuse_plugins.adapters.prefect.callsite import (
    Sources,
    all_args_constant,
    arg_exprs,
    element_exprs,
    unwrap_expr,
)
from wisefuse_plugins.adapters.prefect.dataflow import Scope, root_name
from wisefuse_plugins.adapters.prefect.snapshot import is_atom, snapshot

ParamKind = Literal["const", "items", "run", "runs", "unbound"]


@dataclass
class Param:
    """How one parameter of one call got its value, decided when the call was made."""

    kind: ParamKind
    value: Any = None  # const: JSON value; items: list of JSON values
    run: UUID | None = None  # run: the producer run
    key: str | None = None  # run: an entry of the producer's dict output
    index: int | None = None  # run: an element of the producer's list output
    cands: list[frozenset[UUID]] = field(default_factory=list)  # runs: producers per element
    mapped: bool = False  # the parameter a ``.map()`` iterates over
    reason: str | None = None  # unbound: why the IR cannot express it
    deps: set[UUID] = field(default_factory=set)  # unbound: upstream runs it still reads


@dataclass
class Call:
    """One call of a task (or subflow) in the traced flow."""

    order: int
    obj: Any  # the Task or Flow
    how: Literal["call", "submit", "map", "subflow"]
    params: dict[str, Param]
    wait_for: list[frozenset[UUID]]
    reasons: list[str]
    runs: list[UUID] = field(default_factory=list)  # task runs in instance order
    child_flow_run: UUID | None = None
    attempt: int = 0  # the flow run's run_count when the call was made
    site: tuple[int, int] | None = None  # (the calling frame, the call's AST node)


@dataclass
class _Where:
    """Where a call was made: its frame, the calling function's body, the call's AST node."""

    frame: int
    scope: Scope | None
    node: ast.Call | None


@dataclass
class _Origin:
    """What an expression evaluated to, if it came from a run: that run's object or an
    entry of it, or (``runs``) a list gathered from several runs' results, in order."""

    run: UUID | None
    obj: Any
    key: str | None = None
    index: int | None = None
    runs: list[UUID] | None = None


@dataclass
class _Result:
    obj: Any  # kept alive so that its id() is never reused during the trace
    run: UUID
    key: str | None = None
    index: int | None = None


class Tracer:
    """Records the calls of one traced flow run and where their argument values came from."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.notes: list[str] = []
        self._results: dict[int, list[_Result]] = {}
        self._pending: list[Any] = []  # futures whose results are not recorded yet
        self._fresh = False  # pending futures already checked during the current call
        self._sources = Sources()
        self._sites: dict[tuple[int, int], tuple[Call, Any]] = {}  # latest call per site
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- results

    def remember(self, obj: Any, run: UUID) -> None:
        """Record ``obj`` (and the entries of a dict / list) as produced by ``run``."""
        with self._lock:
            self._add(_Result(obj, run))
            if type(obj) is dict:
                for k, v in obj.items():
                    if isinstance(k, str) and not is_atom(v):
                        self._add(_Result(v, run, key=k))
            elif type(obj) in (list, tuple):
                for i, v in enumerate(obj):
                    if not is_atom(v):
                        self._add(_Result(v, run, index=i))

    def _add(self, result: _Result) -> None:
        self._results.setdefault(id(result.obj), []).append(result)

    def returned(self, call: Call, out: Any) -> None:
        """What ``call`` gave the flow (a result, a future, a list of futures): the latest
        value of its call site in its frame, which arguments written as that call (or as
        a variable assigned from it) are."""
        if call.site is not None:
            with self._lock:
                self._sites[call.site] = (call, out)

    def watch(self, futures: Sequence[Any]) -> None:
        self._pending.extend(futures)

    def producers(self, obj: Any) -> list[_Result]:
        """The recorded results that are ``obj`` itself, oldest first."""
        found = [r for r in self._results.get(id(obj), []) if r.obj is obj]
        if not found and not self._fresh:
            self._fresh = True  # once per call: big literals must not rescan every future
            if self._refresh():
                found = [r for r in self._results.get(id(obj), []) if r.obj is obj]
        return found

    def _refresh(self) -> bool:
        """Record the results of finished futures (``future.result()`` in the flow)."""
        done, waiting = [], []
        for fut in self._pending:
            wrapped = getattr(fut, "wrapped_future", None)
            (done if wrapped is not None and wrapped.done() else waiting).append(fut)
        self._pending = waiting
        for fut in done:
            with contextlib.suppress(Exception):
                self.remember(fut.result(raise_on_failure=False), fut.task_run_id)
        return bool(done)

    # ---------------------------------------------------------------- calls

    def begin(
        self, obj: Any, how: str, args: tuple, kwargs: dict, wait_for: Any, frame: Any
    ) -> Call:
        """Classify the arguments of a call before Prefect resolves or mutates them."""
        from prefect.context import FlowRunContext

        self._fresh = False
        node = self._sources.call_at(frame)
        flow = getattr(FlowRunContext.get(), "flow", None)
        scope = self._sources.scope_at(frame, _flow_code(flow))
        where = _Where(id(frame), scope, node)
        exprs = arg_exprs(node, obj.fn, len(args))
        constant = not exprs and all_args_constant(node, scope)  # ``f(*[1, 2])``, ``f(*ARGS)``
        values, reasons = _bind_arguments(obj.fn, args, kwargs)
        params = {
            name: self._describe(
                value, exprs.get(name), where, in_map=how == "map", constant=constant
            )
            for name, value in values.items()
        }
        reasons += _guard_reasons(where)
        call = Call(
            order=len(self.calls),
            obj=obj,
            how=how,  # type: ignore[arg-type]
            params=params,
            wait_for=self._wait_for(wait_for),
            reasons=reasons,
            attempt=getattr(getattr(FlowRunContext.get(), "flow_run", None), "run_count", 0),
            site=(where.frame, id(node)) if node is not None else None,
        )
        self.calls.append(call)
        return call

    def final_calls(self) -> list[Call]:
        """The calls of the flow's last attempt (a flow with retries re-runs its body)."""
        last = max((c.attempt for c in self.calls), default=0)
        calls = [c for c in self.calls if c.attempt == last]
        for i, call in enumerate(calls):
            call.order = i
        return calls

    def _wait_for(self, wait_for: Any) -> list[frozenset[UUID]]:
        if wait_for is None:
            return []
        items = list(wait_for) if isinstance(wait_for, list | tuple | set) else [wait_for]
        found = []
        for item in items:
            run = run_of(item)
            if run is None and not is_atom(item) and (prod := self.producers(item)):
                run = prod[-1].run
            if run is not None:
                found.append(frozenset([run]))
        return found

    def _describe(
        self, value: Any, expr: ast.expr | None, where: _Where, *, in_map: bool, constant: bool
    ) -> Param:
        """How one argument got its value. A constant only when the flow's source proves it
        one; an upstream output only when proven (a future's run, the very object a call
        site returned); else unbound, with the reason (never the traced value replayed)."""
        from prefect.utilities.annotations import BaseAnnotation, quote, unmapped
        from prefect.utilities.collections import isiterable

        static, quoted, layers = not in_map, False, 0
        while isinstance(value, BaseAnnotation):
            static = static or isinstance(value, unmapped)
            quoted = quoted or isinstance(value, quote)
            value = value.unwrap()
            layers += 1
        expr = unwrap_expr(expr, layers)
        if quoted and (run_of(value) or _nested(value, self)[0]):
            deps = {r for r in [run_of(value)] if r} | _nested(value, self)[1]
            return Param("unbound", reason="quote() passes futures unresolved", deps=deps)
        run = run_of(value)
        if not static:  # Prefect resolves a future at the top level, then iterates the result
            data = _result_of(value) if run is not None else value
            static = not isiterable(data)
        if run is not None:
            return Param("run", run=run, mapped=not static)
        scope = where.scope
        if constant or (expr is not None and scope is not None and scope.constant(expr)):
            return _constant(value, static)
        param = self._linked(value, expr, where)
        if param is None and isinstance(value, list | tuple) and value:
            elems = self._elements(value, expr, where)
            if elems is not None:
                param = Param("runs", cands=elems)
        if param is not None:
            root = root_name(expr)
            if root is not None and scope is not None and scope.changed(root):
                why = f"the flow body changes `{root}` in place after the task returned it"
                return Param("unbound", reason=why, deps=_runs_of(param), mapped=not static)
            param.mapped = not static
            return param
        what, deps = _nested(value, self)
        if what is not None:
            return Param("unbound", reason=f"a literal argument nests {what}", deps=deps)
        return Param("unbound", reason=_computed(expr), mapped=not static)

    def _linked(self, value: Any, expr: ast.expr | None, where: _Where) -> Param | None:
        """The argument as a whole is one upstream output: proven by its call site (the
        call, or the variable assigned from it, gave this very object), or, for an object
        that is not an atom (identity is then unique), found among the recorded results."""
        origins = self._origins(expr, where, depth=0)
        if origins is not None:
            hits = {(o.run, o.key, o.index) for o in origins if o.obj is value and o.run}
            if len(hits) == 1:
                run, key, index = hits.pop()
                return Param("run", run=run, key=key, index=index)
        if is_atom(value):
            return None
        found = self.producers(value)
        if not found:
            return None
        last = found[-1]
        return Param("run", run=last.run, key=last.key, index=last.index)

    def _origins(self, expr: ast.expr | None, where: _Where, depth: int) -> list[_Origin] | None:
        """Every value ``expr`` may have come from a run as; None when it may come from
        anything else (a computation, a helper, a loop), so that no coincidence is trusted."""
        if expr is None or depth > 8:
            return None
        if isinstance(expr, ast.Call):
            func = expr.func
            if isinstance(func, ast.Attribute) and func.attr == "result":
                inner = self._origins(func.value, where, depth + 1)
                return None if inner is None else _results_of(inner)
            site = self._sites.get((where.frame, id(expr)))
            if site is None:
                return None
            call, out = site
            if call.how == "map" or not call.runs:
                return [_Origin(None, out, runs=list(call.runs))]
            return [_Origin(call.runs[0], out)]
        if isinstance(expr, ast.Name):
            sources = where.scope.sources(expr.id) if where.scope is not None else None
            if not sources:
                return None
            found: list[_Origin] = []
            for source in sources:
                origins = self._origins(source, where, depth + 1)
                if origins is None:
                    return None
                found += origins
            return found
        if isinstance(expr, ast.Subscript) and isinstance(expr.slice, ast.Constant):
            inner = self._origins(expr.value, where, depth + 1)
            if inner is None:
                return None
            return [e for o in inner if (e := _entry(o, expr.slice.value)) is not None]
        return None

    def _elements(self, values: Sequence[Any], expr: ast.expr | None, where: _Where) -> list | None:
        """Per element, the runs it may come from; None unless every element is an output."""
        gathered = self._gathered(values, expr, where)
        if gathered is not None:
            return gathered
        cands = []
        for item, item_expr in zip(values, element_exprs(expr, len(values)), strict=True):
            run = run_of(item)
            if run is not None:
                cands.append(frozenset([run]))
                continue
            param = self._linked(item, item_expr, where)
            if param is None or param.key is not None or param.index is not None:
                return None
            cands.append(frozenset([param.run]))
        return cands

    def _gathered(self, values: Sequence[Any], expr: ast.expr | None, where: _Where) -> list | None:
        """``total(results)`` with ``results = square.map(xs).result()``: the list is the
        map's results, element by element, in order."""
        for o in self._origins(expr, where, depth=0) or []:
            if (
                o.runs
                and isinstance(o.obj, list)
                and len(o.obj) == len(values) == len(o.runs)
                and all(a is b for a, b in zip(o.obj, values, strict=True))
            ):
                return [frozenset([r]) for r in o.runs]
        return None


def _flow_code(flow: Any) -> Any:
    """The code of the flow's own function (under wrappers such as ``@wisefuse``'s)."""
    fn = getattr(flow, "fn", None)
    with contextlib.suppress(Exception):
        fn = inspect.unwrap(fn)
    return getattr(fn, "__code__", None)


def _constant(value: Any, static: bool) -> Param:
    """A value the flow's source proves constant: its JSON copy, taken now."""
    if static:
        copy, problem = snapshot(value, "the argument")
        return Param("const", value=copy) if problem is None else Param("unbound", reason=problem)
    items = list(value)
    copy, problem = snapshot(items, "the mapped list")
    if problem is None:
        return Param("items", value=copy, mapped=True)
    return Param("unbound", reason=problem, mapped=True, value=len(items))


def _computed(expr: ast.expr | None) -> str:
    if expr is None:
        return (
            "the adapter cannot read how the call site wrote it, so it cannot prove the value "
            "the same in every run; pass a task's result or a literal, as a plain argument"
        )
    try:
        text = ast.unparse(expr)
    except Exception:
        text = "the expression"
    text = text if len(text) <= 60 else text[:57] + "..."
    return (
        f"its value (`{text}`) is computed in the flow body, which a planned run does not run: "
        "the traced value would be replayed; pass the task's result as it is, or compute "
        "the value in a task"
    )


def _guard_reasons(where: _Where) -> list[str]:
    """Why the call itself may not happen (or happen otherwise) in another run."""
    if where.scope is None:
        return [
            "it is called where the adapter cannot read the flow's source (a comprehension, "
            "a lambda, generated code), so it cannot tell whether another run makes this call"
        ]
    guard = where.scope.guard_of(where.node) if where.node is not None else None
    if guard is None:
        return []
    return [
        f"it is called under `{guard}`, which depends on values computed in the flow: "
        "another run may not call it, or call it otherwise; "
        "move the decision into a task, or make it depend on flow parameters only"
    ]


def _runs_of(param: Param) -> set[UUID]:
    runs = {param.run} if param.run is not None else set()
    for cands in param.cands:
        runs |= cands if len(cands) == 1 else set()
    return runs


def _results_of(origins: list[_Origin]) -> list[_Origin]:
    """``x.result()`` where ``x`` is a future (its run's result) or a map's futures."""
    out = []
    for o in origins:
        if o.runs is not None and o.run is None:
            with contextlib.suppress(Exception):
                out.append(
                    _Origin(None, [f.result(raise_on_failure=False) for f in o.obj], runs=o.runs)
                )
        elif o.key is None and o.index is None and run_of(o.obj) is not None:
            out.append(_Origin(run_of(o.obj), _result_of(o.obj)))
    return out


def _entry(origin: _Origin, key: Any) -> _Origin | None:
    """``x[key]`` of an origin: an entry of a run's dict (or list) output."""
    if origin.run is None or origin.key is not None or origin.index is not None:
        return None
    obj = origin.obj
    if type(obj) is dict and isinstance(key, str) and key in obj:
        return _Origin(origin.run, obj[key], key=key)
    if type(obj) in (list, tuple) and type(key) is int and -len(obj) <= key < len(obj):
        return _Origin(origin.run, obj[key], index=key % len(obj))
    return None


def _bind_arguments(fn: Callable, args: tuple, kwargs: dict) -> tuple[dict[str, Any], list[str]]:
    """Parameter -> value as passed (no defaults), and why the IR cannot pass them by name."""
    sig = inspect.signature(fn)
    bound = sig.bind(*args, **kwargs)
    values: dict[str, Any] = {}
    reasons: list[str] = []
    for name, value in bound.arguments.items():
        kind = sig.parameters[name].kind
        if kind == inspect.Parameter.VAR_POSITIONAL:
            if value:
                reasons.append(f"passes *{name} positionally; the runtime passes arguments by name")
        elif kind == inspect.Parameter.VAR_KEYWORD:
            values.update(value)  # the runtime passes them back as keywords
        else:
            if kind == inspect.Parameter.POSITIONAL_ONLY:
                reasons.append(f"parameter {name!r} is positional-only")
            values[name] = value
    return values, reasons


def run_of(value: Any) -> UUID | None:
    """The task run behind a future or a state."""
    from prefect.futures import PrefectFuture
    from prefect.states import State

    if isinstance(value, PrefectFuture):
        return value.task_run_id
    if isinstance(value, State):
        return value.state_details.task_run_id or value.state_details.flow_run_id
    return None


def _result_of(value: Any) -> Any:
    with contextlib.suppress(Exception):
        return value.result(raise_on_failure=False)
    return None


def _nested(value: Any, tracer: Tracer) -> tuple[str | None, set[UUID]]:
    """Upstream outputs nested inside ``value`` (futures, states, non-atom results).

    Returns what was found (for the opaque reason) and the producer runs (for ordering).
    Atoms are skipped: inside a literal they are literals (the identity pitfall).
    """
    found: list[str] = []
    runs: set[UUID] = set()

    def visit(item: Any, depth: int) -> None:
        if depth > 0:
            if (run := run_of(item)) is not None:
                found.append("a task's future or state")
                runs.add(run)
                return
            if not is_atom(item) and (prod := tracer.producers(item)):
                found.append("the output of an upstream task")
                runs.add(prod[-1].run)
                return
        if depth < 6 and isinstance(item, dict):
            children: Any = item.values()
        elif depth < 6 and isinstance(item, list | tuple | set | frozenset):
            children = item
        else:
            return
        for child in children:
            visit(child, depth + 1)

    visit(value, 0)
    return (found[0] if found else None), runs


def same_runs(call: Call, cands: list[frozenset[UUID]]) -> bool:
    """Are ``cands`` (possible producers per element) exactly ``call``'s map runs, in order?"""
    return (
        call.how == "map"
        and len(call.runs) == len(cands)
        and all(run in c for run, c in zip(call.runs, cands, strict=True))
    )
