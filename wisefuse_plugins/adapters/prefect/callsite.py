"""How a call site wrote its arguments, read from the flow's source (the AST).

The tracer trusts an atom to be an upstream result only when the call site passes a
variable, attribute, subscript or ``.result()`` (see the package docstring: the identity
pitfall). Separate because it reads source code, not run-time values: parsed files and
bytecode positions, nothing of Prefect.
"""

from __future__ import annotations

import ast
import inspect
import linecache
from collections.abc import Callable
from typing import Any


class Sources:
    """Parsed flow files, to read how an argument was written at a call site."""

    def __init__(self) -> None:
        self._calls: dict[str, dict[tuple, ast.Call]] = {}
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
        return self._calls[filename]


def arg_exprs(node: ast.Call | None, fn: Callable, n_args: int) -> dict[str, ast.expr]:
    """Parameter name -> the expression the call site passed for it (empty when unsure)."""
    if node is None or len(node.args) != n_args:
        return {}
    if any(isinstance(a, ast.Starred) for a in node.args) or any(
        k.arg is None for k in node.keywords
    ):
        return {}
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return {}
    positional = [
        p.name
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    exprs = {positional[i]: a for i, a in enumerate(node.args) if i < len(positional)}
    exprs.update({k.arg: k.value for k in node.keywords if k.arg is not None})
    return exprs


_WRAPPERS = {"unmapped", "quote", "allow_failure", "opaque"}


def _unwrap_expr(expr: ast.expr | None) -> ast.expr | None:
    while (
        isinstance(expr, ast.Call)
        and len(expr.args) == 1
        and getattr(expr.func, "id", getattr(expr.func, "attr", None)) in _WRAPPERS
    ):
        expr = expr.args[0]
    return expr


def trusts_identity(expr: ast.expr | None) -> bool:
    """May an atom passed as ``expr`` be an upstream result? Only if it is read, not written.

    A variable, attribute, subscript or ``something.result()`` can hold a task's result; a
    literal or a value computed in the flow (``n + 1``, ``len(x)``) cannot, even when it is
    the same interned object as one.
    """
    expr = _unwrap_expr(expr)
    if isinstance(expr, ast.Name | ast.Attribute | ast.Subscript):
        return True
    return (
        isinstance(expr, ast.Call)
        and isinstance(expr.func, ast.Attribute)
        and expr.func.attr == "result"
    )


def element_exprs(expr: ast.expr | None, n: int) -> list[ast.expr | None]:
    expr = _unwrap_expr(expr)
    if isinstance(expr, ast.List | ast.Tuple) and len(expr.elts) == n:
        return list(expr.elts)
    return [expr] * n  # ``total(values)``: every element is read through the same name
