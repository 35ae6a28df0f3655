"""The original DAG of an emitted DAG file, and copies of its opaque tasks.

An emitted DAG file keeps every opaque task exactly as the user configured it by copying
it from the original DAG file (:class:`OriginalDag`, :func:`copy_task`), re-pointing its
XCom inputs at the tasks that produce them now.
"""

from __future__ import annotations

import copy
import os
import sys
from collections.abc import Callable, Mapping
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wisefuse_plugins.errors import WiseFuseError
from wisefuse_plugins.originals import reading, reading_original
from wisefuse_plugins.providers.airflow.groups import group_in, sentinels
from wisefuse_plugins.providers.airflow.xcomrefs import repoint_task

if TYPE_CHECKING:
    from airflow.sdk import DAG

__all__ = ["OriginalDag", "copy_task", "empty_copy", "loading_original"]


def loading_original() -> bool:
    """True while wisefuse reads a DAG file for its original DAG (:mod:`wisefuse_plugins.originals`:
    the adapter, :class:`OriginalDag`): its rewrite line is moot."""
    return reading()


def copy_task(
    task: Any,
    dag: DAG | None = None,
    xcom: Mapping[str, Any] | Callable[[str, str], Any] | None = None,
) -> Any:
    """A copy of ``task`` (from another DAG) in ``dag`` (default: the DAG being defined).

    The copy keeps its task id, arguments, trigger rule, callbacks and task group (the
    group is made in ``dag`` on first use, a mapped task group with its expansion), but no
    dependencies (set them on the copy). ``xcom`` maps the task ids its XComArgs (and its
    mapped group's expansion) read to the tasks of ``dag`` that stand for them now (same
    key), or is a function ``(task_id, key) -> XComArg``.

    Airflow's sentinels (``EXPAND_INPUT_EMPTY``, ``NOTSET``) are kept as themselves: Airflow
    tests them by identity, and a deep copy of an unexpanded mapped task breaks without.
    """
    from airflow.sdk.definitions._internal.contextmanager import DagContext
    from airflow.sdk.definitions.xcom_arg import XComArg

    target = dag or DagContext.get_current()
    if target is None:
        raise WiseFuseError(
            f"copy_task({task.task_id!r}) needs a DAG", hint="call it in `with DAG(...)`"
        )
    if callable(xcom):
        repoint = xcom
    else:
        mapping = dict(xcom or {})

        def repoint(task_id: str, key: str) -> Any:
            if task_id not in mapping:
                raise WiseFuseError(
                    f"task {task.task_id!r} reads the XCom of {task_id!r}, which copy_task was not given",
                    hint=f"pass xcom={{{task_id!r}: <the task that stands for it>}}",
                )
            return XComArg(mapping[task_id], key=key)

    source = task.dag
    group = group_in(target, task.task_group, repoint)
    memo: dict[int, Any] = {id(source): None, **sentinels()}
    for other in source.task_dict.values():  # referenced tasks stay references
        if other is not task:
            memo[id(other)] = other
    for old in source.task_group.get_task_group_dict().values():
        memo[id(old)] = None
    if task.task_group is not None:  # a weakref proxy: its own id, not the group's
        memo[id(task.task_group)] = None
    old, new = task.task_group, group
    while old is not None and new is not None:  # mapped arguments read the copied expansion
        if hasattr(old, "_expand_input"):
            memo[id(old._expand_input)] = new._expand_input
        old, new = old.parent_group, new.parent_group
    copied = copy.deepcopy(task, memo)  # the memo leaves its DAG and task group behind
    copied.task_group = None
    copied.upstream_task_ids = set()
    copied.downstream_task_ids = set()
    group.add(copied)
    target.add_task(copied)
    repoint_task(copied, repoint)
    return copied


def empty_copy(dag: DAG) -> DAG:
    """A copy of ``dag`` with every DAG setting and no tasks or task groups.

    ``DAG.partial_subset`` is not used for this: it copies a mapped task group only
    through its ``__slots__``, so the copy would share (and change) the original's children,
    dependencies and used ids.
    """
    from airflow.sdk.definitions.taskgroup import TaskGroup

    memo: dict[int, Any] = {id(dag.task_dict): {}, id(dag.task_group): None, **sentinels()}
    new = copy.deepcopy(dag, memo)
    new.__dict__.pop("task_group_dict", None)  # a cached view of the original's groups
    object.__setattr__(new, "task_group", TaskGroup.create_root(new))
    new.partial = False
    return new


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

        from wisefuse_plugins.runtime.loader import import_file, module_name

        before = set(DagContext.autoregistered_dags)
        name = module_name(self.path, "wisefuse_original_")
        module = sys.modules.get(name)
        if module is None:
            with reading_original():  # its own rewrite line, if any, is moot here
                module = import_file(self.path, name)
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

    def group(self, group_id: str) -> Any:
        """The original DAG's task group ``group_id`` (for settings a DAG file cannot spell)."""
        return self.dag.task_group.get_task_group_dict()[group_id]

    def settings(self, task_ids: list[str], *names: str) -> dict[str, Any]:
        """Settings ``names`` of the unit task that stands for ``task_ids`` (in stage order),
        by the rule of :func:`~.tasks.unit_settings`: for values a DAG file cannot spell."""
        from wisefuse_plugins.providers.airflow.tasks import unit_settings

        found = unit_settings(self.dag, task_ids)
        return {name: found[name] for name in names if name in found}
