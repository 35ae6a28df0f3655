"""Framework shim: a Lambda unit imports the user's DAG or flow file without Airflow or Prefect.

On AWS a unit runs from its zip and layers, where neither framework is installed (nor
would fit), yet the DAG file it imports starts with ``from airflow.sdk import dag, task``.
While the shim is installed, ``airflow*`` and ``prefect*`` imports resolve to stand-ins
(:mod:`.airflow`, :mod:`.prefect`): decorators keep the user's function where the loader
unwraps it, DAG and flow definitions do nothing, and what cannot work without the
framework is refused with the file, the line and the fix. docs/units.md lists what a
DAG or flow file may do at import time on Lambda.

``WISEFUSE_FRAMEWORK_SHIM`` (read by the unit handler when it first imports user code):

- ``auto`` (default): stand in for a framework only where it is not importable (Lambda);
- ``always``: hide the real frameworks even where installed (the local backend sets it
  in every function's environment, so "works locally" means "works on Lambda");
- ``never``: import the real frameworks, or fail.

Only the unit handler installs it (:func:`install`, for the worker process), and
:func:`shimmed` scopes it to a block for in-process use; an Airflow or Prefect process
(scheduler, task processes, the Prefect decorator) never gets it: ``auto`` installs
nothing in a process that already imported a real framework.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from types import ModuleType

from wisefuse_plugins.errors import WiseFuseError
from wisefuse_plugins.runtime.shim.finder import FRAMEWORKS, FrameworkFinder, is_framework_module
from wisefuse_plugins.runtime.shim.inert import (
    UnsupportedOnLambda,
    import_phase,
    is_stand_in,
)

ENV = "WISEFUSE_FRAMEWORK_SHIM"
MODES = ("auto", "always", "never")

__all__ = [
    "ENV",
    "FRAMEWORKS",
    "MODES",
    "FrameworkFinder",
    "UnsupportedOnLambda",
    "active",
    "import_phase",
    "install",
    "is_stand_in",
    "mode_from_env",
    "shimmed",
    "uninstall",
]


def mode_from_env(environ: dict[str, str] | None = None) -> str:
    value = (environ if environ is not None else os.environ).get(ENV, "").strip().lower()
    if not value:
        return "auto"
    if value not in MODES:
        raise WiseFuseError(
            f"{ENV}={value!r} is not one of {', '.join(MODES)}",
            hint=f"set {ENV} to auto (the default), always or never",
        )
    return value


def active() -> FrameworkFinder | None:
    """The installed finder, if any."""
    return next((f for f in sys.meta_path if isinstance(f, FrameworkFinder)), None)


def _is_real(module: ModuleType) -> bool:
    """A framework module that was really imported (not a stand-in, not a namespace package:
    a code root's ``airflow/`` folder of DAG files)."""
    return not is_stand_in(module) and getattr(module, "__file__", None) is not None


def _real_framework_loaded() -> bool:
    return any(
        is_framework_module(name) and module is not None and _is_real(module)
        for name, module in list(sys.modules.items())
    )


def _evict(finder: FrameworkFinder) -> dict[str, ModuleType]:
    """Take what would shadow the stand-ins out of ``sys.modules``: namespace packages, and
    in ``always`` mode the real framework modules too."""
    evicted = {}
    for name, module in list(sys.modules.items()):
        if not is_framework_module(name) or module is None or is_stand_in(module):
            continue
        if (finder.mode == "always" or not _is_real(module)) and finder.serves(name):
            evicted[name] = sys.modules.pop(name)
    return evicted


_Detached = list[tuple[logging.Filterer, str, object]]


def _detach_logging(evicted: dict[str, ModuleType]) -> _Detached:
    """Take the evicted framework's handlers and filters off every logger.

    A process that imported the real framework may have configured logging with it
    (Prefect's handlers and their API-key filter); that code imports the framework lazily
    when a record passes, and would get the stand-ins. A unit on Lambda has no such
    handlers, so while the shim is in, the process has none either.
    """
    roots = {name.split(".")[0] for name in evicted}
    if not roots:
        return []

    def from_framework(obj: object) -> bool:
        return type(obj).__module__.split(".")[0] in roots

    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    detached: _Detached = []
    for logger in loggers:
        if not isinstance(logger, logging.Logger):
            continue  # a PlaceHolder
        for handler in list(logger.handlers):
            if from_framework(handler) or any(map(from_framework, handler.filters)):
                logger.removeHandler(handler)
                detached.append((logger, "handler", handler))
        for filt in [f for f in logger.filters if from_framework(f)]:
            logger.removeFilter(filt)
            detached.append((logger, "filter", filt))
    return detached


def _reattach_logging(detached: _Detached) -> None:
    for logger, kind, obj in detached:
        if kind == "handler":
            logger.addHandler(obj)  # type: ignore[attr-defined, arg-type]
        else:
            logger.addFilter(obj)  # type: ignore[arg-type]


def install(mode: str | None = None) -> FrameworkFinder | None:
    """Install the finder for this process (the unit handler's cold start); idempotent.

    Returns the finder, or None when it would serve nothing (``never``; ``auto`` with both
    frameworks importable, or in a process that already imported one: a framework process).
    """
    mode = mode or mode_from_env()
    current = active()
    if current is not None:
        return current
    if mode == "never" or (mode == "auto" and _real_framework_loaded()):
        return None
    finder = FrameworkFinder(mode)
    if not any(finder.serves(name) for name in ("airflow", "prefect")):
        return None
    # e.g. preloaded by a fork server: the user's imports must not see them
    _detach_logging(_evict(finder))
    sys.meta_path.insert(0, finder)
    return finder


def uninstall(finder: FrameworkFinder) -> None:
    """Remove ``finder`` and the stand-in modules it made from this process."""
    with contextlib.suppress(ValueError):
        sys.meta_path.remove(finder)
    for name in list(sys.modules):
        module = sys.modules.get(name)
        if is_framework_module(name) and module is not None and is_stand_in(module):
            del sys.modules[name]


@contextlib.contextmanager
def shimmed(mode: str = "always") -> Iterator[FrameworkFinder | None]:
    """The shim inside this block only; real framework modules are put back afterwards.

    For in-process use (tests, tools); user files imported in the block keep their
    stand-ins, so import them through :func:`wisefuse_plugins.runtime.loader.framework_shim`,
    which also forgets them at the end.
    """
    if active() is not None:
        yield active()
        return
    finder = FrameworkFinder(mode) if mode != "never" else None
    if finder is None or not any(finder.serves(name) for name in ("airflow", "prefect")):
        yield None
        return
    evicted = _evict(finder)
    detached = _detach_logging(evicted)
    sys.meta_path.insert(0, finder)
    try:
        yield finder
    finally:
        uninstall(finder)
        sys.modules.update(evicted)
        _reattach_logging(detached)
