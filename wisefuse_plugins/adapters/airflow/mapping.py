"""Dynamic task mapping -> item bindings: ``.expand()`` over literal lists or an upstream's
output, ``.expand_kwargs()`` over literal dicts, and how many instances a task has."""

from __future__ import annotations

import itertools
from typing import Any

from wisefuse_plugins.adapters.airflow.context import (
    Context,
    Opaque,
    ParallelismSource,
    xcom_producer,
)
from wisefuse_plugins.adapters.airflow.literals import literal
from wisefuse_plugins.ir import Binding, ConstItem, Item

DEFAULT_EXPECTED_PARALLELISM = 10
"""Instances assumed for a task mapped over a list that exists only at run time (the
output of an unmapped upstream), when neither ``parallelism=`` nor ``history=`` says how
long it is. Parsing cannot know the length; 10 is a middle-of-the-road fan-out that keeps
bundling decisions meaningful. Stages mapped one-to-one over a mapped upstream inherit
that upstream's figure instead."""


def mapped_in_airflow(task: Any, ctx: Context) -> bool:
    if isinstance(task, ctx.af.MappedOperator):
        return True
    finder = getattr(task, "get_closest_mapped_task_group", None)
    return finder is not None and finder() is not None


def task_mapping(
    task: Any, ctx: Context
) -> tuple[dict[str, Binding], tuple[int, ParallelismSource]]:
    """The bindings of the expanded arguments, and how many instances the task has."""
    finder = getattr(task, "get_closest_mapped_task_group", None)
    group = finder() if finder is not None else None
    if group is not None:
        raise Opaque(
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
        raise Opaque(f"mapped through {kind}, which the adapter does not know")
    return bindings, _count(task, bindings, ctx)


def _expand(value: dict[str, Any], ctx: Context) -> dict[str, Binding]:
    """``.expand(a=..., b=...)``: one argument maps; several make Airflow's cross product."""
    if not value:
        raise Opaque("mapped over nothing")
    if len(value) == 1:
        ((param, arg),) = value.items()
        return {param: _expanded_arg(param, arg, ctx)}
    if all(isinstance(v, list | tuple) for v in value.values()):
        return _cross_product(value)
    raise Opaque(
        f"cross product over run-time values ({', '.join(value)}): its size and order are known only at run time"
    )


def _expanded_arg(param: str, arg: Any, ctx: Context) -> Binding:
    if isinstance(arg, ctx.af.XComArg):
        producer, key = xcom_producer(param, arg, ctx)
        if producer.lost:
            raise Opaque(
                f"maps {param!r} over {producer.task_id!r}, whose instances the IR does not represent"
            )
        return Item(stage=producer.id, key=key)
    if isinstance(arg, list | tuple):
        if not arg:
            raise Opaque(f"maps {param!r} over an empty list: Airflow skips the task")
        return ConstItem(values=[literal(v, f"{param}[{i}]") for i, v in enumerate(arg)])
    raise Opaque(
        f"maps {param!r} over a {type(arg).__name__} (lists and upstream outputs are represented)"
    )


def _cross_product(value: dict[str, Any]) -> dict[str, Binding]:
    """Every combination, in Airflow's ``map_index`` order: the last argument varies fastest."""
    names = list(value)
    lists = [[literal(v, f"{p}[{i}]") for i, v in enumerate(value[p])] for p in names]
    combos = list(itertools.product(*lists))
    if not combos:
        raise Opaque("cross product with an empty list: Airflow skips the task")
    return {p: ConstItem(values=[c[k] for c in combos]) for k, p in enumerate(names)}


def _expand_kwargs(value: Any, ctx: Context) -> dict[str, Binding]:
    """``.expand_kwargs([{...}, {...}])``: one ConstItem per key when every dict has the same keys."""
    if isinstance(value, ctx.af.XComArg):
        raise Opaque(
            "expand_kwargs over a run-time list of dicts: which arguments each instance gets is known only at run time"
        )
    if not isinstance(value, list | tuple) or not value:
        raise Opaque("expand_kwargs over something other than a non-empty list of dicts")
    keys: list[str] | None = None
    for i, d in enumerate(value):
        if not isinstance(d, dict):
            raise Opaque(f"expand_kwargs element {i} is a {type(d).__name__}, not a dict")
        if keys is None:
            keys = list(d)
        elif set(d) != set(keys):
            raise Opaque(f"expand_kwargs dicts have different keys ({sorted(keys)} vs {sorted(d)})")
    assert keys is not None
    if not keys:
        raise Opaque("expand_kwargs over empty dicts")
    return {
        k: ConstItem(values=[literal(d[k], f"{k}[{i}]") for i, d in enumerate(value)]) for k in keys
    }


def _count(task: Any, bindings: dict[str, Binding], ctx: Context) -> tuple[int, ParallelismSource]:
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
