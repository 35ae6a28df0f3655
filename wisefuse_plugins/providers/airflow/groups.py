"""Task groups of one DAG remade in another: the copy path's and the unit tasks' groups.

Both the copies of kept tasks (:mod:`.original`) and the unit tasks (:mod:`.tasks`) go in
a group standing for their original task's, made in the new DAG on first use.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from wisefuse_plugins.errors import WiseFuseError
from wisefuse_plugins.providers.airflow.xcomrefs import walk_xcoms

if TYPE_CHECKING:
    from airflow.sdk import DAG

__all__ = ["group_in", "sentinels", "task_group_in"]


def sentinels() -> dict[int, Any]:
    """Memo entries that keep Airflow's identity-tested sentinels through a deep copy."""
    from airflow.sdk.definitions._internal.expandinput import EXPAND_INPUT_EMPTY
    from airflow.sdk.definitions._internal.types import NOTSET

    return {id(EXPAND_INPUT_EMPTY): EXPAND_INPUT_EMPTY, id(NOTSET): NOTSET}


def task_group_in(target: DAG, group: Any) -> Any:
    """The task group of ``target`` standing for ``group`` of another DAG (see
    :func:`group_in`), for a group whose tasks read no XCom through it (not mapped)."""

    def unexpected(task_id: str, key: str) -> Any:
        raise WiseFuseError(f"task group {group.group_id!r} maps over {task_id!r}")

    return group_in(target, group, unexpected)


def group_in(target: DAG, group: Any, repoint: Callable[[str, str], Any]) -> Any:
    """The task group of ``target`` standing for ``group`` of another DAG, made on first use.

    It has the original's id, label, tooltip, colours and default_args; a mapped task
    group gets a copy of the original's expansion, its XCom inputs re-pointed by ``repoint``
    (in place: the tasks in the group read that very object through their mapped arguments).
    """
    import attrs

    if group is None or group.group_id is None:
        return target.task_group
    found = target.task_group.get_task_group_dict().get(group.group_id)
    if found is not None:
        return found
    parent = group_in(target, group.parent_group, repoint)
    skip = {"parent_group", "dag", "children", "used_group_ids"}
    cls = group.__class__  # a task's task_group is a weakref proxy: type() would name the proxy
    kwargs = {
        f.alias or f.name: copy.deepcopy(getattr(group, f.name), sentinels())
        for f in attrs.fields(cls)
        if f.init and f.name not in skip
    }
    made = cls(parent_group=parent, dag=target, **kwargs)
    expansion = getattr(made, "_expand_input", None)
    if expansion is not None:
        object.__setattr__(expansion, "value", walk_xcoms(expansion.value, repoint))
        for op in made.iter_mapped_dependencies():  # Airflow counts instances from these
            made.upstream_task_ids.add(op.task_id)
    return made
