"""Building :class:`CallableRef` s from live functions (adapters use this)."""

from __future__ import annotations

import hashlib
import inspect
import textwrap
from collections.abc import Callable
from pathlib import Path

from wisefuse_plugins.ir.nodes import CallableRef


def code_hash(fn: Callable) -> str:
    """SHA-256 of the function's dedented source: changes whenever its code changes."""
    try:
        source = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError) as err:
        raise ValueError(f"cannot read the source of {fn!r}: {err}") from None
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


def callable_ref(fn: Callable, root: str | Path) -> CallableRef:
    """Reference ``fn`` by its source file (relative to ``root``) and qualified name.

    Raises ValueError when ``fn`` cannot be re-imported from a file by name: lambdas,
    closures and functions nested in other functions, or files outside ``root``.
    Adapters turn that into an opaque stage with the message as the reason.
    """
    qualname = getattr(fn, "__qualname__", "")
    if not qualname or "<lambda>" in qualname or "<locals>" in qualname:
        raise ValueError(
            f"{qualname or fn!r} is a lambda or a nested function, not importable by name"
        )
    src = inspect.getsourcefile(fn)
    if src is None:
        raise ValueError(f"{qualname} has no source file")
    root = Path(root).resolve()
    try:
        rel = Path(src).resolve().relative_to(root)
    except ValueError:
        raise ValueError(
            f"{qualname} is defined in {src}, outside the workflow root {root}"
        ) from None
    return CallableRef(path=rel.as_posix(), qualname=qualname, code_hash=code_hash(fn))
