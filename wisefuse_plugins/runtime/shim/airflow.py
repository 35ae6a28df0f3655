"""Stand-ins for ``airflow`` (every ``airflow.*`` module): what a DAG file needs to import.

Exact where the loader or the task's code depends on it: ``@task`` in all its forms keeps
the function in ``.function`` (as Airflow's ``_TaskDecorator`` does); ``@dag`` and
``@task_group`` keep theirs and calling them does nothing; ``setup``/``teardown``,
``chain``/``cross_downstream`` do nothing; exceptions are real exception classes;
``TriggerRule``-style enums give their string values; ``timezone`` and ``days_ago`` give
real datetimes. Refused, with the file and line: ``Variable``, connections and
``get_current_context`` (they need Airflow's metadata database or a running task
instance). Everything else is a generic inert stand-in (:mod:`.inert`).
"""

from __future__ import annotations

import datetime as _dt
import functools
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from wisefuse_plugins.runtime.shim.inert import (
    UNWRAP_ATTRS,
    StandInModule,
    UnsupportedOnLambda,
    child_module,
    exception_class,
    importing,
    inert,
    inert_class,
    is_exception_name,
    refusing_class,
)

VERSION = "3.0.0+wisefuse.shim"  # PEP 440, so version checks in DAG files parse it

_NO_DB = "needs Airflow's metadata database, which a Lambda unit does not have"
_FIX_VALUE = (
    "read it where Airflow runs and pass it to the task as an argument (or a DAG param), "
    "or give the unit an environment variable and read os.environ"
)


class AirflowException(Exception):
    """Base of the stand-in exception classes (``AirflowSkipException`` and the rest)."""


# --------------------------------------------------------------------------- tasks


class TaskStandIn:
    """What ``@task`` (any flavour) returns: the function in ``.function``, inert uses."""

    def __init__(self, function: Callable, kind: str = "python", **kwargs: Any) -> None:
        self.function = function
        self.kind = kind
        self.kwargs = kwargs
        self.multiple_outputs = kwargs.get("multiple_outputs")
        functools.update_wrapper(self, function)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not importing():
            raise UnsupportedOnLambda(
                f"calling the @task {self.function.__name__}()",
                "from a running task only makes an operator in Airflow, not a value",
                f"call the plain function: {self.function.__name__}.function(...)",
            )
        return inert(f"{self.function.__name__}()")

    def override(self, **kwargs: Any) -> TaskStandIn:
        return TaskStandIn(self.function, self.kind, **{**self.kwargs, **kwargs})

    def partial(self, **kwargs: Any) -> Any:
        return inert(f"{self.function.__name__}.partial(...)")

    def expand(self, **kwargs: Any) -> Any:
        return inert(f"{self.function.__name__}.expand(...)")

    def expand_kwargs(self, *args: Any, **kwargs: Any) -> Any:
        return inert(f"{self.function.__name__}.expand_kwargs(...)")

    def __repr__(self) -> str:
        return f"<stand-in @task.{self.kind} {self.function.__qualname__}>"


def _decorator(kind: str) -> Callable[..., Any]:
    """``@task.<kind>``, ``@task.<kind>(...)`` and ``task.<kind>(python_callable=f)``."""

    def decorate(python_callable: Callable | None = None, **kwargs: Any) -> Any:
        if python_callable is not None and callable(python_callable):
            return TaskStandIn(python_callable, kind, **kwargs)
        return lambda fn: TaskStandIn(fn, kind, **kwargs)

    return decorate


def _condition(*args: Any, **kwargs: Any) -> Callable[[Any], Any]:
    """``@task.run_if(condition)`` / ``@task.skip_if(condition)``: wraps a task, keeps it."""
    return lambda t: t if isinstance(t, TaskStandIn) else TaskStandIn(t)


class _TaskNamespace:
    """``task``: a decorator, and ``task.bash``, ``task.virtualenv``, ... (any flavour)."""

    __name__ = __qualname__ = "task"

    def __call__(self, python_callable: Callable | None = None, **kwargs: Any) -> Any:
        return _decorator("python")(python_callable, **kwargs)

    def __getattr__(self, kind: str) -> Any:
        if kind.startswith("_") or kind in UNWRAP_ATTRS:
            raise AttributeError(kind)
        if kind in ("run_if", "skip_if"):
            return _condition
        return _decorator(kind)

    def __repr__(self) -> str:
        return "<stand-in airflow.sdk.task>"


task = _TaskNamespace()


class _Factory:
    """What ``@dag`` / ``@task_group`` return: the function in ``.function``; a call is inert."""

    def __init__(self, kind: str, function: Callable, kwargs: dict[str, Any]) -> None:
        self.kind, self.function, self.kwargs = kind, function, kwargs
        functools.update_wrapper(self, function)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:  # the body never runs
        return inert(f"{self.function.__name__}()")

    def expand(self, **kwargs: Any) -> Any:
        return inert(f"{self.function.__name__}.expand(...)")

    def partial(self, **kwargs: Any) -> Any:
        return inert(f"{self.function.__name__}.partial(...)")

    expand_kwargs = expand

    def override(self, **kwargs: Any) -> _Factory:
        return _Factory(self.kind, self.function, {**self.kwargs, **kwargs})

    def __repr__(self) -> str:
        return f"<stand-in @{self.kind} {self.function.__qualname__}>"


def _factory_decorator(kind: str) -> Callable[..., Any]:
    def decorate(*args: Any, **kwargs: Any) -> Any:
        if len(args) == 1 and not kwargs and callable(args[0]):
            return _Factory(kind, args[0], {})
        return lambda fn: _Factory(kind, fn, kwargs)

    decorate.__name__ = decorate.__qualname__ = kind
    return decorate


dag = _factory_decorator("dag")
task_group = _factory_decorator("task_group")


def _setup_or_teardown(*args: Any, **kwargs: Any) -> Any:
    """``@setup`` / ``@teardown`` (also over ``@task``, and with arguments)."""

    def mark(fn: Any) -> Any:
        return fn if isinstance(fn, TaskStandIn) else TaskStandIn(fn)

    if len(args) == 1 and not kwargs and callable(args[0]):
        return mark(args[0])
    return mark


def asset(*args: Any, **kwargs: Any) -> Any:
    """``@asset(...)`` / ``@asset.multi(...)``: the function kept in ``.function``."""
    if len(args) == 1 and not kwargs and callable(args[0]):
        return _Factory("asset", args[0], {})
    return lambda fn: _Factory("asset", fn, kwargs)


asset.multi = asset  # type: ignore[attr-defined]


def _nothing(*args: Any, **kwargs: Any) -> None:
    """``chain``, ``chain_linear``, ``cross_downstream``: dependencies mean nothing here."""


def get_current_context() -> Any:
    raise UnsupportedOnLambda(
        "get_current_context()",
        "needs a running Airflow task instance (ti, params, logical date), which a Lambda "
        "unit does not have",
        "pass what the task needs as arguments, or keep this task in Airflow",
    )


def get_parsing_context() -> Any:
    """As outside Airflow's DAG processor: no DAG or task being parsed."""
    return SimpleNamespace(dag_id=None, task_id=None)


Variable = refusing_class("Variable", _NO_DB, _FIX_VALUE)
_CONNECTIONS = dict(
    reason="needs Airflow's connections (metadata database or secrets backend), which a "
    "Lambda unit does not have",
    fix="give the unit the credentials it needs (its IAM role, or environment variables) "
    "and connect without an Airflow hook, or keep this task in Airflow",
)
Connection = refusing_class("Connection", **_CONNECTIONS)
BaseHook = refusing_class("BaseHook", **_CONNECTIONS)


class _StrEnum(type):
    """``TriggerRule.ALL_DONE == "all_done"``, as Airflow's string enums compare."""

    def __getattr__(cls, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return name.lower()

    def __iter__(cls) -> Any:
        return iter(())


_ENUMS = ("TriggerRule", "WeightRule", "TaskInstanceState", "DagRunState", "State", "DagRunType")


# --------------------------------------------------------------------------- dates


def _aware(value: _dt.datetime, tz: Any = None) -> _dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=tz or _dt.UTC)


def _to_utc(value: _dt.datetime | None) -> _dt.datetime | None:
    return None if value is None else _aware(value).astimezone(_dt.UTC)


def _utc_datetime(*args: Any, **kwargs: Any) -> _dt.datetime:
    kwargs.setdefault("tzinfo", _dt.UTC)
    return _dt.datetime(*args, **kwargs)


#: ``airflow.utils.timezone`` / ``airflow.sdk.timezone``: real, timezone-aware datetimes.
TIMEZONE: dict[str, Any] = {
    "utc": _dt.UTC,
    "datetime": _utc_datetime,
    "utcnow": lambda: _dt.datetime.now(_dt.UTC),
    "make_aware": _aware,
    "convert_to_utc": _to_utc,
    "coerce_datetime": _to_utc,
    "parse": lambda text, **kwargs: _aware(_dt.datetime.fromisoformat(text)),
}


def days_ago(n: int, hour: int = 0, minute: int = 0, second: int = 0) -> _dt.datetime:
    """``airflow.utils.dates.days_ago``: midnight UTC ``n`` days ago."""
    today = _dt.datetime.now(_dt.UTC).replace(hour=hour, minute=minute, second=second)
    return today.replace(microsecond=0) - _dt.timedelta(days=n)


# --------------------------------------------------------------------------- resolution

EXACT: dict[str, Any] = {
    "task": task,
    "dag": dag,
    "task_group": task_group,
    "setup": _setup_or_teardown,
    "teardown": _setup_or_teardown,
    "asset": asset,
    "chain": _nothing,
    "chain_linear": _nothing,
    "cross_downstream": _nothing,
    "get_current_context": get_current_context,
    "get_parsing_context": get_parsing_context,
    "Variable": Variable,
    "Connection": Connection,
    "BaseHook": BaseHook,
    "AirflowException": AirflowException,
    "days_ago": days_ago,
}
#: Names of particular modules, before :data:`EXACT`.
MODULES: dict[str, dict[str, Any]] = {
    "airflow.utils.timezone": TIMEZONE,
    "airflow.sdk.timezone": TIMEZONE,
    "airflow.utils.dates": {"days_ago": days_ago},
}
_enums: dict[str, type] = {}


def resolve(module: StandInModule, name: str) -> Any:
    """The value of ``module.name`` for any ``airflow.*`` stand-in module."""
    table = MODULES.get(module.__name__, {})
    if name in table:
        return table[name]
    if name in EXACT:
        return EXACT[name]
    if name == "__version__" or name == "version":
        return VERSION
    if name in _ENUMS:
        return _enums.setdefault(name, _StrEnum(name, (), {}))
    if is_exception_name(name):
        return exception_class(f"{module.__name__}.{name}", AirflowException)
    if name.isupper():  # a constant (NEVER_EXPIRE, ...)
        return inert(f"{module.__name__}.{name}")
    if name[:1].isupper():
        return inert_class(f"{module.__name__}.{name}")
    return submodule(module, name)


def submodule(module: StandInModule, name: str) -> StandInModule:
    """``airflow.x.y`` as an attribute of ``airflow.x`` (``from airflow.utils import dates``)."""
    return child_module(module, name, make_module)


def make_module(name: str) -> StandInModule:
    module = StandInModule(name, resolve)
    if name == "airflow":
        module.__version__ = VERSION  # type: ignore[attr-defined]
    return module
