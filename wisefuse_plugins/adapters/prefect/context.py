"""What a task needs from Prefect itself, found before it is planned onto Lambda.

A unit runs the task's function as plain Python, outside any Prefect run, with the
framework shim (:mod:`wisefuse_plugins.runtime.shim.prefect`) standing in for ``prefect``.
What works there is kept: ``get_run_logger()`` (a standard logger whose records reach the
unit task run's log), ``print`` (the same), ``tags``, ``unmapped``... What cannot work is
found here, from the task object and its code, so that the stage stays opaque (in Prefect)
with the reason, instead of failing on Lambda or, worse, running otherwise:

* reading the run context: ``prefect.runtime`` (``flow_run.id``), ``get_run_context()``,
  ``TaskRunContext.get()``;
* Prefect's API: ``get_client()``, ``Variable``, blocks' ``load()``, artifacts, events,
  ``run_deployment``, global concurrency limits, pausing or suspending the flow run;
* state hooks (``on_completion``, ``on_failure``...) and ``retry_condition_fn``: Prefect
  calls them on *this* task's runs, and a planned run's task runs are the units';
* a cache policy that reuses results across runs (:func:`cache_problem`): the plain flow
  returns the cached value, a unit would compute a new one;
* an async task function: a unit calls it without awaiting it.

The code is read from the function's bytecode: the globals and closure values it uses,
the modules it imports inside its body, attributes of Prefect modules it reads, and the
same for functions of the user's own modules it calls (a few levels deep).
"""

from __future__ import annotations

import dis
import importlib
import inspect
import sys
import types
from collections.abc import Iterator
from typing import Any

_NO_RUN = "reads Prefect's run context ({what}), which a Lambda unit does not have"
_NO_API = "uses Prefect's API ({what}), which a Lambda unit does not reach"

#: real ``module.name`` -> the reason (``{what}`` is filled in)
_REFUSED: dict[str, str] = {
    "prefect.client.orchestration.get_client": _NO_API,
    "prefect.context.get_run_context": _NO_RUN,
    "prefect.flow_runs.pause_flow_run": _NO_API,
    "prefect.flow_runs.suspend_flow_run": _NO_API,
    "prefect.flow_runs.resume_flow_run": _NO_API,
    "prefect.events.utilities.emit_event": _NO_API,
    "prefect.deployments.flow_runs.run_deployment": _NO_API,
    "prefect.variables.Variable": _NO_API,
    "prefect.concurrency.sync.concurrency": _NO_API,
    "prefect.concurrency.sync.rate_limit": _NO_API,
    "prefect.concurrency.asyncio.concurrency": _NO_API,
    "prefect.concurrency.asyncio.rate_limit": _NO_API,
}
#: modules every function and class of which is refused
_REFUSED_MODULES: dict[str, str] = {
    "prefect.runtime": _NO_RUN,
    "prefect.artifacts": _NO_API,
    "prefect.variables": _NO_API,
    "prefect.client": _NO_API,
}
#: task options whose functions Prefect calls on the task's own runs
_HOOKS = (
    "on_completion_hooks",
    "on_failure_hooks",
    "on_running_hooks",
    "on_commit_hooks",
    "on_rollback_hooks",
)
_DEPTH = 3

FIX = (
    "keep the task in Prefect, or read what it needs in the flow and pass it as an "
    "argument (docs/prefect-adapter.md, 'Tasks that use Prefect')"
)


def lambda_problems(task: Any) -> list[str]:
    """Why ``task`` cannot run in a Lambda unit as it runs in Prefect (empty when it can)."""
    problems = []
    for attr in _HOOKS:
        hooks = getattr(task, attr, None) or []
        if hooks:
            names = ", ".join(getattr(h, "__name__", repr(h)) for h in hooks)
            option = attr.removesuffix("_hooks")
            problems.append(
                f"it has {option} hooks ({names}): Prefect calls them on this task's runs, "
                "and a planned run's task runs are its units'"
            )
    fn = getattr(task, "fn", None)
    if callable(fn) and (
        inspect.iscoroutinefunction(inspect.unwrap(fn))
        or inspect.isasyncgenfunction(inspect.unwrap(fn))
    ):
        problems.append(
            "it is an async function (async def), and a unit calls task functions "
            "synchronously; make it a plain def to plan it"
        )
    cached = cache_problem(task)
    if cached is not None:
        problems.append(cached)
    if getattr(task, "retry_condition_fn", None) is not None:
        problems.append(
            "it has a retry_condition_fn, which Prefect calls on this task's failed runs; "
            "a unit retries on any error"
        )
    fn = getattr(task, "fn", None)
    if callable(fn):
        seen: set[str] = set()
        for where, obj in _used(fn, 0, set()):
            why = refusal(obj)
            if why is not None and where not in seen:  # the first reason per function
                seen.add(where)
                problems.append(f"{why}, in {where}")
    return problems


def cache_problem(task: Any) -> str | None:
    """Why ``task``'s results may come from Prefect's cache of *earlier* runs, or None.

    A cache policy without the run id (``INPUTS``, ``TASK_SOURCE``, a ``cache_key_fn``) hands
    a later run the result an earlier one stored, even when what the task reads (a file, the
    clock) has changed since: the plain flow returns that cached value, and a unit, which
    runs the function, would compute another. So does a ``result_storage_key`` without a
    cache policy (Prefect keys the cache by it). The default policy (keyed by the run id
    too), ``NO_CACHE`` and ``refresh_cache=True`` never read across runs."""
    if getattr(task, "refresh_cache", None) is True:
        return None
    policy = getattr(task, "cache_policy", None)
    if policy is None:  # Prefect then keys the cache by result_storage_key, if any
        key = getattr(task, "result_storage_key", None)
        if key is None:
            return None
        return (
            f"its result_storage_key ({key}) makes Prefect hand a later run the result an "
            "earlier run stored under that key, which a unit does not read (it would compute "
            "the result again)"
        )
    parts = _policy_parts(policy)
    names = {type(p).__name__ for p in parts}
    if names <= {"_None"} or "RunId" in names:
        return None
    shown = " + ".join(sorted(n for n in names if n != "_None"))
    return (
        f"its cache_policy ({shown}) reuses results of earlier runs from Prefect's cache, "
        "which a unit does not read (it would compute the result again)"
    )


def _policy_parts(policy: Any) -> list[Any]:
    """The single policies a (compound) cache policy is made of."""
    inner = getattr(policy, "policies", None)
    if isinstance(inner, list):
        return [p for sub in inner for p in _policy_parts(sub)]
    return [policy]


def refusal(obj: Any) -> str | None:
    """Why a Prefect object cannot be used in a Lambda unit, or None (including non-Prefect)."""
    if isinstance(obj, types.ModuleType):
        name = obj.__name__
        for prefix, reason in _REFUSED_MODULES.items():
            if name == prefix or name.startswith(prefix + "."):
                return reason.format(what=name)
        return None
    module = getattr(obj, "__module__", None) or ""
    if not isinstance(module, str) or not (module == "prefect" or module.startswith("prefect.")):
        return _block_refusal(obj)
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", "")
    dotted = f"{module}.{name}"
    if dotted in _REFUSED:
        return _REFUSED[dotted].format(what=_short(dotted))
    for prefix, reason in _REFUSED_MODULES.items():
        if module == prefix or module.startswith(prefix + "."):
            return reason.format(what=_short(dotted))
    if isinstance(obj, type) and _is_run_context(obj):
        return _NO_RUN.format(what=f"{name}.get()")
    return _block_refusal(obj)


def _short(dotted: str) -> str:
    name = dotted.rpartition(".")[2]
    return f"{name}()" if name[:1].islower() else name


def _is_run_context(cls: type) -> bool:
    context = sys.modules.get("prefect.context")
    base = getattr(context, "RunContext", None)
    return isinstance(base, type) and issubclass(cls, base)


def _block_refusal(obj: Any) -> str | None:
    """A Prefect block class (``S3Bucket.load("name")`` reads it from the API)."""
    core = sys.modules.get("prefect.blocks.core")
    block = getattr(core, "Block", None)
    if isinstance(obj, type) and isinstance(block, type) and issubclass(obj, block):
        return _NO_API.format(what=f"the block {obj.__name__}")
    return None


def _used(fn: Any, depth: int, visited: set[int]) -> Iterator[tuple[str, Any]]:
    """``(where, object)`` for what ``fn``'s code reads: globals, closure values, modules
    it imports, attributes of modules; then the same for the user's functions it calls."""
    fn = inspect.unwrap(fn)
    code = getattr(fn, "__code__", None)
    if code is None or id(code) in visited:
        return
    visited.add(id(code))
    where = _where(fn, code)
    env: dict[str, Any] = dict(getattr(fn, "__globals__", {}) or {})
    closure = getattr(fn, "__closure__", None) or ()
    for name, cell in zip(code.co_freevars, closure, strict=False):
        try:
            env[name] = cell.cell_contents
        except ValueError:  # an empty cell
            continue
    helpers = []
    for each in _codes(code):
        names = set(each.co_names)
        for name in each.co_names:
            if name in env:
                obj = env[name]
                yield where, obj
                if isinstance(obj, types.ModuleType):
                    for attr in names:  # prefect.runtime, prefect.get_client...
                        sub = getattr(obj, attr, None)
                        if sub is not None:
                            yield where, sub
                elif inspect.isfunction(obj) and _is_users(obj, fn):
                    helpers.append(obj)
        for module, froms in _imports(each):
            for attr in froms:  # the names first: the most precise reason
                sub = getattr(module, attr, None)
                if sub is not None:
                    yield where, sub
            yield where, module
            for attr in names:
                sub = getattr(module, attr, None)
                if isinstance(sub, types.ModuleType):
                    yield where, sub
    if depth < _DEPTH:
        for helper in helpers:
            yield from _used(helper, depth + 1, visited)


def _where(fn: Any, code: types.CodeType) -> str:
    """``through_helper (context.py:47)``: the name and place a user knows."""
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", "?")
    file = code.co_filename.replace("\\", "/").rsplit("/", 1)[-1]
    return f"{name} ({file}:{code.co_firstlineno})"


def _codes(code: types.CodeType) -> Iterator[types.CodeType]:
    """A code object and those nested in it (inner functions, comprehensions)."""
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _codes(const)


def _imports(code: types.CodeType) -> Iterator[tuple[types.ModuleType, list[str]]]:
    """The modules a code object imports (``import x.y`` / ``from x import a, b``)."""
    current: tuple[types.ModuleType, list[str]] | None = None
    for ins in dis.get_instructions(code):
        if ins.opname == "IMPORT_NAME":
            if current is not None:
                yield current
            current = None
            try:
                module = importlib.import_module(str(ins.argval))
            except Exception:
                continue
            current = (module, [])
        elif ins.opname == "IMPORT_FROM" and current is not None:
            current[1].append(str(ins.argval))
    if current is not None:
        yield current


def _is_users(obj: Any, fn: Any) -> bool:
    """A function of the task's own module (or of the user's code beside it), not a library's."""
    module = getattr(obj, "__module__", "") or ""
    if module == getattr(fn, "__module__", None):
        return True
    top = module.split(".")[0]
    return (
        top not in sys.stdlib_module_names
        and top not in ("prefect", "wisefuse_plugins")
        and ("site-packages" not in (getattr(sys.modules.get(module), "__file__", "") or ""))
    )
