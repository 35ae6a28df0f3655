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
When the plan no longer fits the DAG (a function changed, a task was added or removed) or
cannot be read, the original DAG is returned unchanged with a warning that names the
reason and the fix (``wisefuse optimize``): a stale plan never breaks a DAG.

Inside a Lambda execution environment (local or AWS) the DAG file is imported only for its
functions, so there :func:`rewrite` returns its argument at once; so it does while an
emitted DAG file imports the original for its opaque tasks (:class:`OriginalDag`).
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import hashlib
import importlib.util
import logging
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wisefuse_plugins.errors import WiseFuseError

if TYPE_CHECKING:
    from airflow.sdk import DAG

    from wisefuse_plugins.ir import Workflow
    from wisefuse_plugins.optimizer.plan import Plan
    from wisefuse_plugins.providers.airflow.layout import Layout

__all__ = ["OriginalDag", "copy_task", "opaque_reads", "rewrite"]

log = logging.getLogger(__name__)

FIX = "re-run `wisefuse optimize` on the DAG file to make a plan for the current code"


_loading_original: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "wisefuse_loading_original", default=False
)


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
    if _in_lambda() or _loading_original.get():
        return dag
    where = f"DAG {dag.dag_id!r}"
    try:
        from wisefuse_plugins.adapters.airflow import from_dag
        from wisefuse_plugins.optimizer.plan import Plan, load_plan, plan_problems

        workflow = from_dag(dag, parallelism=parallelism)
        plan_obj = plan if isinstance(plan, Plan) else load_plan(plan)
    except WiseFuseError as err:
        hint = f" ({err.hint})" if err.hint else ""
        log.warning("%s runs unchanged: %s%s; %s", where, err.message, hint, FIX)
        return dag
    problems = plan_problems(plan_obj, workflow)
    if problems:
        shown = "; ".join(f"{reason} ({path})" for path, reason in problems[:5])
        more = f" and {len(problems) - 5} more" if len(problems) > 5 else ""
        source = "" if isinstance(plan, Plan) else f" {os.fspath(plan)}"
        log.warning(
            "%s runs unchanged: its plan%s no longer matches it: %s%s; %s",
            where,
            source,
            shown,
            more,
            FIX,
        )
        return dag
    try:
        new = _rewritten(
            dag,
            workflow,
            plan_obj,
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
        log.warning(
            "%s runs unchanged: rewriting it failed (%s: %s)",
            where,
            type(err).__name__,
            err,
            exc_info=True,
        )
        return dag
    _register(dag, new, replace=not suffix)
    return new


# --------------------------------------------------------------------------- building


def _rewritten(
    dag: DAG, workflow: Workflow, plan: Plan, *, suffix: str | None, settings: dict[str, Any]
) -> DAG:
    from wisefuse_plugins.providers.airflow.layout import layout

    reads = opaque_reads(dag, workflow)
    lay = layout(workflow, plan, reads=reads)
    kept = [workflow.stage(s).name for s in lay.opaque]
    new = dag.partial_subset(task_ids=kept, include_upstream=False, include_downstream=False)
    new.partial = False
    if suffix:
        new.dag_id = f"{dag.dag_id}{suffix}"
    stray = [t for t in new.task_dict if t not in kept]  # setup/teardown pulled in: opaque anyway
    if stray:
        raise WiseFuseError(f"tasks {stray} were copied although the plan runs them")
    root = Path(workflow.source.root).resolve()
    fileloc = getattr(dag, "fileloc", None)
    here = Path(fileloc).resolve().parent if fileloc else None
    code_root = None if root == here else str(root)
    build_tasks(new, lay, dag, code_root=code_root, **settings)
    by_name = {s.name: s.id for s in workflow.stages}
    for sid in lay.opaque:  # their XComArgs still point at the original DAG's tasks
        task = new.task_dict[workflow.stage(sid).name]
        _repoint_task(task, lambda ref, key: _target(ref, key, lay, by_name, new))
    for up, down in lay.edges:
        if up not in new.task_dict[down].upstream_task_ids:
            new.task_dict[down].set_upstream(new.task_dict[up])
    return new


def _target(ref: str, key: str, lay: Layout, by_name: dict[str, str], new: DAG) -> Any:
    """The XComArg that replaces a reference to original task ``ref`` at ``key``."""
    from airflow.sdk.definitions.xcom_arg import XComArg

    stage = by_name.get(ref)
    if stage is None or stage in lay.opaque:
        return XComArg(new.task_dict[ref], key=key)
    return XComArg(new.task_dict[lay.xcom_source(stage)], key=key)


def build_tasks(
    dag: DAG,
    lay: Layout,
    original: DAG | None = None,
    *,
    code_root: str | None,
    backend: str,
    aws_conn_id: str | None,
    store: str | None,
    archive: str | bool | None,
    hook_params: dict[str, Any],
) -> dict[str, Any]:
    """Add the layout's unit, chunk and relay tasks to ``dag``; returns them by task id."""
    from wisefuse_plugins.providers.airflow.operators import (
        WiseFuseChunksOperator,
        WiseFuseLambdaOperator,
        WiseFuseXComRelayOperator,
    )

    made: dict[str, Any] = {}
    for u in lay.units:
        common: dict[str, Any] = {
            "unit_id": u.unit.id,
            "unit_spec": u.spec.model_dump(mode="json"),
            "memory_mb": u.unit.memory_mb,
            "arch": u.unit.arch,
            "backend": backend,
            "aws_conn_id": aws_conn_id,
            "store": store,
            "code_root": code_root,
            "stage_tasks": u.stage_tasks,
            "opaque_inputs": {k: v.to_json() for k, v in u.opaque_inputs.items()},
            "archive": archive,
            "hook_params": hook_params,
            "dag": dag,
        }
        if u.retries:
            common["retries"] = u.retries
        common.update(_kept_settings(original, u.stage_tasks[u.last_stage]))
        if not u.bundled:
            made[u.task_id] = WiseFuseLambdaOperator(
                task_id=u.task_id, multiple_outputs=u.multiple_outputs, **common
            )
            continue
        src = u.chunks
        assert src is not None
        if src.kind == "static":
            instances: Any = src.chunks
        else:
            assert src.chunk_task_id is not None and src.task_id is not None
            chunker = WiseFuseChunksOperator(
                task_id=src.chunk_task_id,
                source_task_id=src.task_id,
                size=src.size,
                mode=src.kind,
                key=src.key,
                mapped=src.mapped,
                dag=dag,
            )
            made[src.chunk_task_id] = chunker
            instances = chunker.output
        made[u.task_id] = WiseFuseLambdaOperator.partial(task_id=u.task_id, **common).expand(
            instances=instances
        )
    for r in lay.relays.values():
        made[r.task_id] = WiseFuseXComRelayOperator(
            task_id=r.task_id,
            source_task_id=r.source_task_id,
            key=r.key,
            flatten=r.flatten,
            multiple_outputs=r.multiple_outputs,
            dag=dag,
        )
    return made


_KEPT = ("owner", "pool", "queue")


def _kept_settings(original: DAG | None, task_id: str) -> dict[str, Any]:
    """Scheduling settings of the original task that the unit's task keeps."""
    if original is None or task_id not in original.task_dict:
        return {}
    task = original.task_dict[task_id]
    found: dict[str, Any] = {}
    for attr in _KEPT:
        with contextlib.suppress(Exception):
            value = getattr(task, attr)
            if isinstance(value, str) and value:
                found[attr] = value
    return found


# --------------------------------------------------------------------------- XCom references


def _walk(value: Any, fn: Callable[[str, str], Any]) -> Any:
    """``value`` with every plain XComArg replaced by ``fn(task_id, key)``.

    Containers are copied only where something inside them changed (and only plain
    ``dict`` / ``list`` / ``tuple`` / ``set``: subclasses are left as they are), so an
    unchanged field keeps its identity.
    """
    import attrs
    from airflow.sdk.definitions.xcom_arg import (
        ConcatXComArg,
        MapXComArg,
        PlainXComArg,
        ZipXComArg,
    )

    if isinstance(value, PlainXComArg):
        return fn(value.operator.task_id, value.key)
    if isinstance(value, MapXComArg):
        arg = _walk(value.arg, fn)
        return value if arg is value.arg else attrs.evolve(value, arg=arg)
    if isinstance(value, ZipXComArg | ConcatXComArg):
        args = [_walk(a, fn) for a in value.args]
        same = all(a is b for a, b in zip(args, value.args, strict=True))
        return value if same else attrs.evolve(value, args=args)
    if type(value).__name__ in ("DictOfListsExpandInput", "ListOfDictsExpandInput"):
        inner = _walk(value.value, fn)
        return value if inner is value.value else attrs.evolve(value, value=inner)
    if type(value) is dict:
        items = {k: _walk(v, fn) for k, v in value.items()}
        return value if all(items[k] is v for k, v in value.items()) else items
    if type(value) in (list, tuple, set):
        items_ = [_walk(v, fn) for v in value]
        same = all(a is b for a, b in zip(items_, value, strict=True))
        return value if same else type(value)(items_)
    return value


def _xcom_fields(task: Any) -> Iterator[str]:
    """The attributes of a task that may hold XComArgs (templated fields; a mapped task's kwargs)."""
    if hasattr(task, "partial_kwargs"):  # MappedOperator
        yield "partial_kwargs"
        for attr in ("expand_input", "op_kwargs_expand_input"):
            if getattr(task, attr, None) is not None:
                yield attr
        return
    yield from (f for f in task.template_fields if hasattr(task, f))


def _references(task: Any) -> set[str]:
    """Task ids whose XCom ``task`` reads through XComArgs."""
    found: set[str] = set()
    for attr in _xcom_fields(task):
        _walk(getattr(task, attr), lambda t, k: found.add(t))
    return found


def _repoint_task(task: Any, fn: Callable[[str, str], Any]) -> None:
    """Replace every XComArg of ``task`` by ``fn(task_id, key)`` (in the task's own fields)."""
    for attr in list(_xcom_fields(task)):
        old = getattr(task, attr)
        new = _walk(old, fn)
        if new is not old:
            setattr(task, attr, new)


def opaque_reads(dag: DAG, workflow: Workflow) -> dict[str, set[str]]:
    """Opaque stage id -> the stage ids whose values it reads through XComArgs."""
    by_name = {s.name: s.id for s in workflow.stages}
    reads: dict[str, set[str]] = {}
    for s in workflow.stages:
        if s.is_python or s.name not in dag.task_dict:
            continue
        refs = _references(dag.task_dict[s.name])
        reads[s.id] = {by_name[r] for r in refs if r in by_name}
    return reads


# --------------------------------------------------------------------------- registration


def _register(old: DAG, new: DAG, *, replace: bool) -> None:
    """Let Airflow's parser collect ``new`` (and, when it replaces ``old``, not ``old``).

    DAGs made in a ``with DAG()`` block or by a ``@dag`` function are collected even when no
    module variable holds them; a rewritten DAG with the same dag_id must take the
    original's place there, or the parser would keep whichever it meets last.
    """
    with contextlib.suppress(Exception):
        from airflow.sdk.definitions._internal.contextmanager import DagContext

        registered = DagContext.autoregistered_dags
        for entry in [e for e in registered if e[0] is old]:
            if replace:
                registered.discard(entry)
            registered.add((new, entry[1]))


# --------------------------------------------------------------------------- emitted DAGs


def copy_task(task: Any, dag: DAG | None = None, xcom: Mapping[str, Any] | None = None) -> Any:
    """A copy of ``task`` (from another DAG) in ``dag`` (default: the DAG being defined).

    The copy keeps its task id, arguments, trigger rule and callbacks, but no dependencies
    (set them on the copy). ``xcom`` maps the task ids its XComArgs read to the tasks of
    ``dag`` that stand for them now (same key).
    """
    from airflow.sdk.definitions._internal.contextmanager import DagContext
    from airflow.sdk.definitions.xcom_arg import XComArg

    target = dag or DagContext.get_current()
    if target is None:
        raise WiseFuseError(
            f"copy_task({task.task_id!r}) needs a DAG", hint="call it in `with DAG(...)`"
        )
    source = task.dag
    memo: dict[int, Any] = {id(source): None}
    for other in source.task_dict.values():  # referenced tasks stay references
        if other is not task:
            memo[id(other)] = other
    for group in source.task_group.get_task_group_dict().values():
        memo[id(group)] = None
    memo[id(source.task_group)] = None
    if task.task_group is not None:  # a weakref proxy: its own id, not the group's
        memo[id(task.task_group)] = None
    copied = copy.deepcopy(task, memo)  # the memo leaves its DAG and task group behind
    copied.task_group = None  # add_task puts it in the target DAG's current group
    copied.upstream_task_ids = set()
    copied.downstream_task_ids = set()
    target.add_task(copied)
    mapping = dict(xcom or {})

    def repoint(task_id: str, key: str) -> Any:
        if task_id not in mapping:
            raise WiseFuseError(
                f"task {copied.task_id!r} reads the XCom of {task_id!r}, which copy_task was not given",
                hint=f"pass xcom={{{task_id!r}: <the task that stands for it>}}",
            )
        return XComArg(mapping[task_id], key=key)

    _repoint_task(copied, repoint)
    return copied


class OriginalDag:
    """The DAG an emitted file was made from, imported on first use, for its opaque tasks.

    Importing it from the emitted DAG file would make Airflow's parser collect it a second
    time (under the emitted file); :attr:`dag` takes it back out of the parser's automatic
    registration. Keep the instance in a module variable: it is not a DAG itself.
    """

    def __init__(self, path: str | os.PathLike[str], dag_id: str) -> None:
        self.path = Path(path).resolve()
        self.dag_id = dag_id

    @cached_property
    def dag(self) -> DAG:
        from airflow.sdk import DAG
        from airflow.sdk.definitions._internal.contextmanager import DagContext

        before = set(DagContext.autoregistered_dags)
        digest = hashlib.sha1(str(self.path).encode()).hexdigest()[:10]
        name = f"wisefuse_original_{digest}_{self.path.stem}"
        module = sys.modules.get(name)
        if module is None:
            spec = importlib.util.spec_from_file_location(name, self.path)
            if spec is None or spec.loader is None:
                raise WiseFuseError(f"cannot import {self.path}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            token = _loading_original.set(True)  # its own rewrite line, if any, is moot here
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[name]
                raise
            finally:
                _loading_original.reset(token)
        added = set(DagContext.autoregistered_dags) - before
        for entry in added:
            DagContext.autoregistered_dags.discard(entry)
        found = [o for o in vars(module).values() if isinstance(o, DAG)] + [e[0] for e in added]
        for d in found:
            if d.dag_id == self.dag_id:
                return d
        raise WiseFuseError(
            f"{self.path} defines no DAG {self.dag_id!r}",
            hint="re-emit the DAG file from the current original",
        )

    def copy(self, task_id: str, *, xcom: Mapping[str, Any] | None = None) -> Any:
        """Copy task ``task_id`` into the DAG being defined (see :func:`copy_task`)."""
        return copy_task(self.dag.task_dict[task_id], xcom=xcom)
