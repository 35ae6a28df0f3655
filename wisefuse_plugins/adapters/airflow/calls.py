"""A Python stage's call: the function's reference (re-importable by name from a file
under the code root) and a binding for every argument the task passes it."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from wisefuse_plugins.adapters.airflow.context import Context, Opaque, xcom_producer
from wisefuse_plugins.adapters.airflow.literals import literal
from wisefuse_plugins.adapters.airflow.operators import operator_class
from wisefuse_plugins.ir import (
    Binding,
    CallableRef,
    Collect,
    Const,
    ConstItem,
    Output,
    callable_ref,
)


@dataclass(frozen=True)
class _Expanded:
    """Stands in for a mapped argument while the call is bound to the signature."""

    binding: Binding


def python_call(
    task: Any, mapping: dict[str, Binding], ctx: Context
) -> tuple[CallableRef, dict[str, Binding]]:
    """The function's reference and a binding for every argument the task passes it."""
    fn = _python_callable(task)
    ref = _callable(fn, ctx)
    sig = _signature(fn, ctx)
    args, kwargs = _call_arguments(task, mapping, ctx)
    try:
        bound = sig.bind_partial(*args, **kwargs)
    except TypeError as err:
        raise Opaque(f"its arguments do not fit {ref.qualname}{sig}: {err}") from None
    return ref, {
        param: value.binding if isinstance(value, _Expanded) else _value_binding(param, value, ctx)
        for param, value in bound.arguments.items()
    }


def _python_callable(task: Any) -> Any:
    fn = getattr(task, "python_callable", None)
    if fn is None:  # a classic MappedOperator keeps it with the .partial() arguments
        fn = (getattr(task, "partial_kwargs", None) or {}).get("python_callable")
    if not callable(fn):
        raise Opaque("has no python_callable")
    return fn


def _callable(fn: Any, ctx: Context) -> CallableRef:
    """A reference the runtime can re-import: a module-level name in a file under the root."""
    try:
        ref = callable_ref(fn, ctx.root)
    except ValueError as err:
        raise Opaque(str(err)) from None
    obj: Any = getattr(fn, "__globals__", {}).get(ref.qualname.split(".")[0])
    for part in ref.qualname.split(".")[1:]:
        obj = getattr(obj, part, None)
    for attr in ("function", "fn"):  # what the runtime's loader unwraps (@task objects)
        inner = getattr(obj, attr, None)
        if callable(inner):
            obj = inner
            break
    if obj is not fn:
        raise Opaque(
            f"{ref.path}:{ref.qualname} names another object at module level (a bound method, "
            "or a name defined twice), so the function cannot be re-imported by name"
        )
    return ref


def _signature(fn: Any, ctx: Context) -> inspect.Signature:
    """The signature, if nothing in it asks Airflow for its context or for ``*args``."""
    sig = inspect.signature(fn)
    for p in sig.parameters.values():
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            raise Opaque(f"uses the Airflow context (**{p.name} receives it)")
        if p.kind is inspect.Parameter.VAR_POSITIONAL:
            raise Opaque(f"takes *{p.name}: its positional arguments have no names to bind")
        if p.name in ctx.af.context_keys:
            raise Opaque(f"uses the Airflow context (parameter {p.name!r})")
    return sig


def _call_arguments(
    task: Any, mapping: dict[str, Binding], ctx: Context
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
        raise Opaque("uses templates_dict, which Airflow renders from its context")
    decorated = operator_class(task) is ctx.af.Decorated
    for name, binding in mapping.items():
        if decorated:
            kwargs[name] = _Expanded(binding)
        elif name == "op_kwargs":
            kwargs.update(_explode_op_kwargs(binding))
        elif name == "op_args":
            args.extend(_explode_op_args(binding))
        else:
            raise Opaque(f"expands the operator argument {name!r}")
    return args, kwargs


def _explode_op_kwargs(binding: Binding) -> dict[str, _Expanded]:
    """``PythonOperator.partial(...).expand(op_kwargs=[{...}, ...])`` -> one ConstItem per key."""
    values = binding.values if isinstance(binding, ConstItem) else None
    if not values or not all(isinstance(v, dict) for v in values):
        raise Opaque("expands op_kwargs over something other than a literal list of dicts")
    keys = set(values[0])
    if any(set(v) != keys for v in values):
        raise Opaque("expands op_kwargs over dicts with different keys")
    return {k: _Expanded(ConstItem(values=[v[k] for v in values])) for k in values[0]}


def _explode_op_args(binding: Binding) -> list[_Expanded]:
    """``PythonOperator.partial(...).expand(op_args=[[...], ...])`` -> one ConstItem per position."""
    values = binding.values if isinstance(binding, ConstItem) else None
    if not values or not all(isinstance(v, list) for v in values):
        raise Opaque("expands op_args over something other than a literal list of lists")
    if len({len(v) for v in values}) != 1:
        raise Opaque("expands op_args over lists of different lengths")
    return [_Expanded(ConstItem(values=[v[i] for v in values])) for i in range(len(values[0]))]


def _value_binding(param: str, value: Any, ctx: Context) -> Binding:
    """A fixed (not mapped) argument: an upstream's output, or a JSON literal."""
    if isinstance(value, ctx.af.XComArg):
        producer, key = xcom_producer(param, value, ctx)
        if producer.lost:
            raise Opaque(
                f"{param!r} reads {producer.task_id!r}, whose instances the IR does not represent"
            )
        if not producer.mapped:
            return Output(stage=producer.id, key=key)
        if key is not None:
            raise Opaque(
                f"{param!r} reads key {key!r} of every instance of the mapped task {producer.task_id!r}"
            )
        return Collect(stage=producer.id)  # all instances, in map_index order
    return Const(value=literal(value, param))
