"""Airflow DAGs -> IR workflows.

:func:`load_dag_file` parses a DAG file the way Airflow's DAG processor does (``DagBag``,
no database); :func:`from_dag` turns a DAG into a :class:`~wisefuse_plugins.ir.Workflow`;
:func:`workflow_from_file` does both. See ``docs/airflow-adapter.md`` for the full table.

Only TaskFlow ``@task`` tasks and classic ``PythonOperator`` s become Python stages, and only
when everything their function receives can be written down in the IR: literal JSON
arguments, upstream outputs (XComArgs) and dynamic task mapping over literal lists or an
upstream's output. Anything else -- another operator, the Airflow context, Jinja templates,
a lambda, a trigger rule other than ``all_success`` -- becomes an opaque stage with the
reason: it stays in Airflow untouched and fusion never crosses it. Converting a DAG Airflow
can parse never raises; an unexpected problem with one task makes that task opaque.

Airflow is imported lazily, inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import io
import itertools
import logging
import math
import os
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Literal

from wisefuse_plugins.errors import MissingExtraError, WiseFuseError
from wisefuse_plugins.ir import (
    Binding,
    CallableRef,
    Collect,
    Const,
    ConstItem,
    IRError,
    Item,
    Output,
    Source,
    Stage,
    StageKind,
    Workflow,
    callable_ref,
    derive_edges,
    safe_name,
)
from wisefuse_plugins.ir.graphs import adjacency, topological_order

if TYPE_CHECKING:
    from airflow.sdk import DAG

__all__ = [
    "DEFAULT_EXPECTED_PARALLELISM",
    "from_dag",
    "load_dag_file",
    "workflow_from_file",
]

DEFAULT_EXPECTED_PARALLELISM = 10
"""Instances assumed for a task mapped over a list that exists only at run time (the
output of an unmapped upstream), when neither ``parallelism=`` nor ``history=`` says how
long it is. Parsing cannot know the length; 10 is a middle-of-the-road fan-out that keeps
bundling decisions meaningful. Stages mapped one-to-one over a mapped upstream inherit
that upstream's figure instead."""

FEATURE = "reading Airflow DAGs"
_RETURN_KEY = "return_value"  # Airflow's XCom key for a task's whole return value
_JINJA = ("{{", "{%", "{#")

ParallelismSource = Literal["static", "observed", "expected", "override"]


# --------------------------------------------------------------------------- Airflow access


def _require_airflow() -> None:
    try:
        version("apache-airflow")
    except PackageNotFoundError:
        raise MissingExtraError("apache-airflow", "airflow", FEATURE) from None


def _imported_airflow() -> Any:
    """The real ``airflow`` package when it is imported (not a unit's stand-in), else None."""
    module = sys.modules.get("airflow")
    return module if getattr(module, "__file__", None) else None


def _airflow_version() -> str:
    """The running Airflow's version: its ``__version__`` (free, unlike the metadata)."""
    found = getattr(_imported_airflow(), "__version__", None)
    return str(found) if found else version("apache-airflow")


@functools.cache
def _airflow() -> SimpleNamespace:
    """The few Airflow names the adapter needs, imported once (and only when used)."""
    if _imported_airflow() is None:  # at a DAG file's parse it is: metadata costs ~10 ms
        _require_airflow()
    from airflow.sdk.definitions.context import KNOWN_CONTEXT_KEYS
    from airflow.sdk.definitions.mappedoperator import MappedOperator
    from airflow.sdk.definitions.xcom_arg import PlainXComArg, XComArg

    try:  # the standard provider ships with Airflow 3, but is a separate distribution
        from airflow.providers.standard.decorators.python import _PythonDecoratedOperator
        from airflow.providers.standard.operators.python import PythonOperator
    except ImportError:  # pragma: no cover - without it no task is a Python stage
        _PythonDecoratedOperator = PythonOperator = None  # type: ignore[assignment,misc]
    return SimpleNamespace(
        MappedOperator=MappedOperator,
        XComArg=XComArg,
        PlainXComArg=PlainXComArg,
        PythonOperator=PythonOperator,
        Decorated=_PythonDecoratedOperator,
        context_keys=frozenset(KNOWN_CONTEXT_KEYS),
    )


# --------------------------------------------------------------------------- loading files


def load_dag_file(path: str | Path, dag_id: str | None = None) -> DAG:
    """Parse a DAG file as Airflow's DAG processor does (``DagBag``; no database needed).

    Example DAGs are never loaded (``AIRFLOW__CORE__LOAD_EXAMPLES=False`` for the call
    unless set), and Airflow's parse-time log lines are kept off stdout so that
    ``wisefuse inspect --json`` prints only JSON. Raises :class:`WiseFuseError` when the
    file does not exist, does not import, defines no DAG, defines several and ``dag_id``
    does not choose one, or has no DAG ``dag_id``.
    """
    _require_airflow()
    file = Path(path)
    if not file.is_file():
        what = "is not a file" if file.exists() else "does not exist"
        raise WiseFuseError(f"{str(file)!r} {what}", hint="pass an Airflow DAG file (*.py)")
    with _parsing():
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


def workflow_from_file(path: str | Path, dag_id: str | None = None, **kw: Any) -> Workflow:
    """:func:`load_dag_file` then :func:`from_dag` (``kw``: ``root``, ``parallelism``, ``history``)."""
    return from_dag(load_dag_file(path, dag_id), **kw)


# --------------------------------------------------------------------------- the DAG


class _Opaque(Exception):  # a signal, not an error: the task stays in Airflow
    """Raised while analysing a task: it cannot be a Python stage, for ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class _Producer:
    """What a consumer needs to know about an upstream task that is already converted."""

    id: str
    task_id: str
    mapped: bool  # mapped in the IR (has item bindings)
    lost: str | None  # mapped in Airflow in a way the IR cannot show: consumers stay opaque
    parallelism: int
    source: ParallelismSource


@dataclass
class _Ctx:
    af: SimpleNamespace
    root: Path
    ids: dict[str, str]  # task_id -> stage id
    overrides: dict[str, int]
    observed: dict[str, int]
    done: dict[str, _Producer] = field(default_factory=dict)  # by task_id
    by_stage: dict[str, _Producer] = field(default_factory=dict)


def from_dag(
    dag: DAG,
    *,
    root: str | Path | None = None,
    parallelism: Mapping[str, int] | None = None,
    history: Any = None,
) -> Workflow:
    """The IR of ``dag``: one stage per task, one edge per upstream relation.

    ``root`` is the code root that callable paths are relative to (default: the DAG file's
    folder); functions outside it make their task opaque. The number of instances of a
    task mapped over a run-time list comes from, in order: ``parallelism`` (task id or
    stage id -> N, source ``override``), ``history`` (source ``observed``: the largest
    ``map_index + 1`` of the task in a past run: a ``DagRun`` such as ``dag.test()``
    returns, or the latest successful run of the DAG in an Airflow metadata database given
    as a SQLAlchemy URL, ``Engine``, ``Connection`` or ``Session``), else
    :data:`DEFAULT_EXPECTED_PARALLELISM` (source ``expected``). A task mapped one-to-one
    over a mapped upstream always has its upstream's count; literal lists give the exact
    count (``static``).
    """
    af = _airflow()
    fileloc = Path(dag.fileloc).resolve() if getattr(dag, "fileloc", None) else None
    if root is not None:
        root_path = Path(root).resolve()
    else:
        root_path = fileloc.parent if fileloc else Path.cwd().resolve()
    tasks = _topological(dag)
    ids = _stage_ids(tasks)
    observed, run_id = _observed_counts(dag.dag_id, history)
    ctx = _Ctx(af, root_path, ids, _overrides(parallelism, dag.dag_id, ids), observed)
    stages = [_convert(task, ctx) for task in tasks]
    control = [
        (ids[u], ids[t.task_id]) for t in tasks for u in sorted(t.upstream_task_ids) if u in ids
    ]
    source = Source(
        framework="airflow",
        root=str(root_path),
        path=_relative(fileloc, root_path),
        entry=dag.dag_id,
    )
    meta: dict[str, Any] = {"airflow_version": _airflow_version()}
    if run_id is not None:
        meta["observed_run_id"] = run_id
    return _build(dag.dag_id, stages, control, source, meta)


def _topological(dag: DAG) -> list[Any]:
    """The tasks, producers before consumers; ties keep the DAG's own task order."""
    order = {tid: i for i, tid in enumerate(dag.task_dict)}
    edges = [(u, t.task_id) for t in dag.tasks for u in t.upstream_task_ids if u in order]
    return [dag.task_dict[tid] for tid in topological_order(adjacency(order, edges), order.get)]


def _stage_ids(tasks: list[Any]) -> dict[str, str]:
    """Lambda-safe, unique stage ids (task groups put dots in task ids)."""
    ids: dict[str, str] = {}
    for task in tasks:
        ids[task.task_id] = safe_name(task.task_id, ids.values())
    return ids


def _relative(file: Path | None, root: Path) -> str | None:
    if file is None:
        return None
    try:
        return file.relative_to(root).as_posix()
    except ValueError:
        return str(file)


def _overrides(given: Mapping[str, int] | None, dag_id: str, ids: dict[str, str]) -> dict[str, int]:
    """``parallelism=`` keyed by task id; stage ids are accepted too. Typos are errors."""
    by_stage = {sid: tid for tid, sid in ids.items()}
    out: dict[str, int] = {}
    for key, n in (given or {}).items():
        task_id = key if key in ids else by_stage.get(key)
        if task_id is None:
            raise WiseFuseError(
                f"parallelism override for {key!r}: DAG {dag_id!r} has no such task",
                hint=f"its tasks are: {', '.join(sorted(ids))}",
            )
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise WiseFuseError(
                f"parallelism override for {key!r} must be a whole number >= 1, got {n!r}"
            )
        out[task_id] = n
    return out


def _build(
    name: str,
    stages: list[Stage],
    control: list[tuple[str, str]],
    source: Source,
    meta: dict[str, Any],
) -> Workflow:
    """Construct the workflow; a stage the IR rejects is demoted to opaque, never raised.

    The conversion is meant to produce valid IR by construction; this is the safety net
    that keeps the "never crash on a valid DAG" promise if some construct slips through.
    """
    for _ in range(len(stages) + 1):
        edges = derive_edges(stages, control)
        try:
            return Workflow(name=name, stages=stages, edges=edges, source=source, meta=meta)
        except IRError as err:
            faulty = _faulty_stages(err, stages, edges)
            if not faulty:
                raise
            stages = [_demoted(s, faulty[s.id]) if s.id in faulty else s for s in stages]
    raise AssertionError("unreachable: every round demotes at least one stage")


def _faulty_stages(err: IRError, stages: list[Stage], edges: list[Any]) -> dict[str, str]:
    by_id = {s.id: s for s in stages}
    faulty: dict[str, str] = {}
    for path, reason in err.problems:
        if m := re.match(r"\$\.stages\[(\d+)\]", path):
            sid = stages[int(m.group(1))].id
        elif m := re.match(r"\$\.edges\[(\d+)\]", path):
            sid = edges[int(m.group(1))].dst
        else:
            continue
        if by_id[sid].kind == StageKind.OPAQUE and not by_id[sid].bindings:
            continue  # already as plain as it gets
        faulty.setdefault(sid, reason)
    return faulty


def _demoted(stage: Stage, reason: str) -> Stage:
    return Stage(
        id=stage.id,
        name=stage.name,
        kind=StageKind.OPAQUE,
        opaque_reason=f"could not be represented in the IR: {reason}",
        retries=stage.retries,
        meta=stage.meta,
    )


# --------------------------------------------------------------------------- one task


def _convert(task: Any, ctx: _Ctx) -> Stage:
    """One task -> one stage; records what its consumers need to know about it."""
    reasons = [r for r in [_attempt(_why_not_python, task, ctx)] if r]
    mapping: dict[str, Binding] = {}
    count: tuple[int, ParallelismSource] = (1, "static")
    lost = None
    try:
        if _mapped_in_airflow(task, ctx):
            mapping, count = _mapping(task, ctx)
    except Exception as err:
        lost = _reason(err)
        reasons.append(lost)
    python = None
    if not reasons:
        try:
            python = _python(task, mapping, ctx)
        except Exception as err:
            reasons.append(_reason(err))
    try:
        stage = _stage(task, ctx, python, "; ".join(reasons), mapping, count)
    except Exception as err:  # e.g. a value pydantic refuses: keep the bare task
        if mapping:  # consumers must not read instances that are no longer there
            lost = lost or _reason(err)
        count, stage = (1, "static"), _stage(task, ctx, None, _reason(err), {}, (1, "static"))
    producer = _Producer(stage.id, task.task_id, stage.mapped, lost, *count)
    ctx.done[task.task_id] = ctx.by_stage[stage.id] = producer
    return stage


def _attempt(check: Any, task: Any, ctx: _Ctx) -> str | None:
    try:
        return check(task, ctx)
    except Exception as err:
        return _reason(err)


def _stage(
    task: Any,
    ctx: _Ctx,
    python: tuple[CallableRef, dict[str, Binding]] | None,
    reason: str,
    mapping: dict[str, Binding],
    count: tuple[int, ParallelismSource],
) -> Stage:
    common: dict[str, Any] = dict(
        id=ctx.ids[task.task_id],
        name=task.task_id,
        parallelism=count[0],
        parallelism_source=count[1],
        retries=_retries(task),
        meta=_meta(task),
    )
    if python is not None:
        return Stage(kind=StageKind.PYTHON, callable=python[0], bindings=python[1], **common)
    # opaque: keep only the mapping, so instance counts and edge patterns stay right
    return Stage(kind=StageKind.OPAQUE, opaque_reason=reason, bindings=mapping, **common)


def _reason(err: Exception) -> str:
    if isinstance(err, _Opaque):
        return err.reason
    return f"could not analyse the task ({type(err).__name__}: {err})"


def _retries(task: Any) -> int:
    try:
        return max(0, int(task.retries or 0))
    except (TypeError, ValueError):
        return 0


def _operator_class(task: Any) -> type:
    cls = getattr(task, "operator_class", None)  # MappedOperator: the class it expands
    return cls if isinstance(cls, type) else type(task)


def _operator_name(cls: type) -> str:
    return getattr(cls, "custom_operator_name", None) or cls.__name__


def _trigger_rule(task: Any) -> str:
    rule = getattr(task, "trigger_rule", "all_success")
    return str(getattr(rule, "value", rule))


def _meta(task: Any) -> dict[str, Any]:
    """Facts emitters need to rebuild the task in Airflow; plain JSON only."""
    try:
        return _facts(task)
    except Exception:
        return {"task_id": task.task_id}


def _facts(task: Any) -> dict[str, Any]:
    return {
        "operator": _operator_name(_operator_class(task)),
        "task_id": task.task_id,
        "trigger_rule": _trigger_rule(task),
        "pool": str(getattr(task, "pool", "") or ""),
        "multiple_outputs": bool(getattr(task, "multiple_outputs", False)),
        **{attr: names for attr in ("inlets", "outlets") if (names := _assets(task, attr))},
        **({"scheduling": found} if (found := _scheduling(task)) else {}),
    }


#: Settings that decide where, when and as whom a task runs, with Airflow's defaults: one
#: task has one of each, so stages whose ``meta["scheduling"]`` differ never share a unit
#: (:mod:`wisefuse_plugins.plan.scheduling`). ``meta["pool"]`` also names the pool, always.
_SCHEDULING_DEFAULTS: dict[str, Any] = {
    "owner": "airflow",
    "pool": "default_pool",
    "queue": "default",
    "pool_slots": 1,
    "priority_weight": 1,
    "weight_rule": "downstream",
    "executor": None,
    "executor_config": {},
    "run_as_user": None,
    "max_active_tis_per_dag": None,
    "max_active_tis_per_dagrun": None,
    "depends_on_past": False,
    "wait_for_downstream": False,
}


def _scheduling(task: Any) -> dict[str, Any]:
    """The task's scheduling settings that differ from Airflow's defaults, as JSON."""
    found: dict[str, Any] = {}
    for attr, default in _SCHEDULING_DEFAULTS.items():
        value = default
        try:
            value = getattr(task, attr, default)
            value = getattr(value, "value", value)  # enums (weight_rule)
            if value != default:
                found[attr] = _literal(value, attr)
        except Exception:  # not JSON, or a mapped operator that cannot say: show its text
            found[attr] = _stable_text(value)
    return found


def _stable_text(value: Any) -> str:
    """``value`` as text that equal values share (dicts and sets with their keys sorted)."""
    if isinstance(value, Mapping):
        items = sorted((_stable_text(k), _stable_text(v)) for k, v in value.items())
        return "{" + ", ".join(f"{k}: {v}" for k, v in items) + "}"
    if isinstance(value, set | frozenset):
        return "{" + ", ".join(sorted(_stable_text(v) for v in value)) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_stable_text(v) for v in value) + "]"
    return repr(value)


def _assets(task: Any, attr: str) -> list[str]:
    """The assets a task reads or emits events for: a rewrite must keep them on the task."""
    try:
        found = list(getattr(task, attr, None) or ())
    except Exception:  # a mapped operator may not resolve them before expansion
        return []
    return [str(getattr(a, "uri", None) or getattr(a, "name", None) or a) for a in found]


# --------------------------------------------------------------------------- which operators

_OPAQUE_BY_BASE: tuple[tuple[str, str], ...] = (
    # (a class name in the operator's MRO, why the task stays in Airflow); first match wins
    ("BaseSensorOperator", "a sensor: waits for something outside the workflow"),
    ("_BasePythonVirtualenvOperator", "runs the callable in a separate Python environment"),
    ("BaseBranchOperator", "chooses which downstream tasks run (it skips the others)"),
    ("ShortCircuitOperator", "can skip every downstream task"),
    ("SkipMixin", "can skip downstream tasks"),
    ("BashOperator", "runs a shell command"),
    ("_BashDecoratedOperator", "runs the shell command the function returns"),
    ("EmptyOperator", "does nothing: a placeholder that only orders other tasks"),
    ("TriggerDagRunOperator", "triggers another DAG"),
    ("DecoratedOperator", "a @task variant that runs the function its own way"),
    ("PythonOperator", "a PythonOperator subclass that may change how the callable runs"),
)


def _why_not_python(task: Any, ctx: _Ctx) -> str | None:
    """Why the task cannot run as a plain function call elsewhere, or None if it can."""
    cls = _operator_class(task)
    if cls not in (ctx.af.PythonOperator, ctx.af.Decorated):
        return _operator_reason(cls)
    if getattr(task, "is_setup", False) or getattr(task, "is_teardown", False):
        return "a setup/teardown task: Airflow runs it around others whatever their outcome"
    rule = _trigger_rule(task)
    if rule != "all_success":
        return f"trigger rule {rule}: it also runs when upstream tasks fail or skip, which a fused unit does not express"
    for up in getattr(task, "upstream_list", ()):
        if "BaseBranchOperator" in {c.__name__ for c in _operator_class(up).__mro__}:
            return f"the branch task {up.task_id!r} chooses it by task id, which a fused unit would not keep"
    return None


def _operator_reason(cls: type) -> str:
    name = _operator_name(cls)
    bases = {c.__name__ for c in cls.__mro__}
    for base, why in _OPAQUE_BY_BASE:
        if base in bases:
            return f"{name}: {why}"
    if "sql" in cls.__module__.lower():
        return f"{name}: runs SQL"
    return f"{name}: not a Python callable (only PythonOperator and @task tasks run elsewhere)"


# --------------------------------------------------------------------------- dynamic task mapping


def _mapped_in_airflow(task: Any, ctx: _Ctx) -> bool:
    if isinstance(task, ctx.af.MappedOperator):
        return True
    finder = getattr(task, "get_closest_mapped_task_group", None)
    return finder is not None and finder() is not None


def _mapping(task: Any, ctx: _Ctx) -> tuple[dict[str, Binding], tuple[int, ParallelismSource]]:
    """The bindings of the expanded arguments, and how many instances the task has."""
    finder = getattr(task, "get_closest_mapped_task_group", None)
    group = finder() if finder is not None else None
    if group is not None:
        raise _Opaque(
            f"in the mapped task group {group.group_id!r}: the group expands every task in it, which the IR does not represent"
        )
    # TaskFlow keeps the function's mapped arguments apart from the operator's own
    expand_input = getattr(task, "op_kwargs_expand_input", None) or task.expand_input
    kind = type(expand_input).__name__
    if kind == "DictOfListsExpandInput":
        bindings = _expand(dict(expand_input.value), ctx)
    elif kind == "ListOfDictsExpandInput":
        bindings = _expand_kwargs(expand_input.value, ctx)
    else:
        raise _Opaque(f"mapped through {kind}, which the adapter does not know")
    return bindings, _count(task, bindings, ctx)


def _expand(value: dict[str, Any], ctx: _Ctx) -> dict[str, Binding]:
    """``.expand(a=..., b=...)``: one argument maps; several make Airflow's cross product."""
    if not value:
        raise _Opaque("mapped over nothing")
    if len(value) == 1:
        ((param, arg),) = value.items()
        return {param: _expanded_arg(param, arg, ctx)}
    if all(isinstance(v, list | tuple) for v in value.values()):
        return _cross_product(value)
    raise _Opaque(
        f"cross product over run-time values ({', '.join(value)}): its size and order are known only at run time"
    )


def _expanded_arg(param: str, arg: Any, ctx: _Ctx) -> Binding:
    if isinstance(arg, ctx.af.XComArg):
        producer, key = _producer(param, arg, ctx)
        if producer.lost:
            raise _Opaque(
                f"maps {param!r} over {producer.task_id!r}, whose instances the IR does not represent"
            )
        return Item(stage=producer.id, key=key)
    if isinstance(arg, list | tuple):
        if not arg:
            raise _Opaque(f"maps {param!r} over an empty list: Airflow skips the task")
        return ConstItem(values=[_literal(v, f"{param}[{i}]") for i, v in enumerate(arg)])
    raise _Opaque(
        f"maps {param!r} over a {type(arg).__name__} (lists and upstream outputs are represented)"
    )


def _cross_product(value: dict[str, Any]) -> dict[str, Binding]:
    """Every combination, in Airflow's ``map_index`` order: the last argument varies fastest."""
    names = list(value)
    lists = [[_literal(v, f"{p}[{i}]") for i, v in enumerate(value[p])] for p in names]
    combos = list(itertools.product(*lists))
    if not combos:
        raise _Opaque("cross product with an empty list: Airflow skips the task")
    return {p: ConstItem(values=[c[k] for c in combos]) for k, p in enumerate(names)}


def _expand_kwargs(value: Any, ctx: _Ctx) -> dict[str, Binding]:
    """``.expand_kwargs([{...}, {...}])``: one ConstItem per key when every dict has the same keys."""
    if isinstance(value, ctx.af.XComArg):
        raise _Opaque(
            "expand_kwargs over a run-time list of dicts: which arguments each instance gets is known only at run time"
        )
    if not isinstance(value, list | tuple) or not value:
        raise _Opaque("expand_kwargs over something other than a non-empty list of dicts")
    keys: list[str] | None = None
    for i, d in enumerate(value):
        if not isinstance(d, dict):
            raise _Opaque(f"expand_kwargs element {i} is a {type(d).__name__}, not a dict")
        if keys is None:
            keys = list(d)
        elif set(d) != set(keys):
            raise _Opaque(
                f"expand_kwargs dicts have different keys ({sorted(keys)} vs {sorted(d)})"
            )
    assert keys is not None
    if not keys:
        raise _Opaque("expand_kwargs over empty dicts")
    return {
        k: ConstItem(values=[_literal(d[k], f"{k}[{i}]") for i, d in enumerate(value)])
        for k in keys
    }


def _count(task: Any, bindings: dict[str, Binding], ctx: _Ctx) -> tuple[int, ParallelismSource]:
    for b in bindings.values():
        if isinstance(b, ConstItem):
            return len(b.values), "static"
    (item,) = [b for b in bindings.values() if isinstance(b, Item)]
    producer = ctx.by_stage[item.stage]
    if producer.mapped:  # one-to-one: as many instances as the upstream
        return producer.parallelism, producer.source
    if task.task_id in ctx.overrides:
        return ctx.overrides[task.task_id], "override"
    if ctx.observed.get(task.task_id):
        return ctx.observed[task.task_id], "observed"
    return DEFAULT_EXPECTED_PARALLELISM, "expected"


# --------------------------------------------------------------------------- Python stages


@dataclass(frozen=True)
class _Expanded:
    """Stands in for a mapped argument while the call is bound to the signature."""

    binding: Binding


def _python(
    task: Any, mapping: dict[str, Binding], ctx: _Ctx
) -> tuple[CallableRef, dict[str, Binding]]:
    """The function's reference and a binding for every argument the task passes it."""
    fn = _python_callable(task)
    ref = _callable(fn, ctx)
    sig = _signature(fn, ctx)
    args, kwargs = _call_arguments(task, mapping, ctx)
    try:
        bound = sig.bind_partial(*args, **kwargs)
    except TypeError as err:
        raise _Opaque(f"its arguments do not fit {ref.qualname}{sig}: {err}") from None
    return ref, {
        param: value.binding if isinstance(value, _Expanded) else _value_binding(param, value, ctx)
        for param, value in bound.arguments.items()
    }


def _python_callable(task: Any) -> Any:
    fn = getattr(task, "python_callable", None)
    if fn is None:  # a classic MappedOperator keeps it with the .partial() arguments
        fn = (getattr(task, "partial_kwargs", None) or {}).get("python_callable")
    if not callable(fn):
        raise _Opaque("has no python_callable")
    return fn


def _callable(fn: Any, ctx: _Ctx) -> CallableRef:
    """A reference the runtime can re-import: a module-level name in a file under the root."""
    try:
        ref = callable_ref(fn, ctx.root)
    except ValueError as err:
        raise _Opaque(str(err)) from None
    obj: Any = getattr(fn, "__globals__", {}).get(ref.qualname.split(".")[0])
    for part in ref.qualname.split(".")[1:]:
        obj = getattr(obj, part, None)
    for attr in ("function", "fn"):  # what the runtime's loader unwraps (@task objects)
        inner = getattr(obj, attr, None)
        if callable(inner):
            obj = inner
            break
    if obj is not fn:
        raise _Opaque(
            f"{ref.path}:{ref.qualname} names another object at module level (a bound method, "
            "or a name defined twice), so the function cannot be re-imported by name"
        )
    return ref


def _signature(fn: Any, ctx: _Ctx) -> inspect.Signature:
    """The signature, if nothing in it asks Airflow for its context or for ``*args``."""
    sig = inspect.signature(fn)
    for p in sig.parameters.values():
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            raise _Opaque(f"uses the Airflow context (**{p.name} receives it)")
        if p.kind is inspect.Parameter.VAR_POSITIONAL:
            raise _Opaque(f"takes *{p.name}: its positional arguments have no names to bind")
        if p.name in ctx.af.context_keys:
            raise _Opaque(f"uses the Airflow context (parameter {p.name!r})")
    return sig


def _call_arguments(
    task: Any, mapping: dict[str, Binding], ctx: _Ctx
) -> tuple[list[Any], dict[str, Any]]:
    """The positional and keyword arguments of the call, mapped ones as :class:`_Expanded`."""
    if isinstance(task, ctx.af.MappedOperator):
        fixed = task.partial_kwargs
        args, kwargs = list(fixed.get("op_args") or ()), dict(fixed.get("op_kwargs") or {})
        templates = fixed.get("templates_dict")
    else:
        args, kwargs = list(task.op_args or ()), dict(task.op_kwargs or {})
        templates = getattr(task, "templates_dict", None)
    if templates:
        raise _Opaque("uses templates_dict, which Airflow renders from its context")
    decorated = _operator_class(task) is ctx.af.Decorated
    for name, binding in mapping.items():
        if decorated:
            kwargs[name] = _Expanded(binding)
        elif name == "op_kwargs":
            kwargs.update(_explode_op_kwargs(binding))
        elif name == "op_args":
            args.extend(_explode_op_args(binding))
        else:
            raise _Opaque(f"expands the operator argument {name!r}")
    return args, kwargs


def _explode_op_kwargs(binding: Binding) -> dict[str, _Expanded]:
    """``PythonOperator.partial(...).expand(op_kwargs=[{...}, ...])`` -> one ConstItem per key."""
    values = binding.values if isinstance(binding, ConstItem) else None
    if not values or not all(isinstance(v, dict) for v in values):
        raise _Opaque("expands op_kwargs over something other than a literal list of dicts")
    keys = set(values[0])
    if any(set(v) != keys for v in values):
        raise _Opaque("expands op_kwargs over dicts with different keys")
    return {k: _Expanded(ConstItem(values=[v[k] for v in values])) for k in values[0]}


def _explode_op_args(binding: Binding) -> list[_Expanded]:
    """``PythonOperator.partial(...).expand(op_args=[[...], ...])`` -> one ConstItem per position."""
    values = binding.values if isinstance(binding, ConstItem) else None
    if not values or not all(isinstance(v, list) for v in values):
        raise _Opaque("expands op_args over something other than a literal list of lists")
    if len({len(v) for v in values}) != 1:
        raise _Opaque("expands op_args over lists of different lengths")
    return [_Expanded(ConstItem(values=[v[i] for v in values])) for i in range(len(values[0]))]


def _value_binding(param: str, value: Any, ctx: _Ctx) -> Binding:
    """A fixed (not mapped) argument: an upstream's output, or a JSON literal."""
    if isinstance(value, ctx.af.XComArg):
        producer, key = _producer(param, value, ctx)
        if producer.lost:
            raise _Opaque(
                f"{param!r} reads {producer.task_id!r}, whose instances the IR does not represent"
            )
        if not producer.mapped:
            return Output(stage=producer.id, key=key)
        if key is not None:
            raise _Opaque(
                f"{param!r} reads key {key!r} of every instance of the mapped task {producer.task_id!r}"
            )
        return Collect(stage=producer.id)  # all instances, in map_index order
    return Const(value=_literal(value, param))


def _producer(param: str, arg: Any, ctx: _Ctx) -> tuple[_Producer, str | None]:
    """The upstream task an XComArg reads, and the key (None: the whole return value)."""
    if not isinstance(arg, ctx.af.PlainXComArg):
        raise _Opaque(
            f"{param!r} is a {type(arg).__name__} (XComArg .map(), .zip() or .concat()): Airflow computes its values"
        )
    producer = ctx.done.get(arg.operator.task_id)
    if producer is None:
        raise _Opaque(f"{param!r} reads {arg.operator.task_id!r}, which is not upstream of it")
    return producer, None if arg.key == _RETURN_KEY else arg.key


def _literal(value: Any, where: str) -> Any:
    """``value`` as JSON, exactly; anything JSON would change or Airflow renders is opaque."""
    kind = type(value)
    if value is None or kind in (bool, int):
        return value
    if kind is float:
        if math.isfinite(value):
            return value
        raise _Opaque(f"argument {where} is {value!r}, which JSON cannot carry")
    if kind is str:
        if any(mark in value for mark in _JINJA):
            raise _Opaque(
                f"argument {where} is a Jinja template ({_short(value)}), rendered from the Airflow context"
            )
        return value
    if kind is list:
        return [_literal(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if kind is dict:
        out = {}
        for k, v in value.items():
            if type(k) is not str:
                raise _Opaque(
                    f"argument {where} has a non-string key {k!r}, which JSON would change"
                )
            out[k] = _literal(v, f"{where}[{k!r}]")
        return out
    af = _airflow()
    if isinstance(value, af.XComArg):
        raise _Opaque(f"argument {where} nests an upstream output inside a literal")
    if kind is tuple:
        raise _Opaque(f"argument {where} is a tuple, which JSON would turn into a list")
    raise _Opaque(
        f"argument {where} is a {kind.__name__} ({_short(repr(value))}), not a JSON value"
    )


def _short(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


# --------------------------------------------------------------------------- run history


def _observed_counts(dag_id: str, history: Any) -> tuple[dict[str, int], str | None]:
    """Instances per mapped task in a past run (task id -> max map_index + 1), and its run id."""
    if history is None:
        return {}, None
    if hasattr(history, "get_task_instances") and hasattr(history, "run_id"):
        if getattr(history, "dag_id", dag_id) != dag_id:
            raise WiseFuseError(
                f"history is a run of DAG {history.dag_id!r}, not of {dag_id!r}",
                hint="pass a DagRun of the same DAG",
            )
        counts: dict[str, int] = {}
        for ti in history.get_task_instances():
            if ti.map_index is not None and ti.map_index >= 0:
                counts[ti.task_id] = max(counts.get(ti.task_id, 0), ti.map_index + 1)
        return counts, history.run_id
    return _counts_from_db(dag_id, history)


_LATEST_SUCCESS = (
    "SELECT run_id FROM dag_run WHERE dag_id = :dag_id AND state = 'success' "
    "ORDER BY end_date DESC, id DESC LIMIT 1"
)
_INSTANCES = (
    "SELECT task_id, MAX(map_index) + 1 FROM task_instance "
    "WHERE dag_id = :dag_id AND run_id = :run_id AND map_index >= 0 GROUP BY task_id"
)


def _counts_from_db(dag_id: str, history: Any) -> tuple[dict[str, int], str | None]:
    """Read the latest successful run of ``dag_id`` from an Airflow metadata database."""
    from sqlalchemy import text

    from wisefuse_plugins.adapters.airflow_db import connect, readable

    if not readable(history):
        raise WiseFuseError(
            "history must be a DagRun, a database URL, Engine, Connection or Session,"
            f" not {type(history).__name__}",
            hint="pass the DagRun of a past run, or Airflow's metadata database URL",
        )
    with connect(history, what="Airflow run history") as conn:
        run_id = conn.execute(text(_LATEST_SUCCESS), {"dag_id": dag_id}).scalar()
        if run_id is None:
            return {}, None
        rows = conn.execute(text(_INSTANCES), {"dag_id": dag_id, "run_id": run_id}).all()
    return {task_id: int(n) for task_id, n in rows if n}, str(run_id)
