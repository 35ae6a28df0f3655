"""Prefect flows -> IR: trace one real run, or rebuild a past run from the API.

Why tracing, and how
--------------------
A Prefect flow is ordinary Python: its graph exists only while it runs (loops, ``if``\\ s,
``.map()`` over lists whose length is data). So :func:`trace_flow` runs the flow once, for
real, and watches it from two sides:

* **In-process**, ``Task.__call__`` / ``Task.submit`` / ``Task.map`` and ``Flow.__call__``
  are wrapped for the duration of the traced run (class attributes, restored afterwards;
  calls outside the traced run pass straight through). A wrapper sees each call exactly as
  the flow wrote it, *before* Prefect resolves anything: which arguments are futures
  (``future.task_run_id`` names the producer run, no guessing), ``unmapped()`` / ``quote()``
  wrappers, literal values (snapshotted as JSON at call time), which parameters a ``.map()``
  iterates over, ``wait_for``. Plain ``task(...)`` calls return values, not futures; the
  wrapper records each returned object (and the entries of a returned dict or list) with
  the run that produced it, holding a reference so an ``id()`` is never recycled.
* **The Prefect API** (the run's task runs, read with the client) supplies what the
  process does not see reliably: run names, task keys, states and start/end times
  (``Stage.meta["observed_ms"]``).

Prefect's own ``task_inputs`` are *not* used for edges in a trace: Prefect links any object
found anywhere inside an argument to a task result of the same ``id()``, so interned
values (short strings, code constants) returned by one task and merely equal to something
inside another argument create spurious inputs (see docs/prefect-adapter.md). The trace
only links (1) futures and states, by run id; (2) a whole argument (or each element of a
list argument, for gathers) that *is* a recorded result. An atom (None, bool, number,
string, bytes, a tuple of atoms) can be the very same object as an unrelated literal, so
for atoms the link is kept only when the call site, read from the flow's source, passes a
variable, attribute, subscript or ``future.result()`` -- never for a literal or a value
computed in the flow (then it is a ``Const``). Atoms nested inside literals are never
linked; a literal that nests a future or a non-atom upstream output makes the stage opaque,
with a control edge from that upstream. Inputs Prefect recorded that the trace dropped are
listed in ``Stage.meta["ignored_api_inputs"]``. A spurious edge would be wrong twice: an
``Output`` binding replaces the literal the task really got.

What maps to what
-----------------
One stage per call: a ``.map()`` call is one mapped stage with ``parallelism`` = its runs
(``observed``); a task called several times without ``.map()`` (say in a loop) gives one
stage per call, ids ``name``, ``name-2``, ... Subflows are *not* flattened: a subflow call
is one opaque stage (its own tasks stay in Prefect; trace the subflow on its own to
optimise it). The IR is specialised to the traced run: flow parameters and any value the
flow computed become ``Const`` bindings (the parameters are in ``Workflow.meta``). A flow
with ``retries`` keeps the calls of its last attempt. Only sync flows are traced.
:func:`from_history` rebuilds a past run from the API alone, which is less precise (see
its docstring).
"""

from __future__ import annotations

import ast
import contextlib
import contextvars
import functools
import hashlib
import importlib.util
import inspect
import json
import linecache
import math
import sys
import threading
import time
import typing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from uuid import UUID

from wisefuse_plugins.errors import MissingExtraError, WiseFuseError
from wisefuse_plugins.ir import (
    Binding,
    Collect,
    Const,
    ConstItem,
    Item,
    Output,
    Source,
    Stage,
    StageKind,
    Workflow,
    callable_ref,
    derive_edges,
    safe_name,
)

__all__ = ["PrefectAdapterError", "from_history", "load_flow_file", "task_name", "trace_flow"]

FEATURE = "the Prefect adapter"
_API_WAIT_S = 20.0  # how long to wait for the API to record the traced run's task runs


class PrefectAdapterError(WiseFuseError):
    """A flow cannot be loaded, traced or rebuilt from history."""


def _require_prefect() -> None:
    if importlib.util.find_spec("prefect") is None:
        raise MissingExtraError("prefect", "prefect", FEATURE)


# =========================================================================== loading


def load_flow_file(path: str | Path, flow_name: str | None = None) -> Any:
    """Import a flow file by path (not as a module) and return its ``@flow`` object.

    ``flow_name`` picks one flow when the file defines several: a flow's name, its
    function's name or the variable holding it. The file's folder goes on ``sys.path``,
    as when running ``python flow.py``, so it can import its siblings.
    """
    _require_prefect()
    path = Path(path).resolve()
    if not path.is_file():
        raise PrefectAdapterError(f"flow file {path} does not exist")
    module = _import_file(path)
    flows = _flows_in(module)
    if flow_name is not None:
        chosen = [f for var, f in flows if flow_name in (var, f.name, f.fn.__name__)]
        if not chosen:
            found = ", ".join(sorted({f.name for _, f in flows})) or "none"
            raise PrefectAdapterError(
                f"{path} has no flow named {flow_name!r} (flows found: {found})",
                hint="name a flow by its name or its function's name",
            )
        return chosen[0]
    distinct = list({id(f): f for _, f in flows}.values())
    if not distinct:
        raise PrefectAdapterError(
            f"{path} defines no Prefect flow", hint="decorate the entry function with @flow"
        )
    if len(distinct) > 1:
        names = ", ".join(sorted(f.name for f in distinct))
        raise PrefectAdapterError(
            f"{path} defines several flows ({names}); say which one",
            hint=f"pass flow_name=<one of them>, or on the command line {path}::FLOW_NAME",
        )
    return distinct[0]


def _import_file(path: Path) -> Any:
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    name = f"wisefuse_flow_{digest}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise PrefectAdapterError(f"cannot import {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    sys.modules[name] = module  # inspect and pickling find the module by name
    try:
        spec.loader.exec_module(module)
    except BaseException as err:
        sys.modules.pop(name, None)
        raise PrefectAdapterError(
            f"importing {path} failed: {type(err).__name__}: {err}",
            hint="run `python <file>` to see the full error",
        ) from err
    return module


def _flows_in(module: Any) -> list[tuple[str, Any]]:
    """``(variable, flow)`` pairs, preferring flows defined in the module over imported ones."""
    from prefect.flows import Flow

    flows = [(k, v) for k, v in vars(module).items() if isinstance(v, Flow)]
    own = [(k, f) for k, f in flows if getattr(f.fn, "__module__", None) == module.__name__]
    return own or flows


# =========================================================================== values


_ATOM_TYPES = (type(None), bool, int, float, complex, str, bytes, type(Ellipsis))


def _is_atom(value: Any) -> bool:
    """True for values the interpreter may share between unrelated places (see module doc)."""
    if isinstance(value, _ATOM_TYPES):
        return True
    if type(value) in (tuple, frozenset):
        return all(_is_atom(v) for v in value)
    return False


def _json_problem(value: Any, where: str) -> str | None:
    """Why ``value`` is not plain JSON (None when it is); tuples and sets are not JSON."""
    if value is None or isinstance(value, bool | str):
        return None
    if type(value) is int:
        return None
    if type(value) is float:
        return None if math.isfinite(value) else f"{where} is {value!r}, not a JSON number"
    if type(value) is list:
        for i, v in enumerate(value):
            if (p := _json_problem(v, f"{where}[{i}]")) is not None:
                return p
        return None
    if type(value) is dict:
        for k, v in value.items():
            if not isinstance(k, str):
                return f"{where} has a non-string key {k!r}"
            if (p := _json_problem(v, f"{where}[{k!r}]")) is not None:
                return p
        return None
    return f"{where} is a {type(value).__name__}, which JSON cannot carry"


def _snapshot(value: Any, where: str) -> tuple[Any, str | None]:
    """A JSON copy of ``value`` taken now (the flow may mutate it later), or the reason why not."""
    problem = _json_problem(value, where)
    if problem is not None:
        return None, problem
    return json.loads(json.dumps(value)), None


def _jsonable(value: Any) -> Any:
    """Best-effort JSON for metadata: the value itself, else its repr."""
    copy, problem = _snapshot(value, "value")
    return copy if problem is None else repr(value)


# =========================================================================== call sites


class _Sources:
    """Parsed flow files, to read how an argument was written at a call site."""

    def __init__(self) -> None:
        self._calls: dict[str, dict[tuple, ast.Call]] = {}
        self._positions: dict[Any, list[tuple]] = {}

    def call_at(self, frame: Any) -> ast.Call | None:
        code = frame.f_code
        if code not in self._positions:
            self._positions[code] = list(code.co_positions())
        try:
            position = self._positions[code][frame.f_lasti // 2]
        except IndexError:
            return None
        return self._index(code.co_filename).get(tuple(position))

    def _index(self, filename: str) -> dict[tuple, ast.Call]:
        if filename not in self._calls:
            index: dict[tuple, ast.Call] = {}
            try:
                tree = ast.parse("".join(linecache.getlines(filename)))
            except (SyntaxError, ValueError):
                tree = None
            for node in ast.walk(tree) if tree else ():
                if isinstance(node, ast.Call):
                    key = (node.lineno, node.end_lineno, node.col_offset, node.end_col_offset)
                    index[key] = node
            self._calls[filename] = index
        return self._calls[filename]


def _arg_exprs(node: ast.Call | None, fn: Callable, n_args: int) -> dict[str, ast.expr]:
    """Parameter name -> the expression the call site passed for it (empty when unsure)."""
    if node is None or len(node.args) != n_args:
        return {}
    if any(isinstance(a, ast.Starred) for a in node.args) or any(
        k.arg is None for k in node.keywords
    ):
        return {}
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return {}
    positional = [
        p.name
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    exprs = {positional[i]: a for i, a in enumerate(node.args) if i < len(positional)}
    exprs.update({k.arg: k.value for k in node.keywords if k.arg is not None})
    return exprs


_WRAPPERS = {"unmapped", "quote", "allow_failure", "opaque"}


def _unwrap_expr(expr: ast.expr | None) -> ast.expr | None:
    while (
        isinstance(expr, ast.Call)
        and len(expr.args) == 1
        and getattr(expr.func, "id", getattr(expr.func, "attr", None)) in _WRAPPERS
    ):
        expr = expr.args[0]
    return expr


def _trusts_identity(expr: ast.expr | None) -> bool:
    """May an atom passed as ``expr`` be an upstream result? Only if it is read, not written.

    A variable, attribute, subscript or ``something.result()`` can hold a task's result; a
    literal or a value computed in the flow (``n + 1``, ``len(x)``) cannot, even when it is
    the same interned object as one.
    """
    expr = _unwrap_expr(expr)
    if isinstance(expr, ast.Name | ast.Attribute | ast.Subscript):
        return True
    return (
        isinstance(expr, ast.Call)
        and isinstance(expr.func, ast.Attribute)
        and expr.func.attr == "result"
    )


def _element_exprs(expr: ast.expr | None, n: int) -> list[ast.expr | None]:
    expr = _unwrap_expr(expr)
    if isinstance(expr, ast.List | ast.Tuple) and len(expr.elts) == n:
        return list(expr.elts)
    return [expr] * n  # ``total(values)``: every element is read through the same name


# =========================================================================== tracing


ParamKind = Literal["const", "items", "run", "runs", "unbound"]


@dataclass
class _Param:
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
class _Call:
    """One call of a task (or subflow) in the traced flow."""

    order: int
    obj: Any  # the Task or Flow
    how: Literal["call", "submit", "map", "subflow"]
    params: dict[str, _Param]
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


class _Tracer:
    """Records the calls of one traced flow run and where their argument values came from."""

    def __init__(self) -> None:
        self.calls: list[_Call] = []
        self.notes: list[str] = []
        self._results: dict[int, list[_Result]] = {}
        self._pending: list[Any] = []  # futures whose results are not recorded yet
        self._fresh = False  # pending futures already checked during the current call
        self._sources = _Sources()
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- results

    def remember(self, obj: Any, run: UUID) -> None:
        """Record ``obj`` (and the entries of a dict / list) as produced by ``run``."""
        with self._lock:
            self._add(_Result(obj, run))
            if type(obj) is dict:
                for k, v in obj.items():
                    if isinstance(k, str) and not _is_atom(v):
                        self._add(_Result(v, run, key=k))
            elif type(obj) in (list, tuple):
                for i, v in enumerate(obj):
                    if not _is_atom(v):
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
    ) -> _Call:
        """Classify the arguments of a call before Prefect resolves or mutates them."""
        from prefect.context import FlowRunContext

        self._fresh = False
        exprs = _arg_exprs(self._sources.call_at(frame), obj.fn, len(args))
        values, reasons = _bind_arguments(obj.fn, args, kwargs)
        params = {
            name: self._describe(value, exprs.get(name), in_map=how == "map")
            for name, value in values.items()
        }
        call = _Call(
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

    def final_calls(self) -> list[_Call]:
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
            run = _run_of(item)
            if run is None and not _is_atom(item) and (prod := self.producers(item)):
                run = prod[-1].run
            if run is not None:
                found.append(frozenset([run]))
        return found

    def _describe(self, value: Any, expr: ast.expr | None, *, in_map: bool) -> _Param:
        from prefect.utilities.annotations import BaseAnnotation, quote, unmapped
        from prefect.utilities.collections import isiterable

        static, quoted = not in_map, False
        while isinstance(value, BaseAnnotation):
            static = static or isinstance(value, unmapped)
            quoted = quoted or isinstance(value, quote)
            value = value.unwrap()
        if quoted and (_run_of(value) or _nested(value, self)[0]):
            deps = {r for r in [_run_of(value)] if r} | _nested(value, self)[1]
            return _Param("unbound", reason="quote() passes futures unresolved", deps=deps)
        run = _run_of(value)
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
                return _Param("runs", cands=elems, mapped=not static)
        what, deps = _nested(value, self)
        if what is not None:
            return _Param("unbound", reason=f"a literal argument nests {what}", deps=deps)
        if static:
            copy, problem = _snapshot(value, "the argument")
            return (
                _Param("const", value=copy)
                if problem is None
                else _Param("unbound", reason=problem)
            )
        items = list(value)
        copy, problem = _snapshot(items, "the mapped list")
        if problem is None:
            return _Param("items", value=copy, mapped=True)
        return _Param("unbound", reason=problem, mapped=True, value=len(items))

    def _single(self, value: Any, expr: ast.expr | None, run: UUID | None) -> _Param | None:
        """The argument as a whole is one upstream output (a future, a state or a result)."""
        if run is not None:
            return _Param("run", run=run)
        if _is_atom(value) and not _trusts_identity(expr):
            return None
        found = self.producers(value)
        if not found:
            return None
        last = found[-1]
        return _Param("run", run=last.run, key=last.key, index=last.index)

    def _elements(self, values: Sequence[Any], expr: ast.expr | None) -> list | None:
        """Per element, the runs it may come from; None unless every element is an output."""
        cands = []
        for item, item_expr in zip(values, _element_exprs(expr, len(values)), strict=True):
            run = _run_of(item)
            if run is not None:
                cands.append(frozenset([run]))
                continue
            if _is_atom(item) and not _trusts_identity(item_expr):
                return None
            found = [r.run for r in self.producers(item) if r.key is None and r.index is None]
            if not found:
                return None
            cands.append(frozenset(found))
        if all(len(c) == 1 for c in cands) and all(_run_of(v) is not None for v in values):
            return cands  # futures or states only: links by run id, never a coincidence
        for call in self.calls:  # results: only the whole of an earlier map, in order
            if _same_runs(call, cands):
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


def _run_of(value: Any) -> UUID | None:
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


def _nested(value: Any, tracer: _Tracer) -> tuple[str | None, set[UUID]]:
    """Upstream outputs nested inside ``value`` (futures, states, non-atom results).

    Returns what was found (for the opaque reason) and the producer runs (for ordering).
    Atoms are skipped: inside a literal they are literals (the identity pitfall).
    """
    found: list[str] = []
    runs: set[UUID] = set()

    def visit(item: Any, depth: int) -> None:
        if depth > 0:
            if (run := _run_of(item)) is not None:
                found.append("a task's future or state")
                runs.add(run)
                return
            if not _is_atom(item) and (prod := tracer.producers(item)):
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


# ---------------------------------------------------------------- instrumentation

_ACTIVE: contextvars.ContextVar[_Tracer | None] = contextvars.ContextVar(
    "wisefuse_prefect_tracer", default=None
)
_DEPTH: contextvars.ContextVar[int] = contextvars.ContextVar("wisefuse_flow_depth", default=0)
_PATCH_LOCK = threading.Lock()
_PATCH_USERS = 0
_ORIGINALS: dict[tuple[type, str], Any] = {}


def _task_tracer() -> _Tracer | None:
    """The tracer, when the current call belongs to the traced flow itself."""
    tracer = _ACTIVE.get()
    if tracer is None or _DEPTH.get() != 1:
        return None
    from prefect.context import TaskRunContext

    return None if TaskRunContext.get() is not None else tracer


def _wrappers() -> dict[str, Callable]:
    from prefect.flows import Flow
    from prefect.tasks import Task

    call, submit, map_ = Task.__call__, Task.submit, Task.map
    flow_call = Flow.__call__

    @functools.wraps(call)
    def task_call(self, *args, return_state=False, wait_for=None, **kwargs):
        tracer = _task_tracer()
        if tracer is None or self.isasync:
            if tracer is not None:
                tracer.notes.append(f"async task {self.name!r} called directly: not traced")
            return call(self, *args, return_state=return_state, wait_for=wait_for, **kwargs)
        record = tracer.begin(self, "call", args, kwargs, wait_for, sys._getframe(1))
        state = call(self, *args, return_state=True, wait_for=wait_for, **kwargs)
        record.runs = [state.state_details.task_run_id]
        if return_state:
            return state
        result = state.result()
        tracer.remember(result, record.runs[0])
        return result

    @functools.wraps(submit)
    def task_submit(self, *args, return_state=False, wait_for=None, **kwargs):
        tracer = _task_tracer()
        if tracer is None:
            return submit(self, *args, return_state=return_state, wait_for=wait_for, **kwargs)
        record = tracer.begin(self, "submit", args, kwargs, wait_for, sys._getframe(1))
        out = submit(self, *args, return_state=return_state, wait_for=wait_for, **kwargs)
        record.runs = [_run_of(out)]
        if not return_state:
            tracer.watch([out])
        return out

    @functools.wraps(map_)
    def task_map(self, *args, return_state=False, wait_for=None, deferred=False, **kwargs):
        tracer = _task_tracer()
        if tracer is None or deferred:
            return map_(
                self,
                *args,
                return_state=return_state,
                wait_for=wait_for,
                deferred=deferred,
                **kwargs,
            )
        args, kwargs = _materialise(args), _materialise(kwargs)
        record = tracer.begin(self, "map", args, kwargs, wait_for, sys._getframe(1))
        out = map_(self, *args, return_state=return_state, wait_for=wait_for, **kwargs)
        record.runs = [_run_of(x) for x in out]
        if not return_state:
            tracer.watch(list(out))
        return out

    @functools.wraps(flow_call)
    def flow_call_(self, *args, return_state=False, wait_for=None, **kwargs):
        tracer = _task_tracer()  # None for the traced flow itself (depth 0) and deeper flows
        token = _DEPTH.set(_DEPTH.get() + 1)
        try:
            if tracer is None or self.isasync:
                return flow_call(
                    self, *args, return_state=return_state, wait_for=wait_for, **kwargs
                )
            record = tracer.begin(self, "subflow", args, kwargs, wait_for, sys._getframe(1))
            state = flow_call(self, *args, return_state=True, wait_for=wait_for, **kwargs)
            record.child_flow_run = state.state_details.flow_run_id
            record.runs = [record.child_flow_run]
            if return_state:
                return state
            result = state.result()
            tracer.remember(result, record.child_flow_run)
            _link_flow_result(state, result)
            return result
        finally:
            _DEPTH.reset(token)

    return {
        "task.__call__": task_call,
        "task.submit": task_submit,
        "task.map": task_map,
        "flow.__call__": flow_call_,
    }


def _link_flow_result(state: Any, result: Any) -> None:
    """Link a subflow's result to its run, as a plain subflow call does (keeps history alike)."""
    with contextlib.suppress(Exception):
        from prefect.utilities.engine import link_state_to_flow_run_result

        link_state_to_flow_run_result(state, result)


def _materialise(values: Any) -> Any:
    """Turn one-shot iterators into lists, so that recording them does not consume them."""
    if isinstance(values, dict):
        return {k: _materialise_one(v) for k, v in values.items()}
    return tuple(_materialise_one(v) for v in values)


def _materialise_one(value: Any) -> Any:
    try:
        is_iterator = iter(value) is value
    except TypeError:
        return value
    return list(value) if is_iterator and not isinstance(value, str | bytes) else value


@contextlib.contextmanager
def _instrumented(tracer: _Tracer) -> Iterator[None]:
    """Wrap Prefect's call entry points while ``tracer`` records (re-entrant, thread-safe)."""
    global _PATCH_USERS
    from prefect.flows import Flow
    from prefect.tasks import Task

    targets = {
        "task.__call__": (Task, "__call__"),
        "task.submit": (Task, "submit"),
        "task.map": (Task, "map"),
        "flow.__call__": (Flow, "__call__"),
    }
    with _PATCH_LOCK:
        if _PATCH_USERS == 0:
            for key, wrapper in _wrappers().items():
                cls, name = targets[key]
                _ORIGINALS[cls, name] = cls.__dict__[name]
                setattr(cls, name, wrapper)
        _PATCH_USERS += 1
    token = _ACTIVE.set(tracer)
    try:
        yield
    finally:
        _ACTIVE.reset(token)
        with _PATCH_LOCK:
            _PATCH_USERS -= 1
            if _PATCH_USERS == 0:
                for (cls, name), original in _ORIGINALS.items():
                    setattr(cls, name, original)
                _ORIGINALS.clear()


# =========================================================================== the API


_FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def _state_name(run: Any) -> str:
    state_type = getattr(run, "state_type", None)
    return str(getattr(state_type, "value", state_type) or "UNKNOWN")


def _read_task_runs(client: Any, flow_run_id: UUID) -> list[Any]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    runs, page = [], 200
    while True:
        batch = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            limit=page,
            offset=len(runs),
        )
        runs.extend(batch)
        if len(batch) < page:
            return runs


def _wait_for_runs(client: Any, flow_run_id: UUID, expected: set[UUID]) -> dict[UUID, Any]:
    """The flow run's task runs, once the API has recorded every expected one as finished.

    Prefect records task runs from events, asynchronously: right after a flow returns, the
    last ones may still be missing or running. Gives up after ``_API_WAIT_S`` seconds and
    returns what there is (durations are then missing for the rest).
    """
    deadline = time.monotonic() + _API_WAIT_S
    while True:
        runs = {r.id: r for r in _read_task_runs(client, flow_run_id)}
        done = {i for i, r in runs.items() if _state_name(r) in _FINAL and r.end_time}
        if expected <= done or time.monotonic() > deadline:
            return runs
        time.sleep(0.1)


def _duration_ms(run: Any) -> float | None:
    start, end = getattr(run, "start_time", None), getattr(run, "end_time", None)
    if start is not None and end is not None:
        return round((end - start).total_seconds() * 1000, 3)
    total = getattr(run, "total_run_time", None)
    return round(total.total_seconds() * 1000, 3) if total else None


def _input_runs(items: Sequence[Any]) -> set[UUID]:
    """Producer ids among recorded inputs: task runs, and flow runs (a subflow's result)."""
    return {x.id for x in items if getattr(x, "input_type", None) in ("task_run", "flow_run")}


# =========================================================================== trace -> IR


def trace_flow(flow: Any, *args: Any, root: str | Path | None = None, **kwargs: Any) -> Workflow:
    """Run ``flow(*args, **kwargs)`` once for real and return its graph as a Workflow.

    The run goes to whatever Prefect API the environment points at. ``root`` is the folder
    callables are referenced from (default: the flow file's folder); tasks defined outside
    it, lambdas and nested functions become opaque stages. The IR is specialised to this
    run: its parameters (``Workflow.meta["parameters"]``) and mapped lengths. A flow
    parameter literally named ``root`` must be passed positionally.
    """
    _require_prefect()
    from prefect.client.orchestration import get_client
    from prefect.flows import Flow

    if not isinstance(flow, Flow):
        raise PrefectAdapterError(
            f"{flow!r} is not a Prefect flow",
            hint="decorate the function with @flow, or load it with load_flow_file(path)",
        )
    if flow.isasync:
        raise PrefectAdapterError(f"flow {flow.name!r} is async; only sync flows can be traced")
    flow_file = Path(inspect.getsourcefile(flow.fn) or "").resolve()
    root_path = Path(root).resolve() if root is not None else flow_file.parent
    try:
        parameters = inspect.signature(flow.fn).bind(*args, **kwargs)
    except TypeError as err:
        raise PrefectAdapterError(f"flow {flow.name!r}: {err}") from None
    parameters.apply_defaults()

    tracer = _Tracer()
    with _instrumented(tracer):
        state = flow(*args, return_state=True, **kwargs)
    if not state.is_completed():
        raise PrefectAdapterError(
            f"the traced run of flow {flow.name!r} ended {state.type.value}: {state.message}",
            hint="fix the flow (or its parameters) so that it completes, then trace it again",
        )
    flow_run_id = state.state_details.flow_run_id
    calls = tracer.final_calls()
    with get_client(sync_client=True) as client:
        expected = {r for c in calls if c.how != "subflow" for r in c.runs}
        api = _wait_for_runs(client, flow_run_id, expected)
        for c in calls:
            if c.child_flow_run is not None:
                api[c.child_flow_run] = client.read_flow_run(c.child_flow_run)

    stages, control = _trace_stages(calls, api, root_path)
    meta: dict[str, Any] = {
        "parameters": {k: _jsonable(v) for k, v in parameters.arguments.items()},
        "flow_run_id": str(flow_run_id),
        "built_by": "trace",
    }
    if tracer.notes:
        meta["notes"] = tracer.notes
    return Workflow(
        name=flow.name,
        stages=stages,
        edges=derive_edges(stages, control=control),
        source=_source(flow_file, root_path, flow.fn.__name__),
        meta=meta,
    )


def _source(flow_file: Path | None, root: Path, entry: str | None) -> Source:
    rel = None
    if flow_file is not None and flow_file.is_relative_to(root):
        rel = flow_file.relative_to(root).as_posix()
    return Source(framework="prefect", root=str(root), path=rel, entry=entry)


@dataclass
class _Index:
    """What building one stage needs to know about all the calls."""

    ids: dict[int, str]  # call order -> stage id
    owner: dict[UUID, tuple[_Call, int]]  # run -> (call, instance)
    api: dict[UUID, Any]  # run -> the API's task run (or flow run, for a subflow)
    root: Path


def _trace_stages(
    calls: list[_Call], api: dict[UUID, Any], root: Path
) -> tuple[list[Stage], list[tuple[str, str]]]:
    """Stages (one per call) and control edges from the recorded calls."""
    taken: set[str] = set()
    ids: dict[int, str] = {}
    for c in calls:
        ids[c.order] = safe_name(c.obj.name, taken)
        taken.add(ids[c.order])
    index = _Index(ids, {r: (c, i) for c in calls for i, r in enumerate(c.runs)}, api, root)
    stages, control, seen = [], [], {}
    for c in calls:
        stage, reads = _stage_from_call(c, index)
        seen[id(c.obj)] = seen.get(id(c.obj), -1) + 1
        stage.meta["call"] = seen[id(c.obj)]  # 0 for the first call of this task, 1 next...
        stages.append(stage)
        control += [(src, stage.id) for src in reads if src != stage.id]
    return stages, control


def _binding(
    name: str,
    param: _Param,
    owner: dict[UUID, tuple[_Call, int]],
    ids: dict[int, str],
) -> tuple[Binding | None, str | None, set[str]]:
    """The IR binding of one recorded parameter, or why it has none (and what it reads)."""
    if param.kind == "const":
        return Const(value=param.value), None, set()
    if param.kind == "items":
        return ConstItem(values=param.value), None, set()
    reads = {ids[owner[r][0].order] for r in _runs_read(param) if r in owner}
    if param.kind == "unbound":
        return None, f"parameter {name!r}: {param.reason}", reads
    if param.kind == "run":
        src = owner.get(param.run)  # type: ignore[arg-type]
        if src is None:
            return None, f"parameter {name!r} reads a run that is not a stage of this flow", reads
        producer, instance = src
        sid = ids[producer.order]
        if param.index is not None:
            why = (
                f"parameter {name!r} reads element {param.index} of {sid!r}'s output; "
                "return a dict and index it by key, or pass the whole output"
            )
            return None, why, reads
        if producer.how == "map":
            why = f"parameter {name!r} reads one instance (#{instance}) of mapped {sid!r}"
            return None, why, reads
        kind = Item if param.mapped else Output
        return kind(stage=sid, key=param.key), None, set()
    producer = _whole_map(param.cands, owner)  # runs: a list of outputs
    if producer is None:
        why = (
            f"parameter {name!r} is a list of outputs that are not all the instances of one "
            "mapped task, in order"
        )
        return None, why, reads
    sid = ids[producer.order]
    return (Item(stage=sid) if param.mapped else Collect(stage=sid)), None, set()


def _runs_read(param: _Param) -> set[UUID]:
    """Every upstream run a parameter reads, whether the IR can bind it or not."""
    runs = set(param.deps)
    if param.run is not None:
        runs.add(param.run)
    for cands in param.cands:
        runs |= cands if len(cands) == 1 else set()
    return runs


def _same_runs(call: _Call, cands: list[frozenset[UUID]]) -> bool:
    """Are ``cands`` (possible producers per element) exactly ``call``'s map runs, in order?"""
    return (
        call.how == "map"
        and len(call.runs) == len(cands)
        and all(run in c for run, c in zip(call.runs, cands, strict=True))
    )


def _whole_map(cands: list[frozenset[UUID]], owner: dict[UUID, tuple[_Call, int]]) -> _Call | None:
    """The ``.map()`` call whose runs, in order, are the given elements (a gather)."""
    calls = {owner[r][0].order: owner[r][0] for r in cands[0] if r in owner}
    for call in calls.values():
        if _same_runs(call, cands):
            return call
    return None


def _stage_from_call(call: _Call, index: _Index) -> tuple[Stage, list[str]]:
    """One call's stage, and the stages it depends on for ordering only."""
    sid, obj = index.ids[call.order], call.obj
    bindings: dict[str, Binding] = {}
    reasons = list(call.reasons)
    accounted: dict[str, set[str]] = {}  # param -> stages it really reads
    reads: list[str] = []
    for name, param in call.params.items():
        binding, why, unbound_reads = _binding(name, param, index.owner, index.ids)
        if binding is not None:
            bindings[name] = binding
        reasons += [why] if why else []
        reads += sorted(unbound_reads - set(reads))
        accounted[name] = unbound_reads | {getattr(binding, "stage", None)} - {None}
    for cands in call.wait_for:
        src = index.owner.get(next(iter(cands)))
        if src is not None and index.ids[src[0].order] not in reads:
            reads.append(index.ids[src[0].order])
    ref, problem = _reference(obj.fn, index.root)
    reasons = ([problem] if problem else []) + reasons
    if call.how == "subflow":
        reasons.insert(0, f"Prefect subflow {obj.name!r}: its tasks stay in Prefect")
    n = len(call.runs) if call.how == "map" else 1
    if call.how == "map" and n == 0:
        reasons.append("mapped over an empty list in the traced run")
    if call.how == "map" and not any(isinstance(b, Item | ConstItem) for b in bindings.values()):
        placeholder = next((k for k, p in call.params.items() if p.mapped), "__mapped__")
        bindings[placeholder] = ConstItem(values=[None] * max(n, 1))
    stage = Stage(
        id=sid,
        name=obj.name,
        kind=StageKind.OPAQUE if reasons else StageKind.PYTHON,
        callable=ref,
        bindings=bindings,
        parallelism=max(n, 1),
        parallelism_source="observed" if call.how == "map" else "static",
        opaque_reason="; ".join(reasons) if reasons else None,
        retries=int(getattr(obj, "retries", 0) or 0) if call.how != "subflow" else 0,
        meta=_call_meta(call, index, accounted),
    )
    return stage, reads


def _call_meta(call: _Call, index: _Index, accounted: dict[str, set[str]]) -> dict[str, Any]:
    """Observed durations and states from the API, and the inputs it recorded in vain."""
    runs = [index.api.get(r) for r in call.runs]
    meta: dict[str, Any] = {
        "how": call.how,
        "observed_ms": [d for r in runs if r is not None and (d := _duration_ms(r)) is not None],
    }
    if call.how != "subflow":
        meta["task_key"] = call.obj.task_key
    states = sorted({_state_name(r) for r in runs if r is not None})
    if states != ["COMPLETED"]:
        meta["states"] = states
    ignored = _ignored_inputs(call, runs, index, accounted)
    if ignored:
        meta["ignored_api_inputs"] = ignored
    return meta


def _reference(fn: Callable, root: Path) -> tuple[Any, str | None]:
    """A CallableRef for ``fn`` that the runtime can re-import, or why there is none."""
    try:
        ref = callable_ref(fn, root)
    except ValueError as err:
        return None, str(err)
    module = sys.modules.get(getattr(fn, "__module__", ""), None)
    obj: Any = module
    for part in ref.qualname.split("."):
        obj = getattr(obj, part, None)
    if obj is not fn and getattr(obj, "fn", None) is not fn:
        return None, f"{ref.qualname} is not reachable by its name in {ref.path}"
    return ref, None


def _ignored_inputs(
    call: _Call, runs: list[Any], index: _Index, accounted: dict[str, set[str]]
) -> dict[str, list[str]]:
    """Inputs Prefect recorded that the trace found spurious (identity collisions)."""
    ignored: dict[str, set[str]] = {}
    for run in runs:
        for param, items in (getattr(run, "task_inputs", None) or {}).items():
            if param in ("__parents__", "wait_for"):
                continue
            for rid in _input_runs(items):
                src = index.owner.get(rid)
                if src is None:
                    continue
                sid = index.ids[src[0].order]
                if src[0] is call:
                    ignored.setdefault(param, set()).add(f"{sid} (a sibling)")
                elif sid not in accounted.get(param, set()):
                    ignored.setdefault(param, set()).add(sid)
    return {k: sorted(v) for k, v in sorted(ignored.items())}


# =========================================================================== history -> IR


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
    _require_prefect()
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
    flow, flow_file = _find_flow(flow_name, root, path)
    root_path = Path(root).resolve() if root else (flow_file.parent if flow_file else Path.cwd())
    objects = _objects_by_key(flow) if flow is not None else {}
    stages, control = histories[0].stages(objects, root_path, histories[1:])
    return Workflow(
        name=flow_name,
        stages=stages,
        edges=derive_edges(stages, control=control),
        source=_source(flow_file, root_path, flow.fn.__name__ if flow else None),
        meta={
            "parameters": {k: _jsonable(v) for k, v in (flow_runs[0].parameters or {}).items()},
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


def _find_flow(
    flow_name: str, root: str | Path | None, path: str | Path | None
) -> tuple[Any, Path | None]:
    """The flow object (to match task keys to functions) and its file, if they can be found."""
    if path is not None:
        flow = load_flow_file(path, flow_name)
        return flow, Path(path).resolve()
    if root is None:
        return None, None
    needles = {flow_name, flow_name.replace("-", "_")}
    for candidate in sorted(Path(root).resolve().rglob("*.py")):
        if any(p.startswith(".") or p in ("__pycache__", "site-packages") for p in candidate.parts):
            continue
        text = candidate.read_text(encoding="utf-8", errors="replace")
        if "flow" not in text or not any(n in text for n in needles):
            continue
        with contextlib.suppress(PrefectAdapterError):
            module = _import_file(candidate.resolve())
            for _, flow in _flows_in(module):
                if flow.name == flow_name:
                    return flow, candidate.resolve()
    return None, None


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

        runs = _read_task_runs(client, flow_run.id)
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
            producers = {self.tracking.get(rid, rid) for rid in _input_runs(items)}
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
            d for runs in samples for r in runs if (d := _duration_ms(r)) is not None
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
            ref, problem = _reference(obj.fn, root)
            reasons += [problem] if problem else []
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


def task_name(run: Any) -> str:
    """The task's name: Prefect names runs ``<task name>-<dynamic key prefix>``."""
    name, key = run.name or run.task_key, str(run.dynamic_key or "")
    for suffix in (key, key[:3]):
        if suffix and name.endswith(f"-{suffix}"):
            return name[: -len(suffix) - 1]
    return name.rsplit("-", 1)[0] if "-" in name else name


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
