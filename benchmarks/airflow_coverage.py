"""How much of real Airflow the adapter turns into Python stages, and that it never crashes.

    python benchmarks/airflow_coverage.py [FOLDER...] [--all-providers] [--json PATH]

By default it scans the DAG files the installed ``airflow`` package ships
(``airflow/example_dags``) and the Amazon provider's example DAGs when the provider packages
them (it does not today: they live in its source tree's system tests); ``--all-providers``
adds every installed provider's packaged ``example_dags``; folders given on the command line
are scanned instead. Each file is parsed the way Airflow's DAG processor parses it
(``DagBag``, no database) and every DAG Airflow parses is converted with
:func:`wisefuse_plugins.adapters.airflow.from_dag`.

Printed: files, DAGs, tasks, the share of tasks that became Python stages, opaque tasks by
reason, files Airflow itself cannot import (not ours to handle), and crashes: a DAG that
Airflow parses but the adapter fails on or turns into invalid IR (goal: 0). ``--json``
writes ``{"files", "dags", "tasks", "python_share", "opaque_reasons", "crashes"}``, plus
the details (``import_errors``, ``crashed``, ``folders``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import re
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any


def default_folders(all_providers: bool = False) -> list[Path]:
    """``airflow/example_dags``, the Amazon provider's example DAGs if packaged (or all providers')."""
    import airflow

    base = Path(airflow.__file__).resolve().parent
    folders = [base / "example_dags"]
    providers = base / "providers"
    pattern = "**/example_dags" if all_providers else "amazon/**/example_dags"
    folders += sorted(p for p in providers.glob(pattern) if p.is_dir())
    return [f for f in folders if f.is_dir()]


def dag_files(folder: Path) -> list[Path]:
    """The files Airflow's DAG processor would parse in ``folder`` (its own discovery rules)."""
    if folder.is_file():
        return [folder]
    from airflow.utils.file import find_dag_file_paths

    return sorted(Path(p) for p in find_dag_file_paths(folder, safe_mode=True))


_OPERATOR = re.compile(r"^@?[\w.]*(Operator|Sensor|Trigger|task[\w.]*)$")


def reason_key(reason: str | None) -> str:
    """A reason without the names in it, so that like reasons count together.

    ``"BashOperator: runs a shell command"`` -> ``"runs a shell command"``;
    ``"uses the Airflow context (parameter 'ti')"`` -> ``"uses the Airflow context"``.
    """
    text = (reason or "unknown").split(";")[0].strip()
    head, sep, tail = text.partition(": ")
    if sep and (_OPERATOR.match(head) or " " not in head):
        text = tail
    if text.startswith("could not be represented in the IR"):
        return "could not be represented in the IR"
    text = re.sub(r"\s*\([^()]*\)", "", text)  # specifics in parentheses
    text = re.sub(r"'[^']*'", "…", text)  # quoted names
    return text.strip() or "unknown"


@contextlib.contextmanager
def quiet() -> Any:
    """Airflow logs parse details to stdout; keep it for the report."""
    disabled = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        logging.disable(disabled)


def scan(folders: list[Path]) -> dict[str, Any]:
    from airflow.dag_processing.dagbag import DagBag

    from wisefuse_plugins.adapters.airflow import from_dag

    files = dags = tasks = python = 0
    reasons: Counter[str] = Counter()
    import_errors: dict[str, str] = {}
    crashed: list[dict[str, str]] = []
    for folder in folders:
        for path in dag_files(folder):
            files += 1
            with quiet():
                bag = DagBag(dag_folder=str(path), safe_mode=False)
            for file, trace in bag.import_errors.items():
                lines = [ln for ln in str(trace).strip().splitlines() if ln.strip()]
                import_errors[str(file)] = lines[-1] if lines else "import error"
            for dag_id in sorted(bag.dags):
                dag = bag.dags[dag_id]
                dags += 1
                tasks += len(dag.task_dict)
                try:
                    with quiet():
                        wf = from_dag(dag)
                except Exception as err:
                    crashed.append(
                        {
                            "file": str(path),
                            "dag": dag_id,
                            "error": f"{type(err).__name__}: {err}",
                            "traceback": traceback.format_exc(limit=5),
                        }
                    )
                    continue
                for stage in wf.stages:
                    if stage.is_python:
                        python += 1
                    else:
                        reasons[reason_key(stage.opaque_reason)] += 1
    return {
        "files": files,
        "dags": dags,
        "tasks": tasks,
        "python_share": round(python / tasks, 4) if tasks else 0.0,
        "opaque_reasons": dict(reasons.most_common()),
        "crashes": len(crashed),
        "python_stages": python,
        "import_errors": import_errors,
        "crashed": crashed,
        "folders": [str(f) for f in folders],
    }


def report(result: dict[str, Any], seconds: float) -> str:
    tasks = result["tasks"] or 1
    lines = [
        "Airflow coverage of the wisefuse adapter",
        *(f"  folder       {f}" for f in result["folders"]),
        f"  files        {result['files']}"
        + (
            f"  ({len(result['import_errors'])} Airflow itself cannot import)"
            if result["import_errors"]
            else ""
        ),
        f"  DAGs         {result['dags']}",
        f"  tasks        {result['tasks']}",
        f"  Python       {result['python_stages']} tasks, {100 * result['python_share']:.1f}%",
        f"  crashes      {result['crashes']}  (goal: 0)",
        f"  time         {seconds:.1f} s",
        "",
        "Opaque tasks by reason (% of all tasks):",
    ]
    for reason, n in result["opaque_reasons"].items():
        lines.append(f"  {100 * n / tasks:5.1f}%  {n:4d}  {reason}")
    for file, error in result["import_errors"].items():
        lines.append(f"  not importable by Airflow: {file}: {error}")
    for crash in result["crashed"]:
        lines.append(f"  CRASH {crash['file']}::{crash['dag']}: {crash['error']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "folders", nargs="*", type=Path, help="DAG folders or files (default: Airflow's examples)"
    )
    parser.add_argument("--json", type=Path, help="write the figures as JSON to this path")
    parser.add_argument(
        "--all-providers",
        action="store_true",
        help="also scan every installed provider's packaged example_dags",
    )
    args = parser.parse_args(argv)
    home = None
    if "AIRFLOW_HOME" not in os.environ:  # parsing needs no database, but a home to point at
        home = tempfile.TemporaryDirectory(prefix="wisefuse-coverage-")
        os.environ["AIRFLOW_HOME"] = home.name
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    folders = args.folders or default_folders(args.all_providers)
    start = time.perf_counter()
    result = scan(folders)
    print(report(result, time.perf_counter() - start))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if home is not None:
        home.cleanup()
    return 1 if result["crashes"] else 0


if __name__ == "__main__":
    sys.exit(main())
