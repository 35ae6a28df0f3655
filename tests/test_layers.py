"""The import rule: arrows go one way, and no module imports its way back to itself.

Every import statement of every module in ``wisefuse_plugins/`` is read with :mod:`ast`:
top-level ones, lazy ones inside functions, ``TYPE_CHECKING`` ones, and
``importlib.import_module("wisefuse_plugins...")`` with a literal name. A module belongs to
an *area*: the first component under the package (``runtime`` for
``wisefuse_plugins.runtime.backends.local``, ``cli`` for ``wisefuse_plugins.cli``).
:data:`LAYERS` orders the areas bottom to top; a module may import its own area and areas
of lower layers only (areas in one layer are peers: neither imports the other).

A violation names the importing file and line, what it imports, and the rule it breaks.
Known violations in code that another piece of work is changing sit in :data:`ALLOWED`,
each with its owner; an entry that no longer occurs must be removed (the list only shrinks).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import networkx as nx

import wisefuse_plugins

PACKAGE = "wisefuse_plugins"
ROOT = Path(wisefuse_plugins.__file__).parent

# Bottom to top. Derived from the code: each area imports only areas listed before it.
LAYERS: tuple[frozenset[str], ...] = tuple(
    frozenset(layer)
    for layer in (
        {"__init__", "errors", "originals", "lazy"},  # the package, the error base classes,
        # the lazy re-exports of facades and packages (PEP 562), and the
        # flag by which the adapter reads a DAG file past its drop-in line (stdlib only)
        {"ir"},  # workflows: imports errors only
        {"plan"},  # the plan schema, Lambda's limits and prices, the lowering: imports ir
        {"model"},  # the performance and cost model
        {"runtime"},  # handler, store, executor, backends: runs a plan's units
        {"adapters"},  # framework objects -> IR (stage ids from task names)
        {"optimizer", "profiles"},  # planning (uses the model); profiling (runs on a backend,
        # imports framework history under the adapters' stage ids)
        {"targets"},  # which framework a file uses (asks the adapters)
        {"providers"},  # Airflow and Prefect integrations: run a plan in the framework
        {"emitters"},  # (IR, plan) -> Airflow / Prefect source, Step Functions ASL
        # entry points and presentation: the framework facades, AWS deployment, reports
        {"airflow", "prefect", "deploy", "render", "report", "plots"},
        {"demo"},
        {"cli"},
        {"__main__"},
    )
)

# (importing module, imported module) -> why it is tolerated for now. Only shrinks.
ALLOWED: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Import:
    source: str  # importing module, dotted
    target: str  # imported module of ours, dotted
    path: Path
    line: int

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT.parent)}:{self.line}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def area(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _targets(module: str, path: Path, node: ast.AST) -> Iterator[str]:
    known = modules()
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            prefix = ".".join([*base, node.module] if node.module else base)
        else:
            prefix = node.module or ""
        # `from a.b import c` imports module a.b.c if there is one, else a name of a.b
        names = [
            f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in known else prefix for a in node.names
        ]
    elif (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute | ast.Name)
        and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id)
        == "import_module"
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ):
        names = [node.args[0].value]
    else:
        return
    for name in dict.fromkeys(names):
        if name == PACKAGE or name.startswith(PACKAGE + "."):
            while name not in known and "." in name:  # `import a.b.name` style leftovers
                name = name.rsplit(".", 1)[0]
            yield name


@cache
def imports() -> tuple[Import, ...]:
    found = []
    for module, path in modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            for target in _targets(module, path, node):
                if target != module:
                    found.append(Import(module, target, path, node.lineno))
    return tuple(sorted(found, key=lambda i: (i.source, i.line, i.target)))


def rank(area_name: str) -> int:
    for i, layer in enumerate(LAYERS):
        if area_name in layer:
            return i
    raise AssertionError(f"area {area_name!r} is in no layer: add it to LAYERS")


def _report(problems: list[str]) -> str:
    return f"{len(problems)} import-rule violation(s):\n  " + "\n  ".join(problems)


def _allowed(imp: Import) -> bool:
    return (imp.source, imp.target) in ALLOWED


def test_every_area_has_a_layer() -> None:
    missing = sorted({area(m) for m in modules()} - set().union(*LAYERS))
    assert not missing, f"areas in no layer of LAYERS: {missing}; add each where it belongs"


def test_ir_imports_only_errors() -> None:
    problems = [
        f"{i.where}: {i.source} imports {i.target} (rule: ir imports nothing of ours "
        "but wisefuse_plugins.errors)"
        for i in imports()
        if area(i.source) == "ir" and area(i.target) not in {"ir", "errors"} and not _allowed(i)
    ]
    assert not problems, _report(problems)


def test_plan_imports_only_ir() -> None:
    problems = [
        f"{i.where}: {i.source} imports {i.target} (rule: plan imports only ir and errors)"
        for i in imports()
        if area(i.source) == "plan"
        and area(i.target) not in {"plan", "ir", "errors"}
        and not _allowed(i)
    ]
    assert not problems, _report(problems)


def test_nothing_below_imports_anything_above() -> None:
    problems = []
    for i in imports():
        src, dst = area(i.source), area(i.target)
        if src == dst or _allowed(i):
            continue
        if rank(dst) > rank(src):
            rule = f"layer {src!r} is below {dst!r} in LAYERS"
        elif rank(dst) == rank(src):
            rule = f"{src!r} and {dst!r} are peers in one layer of LAYERS"
        else:
            continue
        problems.append(f"{i.where}: {i.source} imports {i.target} (rule: {rule})")
    assert not problems, _report(problems)


def _cycles(graph: nx.DiGraph) -> list[str]:
    problems = []
    for component in nx.strongly_connected_components(graph):
        if len(component) < 2:
            continue
        cycle = nx.find_cycle(graph.subgraph(component))
        steps = [f"{graph.edges[a, b]['where']} ({a} -> {b})" for a, b in cycle]
        problems.append("import cycle: " + "; ".join(steps))
    return sorted(problems)


def test_no_module_import_cycles() -> None:
    graph = nx.DiGraph()
    for i in imports():
        if not _allowed(i) and not graph.has_edge(i.source, i.target):
            graph.add_edge(i.source, i.target, where=i.where)
    problems = _cycles(graph)
    assert not problems, _report(problems)


def test_no_area_import_cycles() -> None:
    graph = nx.DiGraph()
    for i in imports():
        src, dst = area(i.source), area(i.target)
        if src != dst and not _allowed(i) and not graph.has_edge(src, dst):
            graph.add_edge(src, dst, where=f"{i.where}: {i.source} -> {i.target}")
    problems = _cycles(graph)
    assert not problems, _report(problems)


def test_allowed_entries_still_occur() -> None:
    seen = {(i.source, i.target) for i in imports()}
    stale = sorted(set(ALLOWED) - seen)
    assert not stale, f"ALLOWED entries that no longer occur (remove them): {stale}"


def test_lazy_and_type_checking_imports_are_seen(tmp_path: Path) -> None:
    """The walk sees imports inside functions, ``if TYPE_CHECKING`` blocks and by name."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from wisefuse_plugins.plan import schema\n"
        "def f():\n"
        "    from ..runtime.spec import UnitSpec\n"
        "    import wisefuse_plugins.ir.nodes\n"
        "    return importlib.import_module('wisefuse_plugins.model.predict')\n"
    )
    path = ROOT / "emitters" / "example.py"
    tree = ast.parse(source)
    found = sorted(
        {
            t
            for node in ast.walk(tree)
            for t in _targets("wisefuse_plugins.emitters.example", path, node)
        }
    )
    assert found == [
        "wisefuse_plugins.ir.nodes",
        "wisefuse_plugins.model.predict",
        "wisefuse_plugins.plan.schema",
        "wisefuse_plugins.runtime.spec",
    ]
