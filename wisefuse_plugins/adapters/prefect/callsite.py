"""How a call site wrote its arguments, read from the flow's source (the AST).

The tracer needs, for each argument of a call, the expression the flow wrote (to tell a
constant from a value computed in the flow, and to follow a variable back to the call
whose result it holds) and the body of the function making the call
(:class:`~.dataflow.Scope`). Separate because it reads source code, not run-time
values: parsed files and bytecode positions, nothing of Prefect.
"""

from __future__ import annotations

import ast
import inspect
import linecache
from collections.abc import Callable
from typing import Any

from wisefuse_plugins.adapters.prefect.dataflow import (
    Scope,
    comprehension_scope,
    function_scope,
    module_scope,
)


class Sources:
    """Parsed flow files, to read how an argument was written at a call site."""

    def __init__(self) -> None:
        self._calls: dict[str, dict[tuple, ast.Call]] = {}
        self._trees: dict[str, ast.Module | None] = {}
        self._modules: dict[str, Scope] = {}
        self._scopes: dict[Any, Scope | None] = {}
        self._positions: dict[Any, list[tuple]] = {}

    def call_at(self, frame: Any) -> ast.Call | None:
        code = frame.f_code
        if code not in self._positions:
            self._positions[code] = list(code.co_positions())
        try:
            position = self._positions[code][frame.f_lasti // 2]
        except IndexError:
            return None
        return self._index(code.co_filename).get(tuple(position))

    def scope_at(self, frame: Any, flow_code: Any) -> Scope | None:
        """The body of the function running in ``frame`` (its parameters are constants
        only in the flow function itself: the flow's parameters are fixed for a plan)."""
        code = frame.f_code
        if code not in self._scopes:
            self._index(code.co_filename)
            tree = self._trees.get(code.co_filename)
            scope = None
            if tree is not None:
                module = self._modules.setdefault(code.co_filename, module_scope(tree))
                if code.co_name == "<module>":
                    scope = module
                elif code.co_name.startswith("<") and frame.f_back is not None:
                    outer = self.scope_at(frame.f_back, flow_code)  # the comprehension's caller
                    if outer is not None:
                        scope = comprehension_scope(outer, code.co_name, code.co_firstlineno)
                else:
                    scope = function_scope(
                        tree, module, code.co_name, code.co_firstlineno, flow=code is flow_code
                    )
            self._scopes[code] = scope
        return self._scopes[code]

    def _index(self, filename: str) -> dict[tuple, ast.Call]:
        if filename not in self._calls:
            index: dict[tuple, ast.Call] = {}
            try:
                tree = ast.parse("".join(linecache.getlines(filename)))
            except (SyntaxError, ValueError):
                tree = None
            for node in ast.walk(tree) if tree else ():
                if isinstance(node, ast.Call):
                    key = (node.lineno, node.end_lineno, node.col_offset, node.end_col_offset)
                    index[key] = node
            self._calls[filename] = index
            self._trees[filename] = tree
        return self._calls[filename]


def _spread(node: ast.Call) -> tuple[list[ast.expr], dict[str, ast.expr]] | None:
    """The call's arguments with ``*[...]`` and ``**{"k": ...}`` literals spread out;
    None when a ``*`` or ``**`` argument is not a literal (its parts are unknown)."""
    args: list[ast.expr] = []
    for a in node.args:
        if not isinstance(a, ast.Starred):
            args.append(a)
        elif isinstance(a.value, ast.List | ast.Tuple) and not any(
            isinstance(e, ast.Starred) for e in a.value.elts
        ):
            args.extend(a.value.elts)
        else:
            return None
    kwargs: dict[str, ast.expr] = {}
    for k in node.keywords:
        if k.arg is not None:
            kwargs[k.arg] = k.value
        elif isinstance(k.value, ast.Dict) and all(
            isinstance(key, ast.Constant) and isinstance(key.value, str) for key in k.value.keys
        ):
            kwargs.update(
                {key.value: v for key, v in zip(k.value.keys, k.value.values, strict=True)}  # type: ignore[union-attr]
            )
        else:
            return None
    return args, kwargs


def arg_exprs(node: ast.Call | None, fn: Callable, n_args: int) -> dict[str, ast.expr]:
    """Parameter name -> the expression the call site passed for it (empty when unsure)."""
    spread = _spread(node) if node is not None else None
    if spread is None or len(spread[0]) != n_args:
        return {}
    args, kwargs = spread
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return {}
    positional = [
        p.name
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    exprs = {positional[i]: a for i, a in enumerate(args) if i < len(positional)}
    exprs.update(kwargs)
    return exprs


def all_args_constant(node: ast.Call | None, scope: Scope | None) -> bool:
    """Is every argument of the call, ``*`` and ``**`` ones included, a constant?"""
    if node is None or scope is None:
        return False
    return all(scope.constant(a) for a in node.args) and all(
        scope.constant(k.value) for k in node.keywords
    )


_WRAPPERS = {"unmapped", "quote", "allow_failure", "opaque"}


def unwrap_expr(expr: ast.expr | None, times: int) -> ast.expr | None:
    """``x`` for ``unmapped(quote(x))`` when the value was wrapped ``times`` times (the
    value says so: a task named ``quote`` is not stripped); None when the site differs."""
    for _ in range(times):
        if not (
            isinstance(expr, ast.Call)
            and len(expr.args) == 1
            and not expr.keywords
            and getattr(expr.func, "id", getattr(expr.func, "attr", None)) in _WRAPPERS
        ):
            return None
        expr = expr.args[0]
    return expr


def element_exprs(expr: ast.expr | None, n: int) -> list[ast.expr | None]:
    if isinstance(expr, ast.List | ast.Tuple) and len(expr.elts) == n:
        return list(expr.elts)
    return [expr] * n  # ``total(values)``: every element is read through the same name
