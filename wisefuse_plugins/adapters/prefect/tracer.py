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
    arg_exprs,
    element_exprs,
    trusts_identity,
)
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
        exprs = arg_exprs(self._sources.call_at(frame), obj.fn, len(args))
        values, reasons = _bind_arguments(obj.fn, args, kwargs)
        params = {
            name: self._describe(value, exprs.get(name), in_map=how == "map")
            for name, value in values.items()
        }
        call = Call(
            order=len(self.calls),
            obj=obj,
            how=how,  # type: ignore[arg-type]
            params=params,
            wait_for=self._wait_for(wait_for),
            reasons=reasons,
            attempt=getattr(getattr(FlowRunContext.get(), "flow_run", None), "run_count", 0),
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

    def _describe(self, value: Any, expr: ast.expr | None, *, in_map: bool) -> Param:
        from prefect.utilities.annotations import BaseAnnotation, quote, unmapped
        from prefect.utilities.collections import isiterable

        static, quoted = not in_map, False
        while isinstance(value, BaseAnnotation):
            static = static or isinstance(value, unmapped)
            quoted = quoted or isinstance(value, quote)
            value = value.unwrap()
        if quoted and (run_of(value) or _nested(value, self)[0]):
            deps = {r for r in [run_of(value)] if r} | _nested(value, self)[1]
            return Param("unbound", reason="quote() passes futures unresolved", deps=deps)
        run = run_of(value)
        if not static:  # Prefect resolves a future at the top level, then iterates the result
            data = _result_of(value) if run is not None else value
            static = not isiterable(data)
        param = self._single(value, expr, run)
        if param is not None:
            param.mapped = not static
            return param
        if isinstance(value, list | tuple) and value:
            elems = self._elements(value, expr)
            if elems is not None:
                return Param("runs", cands=elems, mapped=not static)
        what, deps = _nested(value, self)
        if what is not None:
            return Param("unbound", reason=f"a literal argument nests {what}", deps=deps)
        if static:
            copy, problem = snapshot(value, "the argument")
            return (
                Param("const", value=copy) if problem is None else Param("unbound", reason=problem)
            )
        items = list(value)
        copy, problem = snapshot(items, "the mapped list")
        if problem is None:
            return Param("items", value=copy, mapped=True)
        return Param("unbound", reason=problem, mapped=True, value=len(items))

    def _single(self, value: Any, expr: ast.expr | None, run: UUID | None) -> Param | None:
        """The argument as a whole is one upstream output (a future, a state or a result)."""
        if run is not None:
            return Param("run", run=run)
        if is_atom(value) and not trusts_identity(expr):
            return None
        found = self.producers(value)
        if not found:
            return None
        last = found[-1]
        return Param("run", run=last.run, key=last.key, index=last.index)

    def _elements(self, values: Sequence[Any], expr: ast.expr | None) -> list | None:
        """Per element, the runs it may come from; None unless every element is an output."""
        cands = []
        for item, item_expr in zip(values, element_exprs(expr, len(values)), strict=True):
            run = run_of(item)
            if run is not None:
                cands.append(frozenset([run]))
                continue
            if is_atom(item) and not trusts_identity(item_expr):
                return None
            found = [r.run for r in self.producers(item) if r.key is None and r.index is None]
            if not found:
                return None
            cands.append(frozenset(found))
        if all(len(c) == 1 for c in cands) and all(run_of(v) is not None for v in values):
            return cands  # futures or states only: links by run id, never a coincidence
        for call in self.calls:  # results: only the whole of an earlier map, in order
            if same_runs(call, cands):
                return cands
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
