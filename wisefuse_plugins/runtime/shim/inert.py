"""What every stand-in is made of: inert objects, stand-in modules and refusals.

A stand-in is inert *while the user's file is imported* (:func:`import_phase`): it accepts
any call, attribute, operator and ``with`` block and does nothing, as a DAG file's
module-level code needs. Once the import is done, a task that runs on Lambda and still
reaches a generic stand-in (a hook, an operator, an unknown framework object) gets a
:class:`UnsupportedOnLambda` naming the file and line, never a silently inert value.

Standard library only: this runs in every cold start of a unit.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import types
from collections.abc import Callable, Iterator
from typing import Any

from wisefuse_plugins.errors import WiseFuseError

_HERE = os.path.dirname(os.path.abspath(__file__))
DOCS = "docs/units.md"

#: Attributes the loader reads to unwrap a task (``loader.unwrap``): only exact stand-ins
#: have them, so that a generic one (or a user class built on one) is never mistaken for a task.
UNWRAP_ATTRS = frozenset({"function", "fn"})

_phase_lock = threading.Lock()
_phase_depth = 0


class UnsupportedOnLambda(WiseFuseError):
    """The user's code did something a Lambda unit cannot do without the framework.

    ``file`` and ``line`` are the user's call site; the message starts with them.
    """

    def __init__(self, what: str, reason: str, fix: str) -> None:
        self.file, self.line = caller_location()
        self.what, self.reason = what, reason
        super().__init__(f"{self.file}:{self.line}: {what} {reason}", hint=f"{fix} (see {DOCS})")


def caller_location() -> tuple[str, int]:
    """File and line of the innermost frame outside this package and the import system."""
    frame = sys._getframe(1)
    while frame is not None and (
        frame.f_code.co_filename.startswith(_HERE)
        or frame.f_code.co_filename.startswith("<frozen")
        or frame.f_code.co_filename == contextlib.__file__
    ):
        frame = frame.f_back
    if frame is None:
        return "<unknown>", 0
    return frame.f_code.co_filename, frame.f_lineno


@contextlib.contextmanager
def import_phase() -> Iterator[None]:
    """Generic stand-ins are inert inside this block (the loader imports user files in it)."""
    global _phase_depth
    with _phase_lock:
        _phase_depth += 1
    try:
        yield
    finally:
        with _phase_lock:
            _phase_depth -= 1


def importing() -> bool:
    return _phase_depth > 0


def _refuse_at_run_time(name: str) -> None:
    if not importing():
        raise UnsupportedOnLambda(
            name,
            "is a stand-in: Airflow/Prefect is not installed in this Lambda unit, and a "
            "task cannot use it while it runs",
            "keep this task in the orchestrator (not on Lambda), or use a library that does "
            "not need the framework",
        )


# --------------------------------------------------------------------------- inert objects


class InertMeta(type):
    """Metaclass of generic stand-in classes: class attributes and calls are inert too."""

    _shim_name: str

    def __getattr__(cls, name: str) -> Any:
        if name.startswith("_") or name in UNWRAP_ATTRS:
            raise AttributeError(name)
        return member(f"{cls._shim_name}.{name}", name)

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        _refuse_at_run_time(f"{cls._shim_name}(...)")
        return super().__call__(*args, **kwargs)

    def __repr__(cls) -> str:
        return f"<stand-in class {cls._shim_name}>"

    def __getitem__(cls, item: Any) -> Any:  # Generic[...]-style annotations evaluated at import
        return cls


class Inert(metaclass=InertMeta):
    """Accepts any call, attribute, operator and ``with``; iteration raises (no values)."""

    _shim_name = "stand-in"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # A stand-in made by the shim gets its dotted name; a user subclass keeps the class's.
        if len(args) == 1 and not kwargs and isinstance(args[0], _Name):
            object.__setattr__(self, "_shim_name", str(args[0]))
        else:
            object.__setattr__(self, "_shim_name", f"{type(self)._shim_name}(...)")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name in UNWRAP_ATTRS:
            raise AttributeError(name)
        _refuse_at_run_time(f"{self._shim_name}.{name}")
        return Inert(_Name(f"{self._shim_name}.{name}"))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        _refuse_at_run_time(f"{self._shim_name}(...)")
        return Inert(_Name(f"{self._shim_name}(...)"))

    # dependencies: a >> b is b, [a, b] >> c is c, as Airflow's operators return
    def __rshift__(self, other: Any) -> Any:
        return other

    def __lshift__(self, other: Any) -> Any:
        return other

    def __rrshift__(self, other: Any) -> Any:
        return self

    def __rlshift__(self, other: Any) -> Any:
        return self

    def _op(self, *_: Any) -> Any:
        return Inert(_Name(f"({self._shim_name} op ...)"))

    __or__ = __ror__ = __and__ = __rand__ = __xor__ = __rxor__ = _op
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _op
    __truediv__ = __rtruediv__ = __floordiv__ = __rfloordiv__ = __mod__ = __rmod__ = _op
    __pow__ = __rpow__ = __matmul__ = __rmatmul__ = __neg__ = __pos__ = __invert__ = _op
    __lt__ = __le__ = __gt__ = __ge__ = _op

    def __getitem__(self, key: Any) -> Any:
        return Inert(_Name(f"{self._shim_name}[{key!r}]"))

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def __delitem__(self, key: Any) -> None:
        pass

    def __contains__(self, item: Any) -> bool:
        return False

    def __iter__(self) -> Iterator[Any]:
        raise TypeError(
            f"{self._shim_name} is a stand-in for a framework object and has no items: a "
            f"Lambda unit cannot iterate it at import time (see {DOCS})"
        )

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: Any) -> bool:
        return False

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, *exc: Any) -> bool:
        return False

    def __bool__(self) -> bool:
        return True

    def __repr__(self) -> str:
        return f"<stand-in {self._shim_name}>"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    __hash__ = object.__hash__

    def __eq__(self, other: object) -> bool:
        return self is other


class _Name(str):
    """Marks the one argument an :class:`Inert` gets from the shim itself: its name."""


def inert(name: str) -> Inert:
    """An inert instance named ``name`` (e.g. ``airflow.sdk.DAG(...)``)."""
    return Inert(_Name(name))


_classes: dict[str, type] = {}


def inert_class(name: str, base: type = Inert) -> type:
    """The generic stand-in class for the dotted ``name`` (one per name: identity holds)."""
    cls = _classes.get(name)
    if cls is None:
        short = name.rpartition(".")[2]
        cls = InertMeta(short, (base,), {"_shim_name": name, "__module__": name.rpartition(".")[0]})
        _classes[name] = cls
    return cls


_exceptions: dict[str, type[BaseException]] = {}


def exception_class(name: str, base: type[BaseException]) -> type[BaseException]:
    """A real exception class for the dotted ``name``, so ``raise`` and ``except`` work."""
    short = name.rpartition(".")[2]
    cls = _exceptions.get(short)  # by short name: airflow.exceptions.X is airflow.sdk.X
    if cls is None:
        if short.endswith("Warning"):
            base = Warning
        cls = type(short, (base,), {"__module__": name.rpartition(".")[0]})
        _exceptions[short] = cls
    return cls


def is_exception_name(name: str) -> bool:
    return name[:1].isupper() and name.endswith(("Exception", "Error", "Warning", "Interrupt"))


def member(dotted: str, name: str) -> Any:
    """A class attribute of a generic stand-in: constants are instances, the rest classes."""
    if name.isupper():
        return inert(dotted)
    return inert_class(dotted)


def is_stand_in(obj: object) -> bool:
    """True for the generic stand-ins (not for the exact ones such as task objects)."""
    return isinstance(obj, Inert | StandInModule) or isinstance(type(obj), InertMeta)


# --------------------------------------------------------------------------- modules


class StandInModule(types.ModuleType):
    """A framework module: exact names from ``resolve``, generic stand-ins for the rest.

    Callable (inert), because a lowercase name can be a function as well as a submodule
    (``from airflow.utils.dates import days_ago`` and ``from airflow.utils import dates``).
    """

    def __init__(self, name: str, resolve: Callable[[StandInModule, str], Any]) -> None:
        super().__init__(name, f"Stand-in for {name} (wisefuse framework shim, {DOCS}).")
        self.__path__: list[str] = []
        self._resolve = resolve

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "_resolve":
            raise AttributeError(name)
        value = self._resolve(self, name)
        setattr(self, name, value)
        return value

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        _refuse_at_run_time(f"{self.__name__}(...)")
        return inert(f"{self.__name__}(...)")

    def __repr__(self) -> str:
        return f"<stand-in module {self.__name__}>"


def child_module(
    module: StandInModule, name: str, make: Callable[[str], StandInModule]
) -> StandInModule:
    """The stand-in submodule ``module.name``: imported through the shim's finder while
    ``module`` is the live one (so ``sys.modules`` holds one module per name), else made."""
    full = f"{module.__name__}.{name}"
    found = sys.modules.get(full)
    if isinstance(found, StandInModule):
        return found
    if sys.modules.get(module.__name__) is module:
        import importlib

        with contextlib.suppress(ImportError):
            child = importlib.import_module(full)
            if isinstance(child, StandInModule):
                return child
    return make(full)


def refusing(what: str, reason: str, fix: str) -> Callable[..., Any]:
    """A function that refuses every call with ``what reason`` and ``fix``."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise UnsupportedOnLambda(what, reason, fix)

    refuse.__name__ = refuse.__qualname__ = what.rpartition(".")[2].split("(")[0] or "refuse"
    return refuse


class _Refusing(type):
    """Classes whose public class attributes refuse when called (``Variable.get``)."""

    _what: str
    _reason: str
    _fix: str

    def __getattr__(cls, name: str) -> Any:
        if name.startswith("_") or name in UNWRAP_ATTRS:
            raise AttributeError(name)
        return refusing(f"{cls._what}.{name}()", cls._reason, cls._fix)

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if importing():
            return inert(f"{cls._what}(...)")
        raise UnsupportedOnLambda(f"{cls._what}(...)", cls._reason, cls._fix)

    def __repr__(cls) -> str:
        return f"<stand-in class {cls._what}>"


def refusing_class(name: str, reason: str, fix: str) -> type:
    """A class whose methods (``name.get()``, ...) refuse with ``reason`` and ``fix``."""
    return _Refusing(name.rpartition(".")[2], (), {"_what": name, "_reason": reason, "_fix": fix})


class RefusingModule(StandInModule):
    """A module whose functions and classes refuse when used (``prefect.artifacts``); with
    ``on_access``, reading any name refuses (``prefect.runtime.flow_run.id``)."""

    def __init__(self, name: str, reason: str, fix: str, *, on_access: bool = False) -> None:
        super().__init__(name, self._refusing)
        self._reason, self._fix, self._on_access = reason, fix, on_access

    def _refusing(self, module: StandInModule, attr: str) -> Any:
        what = f"{self.__name__}.{attr}"
        if self._on_access:
            raise UnsupportedOnLambda(what, self._reason, self._fix)
        if attr[:1].isupper():
            return refusing_class(what, self._reason, self._fix)
        return refusing(f"{what}()", self._reason, self._fix)
