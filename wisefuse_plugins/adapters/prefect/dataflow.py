"""Which values a flow passes are constants, read from the flow's source (no run-time values).

A planned run does not run the flow body: a binding the trace records as a ``Const`` is the
traced value, replayed. That is right only for a value that cannot differ in another run
with the same parameters: one the flow body computes from literals, the flow's parameters
and module constants alone. A value the body computes from a task result (``n + 1``,
``len(rows)``, ``cfg["k"]``, the loop variable over a result) or from anything else
(a helper function, a file, the clock) is not, and must not become a ``Const``: the tracer
then binds it to the task that produced it or keeps the stage opaque.

:class:`Scope` is one function's body: for an expression it answers whether it is
*constant* (literals, parameters when they are the flow's own, names only ever assigned
constants, pure builtins over constants), which expressions a name was assigned from
(``n = read(p)``: the call whose result ``n`` is), and whether the body changes a name's
value in place (``rows.append(x)``: the object passed is not what the task returned).
Conservative by construction: whatever it does not recognise is not constant.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

#: builtins whose result depends on their arguments only
_PURE_BUILTINS_TEXT = (
    "abs all any bool bytes chr dict divmod enumerate float format frozenset hex int len "
    "list max min oct ord pow range repr reversed round set sorted str sum tuple zip "
)
PURE_BUILTINS = frozenset(_PURE_BUILTINS_TEXT.split())
#: methods that read their object and arguments only (str, dict, list reads)
_PURE_METHODS_TEXT = (
    "capitalize casefold center count endswith expandtabs find format get index isalnum "
    "isalpha isdigit islower isnumeric isspace istitle isupper items join keys ljust "
    "lower lstrip partition removeprefix removesuffix replace rfind rindex rjust "
    "rpartition rsplit rstrip split splitlines startswith strip swapcase title upper "
    "values zfill copy "
)
PURE_METHODS = frozenset(_PURE_METHODS_TEXT.split())
#: dotted functions that compute from their arguments only
PURE_DOTTED = frozenset(
    {"os.path.join", "os.path.basename", "os.path.dirname", "os.path.splitext", "math.ceil"}
)

#: methods of Prefect's tasks and futures that do not change the object they are called on
_PREFECT_READS = frozenset({"result", "wait", "submit", "map", "with_options", "done", "state"})

_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)


class Scope:
    """One function's (or the module's) body, analysed once."""

    def __init__(
        self,
        body: ast.AST,
        *,
        params: set[str] | frozenset[str] = frozenset(),
        params_constant: bool = False,
        module: Scope | None = None,
        outer_guard: str | None = None,
    ) -> None:
        self.module = module
        self.outer_guard = outer_guard  # a comprehension's own condition, or its function's
        self.params = set(params)
        self.params_constant = params_constant
        #: name -> what was assigned to it (None: bound some other way, e.g. ``import``)
        self._assigned: dict[str, list[ast.expr | None]] = {}
        #: name -> values stored into it in place (``x[k] = v``, ``x.append(v)``)
        self._changed: dict[str, list[ast.expr | None]] = {}
        self._body = body
        self._collect(body)
        self._busy: set[str] = set()
        self._regions: list[tuple[tuple[int, int], tuple[int, int], str]] | None = None

    # ---------------------------------------------------------------- reading the body

    def _collect(self, body: ast.AST) -> None:
        for node in _own_nodes(body):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    self._bind(target, node.value)
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                self._bind(node.target, node.value)
            elif isinstance(node, ast.AugAssign):
                self._bind(node.target, node.value, augmented=True)
            elif isinstance(node, ast.NamedExpr):
                self._bind(node.target, node.value)
            elif isinstance(node, ast.For | ast.AsyncFor):
                self._bind(node.target, _Each(node.iter))
            elif isinstance(node, ast.With | ast.AsyncWith):
                for item in node.items:
                    if item.optional_vars is not None:
                        self._bind(item.optional_vars, None)
            elif isinstance(node, ast.Import | ast.ImportFrom):
                for alias in node.names:
                    name = (alias.asname or alias.name).split(".")[0]
                    self._assigned.setdefault(name, []).append(None)
            elif isinstance(node, ast.ExceptHandler) and node.name:
                self._assigned.setdefault(node.name, []).append(None)
            elif isinstance(node, ast.Delete):
                for target in node.targets:
                    self._bind(target, None)
            elif isinstance(node, ast.Global | ast.Nonlocal):
                for name in node.names:
                    self._assigned.setdefault(name, []).append(None)
            elif isinstance(node, _FUNCTIONS) and node is not body:
                if not isinstance(node, ast.Lambda):
                    self._assigned.setdefault(node.name, []).append(None)
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                root = _root_name(node.func.value)
                if root is not None and node.func.attr not in PURE_METHODS | _PREFECT_READS:
                    values = [*node.args, *(k.value for k in node.keywords)]
                    self._changed.setdefault(root, []).extend(values or [ast.Constant(None)])
            elif isinstance(node, ast.match_case):
                for sub in ast.walk(node.pattern):
                    for name in _pattern_names(sub):
                        self._assigned.setdefault(name, []).append(None)

    def _bind(self, target: ast.expr, value: ast.expr | _Each | None, augmented=False) -> None:
        if isinstance(target, ast.Name):
            if augmented:
                self._assigned.setdefault(target.id, []).append(_Each(target, value))
            else:
                self._assigned.setdefault(target.id, []).append(value)  # type: ignore[arg-type]
        elif isinstance(target, ast.Tuple | ast.List):
            for elt in target.elts:  # each name gets a part of the value
                self._bind(elt.value if isinstance(elt, ast.Starred) else elt, _Each(value))
        elif isinstance(target, ast.Subscript | ast.Attribute | ast.Starred):
            root = _root_name(target)
            if root is not None:
                parts: list[ast.expr | None] = [
                    value if isinstance(value, ast.expr) else None  # type: ignore[list-item]
                ]
                if isinstance(target, ast.Subscript):
                    parts.append(target.slice)
                self._changed.setdefault(root, []).extend(parts)

    # ---------------------------------------------------------------- questions

    def is_local(self, name: str) -> bool:
        return name in self._assigned or name in self.params

    def changed(self, name: str) -> bool:
        """Does the body change ``name``'s object in place (``x[k] = v``, ``x.append(v)``)?"""
        return name in self._changed

    def sources(self, name: str) -> list[ast.expr] | None:
        """The expressions ``name`` was assigned from, if only ever by ``name = expr``
        outside any data-dependent branch or loop (else another run may assign it otherwise)."""
        if name in self.params or name not in self._assigned:
            return None
        found = self._assigned[name]
        if any(not isinstance(v, ast.expr) or isinstance(v, _Each) for v in found):
            return None
        if any(self.guard_of(v) is not None for v in found):
            return None
        return found  # type: ignore[return-value]

    def guard_of(self, node: ast.AST | None) -> str | None:
        """The data-dependent condition (``if``, loop, ``and``/``or``...) ``node`` runs under,
        or after an early exit from, if any: another run may not reach it, or reach it
        with other values."""
        if self.outer_guard is not None:
            return self.outer_guard
        if node is None or not hasattr(node, "lineno"):
            return None
        if self._regions is None:
            self._regions = []
            while True:  # a name assigned under a condition can make another condition
                found = self._find_regions(self._body)
                if len(found) == len(self._regions):
                    break
                self._regions = found
        at = (node.lineno, node.col_offset)
        for start, end, label in self._regions:
            if start <= at < end:
                return label
        return None

    def _find_regions(self, body: ast.AST) -> list[tuple[tuple[int, int], tuple[int, int], str]]:
        regions: list[tuple[tuple[int, int], tuple[int, int], str]] = []
        for node in _own_nodes(body):
            parts: list[ast.AST] = []
            label = None
            if isinstance(node, ast.If | ast.While) and not self.constant(node.test):
                label = f"{'if' if isinstance(node, ast.If) else 'while'} {_text(node.test)}"
                parts = [*node.body, *node.orelse]
            elif isinstance(node, ast.For | ast.AsyncFor) and not self.constant(node.iter):
                label = f"for {_text(node.target)} in {_text(node.iter)}"
                parts = [*node.body, *node.orelse]
            elif isinstance(node, ast.IfExp) and not self.constant(node.test):
                label = f"{_text(node.test)} (a conditional expression)"
                parts = [node.body, node.orelse]
            elif isinstance(node, ast.BoolOp) and not self.constant(node.values[0]):
                label = (
                    f"{_text(node.values[0])} ({'and' if isinstance(node.op, ast.And) else 'or'})"
                )
                parts = node.values[1:]
            elif isinstance(node, ast.Match) and not self.constant(node.subject):
                label = f"match {_text(node.subject)}"
                parts = list(node.cases)
            elif isinstance(node, _COMPREHENSIONS) and not self.comprehension_constant(node):
                # inlined (Python 3.12): what follows its first iterable runs as often as it loops
                first = node.generators[0].iter  # type: ignore[attr-defined]
                regions.append((_end(first), _end(node), f"a comprehension over {_text(first)}"))
                continue
            elif isinstance(node, ast.Try | ast.TryStar):
                label = "an except clause (it runs when a task fails)"
                parts = [*node.handlers, *node.orelse]
            if label is None or not parts:
                continue
            start = min(_start(p) for p in parts)
            end = max(_end(p) for p in parts)
            regions.append((start, end, label))
        # an early exit under a condition guards the rest of the function too
        for node in _own_nodes(body):
            if isinstance(node, ast.Return | ast.Break | ast.Continue | ast.Raise):
                at = (node.lineno, node.col_offset)
                for start, end, label in list(regions):
                    if start <= at < end:
                        regions.append((at, (10**9, 0), f"{label}, after its early exit"))
                        break
        return regions

    def constant(self, expr: ast.AST | None, bound: frozenset[str] = frozenset()) -> bool:
        """Is ``expr``'s value the same in every run with the same flow parameters?"""
        if expr is None:
            return False
        if isinstance(expr, ast.Constant):
            return True
        if isinstance(expr, ast.Name):
            return expr.id in bound or self._name_constant(expr.id)
        if isinstance(expr, ast.List | ast.Tuple | ast.Set):
            return all(self.constant(e, bound) for e in expr.elts)
        if isinstance(expr, ast.Dict):
            return all(
                (k is None or self.constant(k, bound)) and self.constant(v, bound)
                for k, v in zip(expr.keys, expr.values, strict=True)
            )
        if isinstance(expr, ast.Starred):
            return self.constant(expr.value, bound)
        if isinstance(expr, ast.Attribute):
            return self.constant(expr.value, bound)
        if isinstance(expr, ast.Subscript):
            return self.constant(expr.value, bound) and self.constant(expr.slice, bound)
        if isinstance(expr, ast.Slice):
            return all(
                p is None or self.constant(p, bound) for p in (expr.lower, expr.upper, expr.step)
            )
        if isinstance(expr, ast.BinOp):
            return self.constant(expr.left, bound) and self.constant(expr.right, bound)
        if isinstance(expr, ast.UnaryOp):
            return self.constant(expr.operand, bound)
        if isinstance(expr, ast.BoolOp):
            return all(self.constant(v, bound) for v in expr.values)
        if isinstance(expr, ast.Compare):
            return all(self.constant(v, bound) for v in (expr.left, *expr.comparators))
        if isinstance(expr, ast.IfExp):
            return all(self.constant(v, bound) for v in (expr.test, expr.body, expr.orelse))
        if isinstance(expr, ast.JoinedStr):
            return all(self.constant(v, bound) for v in expr.values)
        if isinstance(expr, ast.FormattedValue):
            return self.constant(expr.value, bound) and (
                expr.format_spec is None or self.constant(expr.format_spec, bound)
            )
        if isinstance(expr, ast.Call):
            return self._call_constant(expr, bound)
        if isinstance(expr, _COMPREHENSIONS):
            return self._comprehension_constant(expr, bound)
        if isinstance(expr, _Each):
            return all(self.constant(p, bound) for p in expr.parts)
        return False

    def _name_constant(self, name: str) -> bool:
        if name in self.params and name not in self._assigned:
            return self.params_constant
        if name not in self._assigned:
            if self.module is not None:
                return self.module._name_constant(name)
            return False  # a builtin or an unknown global: a function, a module...
        if name in self._busy:
            return True  # a cycle (``n = n + 1``): the other assignments decide
        self._busy.add(name)
        try:
            if name in self.params and not self.params_constant:
                return False
            values = [*self._assigned[name], *self._changed.get(name, [])]
            if any(isinstance(v, ast.expr) and self.guard_of(_first(v)) for v in values):
                return False  # assigned under a data-dependent condition
            return all(self.constant(v) for v in values)
        finally:
            self._busy.discard(name)

    def _shadowed(self, name: str) -> bool:
        scope: Scope | None = self
        while scope is not None:
            if scope.is_local(name):
                return True
            scope = scope.module
        return False

    def _call_constant(self, call: ast.Call, bound: frozenset[str]) -> bool:
        args = [*call.args, *(k.value for k in call.keywords)]
        if not all(self.constant(a, bound) for a in args):
            return False
        func = call.func
        if isinstance(func, ast.Name):
            return func.id in PURE_BUILTINS and not self._shadowed(func.id)
        if isinstance(func, ast.Attribute):
            if _dotted(func) in PURE_DOTTED and not self._shadowed(_root_name(func) or ""):
                return True
            return func.attr in PURE_METHODS and self.constant(func.value, bound)
        return False

    def comprehension_constant(self, expr: ast.expr, bound: frozenset[str] = frozenset()) -> bool:
        """Do a comprehension's iterables and conditions depend on constants only?"""
        inner = set(bound)
        for gen in expr.generators:  # type: ignore[attr-defined]
            if gen.is_async or not self.constant(gen.iter, frozenset(inner)):
                return False
            inner |= {n.id for n in ast.walk(gen.target) if isinstance(n, ast.Name)}
            if not all(self.constant(c, frozenset(inner)) for c in gen.ifs):
                return False
        return True

    def _comprehension_constant(self, expr: ast.expr, bound: frozenset[str]) -> bool:
        inner = set(bound)
        for gen in expr.generators:  # type: ignore[attr-defined]
            if gen.is_async or not self.constant(gen.iter, frozenset(inner)):
                return False
            inner |= {n.id for n in ast.walk(gen.target) if isinstance(n, ast.Name)}
            if not all(self.constant(c, frozenset(inner)) for c in gen.ifs):
                return False
        parts = [expr.key, expr.value] if isinstance(expr, ast.DictComp) else [expr.elt]  # type: ignore[attr-defined]
        return all(self.constant(p, frozenset(inner)) for p in parts)


class _Each(ast.expr):
    """A value derived from ``parts`` (an element of an iterable, an augmented assignment)."""

    def __init__(self, *parts: ast.AST | None) -> None:
        super().__init__()
        self.parts = list(parts)


def _text(node: ast.AST) -> str:
    text = ast.unparse(node)
    return text if len(text) <= 60 else text[:57] + "..."


def _start(node: ast.AST) -> tuple[int, int]:
    return (node.lineno, node.col_offset)  # type: ignore[attr-defined]


def _end(node: ast.AST) -> tuple[int, int]:
    return (node.end_lineno or node.lineno, node.end_col_offset or 0)  # type: ignore[attr-defined]


def _first(value: ast.expr) -> ast.AST | None:
    """A node of ``value`` with a position (an element or augmented value has its parts)."""
    if isinstance(value, _Each):
        return next((p for p in value.parts if p is not None and hasattr(p, "lineno")), None)
    return value


def _own_nodes(body: ast.AST) -> Iterator[ast.AST]:
    """The nodes of ``body`` outside nested functions and classes (their own scopes)."""
    stack = list(ast.iter_child_nodes(body))
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, _FUNCTIONS):
            # decorators and defaults run in this scope; the body does not
            if not isinstance(node, ast.Lambda):
                stack.extend(node.decorator_list)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _root_name(expr: ast.expr) -> str | None:
    """``rows`` for ``rows``, ``rows[0]``, ``cfg.items[1].x``."""
    while isinstance(expr, ast.Attribute | ast.Subscript | ast.Starred):
        expr = expr.value
    return expr.id if isinstance(expr, ast.Name) else None


def _dotted(expr: ast.expr) -> str:
    parts = []
    while isinstance(expr, ast.Attribute):
        parts.append(expr.attr)
        expr = expr.value
    if isinstance(expr, ast.Name):
        parts.append(expr.id)
    return ".".join(reversed(parts))


def _pattern_names(node: ast.AST) -> list[str]:
    names = [getattr(node, "name", None), getattr(node, "rest", None)]
    return [n for n in names if isinstance(n, str)]


def root_name(expr: ast.expr | None) -> str | None:
    """The variable an expression reads through (``rows`` for ``rows[0].x``), if any."""
    return None if expr is None else _root_name(expr)


def function_scope(
    tree: ast.Module, module: Scope, name: str, first_line: int, *, flow: bool
) -> Scope | None:
    """The :class:`Scope` of the function ``name`` whose code starts at ``first_line``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
            lines = [node.lineno, *(d.lineno for d in node.decorator_list)]
            if first_line in lines:
                args = node.args
                params = {
                    a.arg
                    for a in [
                        *args.posonlyargs,
                        *args.args,
                        *args.kwonlyargs,
                        args.vararg,
                        args.kwarg,
                    ]
                    if a is not None
                }
                return Scope(node, params=params, params_constant=flow, module=module)
    return None


_COMPREHENSION_CODES = {
    "<listcomp>": ast.ListComp,
    "<setcomp>": ast.SetComp,
    "<dictcomp>": ast.DictComp,
    "<genexpr>": ast.GeneratorExp,
}


def comprehension_scope(outer: Scope, kind: str, first_line: int) -> Scope | None:
    """The :class:`Scope` of a comprehension that runs in a frame of its own (Python 3.11):
    its targets are constants when its iterables and conditions are; otherwise its calls
    are guarded by it (another run may loop otherwise). None when it is not found alone
    on its line in ``outer``'s body."""
    cls = _COMPREHENSION_CODES.get(kind)
    found = [
        n for n in _own_nodes(outer._body) if isinstance(n, cls or ()) and n.lineno == first_line
    ]
    if cls is None or len(found) != 1:
        return None
    node = found[0]
    targets = {
        n.id
        for gen in node.generators  # type: ignore[attr-defined]
        for n in ast.walk(gen.target)
        if isinstance(n, ast.Name)
    }
    constant = outer.comprehension_constant(node)
    guard = outer.guard_of(node) or (
        None if constant else f"a comprehension over {_text(node.generators[0].iter)}"  # type: ignore[attr-defined]
    )
    return Scope(node, params=targets, params_constant=constant, module=outer, outer_guard=guard)


def module_scope(tree: ast.Module) -> Scope:
    return Scope(tree)
