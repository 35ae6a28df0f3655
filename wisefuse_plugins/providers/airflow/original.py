"""The original DAG of an emitted DAG file, and copies of its opaque tasks.

An emitted DAG file keeps every opaque task exactly as the user configured it by copying
it from the original DAG file (:class:`OriginalDag`, :func:`copy_task`), re-pointing its
XCom inputs at the tasks that produce them now.
"""

from __future__ import annotations

import contextvars
import copy
import hashlib
import importlib.util
import os
import sys
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wisefuse_plugins.errors import WiseFuseError
from wisefuse_plugins.providers.airflow.xcomrefs import repoint_task

if TYPE_CHECKING:
    from airflow.sdk import DAG

__all__ = ["OriginalDag", "copy_task", "loading_original"]

_loading_original: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "wisefuse_loading_original", default=False
)


def loading_original() -> bool:
    """True while :class:`OriginalDag` imports an original DAG file (its rewrite line is moot)."""
    return _loading_original.get()


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

    repoint_task(copied, repoint)
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
