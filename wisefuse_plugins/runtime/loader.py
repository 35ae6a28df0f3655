"""Import the user's functions by :class:`CallableRef`, and only from the user's code root.

The code root comes from the deployment (``WISEFUSE_CODE_ROOT``), never from an event, and
a reference must resolve to a ``.py`` file inside it: an event cannot make the runtime
import an arbitrary module. Framework wrappers are unwrapped (Airflow's ``@task`` keeps
the function in ``.function``, Prefect's in ``.fn``), and the code hash is checked so a
unit never runs code other than the code it was planned for.

A Lambda unit has neither Airflow nor Prefect: the unit handler calls
:func:`use_framework_shim` before it imports user files, and their framework imports then
resolve to stand-ins (:mod:`wisefuse_plugins.runtime.shim`, ``WISEFUSE_FRAMEWORK_SHIM``).
A file that fails to import names its line; one that does what a unit cannot do without
the framework says so and how to fix it (docs/units.md).
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import os
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FunctionType, ModuleType
from typing import TYPE_CHECKING, Any

from wisefuse_plugins.errors import WiseFuseError
from wisefuse_plugins.runtime import shim

if TYPE_CHECKING:  # the IR (pydantic) only where a callable is loaded: an emitted DAG's
    # parse imports its original file through import_file
    from wisefuse_plugins.ir import CallableRef

USER_MODULE_PREFIX = "wisefuse_user_"
_lock = threading.RLock()
_modules: dict[Path, ModuleType] = {}
_functions: dict[tuple[Path, str, str], Callable] = {}


class CodeLoadError(WiseFuseError):
    """A referenced function cannot be found, imported, or is not the planned version."""


class NotImportable(CodeLoadError):
    """A path that no importer can load (not a Python source file)."""


def module_name(path: Path, prefix: str) -> str:
    """The ``sys.modules`` name a user file gets: unique per path, readable by its stem."""
    return f"{prefix}{hashlib.sha1(str(path).encode()).hexdigest()[:10]}_{path.stem}"


def import_file(path: Path, name: str, *, search_path: Path | None = None) -> ModuleType:
    """Import the file at ``path`` (not found through ``sys.path``) as the module ``name``.

    The module is registered in ``sys.modules`` under ``name`` before it runs, so that
    ``inspect`` and pickling find it by name; ``search_path`` goes first on ``sys.path`` (if
    absent) so that the file imports its siblings. If running the file fails, the name is
    unregistered and the file's own exception propagates: the caller says what the import
    was for (each caller words its own error). The adapters and the Airflow provider import
    user files through this one function; the runtime's cached import is :func:`load_module`.
    """
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise NotImportable(f"cannot import {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    if search_path is not None and str(search_path) not in sys.path:
        sys.path.insert(0, str(search_path))
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _import_file(path: Path, root: Path) -> ModuleType:
    module = _modules.get(path)
    if module is not None:
        return module
    name = module_name(path, USER_MODULE_PREFIX)
    try:
        with shim.import_phase():  # stand-ins are inert while the file imports
            # like Airflow's DAG folder: user files import their siblings
            module = import_file(path, name, search_path=root)
    except NotImportable:
        raise
    except BaseException as err:
        raise _import_error(path, root, err) from err
    _modules[path] = module
    return module


def _import_error(path: Path, root: Path, err: BaseException) -> CodeLoadError:
    """The failed import, at the line of ``path`` where it failed, with the fix if known."""
    rel = path.relative_to(root) if path.is_relative_to(root) else path
    where = str(rel)
    for frame in reversed(traceback.extract_tb(err.__traceback__)):
        if frame.filename and Path(frame.filename).resolve() == path:
            where = f"{rel}:{frame.lineno}" + (f" (`{frame.line}`)" if frame.line else "")
            break
    else:
        if isinstance(err, SyntaxError) and err.lineno:
            where = f"{rel}:{err.lineno}"
    finder = shim.active()
    if isinstance(err, shim.UnsupportedOnLambda):
        return CodeLoadError(f"importing {where} failed: {err.what} {err.reason}", hint=err.hint)
    hint = None
    if (
        isinstance(err, ModuleNotFoundError)
        and err.name
        and finder is None
        and (err.name.partition(".")[0] in shim.FRAMEWORKS)
    ):
        hint = (
            f"{err.name.partition('.')[0]} is not installed here: let the framework shim "
            f"stand in for it ({shim.ENV}=auto or always, not never)"
        )
    elif isinstance(err, ModuleNotFoundError) and err.name:
        hint = (
            f"{err.name!r} is not installed where this unit runs: on AWS, put it in the "
            "unit's deployment package or a layer"
        )
    elif finder is not None:
        hint = (
            f"this file was imported with stand-ins for Airflow/Prefect ({shim.ENV}="
            f"{finder.mode}); docs/units.md lists what a DAG or flow file may do at import "
            "time on Lambda"
        )
    return CodeLoadError(f"importing {where} failed: {type(err).__name__}: {err}", hint=hint)


def use_framework_shim(mode: str | None = None) -> shim.FrameworkFinder | None:
    """Install the framework shim for this process (``mode`` or ``WISEFUSE_FRAMEWORK_SHIM``).

    For the unit handler's process only: never call it in an Airflow or Prefect process.
    """
    return shim.install(mode)


@contextmanager
def framework_shim(mode: str = "always") -> Iterator[shim.FrameworkFinder | None]:
    """The framework shim for this block only (in-process use: tests, tools).

    User files imported in the block are forgotten at its end, so that a later import of
    the same file outside it gets the real framework again.
    """
    with _lock:
        before = set(_modules)
    try:
        with shim.shimmed(mode) as finder:
            yield finder
    finally:
        with _lock:
            for path in set(_modules) - before:
                module = _modules.pop(path)
                sys.modules.pop(module.__name__, None)
            for key in [k for k in _functions if k[0] not in _modules]:
                del _functions[key]


def unwrap(obj: object) -> Callable:
    """The plain function behind an Airflow ``@task`` or a Prefect ``@task`` object."""
    for attr in ("function", "fn"):  # Airflow _TaskDecorator.function, Prefect Task.fn
        inner = getattr(obj, attr, None)
        if callable(inner):
            return inner
    if not callable(obj):
        raise TypeError(f"{obj!r} is not callable")
    return obj  # type: ignore[return-value]


def _user_file(rel: str | Path, root: Path) -> Path:
    path = (root / rel).resolve()
    if not path.is_relative_to(root) or path.suffix != ".py":
        raise CodeLoadError(
            f"callable path {str(rel)!r} is not a Python file inside the code root {root}",
            hint="plans may only reference the user's own source files",
        )
    return path


def load_module(rel: str | Path, root: str | Path) -> ModuleType:
    """The user file ``root / rel``, imported once, as :func:`load_callable` imports it."""
    root = Path(root).resolve()
    path = _user_file(rel, root)
    if not path.is_file():
        raise CodeLoadError(f"{rel} does not exist under the code root {root}")
    with _lock:
        return _import_file(path, root)


def load_callable(ref: CallableRef, root: str | Path, *, verify_hash: bool = True) -> Callable:
    """Import ``ref.qualname`` from ``root / ref.path``."""
    from wisefuse_plugins.ir import code_hash

    root = Path(root).resolve()
    path = _user_file(ref.path, root)
    key = (path, ref.qualname, ref.code_hash)
    with _lock:
        fn = _functions.get(key)
        if fn is not None:
            return fn
        if not path.is_file():
            raise CodeLoadError(f"{ref.path} does not exist under the code root {root}")
        obj: object = _import_file(path, root)
        for part in ref.qualname.split("."):
            try:
                obj = getattr(obj, part)
            except AttributeError:
                raise CodeLoadError(f"{ref.path} has no attribute {ref.qualname!r}") from None
        if shim.is_stand_in(obj):
            raise CodeLoadError(
                f"{ref.path}:{ref.qualname} is {obj!r}, a stand-in the framework shim made "
                "(Airflow/Prefect is not installed here), not a task function",
                hint="the shim keeps functions decorated with @task, @dag, @task_group, "
                "@flow (docs/units.md); reference the plain function instead",
            )
        fn = unwrap(obj)
        if not _defined_in(fn, path):  # e.g. "os.system" reached through the module's imports
            raise CodeLoadError(
                f"{ref.path}:{ref.qualname} is not a function defined in {ref.path}",
                hint="plans may only reference functions defined in the user's own files",
            )
        if verify_hash and code_hash(fn) != ref.code_hash:
            raise CodeLoadError(
                f"{ref.path}:{ref.qualname} is not the code the plan was made for (code hash differs)",
                hint="redeploy the plan, or re-run `wisefuse optimize` for the current code",
            )
        _functions[key] = fn
        return fn


def _defined_in(fn: object, path: Path) -> bool:
    """True when ``fn``'s source is ``path`` (as :func:`callable_ref` located it)."""
    try:
        src = inspect.getsourcefile(fn)  # type: ignore[arg-type]
    except TypeError:  # a builtin, or not a function at all
        return False
    return src is not None and Path(src).resolve() == path


# --------------------------------------------------------------------------- pickling


def user_reference(obj: type | FunctionType) -> tuple[str, str, str] | None:
    """``(file, module name, qualname)`` of a class or function defined in a user file that
    this loader imported, or None. Such a module exists only in processes that loaded the
    file through :func:`load_callable` under its mangled name, so the store pickles these
    objects as a call to :func:`user_global` that finds the file again (see store.dumps).
    """
    module = sys.modules.get(getattr(obj, "__module__", "") or "")
    file = getattr(module, "__file__", None)
    if module is None or file is None or module not in _modules.values():
        return None
    found: Any = module
    for part in obj.__qualname__.split("."):
        found = getattr(found, part, None)
    if found is not obj:  # not reachable by name (a lambda, a nested class): pickle refuses it
        return None
    return file, module.__name__, obj.__qualname__


def user_global(file: str, module_name: str, qualname: str) -> Any:
    """The class or function ``qualname`` of the user file ``file``, for unpickling.

    Uses the module if this process already imported the file, else imports it (a ``.py``
    file that exists here, inside ``$WISEFUSE_CODE_ROOT`` when that is set).
    """
    module = sys.modules.get(module_name)
    if module is None:
        path = Path(file).resolve()
        env_root = os.environ.get("WISEFUSE_CODE_ROOT")
        root = Path(env_root).resolve() if env_root else path.parent
        if path.suffix != ".py" or not path.is_file() or not path.is_relative_to(root):
            raise CodeLoadError(
                f"a stored value is an instance of {qualname} from {file}, "
                "which is not a Python file of the code root here",
                hint="read the value where the workflow's code is, or return plain data",
            )
        with _lock:
            module = _import_file(path, root)
    obj: Any = module
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj
