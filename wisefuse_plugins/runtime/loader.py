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
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from wisefuse_plugins.errors import WiseFuseError
from wisefuse_plugins.ir import CallableRef, code_hash

_lock = threading.Lock()
_modules: dict[Path, ModuleType] = {}
_functions: dict[tuple[Path, str, str], Callable] = {}


class CodeLoadError(WiseFuseError):
    """A referenced function cannot be found, imported, or is not the planned version."""


def _import_file(path: Path, root: Path) -> ModuleType:
    module = _modules.get(path)
    if module is not None:
        return module
    name = f"wisefuse_user_{hashlib.sha1(str(path).encode()).hexdigest()[:10]}_{path.stem}"
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
        if verify_hash and code_hash(fn) != ref.code_hash:
            raise CodeLoadError(
                f"{ref.path}:{ref.qualname} is not the code the plan was made for (code hash differs)",
                hint="redeploy the plan, or re-run `wisefuse optimize` for the current code",
            )
        _functions[key] = fn
        return fn
