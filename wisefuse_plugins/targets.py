"""Turn what a user points the CLI at into a :class:`~wisefuse_plugins.ir.Workflow`.

Today: IR files. Airflow DAG files and Prefect flow files arrive with their adapters.
"""

from __future__ import annotations

from pathlib import Path

from wisefuse_plugins.errors import WiseFuseError
from wisefuse_plugins.ir import Workflow, load


def load_workflow(target: str | Path) -> Workflow:
    """Load ``target``: an IR JSON file (``*.json``)."""
    path = Path(target)
    if path.suffix == ".json":
        return load(path)
    if not path.exists():
        raise WiseFuseError(f"{str(path)!r} does not exist", hint="pass an IR file (*.json)")
    raise WiseFuseError(
        f"don't know how to read {str(path)!r}: expected an IR file (*.json)",
        hint="write the IR of a DAG or flow with the Airflow or Prefect adapter first",
    )
