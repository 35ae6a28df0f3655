"""Turn what a user points the CLI at into a :class:`~wisefuse_plugins.ir.Workflow`.

A target is a path, optionally followed by ``::ENTRY`` to pick one workflow in a file:

- ``*.json``: an IR file written by wisefuse;
- ``*.py``: a workflow file, read by the adapter of its framework: an Airflow DAG file
  (``dags/etl.py`` or ``dags/etl.py::my_dag_id`` when the file defines several DAGs), or
  a Prefect flow file (``flows/etl.py::etl``), traced by running the flow once with its
  default parameters.

The framework of a ``.py`` file is found by :func:`framework_of` (or given explicitly);
a new adapter registers a reader in :data:`READERS`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from wisefuse_plugins.errors import WiseFuseError
from wisefuse_plugins.ir import Workflow, load

ENTRY_SEPARATOR = "::"


def _read_airflow(path: Path, entry: str | None) -> Workflow:
    from wisefuse_plugins.adapters.airflow import workflow_from_file

    return workflow_from_file(path, dag_id=entry)


def _read_prefect(path: Path, entry: str | None) -> Workflow:
    """A flow is plain Python: its graph comes from one traced run with its default parameters."""
    from wisefuse_plugins.adapters.prefect import load_flow_file, trace_flow

    return trace_flow(load_flow_file(path, entry))


READERS: dict[str, Callable[[Path, str | None], Workflow]] = {
    "airflow": _read_airflow,
    "prefect": _read_prefect,
}
"""Framework name -> reader of a workflow file (path, entry) -> Workflow."""

_IMPORTS = {  # framework -> how its files import it
    "airflow": re.compile(r"^\s*(from|import)\s+airflow\b", re.M),
    "prefect": re.compile(r"^\s*(from|import)\s+prefect\b", re.M),
}


def split_target(target: str | Path) -> tuple[Path, str | None]:
    """``"dags/etl.py::etl"`` -> ``(Path("dags/etl.py"), "etl")``; no ``::`` -> entry None."""
    text = str(target)
    path, sep, entry = text.rpartition(ENTRY_SEPARATOR)
    if not sep:
        return Path(text), None
    return Path(path), entry or None


def framework_of(path: Path) -> str:
    """The framework a workflow file is written for, from what it imports at line start.

    A file that cannot be read, or that imports both frameworks or neither, is an error
    naming the file and the reason: guessing would send it to the wrong adapter, whose
    error would then be about the wrong thing.
    """
    choose = f"pass framework= ({' or '.join(repr(n) for n in sorted(_IMPORTS))}) to load_workflow"
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise WiseFuseError(
            f"cannot read workflow file {str(path)!r} to find its framework: {e}",
            hint="check the path and its permissions; workflow files are UTF-8 Python",
        ) from e
    found = [name for name, pattern in _IMPORTS.items() if pattern.search(source)]
    if len(found) == 1:
        return found[0]
    if found:
        reason = f"it imports both {' and '.join(found)}"
    else:
        reason = f"it imports none of {', '.join(sorted(_IMPORTS))}"
    raise WiseFuseError(
        f"cannot tell which framework {str(path)!r} is written for: {reason}",
        hint=f"a DAG file imports airflow, a flow file prefect (one of them); or {choose}",
    )


def load_workflow(
    target: str | Path, *, entry: str | None = None, framework: str | None = None
) -> Workflow:
    """Load ``target``: an IR JSON file, or a workflow file (``*.py``, optionally ``::ENTRY``).

    ``entry`` (or the ``::ENTRY`` suffix) picks the DAG id in a file that defines several;
    ``framework`` overrides what :func:`framework_of` detects.
    """
    path, suffix_entry = split_target(target)
    entry = entry or suffix_entry
    if path.suffix == ".json":
        if entry is not None:
            raise WiseFuseError(
                f"{str(path)!r} is an IR file: it holds one workflow, so ::{entry} means nothing",
                hint=f"pass {path} alone",
            )
        workflow = load(path)
        root = Path(workflow.source.root)
        if not root.is_absolute():  # a relative code root is relative to the IR file
            source = workflow.source.model_copy(
                update={"root": str((path.parent / root).resolve())}
            )
            workflow = workflow.model_copy(update={"source": source})
        return workflow
    if not path.exists():
        raise WiseFuseError(
            f"{str(path)!r} does not exist",
            hint="pass an IR file (*.json), a DAG file or a flow file (*.py[::NAME])",
        )
    if path.suffix == ".py":
        name = framework or framework_of(path)
        reader = READERS.get(name)
        if reader is None:
            raise WiseFuseError(
                f"{str(path)!r} looks like a {name} workflow, which this release cannot read yet",
                hint=f"readable frameworks: {', '.join(sorted(READERS))}",
            )
        return reader(path, entry)
    raise WiseFuseError(
        f"don't know how to read {str(path)!r}: expected an IR file (*.json) or a DAG or flow file (*.py)",
        hint="write the IR of a DAG or flow with the Airflow or Prefect adapter first",
    )
