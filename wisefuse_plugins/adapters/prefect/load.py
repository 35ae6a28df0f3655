"""Find and import the user's flow file: the ``@flow`` object a trace runs, or that history
matches task keys against.

Separate because loading is about files and modules, not about Prefect runs: the file is
imported by :func:`wisefuse_plugins.runtime.loader.import_file` (the one import-by-path of
the package), here worded as the adapter's errors.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from wisefuse_plugins.adapters.prefect.errors import PrefectAdapterError, require_prefect
from wisefuse_plugins.runtime.loader import NotImportable, import_file, module_name


def load_flow_file(path: str | Path, flow_name: str | None = None) -> Any:
    """Import a flow file by path (not as a module) and return its ``@flow`` object.

    ``flow_name`` picks one flow when the file defines several: a flow's name, its
    function's name or the variable holding it. The file's folder goes on ``sys.path``,
    as when running ``python flow.py``, so it can import its siblings.
    """
    require_prefect()
    path = Path(path).resolve()
    if not path.is_file():
        raise PrefectAdapterError(f"flow file {path} does not exist")
    module = _import_file(path)
    flows = _flows_in(module)
    if flow_name is not None:
        chosen = [f for var, f in flows if flow_name in (var, f.name, f.fn.__name__)]
        if not chosen:
            found = ", ".join(sorted({f.name for _, f in flows})) or "none"
            raise PrefectAdapterError(
                f"{path} has no flow named {flow_name!r} (flows found: {found})",
                hint="name a flow by its name or its function's name",
            )
        return chosen[0]
    distinct = list({id(f): f for _, f in flows}.values())
    if not distinct:
        raise PrefectAdapterError(
            f"{path} defines no Prefect flow", hint="decorate the entry function with @flow"
        )
    if len(distinct) > 1:
        names = ", ".join(sorted(f.name for f in distinct))
        raise PrefectAdapterError(
            f"{path} defines several flows ({names}); say which one",
            hint=f"pass flow_name=<one of them>, or on the command line {path}::FLOW_NAME",
        )
    return distinct[0]


def _import_file(path: Path) -> Any:
    """Import a flow file as its own module, its folder on ``sys.path`` (``python flow.py``)."""
    name = module_name(path, "wisefuse_flow_")  # inspect and pickling find the module by name
    try:
        return import_file(path, name, search_path=path.parent)
    except NotImportable as err:
        raise PrefectAdapterError(str(err)) from None
    except BaseException as err:
        raise PrefectAdapterError(
            f"importing {path} failed: {type(err).__name__}: {err}",
            hint="run `python <file>` to see the full error",
        ) from err


def _flows_in(module: Any) -> list[tuple[str, Any]]:
    """``(variable, flow)`` pairs, preferring flows defined in the module over imported ones."""
    from prefect.flows import Flow

    flows = [(k, v) for k, v in vars(module).items() if isinstance(v, Flow)]
    own = [(k, f) for k, f in flows if getattr(f.fn, "__module__", None) == module.__name__]
    return own or flows


def find_flow(
    flow_name: str, root: str | Path | None, path: str | Path | None
) -> tuple[Any, Path | None]:
    """The flow object (to match task keys to functions) and its file, if they can be found."""
    if path is not None:
        flow = load_flow_file(path, flow_name)
        return flow, Path(path).resolve()
    if root is None:
        return None, None
    needles = {flow_name, flow_name.replace("-", "_")}
    for candidate in sorted(Path(root).resolve().rglob("*.py")):
        if any(p.startswith(".") or p in ("__pycache__", "site-packages") for p in candidate.parts):
            continue
        text = candidate.read_text(encoding="utf-8", errors="replace")
        if "flow" not in text or not any(n in text for n in needles):
            continue
        with contextlib.suppress(PrefectAdapterError):
            module = _import_file(candidate.resolve())
            for _, flow in _flows_in(module):
                if flow.name == flow_name:
                    return flow, candidate.resolve()
    return None, None
