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


def plan_line(plan) -> str:
    """A plan on one line, a unit per bracket: ``[a+b x2 @1024] [c @512 arm64]``."""
    parts = []
    for u in plan.units:
        bundle = f" x{u.bundle_size}" if u.bundle_size > 1 else ""
        arch = "" if u.arch == "x86_64" else f" {u.arch}"
        parts.append(f"[{'+'.join(u.stages)}{bundle} @{u.memory_mb}{arch}]")
    return " ".join(parts)


def usd_per_1k(cost_usd: float) -> str:
    return f"${cost_usd * 1000:.4f}"


def plan_table(planned, comparisons=()) -> Group:
    """The chosen plan unit by unit, then how it compares with other planners.

    ``planned`` and each of ``comparisons`` are :class:`~wisefuse_plugins.optimizer.search.Planned`.
    """
    units = Table(title=f"plan for {planned.plan.workflow} (SLO {planned.slo_s:.3f} s)")
    for col in (
        "unit",
        "stages",
        "bundle",
        "invocations",
        "memory",
        "arch",
        "P95 (s)",
        "cost / 1k runs",
    ):
        units.add_column(col, justify="right" if col not in ("unit", "stages", "arch") else "left")
    by_id = {u.unit: u for u in planned.prediction.units}
    for u in planned.plan.units:
        up = by_id[u.id]
        units.add_row(
            u.id,
            " > ".join(u.stages),
            str(u.bundle_size),
            str(up.invocations),
            f"{u.memory_mb} MB",
            u.arch,
            f"{up.p95_ms / 1000:.3f}",
            usd_per_1k(up.cost_usd),
        )
    summary = Table(title="predicted, per run")
    for col in ("planner", "P95 (s)", "cost / 1k runs", "meets SLO"):
        summary.add_column(col, justify="left" if col == "planner" else "right")
    for p in (planned, *comparisons):
        ok = "[green]yes[/]" if p.prediction.p95_s <= planned.slo_s else "[red]no[/]"
        summary.add_row(
            p.planner, f"{p.prediction.p95_s:.3f}", usd_per_1k(p.prediction.cost_usd), ok
        )
    return Group(units, summary)
