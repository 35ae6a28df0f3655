"""Where the IR points into the user's code: the workflow's :class:`Source` and each stage's
:class:`CallableRef`.

Separate because a trace and history both need them, with the same rule: a function the
runtime cannot re-import by its name makes the stage opaque.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wisefuse_plugins.ir import Source, callable_ref


def workflow_source(flow_file: Path | None, root: Path, entry: str | None) -> Source:
    """The workflow's :class:`Source`: the flow file relative to ``root`` (None outside it)."""
    rel = None
    if flow_file is not None and flow_file.is_relative_to(root):
        rel = flow_file.relative_to(root).as_posix()
    return Source(framework="prefect", root=str(root), path=rel, entry=entry)


def reference(fn: Callable, root: Path) -> tuple[Any, str | None]:
    """A CallableRef for ``fn`` that the runtime can re-import, or why there is none."""
    try:
        ref = callable_ref(fn, root)
    except ValueError as err:
        return None, str(err)
    module = sys.modules.get(getattr(fn, "__module__", ""), None)
    obj: Any = module
    for part in ref.qualname.split("."):
        obj = getattr(obj, part, None)
    if obj is not fn and getattr(obj, "fn", None) is not fn:
        return None, f"{ref.qualname} is not reachable by its name in {ref.path}"
    return ref, None
