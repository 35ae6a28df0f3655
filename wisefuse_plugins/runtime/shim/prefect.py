"""Stand-ins for ``prefect`` (every ``prefect.*`` module, and ``prefect_*`` integrations).

A flow file runs as plain Python under them: ``@task`` / ``@flow`` keep the function in
``.fn`` (as Prefect's ``Task`` and ``Flow`` do), and calling, ``.submit()`` or ``.map()``
runs it at once (a future holds the result or the exception), with ``unmapped``,
``quote``, ``allow_failure`` and ``wait_for`` handled as Prefect handles them. So a task
whose body calls another task, or a subflow run inside a unit, gives the plain result.
``get_run_logger()`` is a standard ``logging`` logger (``prefect.task_runs``).
Refused, with the file and line: what needs Prefect's API or a run context (``get_client``,
``prefect.runtime``, ``Variable``, blocks' ``load``, artifacts, pausing, serving and
deploying). Everything else is a generic inert stand-in (:mod:`.inert`).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

from wisefuse_plugins.runtime.shim.inert import (
    Inert,
    InertMeta,
    RefusingModule,
    StandInModule,
    child_module,
    exception_class,
    inert,
    inert_class,
    is_exception_name,
    refusing,
)

VERSION = "3.0.0+wisefuse.shim"
RUN_LOGGER = "prefect.task_runs"

_NO_API = "needs Prefect's API (a server or Prefect Cloud), which a Lambda unit does not use"
_NO_RUN = "needs a Prefect flow or task run context, which a Lambda unit does not have"
_FIX_ARG = "read it in the flow (where Prefect runs) and pass it to the task as an argument"
_FIX_KEEP = "keep this task in Prefect (not on Lambda)"


class PrefectException(Exception):
    """Base of the stand-in exception classes."""


# --------------------------------------------------------------------------- results


class State:
    """A finished run's state: completed with a value, or failed with an exception."""

    def __init__(self, value: Any = None, error: BaseException | None = None) -> None:
        self.data, self.error = value, error
        self.type = self.name = "FAILED" if error is not None else "COMPLETED"
        self.message = None if error is None else f"{type(error).__name__}: {error}"

    def result(self, raise_on_failure: bool = True, **kwargs: Any) -> Any:
        if self.error is not None:
            if raise_on_failure:
                raise self.error
            return self.error
        return self.data

    def is_completed(self) -> bool:
        return self.error is None

    def is_failed(self) -> bool:
        return self.error is not None

    def is_crashed(self) -> bool:
        return False

    def is_cancelled(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"<stand-in State {self.name}>"


class Future:
    """A task run that already ran (``.submit()`` runs at once)."""

    def __init__(self, state: State, name: str) -> None:
        self.state, self.task_run_id, self._name = state, None, name

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> Any:
        return self.state.result(raise_on_failure=raise_on_failure)

    def wait(self, timeout: float | None = None) -> None:
        return None

    def add_done_callback(self, fn: Callable[[Future], Any]) -> None:
        fn(self)

    def __repr__(self) -> str:
        return f"<stand-in future {self._name}: {self.state.name}>"


class FutureList(list):
    """``.map()``'s result: ``.result()`` and ``.wait()`` over all its futures."""

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> list[Any]:
        return [f.result(raise_on_failure=raise_on_failure) for f in self]

    def wait(self, timeout: float | None = None) -> None:
        return None


class _Annotation(tuple):
    """Prefect's ``unmapped`` / ``quote`` / ``allow_failure``: a one-element tuple."""

    def __new__(cls, value: Any) -> _Annotation:
        return super().__new__(cls, (value,))

    @property
    def value(self) -> Any:
        return self[0]

    def unwrap(self) -> Any:
        return self[0]

    def unquote(self) -> Any:
        return self[0]

    def rewrap(self, value: Any) -> _Annotation:
        return type(self)(value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self[0]!r})"


class unmapped(_Annotation):
    pass


class quote(_Annotation):
    pass


class allow_failure(_Annotation):
    pass


def resolve_futures(value: Any) -> Any:
    """Futures replaced by their results, through lists, tuples, sets and dicts."""
    if isinstance(value, Future):
        return value.result()
    if isinstance(value, quote):
        return value.unwrap()
    if isinstance(value, allow_failure):
        inner = value.unwrap()
        return inner.result(raise_on_failure=False) if isinstance(inner, Future) else inner
    if isinstance(value, unmapped):
        return resolve_futures(value.value)
    if isinstance(value, list | tuple | set | frozenset):
        items = [resolve_futures(v) for v in value]
        return type(value)(items) if not isinstance(value, tuple) or type(value) is tuple else value
    if isinstance(value, dict):
        return {k: resolve_futures(v) for k, v in value.items()}
    return value


class DoneAndNotDone(NamedTuple):
    done: set[Any]
    not_done: set[Any]


def wait(futures: Iterable[Future], timeout: float | None = None) -> DoneAndNotDone:
    return DoneAndNotDone(set(futures), set())


def as_completed(futures: Iterable[Future], timeout: float | None = None) -> Iterator[Future]:
    return iter(list(futures))


# --------------------------------------------------------------------------- tasks and flows

_RUN_OPTIONS = ("wait_for", "return_state", "deferred")


class TaskStandIn:
    """What ``@task`` returns: the function in ``.fn``; calls run it at once."""

    def __init__(self, fn: Callable, **options: Any) -> None:
        self.fn = fn
        self.options = options
        self.name = options.get("name") or getattr(fn, "__name__", "task")
        self.isasync = inspect.iscoroutinefunction(fn)
        functools.update_wrapper(self, fn)

    def _run(self, args: tuple, kwargs: dict[str, Any]) -> State:
        try:
            return State(self.fn(*resolve_futures(args), **resolve_futures(kwargs)))
        except Exception as err:
            return State(error=err)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return_state = kwargs.pop("return_state", False)
        kwargs.pop("wait_for", None)
        if return_state:
            return self._run(args, kwargs)
        return self.fn(*resolve_futures(args), **resolve_futures(kwargs))

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        return_state = kwargs.pop("return_state", False)
        kwargs.pop("wait_for", None)
        state = self._run(args, kwargs)
        return state if return_state else Future(state, self.name)

    def map(self, *args: Any, **kwargs: Any) -> Any:
        """As Prefect's ``map``: iterables are mapped over, ``unmapped`` and scalars are not."""
        return_state = kwargs.pop("return_state", False)
        for option in _RUN_OPTIONS:
            kwargs.pop(option, None)
        bound = inspect.signature(self.fn).bind_partial(*args, **kwargs).arguments
        iterables: dict[str, list[Any]] = {}
        static: dict[str, Any] = {}
        annotated: dict[str, _Annotation] = {}
        for key, raw in bound.items():
            val = raw.result() if isinstance(raw, Future) else raw
            if isinstance(val, allow_failure | quote):
                annotated[key] = val
                val = val.unwrap()
            if isinstance(val, unmapped):
                static[key] = val.value
            elif _iterable(val):
                iterables[key] = list(val)
            else:
                static[key] = val
        if not iterables:
            raise exception_class("prefect.exceptions.MappingMissingIterable", PrefectException)(
                f"No iterable parameters were received. Parameters for map must include at "
                f"least one iterable. Parameters: {bound}"
            )
        lengths = {len(v) for v in iterables.values()}
        if len(lengths) > 1:
            raise exception_class("prefect.exceptions.MappingLengthMismatch", PrefectException)(
                "Received iterable parameters with different lengths. Parameters for map must "
                f"all be the same length. Got lengths: { {k: len(v) for k, v in iterables.items()} }"
            )
        results = FutureList()
        for i in range(lengths.pop()):
            call = {k: v[i] for k, v in iterables.items()} | static
            for key, annotation in annotated.items():
                call[key] = annotation.rewrap(call[key])
            state = self._run((), call)
            results.append(state if return_state else Future(state, f"{self.name}-{i}"))
        return results

    def with_options(self, **options: Any) -> TaskStandIn:
        return TaskStandIn(self.fn, **{**self.options, **options})

    def delay(self, *args: Any, **kwargs: Any) -> Any:
        raise _refusal(f"{self.name}.delay()", "needs a Prefect task worker", _FIX_KEEP)

    apply_async = delay

    def __get__(self, instance: Any, owner: Any) -> Any:  # @task on a method
        if instance is None:
            return self
        return TaskStandIn(functools.partial(self.fn, instance), **self.options)

    def __repr__(self) -> str:
        return f"<stand-in prefect Task {self.name}>"


def _iterable(value: Any) -> bool:
    try:
        iter(value)
    except TypeError:
        return False
    return not isinstance(value, str | bytes)


def _refusal(what: str, reason: str, fix: str) -> Exception:
    from wisefuse_plugins.runtime.shim.inert import UnsupportedOnLambda

    return UnsupportedOnLambda(what, reason, fix)


_SERVING = frozenset(
    f"{a}{name}"
    for a in ("", "a")
    for name in ("serve", "deploy", "to_deployment", "from_source", "visualize")
)


class FlowStandIn:
    """What ``@flow`` returns: the function in ``.fn``; a call runs it as plain Python."""

    def __init__(self, fn: Callable, **options: Any) -> None:
        self.fn = fn
        self.options = options
        self.name = options.get("name") or getattr(fn, "__name__", "flow").replace("_", "-")
        self.isasync = inspect.iscoroutinefunction(fn)
        functools.update_wrapper(self, fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return_state = kwargs.pop("return_state", False)
        kwargs.pop("wait_for", None)
        if not return_state:
            return self.fn(*args, **kwargs)
        try:
            return State(self.fn(*args, **kwargs))
        except Exception as err:
            return State(error=err)

    def with_options(self, **options: Any) -> FlowStandIn:
        return FlowStandIn(self.fn, **{**self.options, **options})

    def __getattr__(self, name: str) -> Any:
        if name not in _SERVING:
            raise AttributeError(name)
        return refusing(
            f"{self.name}.{name}()",
            "serves or deploys the flow through Prefect's API, which a Lambda unit does not use",
            "put it under `if __name__ == '__main__':`, which a unit's import does not run",
        )

    def __repr__(self) -> str:
        return f"<stand-in prefect Flow {self.name}>"


def _decorator(kind: type[TaskStandIn] | type[FlowStandIn]) -> Callable[..., Any]:
    def decorate(__fn: Callable | None = None, **options: Any) -> Any:
        if __fn is not None:
            return kind(__fn, **options)
        return lambda fn: kind(fn, **options)

    decorate.__name__ = decorate.__qualname__ = "task" if kind is TaskStandIn else "flow"
    return decorate


task = _decorator(TaskStandIn)
flow = _decorator(FlowStandIn)


def get_run_logger(context: Any = None, **kwargs: Any) -> logging.Logger:
    """A standard logger, so that a task's log calls work on Lambda too."""
    return logging.getLogger(RUN_LOGGER)


def get_logger(name: str | None = None) -> logging.Logger:
    return logging.getLogger(f"prefect.{name}" if name else "prefect")


class _NoContext(InertMeta):
    """``FlowRunContext`` / ``TaskRunContext``: ``.get()`` is None, as outside any run."""

    def __getattr__(cls, name: str) -> Any:
        if name == "get":
            return lambda: None
        return super().__getattr__(name)


class StandInBase(Inert):
    """Base of generic Prefect classes: a block's ``load``/``save`` refuses (needs the API)."""

    @classmethod
    def load(cls, *args: Any, **kwargs: Any) -> Any:
        raise _refusal(f"{cls._shim_name}.load()", _NO_API, _FIX_ARG)

    aload = save = asave = load


def _not_here(what: str, reason: str = _NO_API, fix: str = _FIX_KEEP) -> Callable[..., Any]:
    return refusing(what, reason, fix)


EXACT: dict[str, Any] = {
    "task": task,
    "flow": flow,
    "Task": TaskStandIn,
    "Flow": FlowStandIn,
    "State": State,
    "PrefectFuture": Future,
    "PrefectFutureList": FutureList,
    "unmapped": unmapped,
    "quote": quote,
    "allow_failure": allow_failure,
    "wait": wait,
    "as_completed": as_completed,
    "resolve_futures_to_results": resolve_futures,
    "get_run_logger": get_run_logger,
    "get_logger": get_logger,
    "disable_run_logger": contextlib.nullcontext,
    "tags": lambda *names: contextlib.nullcontext(),
    "PrefectException": PrefectException,
    "get_client": _not_here("get_client()"),
    "get_run_context": _not_here("get_run_context()", _NO_RUN, _FIX_ARG),
    "serve": _not_here("serve()"),
    "aserve": _not_here("aserve()"),
    "deploy": _not_here("deploy()"),
    "pause_flow_run": _not_here("pause_flow_run()"),
    "suspend_flow_run": _not_here("suspend_flow_run()"),
    "resume_flow_run": _not_here("resume_flow_run()"),
    "emit_event": _not_here("emit_event()"),
}
#: Modules whose every name refuses when read (``flow_run.id``).
RUNTIME = ("prefect.runtime.flow_run", "prefect.runtime.task_run", "prefect.runtime.deployment")
#: Modules whose functions and classes refuse when used.
REFUSING: dict[str, tuple[str, str]] = {
    "prefect.artifacts": (_NO_API, _FIX_KEEP),
    "prefect.variables": (_NO_API, _FIX_ARG),
    "prefect.client.orchestration": (_NO_API, _FIX_KEEP),
}


def resolve(module: StandInModule, name: str) -> Any:
    """The value of ``module.name`` for any ``prefect.*`` stand-in module."""
    if name in EXACT:
        return EXACT[name]
    if name in ("__version__", "version"):
        return VERSION
    if is_exception_name(name):
        return exception_class(f"{module.__name__}.{name}", PrefectException)
    if name.isupper():  # INPUTS, TASK_SOURCE, NO_CACHE, DEFAULT: they combine with +
        return inert(f"{module.__name__}.{name}")
    if name.endswith("RunContext"):
        return _NoContext(name, (StandInBase,), {"_shim_name": f"{module.__name__}.{name}"})
    if name[:1].isupper():
        return inert_class(f"{module.__name__}.{name}", StandInBase)
    return child_module(module, name, make_module)


def make_module(name: str) -> StandInModule:
    if name in RUNTIME:
        return RefusingModule(name, _NO_RUN, _FIX_ARG, on_access=True)
    if name in REFUSING:
        return RefusingModule(name, *REFUSING[name])
    module = StandInModule(name, resolve)
    if name == "prefect":
        module.__version__ = VERSION  # type: ignore[attr-defined]
    return module
