"""Loading a DAG file as Airflow's DAG processor does (``DagBag``, no database), quietly,
and choosing one DAG of the file."""

from __future__ import annotations

import contextlib
import io
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from wisefuse_plugins.adapters.airflow.access import require_airflow
from wisefuse_plugins.errors import WiseFuseError
from wisefuse_plugins.originals import reading_original

if TYPE_CHECKING:
    from airflow.sdk import DAG


def load_dag_file(path: str | Path, dag_id: str | None = None) -> DAG:
    """Parse a DAG file as Airflow's DAG processor does (``DagBag``; no database needed).

    Example DAGs are never loaded (``AIRFLOW__CORE__LOAD_EXAMPLES=False`` for the call
    unless set), and Airflow's parse-time log lines are kept off stdout so that
    ``wisefuse inspect --json`` prints only JSON. Raises :class:`WiseFuseError` when the
    file does not exist, does not import, defines no DAG, defines several and ``dag_id``
    does not choose one, or has no DAG ``dag_id``.
    """
    require_airflow()
    file = Path(path)
    if not file.is_file():
        what = "is not a file" if file.exists() else "does not exist"
        raise WiseFuseError(f"{str(file)!r} {what}", hint="pass an Airflow DAG file (*.py)")
    with _parsing(), reading_original():  # a drop-in line in the file returns the original
        from airflow.dag_processing.dagbag import DagBag

        bag = DagBag(dag_folder=str(file.resolve()), safe_mode=False)
    if bag.import_errors:
        trace = next(iter(bag.import_errors.values()))
        raise WiseFuseError(
            f"{str(file)!r} failed to import: {_exception_line(trace)}",
            hint=f"run `python {file}` to see the full traceback",
        )
    return _pick_dag(file, bag.dags, dag_id)


@contextlib.contextmanager
def _parsing() -> Iterator[None]:
    """Quiet, example-free parsing: Airflow logs to stdout, which the CLI keeps for output."""
    unset = "AIRFLOW__CORE__LOAD_EXAMPLES" not in os.environ
    if unset:
        os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    disabled = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.disable(disabled)
        if unset:
            os.environ.pop("AIRFLOW__CORE__LOAD_EXAMPLES", None)


def _exception_line(trace: str) -> str:
    """The ``Type: message`` line of a traceback: what went wrong, without the frames."""
    lines = [line for line in trace.splitlines() if line.strip()]
    frames = [i for i, line in enumerate(lines) if line.lstrip().startswith('File "')]
    for line in lines[frames[-1] + 1 if frames else 0 :]:
        if not line[:1].isspace() and not line.startswith("Traceback"):
            return line.strip()
    return lines[0].strip() if lines else "unknown error"


def _pick_dag(file: Path, dags: Mapping[str, DAG], dag_id: str | None) -> DAG:
    if not dags:
        raise WiseFuseError(
            f"{str(file)!r} defines no DAG",
            hint="a DAG file must create its DAG at import time (call the @dag function, or use `with DAG(...)`)",
        )
    listed = ", ".join(sorted(dags))
    if dag_id is None:
        if len(dags) == 1:
            return next(iter(dags.values()))
        raise WiseFuseError(
            f"{str(file)!r} defines {len(dags)} DAGs ({listed}); say which one",
            hint=f"pass dag_id, or on the command line {file}::DAG_ID",
        )
    if dag_id not in dags:
        raise WiseFuseError(
            f"{str(file)!r} has no DAG {dag_id!r}; it defines: {listed}",
            hint="check the dag_id",
        )
    return dags[dag_id]
