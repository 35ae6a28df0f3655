"""Import the user's functions by :class:`CallableRef`, and only from the user's code root.

The code root comes from the deployment (``WISEFUSE_CODE_ROOT``), never from an event, and
a reference must resolve to a ``.py`` file inside it: an event cannot make the runtime
import an arbitrary module. Framework wrappers are unwrapped (Airflow's ``@task`` keeps
the function in ``.function``, Prefect's in ``.fn``), and the code hash is checked so a
unit never runs code other than the code it was planned for.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FunctionType, ModuleType
from typing import Any

from wisefuse_plugins.errors import WiseFuseError
from wisefuse_plugins.ir import CallableRef, code_hash

USER_MODULE_PREFIX = "wisefuse_user_"
_lock = threading.RLock()
_modules: dict[Path, ModuleType] = {}
_functions: dict[tuple[Path, str, str], Callable] = {}


class CodeLoadError(WiseFuseError):
    """A referenced function cannot be found, imported, or is not the planned version."""


def _import_file(path: Path, root: Path) -> ModuleType:
    module = _modules.get(path)
    if module is not None:
        return module
    name = f"{USER_MODULE_PREFIX}{hashlib.sha1(str(path).encode()).hexdigest()[:10]}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise CodeLoadError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    if str(root) not in sys.path:  # like Airflow's DAG folder: user files import their siblings
        sys.path.insert(0, str(root))
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as err:
        del sys.modules[name]
        raise CodeLoadError(f"importing {path} failed: {type(err).__name__}: {err}") from err
    _modules[path] = module
    return module


def unwrap(obj: object) -> Callable:
    """The plain function behind an Airflow ``@task`` or a Prefect ``@task`` object."""
    for attr in ("function", "fn"):  # Airflow _TaskDecorator.function, Prefect Task.fn
        inner = getattr(obj, attr, None)
        if callable(inner):
            return inner
    if not callable(obj):
        raise TypeError(f"{obj!r} is not callable")
    return obj  # type: ignore[return-value]


def load_callable(ref: CallableRef, root: str | Path, *, verify_hash: bool = True) -> Callable:
    """Import ``ref.qualname`` from ``root / ref.path``."""
    root = Path(root).resolve()
    path = (root / ref.path).resolve()
    if not path.is_relative_to(root) or path.suffix != ".py":
        raise CodeLoadError(
            f"callable path {ref.path!r} is not a Python file inside the code root {root}",
            hint="plans may only reference the user's own source files",
        )
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
