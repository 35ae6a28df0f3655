"""The drop-in for Airflow: a DAG file ends with one line and its Python tasks run as planned units.

.. code-block:: python

    from pathlib import Path
    from wisefuse_plugins.airflow import rewrite

    dag = rewrite(dag, Path(__file__).with_name("video_analytics.plan.json"))

:func:`rewrite` returns a new DAG (same dag_id, schedule, default_args, params, tags and
callbacks; the dag_id gets ``suffix`` when one is given) in which every unit of the plan is
one :class:`~wisefuse_plugins.providers.airflow.operators.WiseFuseLambdaOperator` task, a
bundled unit being a mapped task over chunks of instances, and every opaque task is kept as
it was, with its dependencies. The shape is decided by
:func:`wisefuse_plugins.providers.airflow.layout.layout`, shared with the source emitter.

Parsing stays fast and deterministic: the plan is read from a file, the workflow is read
from the DAG itself (the adapter), and nothing is deployed or started until a task runs.
The first parse of a (plan, DAG) pair keeps what that computes as a prepared layout (plain
JSON, :mod:`.prepared`); every later parse (the dag-processor's, each task's start-up
parse) builds the DAG from it without importing the adapter or any pydantic model.
When the plan no longer fits the DAG (a function changed, a task was added or removed) or
cannot be read, the original DAG is returned unchanged with a warning that names the
reason and the fix (``wisefuse optimize``), logged and shown in the DAG (a tag and a note
in its docs): a stale plan never breaks a DAG. A relative plan path is relative to the DAG
file's folder. A plan file replaced while runs are in flight waits for them: each run is
pinned to the plan it started with (:mod:`.planfiles`).

Inside a Lambda execution environment (local or AWS) the DAG file is imported only for its
functions, so there :func:`rewrite` returns its argument at once; so it does while an
emitted DAG file imports the original for its opaque tasks (:class:`~.original.OriginalDag`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wisefuse_plugins.errors import WiseFuseError
from wisefuse_plugins.providers.airflow import ahead, prepared
from wisefuse_plugins.providers.airflow.original import loading_original
from wisefuse_plugins.providers.airflow.planfiles import (
    TAG_NOT_USED,
    TAG_WAITING,
    Choice,
    PlanState,
    ReleasePin,
    airflow_run,
    annotate,
    beside,
    choose_plan,
    pin_ttl,
    pinning_enabled,
    sha_of,
    with_release,
)
from wisefuse_plugins.providers.airflow.tasks import build_tasks

if TYPE_CHECKING:
    from airflow.sdk import DAG

    from wisefuse_plugins.plan.schema import Plan

__all__ = ["rewrite"]

#: The drop-in's logger keeps the name users import it by.
log = logging.getLogger("wisefuse_plugins.airflow")

FIX = "re-run `wisefuse optimize` on the DAG file to make a plan for the current code"


def _in_lambda() -> bool:
    """True inside a Lambda execution environment (AWS sets this; so does the local backend)."""
    return bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))


def rewrite(
    dag: DAG,
    plan: Plan | str | os.PathLike[str],
    *,
    suffix: str | None = None,
    backend: str = "local",
    aws_conn_id: str | None = None,
    store: str | None = None,
    archive: str | bool | None = None,
    parallelism: Mapping[str, int] | None = None,
    hook_params: Mapping[str, Any] | None = None,
) -> DAG:
    """``dag`` with its Python tasks replaced by the plan's units, or ``dag`` itself (with a warning).

    ``plan``: a :class:`Plan` or the path of a plan JSON (``wisefuse optimize`` writes one).
    ``suffix``: appended to the dag_id, so the original and the rewritten DAG can run side
    by side (without it the rewritten DAG replaces the original: assign the result to the
    variable that held it). ``backend`` / ``aws_conn_id`` / ``store`` / ``hook_params``: where
    units run (see :class:`~wisefuse_plugins.providers.airflow.hooks.WiseFuseLambdaHook`).
    ``archive``: where units record their timings (see the operator). ``parallelism``: the
    same overrides the plan was made with, if any (``from_dag(parallelism=...)``).
    """
    if (calls := ahead.recording()) is not None:  # `wisefuse optimize` prepares its layout
        calls.append(ahead.Call(dag, plan, dict(parallelism) if parallelism else None))
        return dag
    if _in_lambda() or loading_original():
        return dag
    where = f"DAG {dag.dag_id!r}"
    dag_id = f"{dag.dag_id}{suffix or ''}"
    chosen, release, key, doc = None, None, None, None
    records = prepared.Records() if prepared.enabled() else None
    try:
        if not isinstance(plan, str | os.PathLike):  # a Plan object: nothing to key it by
            plan_obj, source = plan, ""
        else:
            path = beside(plan, getattr(dag, "fileloc", None))
            chosen = choose_plan(dag_id, path, ttl=pin_ttl(dag), run=airflow_run())
            source = _source_of(path, chosen)
            if pinning_enabled():
                release = ReleasePin(dag_id, str(PlanState().root), str(path), dag.fileloc)
            if chosen.text is None:
                reason = chosen.problem or f"it is pinned to run without its plan {source}"
                fix = MISSING_FIX if "does not exist" in reason else FIX
                kept = None if suffix else release  # the original serves its runs
                return _unchanged(dag, f"{where} runs unchanged: {reason}; {fix}", kept)
            if records is not None:
                key = _fingerprint(dag, chosen.sha or sha_of(chosen.text), parallelism)
                doc = records.get(dag.dag_id, key) if key else None
            if doc is None:
                from wisefuse_plugins.plan.schema import plan_from_json

                plan_obj = plan_from_json(chosen.text, what=f"plan file {source}")
        if doc is None:
            from wisefuse_plugins.adapters.airflow import from_dag

            workflow = from_dag(dag, parallelism=parallelism)
    except WiseFuseError as err:
        hint = f" ({err.hint})" if err.hint else ""
        message = f"{where} runs unchanged: {err.message}{hint}; {FIX}"
        return _unchanged(dag, message, None if suffix else release)
    if doc is None:  # no record: compute it (and keep it for the next parses)
        try:
            doc = prepared.record(dag, workflow, plan_obj)
        except Exception as err:  # a DAG file must keep parsing: run the original instead
            return _failed(dag, err, None if suffix else release)
        if key is not None and records is not None:
            doc = json.loads(records.put(dag.dag_id, key, doc))  # as the next parse reads it
    if doc.get("problems"):
        problems = doc["problems"]
        shown = "; ".join(f"{reason} ({path})" for path, reason in problems[:5])
        more = f" and {len(problems) - 5} more" if len(problems) > 5 else ""
        its = f"its plan {source}" if source else "its plan"
        message = f"{where} runs unchanged: {its} no longer matches it: {shown}{more}; {FIX}"
        return _unchanged(dag, message, None if suffix else release)
    try:
        new = _rewritten(
            dag,
            prepared.PreparedLayout(doc["layout"]),
            suffix=suffix,
            settings={
                "backend": backend,
                "aws_conn_id": aws_conn_id,
                "store": store,
                "archive": archive,
                "hook_params": dict(hook_params or {}),
            },
        )
    except Exception as err:  # a DAG file must keep parsing: run the original instead
        return _failed(dag, err, None if suffix else release)
    _register(dag, new, replace=not suffix)
    if chosen is not None and release is not None:
        _follow_pins(new, chosen, source, release)
    return new


def _fingerprint(dag: DAG, plan_sha: str, parallelism: Mapping[str, int] | None) -> str | None:
    try:
        return prepared.fingerprint(dag, plan_sha, parallelism)
    except Exception as err:  # never a reason for a DAG file not to parse
        log.debug("DAG %r: no prepared layout: %r", dag.dag_id, err)
        return None


def _failed(dag: DAG, err: Exception, release: ReleasePin | None) -> DAG:
    message = (
        f"DAG {dag.dag_id!r} runs unchanged: rewriting it failed ({type(err).__name__}: {err})"
    )
    return _unchanged(dag, message, release, exc_info=True)


# --------------------------------------------------------------------------- plan files

MISSING_FIX = (
    "write the plan there (`wisefuse optimize DAG_FILE -o PLAN_FILE`); a relative plan path "
    "is relative to the DAG file's folder"
)


def _source_of(path: Path, chosen: Choice) -> str:
    """How messages name the plan a parse used: its file, and its snapshot when pinned."""
    if chosen.origin in ("kept", "pinned") and chosen.sha:
        return f"{os.fspath(path)} (snapshot {chosen.sha[:12]})"
    return os.fspath(path)


def _unchanged(
    dag: DAG, message: str, release: ReleasePin | None, *, exc_info: bool = False
) -> DAG:
    """``dag`` as it is, with ``message`` logged and shown in the UI (see :func:`annotate`);
    with ``release`` (it serves the dag_id's runs) it releases their pins when they end."""
    log.warning("%s", message, exc_info=exc_info)
    try:
        annotate(dag, message, TAG_NOT_USED)
        if release is not None:
            _add_release(dag, release)
    except Exception as err:  # a note must never break the DAG file, but must not hide either
        log.warning("DAG %r: could not show why it runs unchanged in the UI: %r", dag.dag_id, err)
    return dag


def _follow_pins(new: DAG, chosen: Choice, source: str, release: ReleasePin) -> None:
    """A rewritten DAG releases its run's pin when the run ends; a plan kept for runs in
    flight while its file holds another says so (log, docs and a tag)."""
    _add_release(new, release)
    if chosen.origin == "kept":
        runs = ", ".join(repr(r) for r in chosen.waiting[:5])
        more = f" and {len(chosen.waiting) - 5} more" if len(chosen.waiting) > 5 else ""
        what = chosen.problem or "its plan file changed"
        message = (
            f"DAG {new.dag_id!r} keeps its plan {source} while runs {runs}{more} are in "
            f"flight: {what}; the plan file is used from the next run that starts after "
            "they end"
        )
        log.warning("%s", message)
        annotate(new, message, TAG_WAITING)


def _add_release(dag: DAG, release: ReleasePin) -> None:
    """Add ``release`` to the DAG's success and failure callbacks, keeping the user's."""
    dag.on_success_callback = with_release(dag.on_success_callback, release)
    dag.on_failure_callback = with_release(dag.on_failure_callback, release)
    dag.has_on_success_callback = True
    dag.has_on_failure_callback = True


# --------------------------------------------------------------------------- building


def _rewritten(
    dag: DAG, lay: prepared.PreparedLayout, *, suffix: str | None, settings: dict[str, Any]
) -> DAG:
    from airflow.sdk.definitions.xcom_arg import XComArg

    from wisefuse_plugins.providers.airflow.original import copy_task, empty_copy

    new = empty_copy(dag)  # every DAG setting, no task (partial_subset would share groups)
    if suffix:
        new.dag_id = f"{dag.dag_id}{suffix}"
        if dag.dag_display_name == dag.dag_id:  # the default follows the id: tell them apart
            new.dag_display_name = new.dag_id
    root = Path(lay.root).resolve()
    fileloc = getattr(dag, "fileloc", None)
    here = Path(fileloc).resolve().parent if fileloc else None
    code_root = None if root == here else str(root)
    build_tasks(new, lay, dag, code_root=code_root, **settings)  # type: ignore[arg-type]
    for task_id in lay.opaque:  # in workflow order: what an opaque task reads is there already
        copy_task(
            dag.task_dict[task_id],
            new,
            lambda ref, key: XComArg(new.task_dict[lay.target(ref)], key=key),
        )
    for up, down in lay.edges:
        if up not in new.task_dict[down].upstream_task_ids:
            new.task_dict[down].set_upstream(new.task_dict[up])
    return new


# --------------------------------------------------------------------------- registration


def _register(old: DAG, new: DAG, *, replace: bool) -> None:
    """Let Airflow's parser collect ``new`` (and, when it replaces ``old``, not ``old``).

    DAGs made in a ``with DAG()`` block or by a ``@dag`` function are collected even when no
    module variable holds them; a rewritten DAG with the same dag_id must take the
    original's place there, or the parser would keep whichever it meets last.
    """
    from airflow.sdk.definitions._internal.contextmanager import DagContext

    registered = getattr(DagContext, "autoregistered_dags", None)
    if registered is None:  # an Airflow without auto-registration: module variables only
        return
    for entry in [e for e in registered if e[0] is old]:
        if replace:
            registered.discard(entry)
        registered.add((new, entry[1]))
