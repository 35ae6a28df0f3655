"""Monkeypatching Prefect for a trace: ``Task.__call__`` / ``submit`` / ``map`` and
``Flow.__call__`` wrapped while a tracer records, restored afterwards.

Separate because it is the one place that changes Prefect's classes (process-wide, under
a lock, re-entrant): the wrappers only hand each call of the traced flow itself to the
active :class:`~.tracer.Tracer`; calls outside it pass straight through. The decorator
(``providers/prefect``) reads :data:`_ACTIVE` to tell that a trace is running.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

from wisefuse_plugins.adapters.prefect.tracer import Tracer, run_of

_ACTIVE: contextvars.ContextVar[Tracer | None] = contextvars.ContextVar(
    "wisefuse_prefect_tracer", default=None
)
_DEPTH: contextvars.ContextVar[int] = contextvars.ContextVar("wisefuse_flow_depth", default=0)
_PATCH_LOCK = threading.Lock()
_PATCH_USERS = 0
_ORIGINALS: dict[tuple[type, str], Any] = {}


def _task_tracer() -> Tracer | None:
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
            tracer.returned(record, state)
            return state
        result = state.result()
        tracer.remember(result, record.runs[0])
        tracer.returned(record, result)
        return result

    @functools.wraps(submit)
    def task_submit(self, *args, return_state=False, wait_for=None, **kwargs):
        tracer = _task_tracer()
        if tracer is None:
            return submit(self, *args, return_state=return_state, wait_for=wait_for, **kwargs)
        record = tracer.begin(self, "submit", args, kwargs, wait_for, sys._getframe(1))
        out = submit(self, *args, return_state=return_state, wait_for=wait_for, **kwargs)
        record.runs = [run_of(out)]
        if not return_state:
            tracer.watch([out])
        tracer.returned(record, out)
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
        record.runs = [run_of(x) for x in out]
        if not return_state:
            tracer.watch(list(out))
        tracer.returned(record, out)
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
                tracer.returned(record, state)
                return state
            result = state.result()
            tracer.remember(result, record.child_flow_run)
            tracer.returned(record, result)
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
def instrumented(tracer: Tracer) -> Iterator[None]:
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
