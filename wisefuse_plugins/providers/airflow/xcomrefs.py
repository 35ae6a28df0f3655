"""XComArgs inside Airflow tasks: find which tasks a task reads, and re-point them.

An opaque task kept in a rewritten DAG still holds XComArgs that name the original DAG's
tasks; these functions walk every field that may hold one (templated fields, a mapped
task's kwargs and expand input) and replace each by the task that stands for it now.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk import DAG

    from wisefuse_plugins.ir import Workflow

__all__ = ["opaque_reads", "references", "repoint_task", "walk_xcoms", "xcom_fields"]


def walk_xcoms(value: Any, fn: Callable[[str, str], Any]) -> Any:
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
        arg = walk_xcoms(value.arg, fn)
        return value if arg is value.arg else attrs.evolve(value, arg=arg)
    if isinstance(value, ZipXComArg | ConcatXComArg):
        args = [walk_xcoms(a, fn) for a in value.args]
        same = all(a is b for a, b in zip(args, value.args, strict=True))
        return value if same else attrs.evolve(value, args=args)
    if type(value).__name__ in ("DictOfListsExpandInput", "ListOfDictsExpandInput"):
        inner = walk_xcoms(value.value, fn)
        return value if inner is value.value else attrs.evolve(value, value=inner)
    if type(value) is dict:
        items = {k: walk_xcoms(v, fn) for k, v in value.items()}
        return value if all(items[k] is v for k, v in value.items()) else items
    if type(value) in (list, tuple, set):
        items_ = [walk_xcoms(v, fn) for v in value]
        same = all(a is b for a, b in zip(items_, value, strict=True))
        return value if same else type(value)(items_)
    return value


def xcom_fields(task: Any) -> Iterator[str]:
    """The attributes of a task that may hold XComArgs (templated fields; a mapped task's kwargs)."""
    if hasattr(task, "partial_kwargs"):  # MappedOperator
        yield "partial_kwargs"
        for attr in ("expand_input", "op_kwargs_expand_input"):
            if getattr(task, attr, None) is not None:
                yield attr
        return
    yield from (f for f in task.template_fields if hasattr(task, f))


def references(task: Any) -> set[str]:
    """Task ids whose XCom ``task`` reads through XComArgs (its mapped task groups' too)."""
    found: set[str] = set()
    for attr in xcom_fields(task):
        walk_xcoms(getattr(task, attr), lambda t, k: found.add(t))
    group = task.task_group
    while group is not None:  # a task in a mapped group reads the group's expansion
        expansion = getattr(group, "_expand_input", None)
        if expansion is not None:
            walk_xcoms(expansion.value, lambda t, k: found.add(t))
        group = group.parent_group
    return found


def repoint_task(task: Any, fn: Callable[[str, str], Any]) -> None:
    """Replace every XComArg of ``task`` by ``fn(task_id, key)`` (in the task's own fields)."""
    for attr in list(xcom_fields(task)):
        old = getattr(task, attr)
        new = walk_xcoms(old, fn)
        if new is not old:
            setattr(task, attr, new)


def opaque_reads(dag: DAG, workflow: Workflow) -> dict[str, set[str]]:
    """Opaque stage id -> the stage ids whose values it reads through XComArgs."""
    by_name = {s.name: s.id for s in workflow.stages}
    reads: dict[str, set[str]] = {}
    for s in workflow.stages:
        if s.is_python or s.name not in dag.task_dict:
            continue
        refs = references(dag.task_dict[s.name])
        reads[s.id] = {by_name[r] for r in refs if r in by_name}
    return reads
