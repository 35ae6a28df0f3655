"""Rich views of IR objects for the CLI (kept apart so the IR itself stays print-free)."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.tree import Tree

from wisefuse_plugins.ir import Workflow
from wisefuse_plugins.ir.nodes import Binding, upstream_of


def _binding_text(b: Binding) -> str:
    src = upstream_of(b)
    if b.kind == "const":
        text = repr(b.value)
        return text if len(text) <= 30 else text[:27] + "..."
    if b.kind == "const_item":
        return f"each of {len(b.values)} values"
    key = f"[{b.key!r}]" if getattr(b, "key", None) else ""
    return {"output": f"{src}{key}", "item": f"item of {src}{key}", "collect": f"all of {src}"}[
        b.kind
    ]


def workflow_view(wf: Workflow) -> Group:
    """A tree of stages in topological order, then a table of edges."""
    title = f"[bold]{wf.name}[/] ({wf.source.framework}"
    title += f": {wf.source.path})" if wf.source.path else ")"
    tree = Tree(title)
    for sid in wf.topological_order():
        s = wf.stage(sid)
        par = f" x{s.parallelism}" + (
            f" ({s.parallelism_source})" if s.parallelism_source != "static" else ""
        )
        label = f"[cyan]{s.id}[/]" + (f" [dim]({s.name})[/]" if s.name != s.id else "")
        if s.is_python:
            where = f"{s.callable.path}:{s.callable.qualname}" if s.callable else "?"
            node = tree.add(f"{label} [green]python[/]{par if s.mapped else ''} [dim]{where}[/]")
        else:
            node = tree.add(f"{label} [yellow]opaque[/] [dim]{s.opaque_reason}[/]")
        for param, b in s.bindings.items():
            node.add(f"{param} <- {_binding_text(b)}")
    edges = Table(title="edges", show_lines=False)
    for col in ("from", "to", "kind", "pattern", "bytes"):
        edges.add_column(col)
    for e in wf.edges:
        edges.add_row(e.src, e.dst, e.kind.value, e.pattern.value, str(e.bytes or "?"))
    return Group(tree, edges)
