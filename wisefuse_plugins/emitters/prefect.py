"""(IR, Plan) -> a readable Prefect flow file that runs the plan's units on Lambda.

Why a file, when ``@wisefuse`` does the same at run time: a file can be reviewed,
versioned and deployed (``prefect deploy`` runs a flow through Prefect's engine, which the
decorator does not intercept). The emitted flow has one ``@task`` per unit, named after
the unit's stages, and its body submits them in dependency order -- a bundled unit as one
``.map`` over its chunks of instances -- through
:class:`~wisefuse_plugins.providers.prefect.planned.PlannedRun`, then returns what the
original flow returned (``Workflow.meta["returns"]``, which the decorator's traced runs
record; without it, ``{sink stage: output}``). The IR and the plan are embedded as JSON at
the end of the file, so it needs nothing else but the flow's own source files.

Parameters: the emitted flow has the original flow's parameters (names and kinds, and
annotations when they are builtin types, read from the flow's source file), with the
traced values as defaults, then a keyword-only ``block``: a ``WiseFuseLambda`` block or the
name of a saved one (default: the embedded local Lambda; in Prefect's UI, a block picker).
The IR is specialised to the traced values (they are ``Const`` bindings, and the number of
mapped instances follows from them), and it does not record which binding came from which
parameter: so the plan runs only with those values, and a call with others fails at once
with an error that says how to plan for them (:func:`require_traced_parameters`). The file
is ruff-clean under the project's settings.
"""

from __future__ import annotations

import ast
import json
import keyword
import re
import textwrap
from pathlib import Path
from typing import Any

from wisefuse_plugins.errors import WiseFuseError
from wisefuse_plugins.ir import Workflow, to_json
from wisefuse_plugins.plan.schema import Plan, check_plan, is_bundled_unit, plan_to_json

__all__ = ["EmitError", "emit_flow", "require_traced_parameters"]

#: Annotation names the emitted file can evaluate without the flow's own imports.
_BUILTIN_TYPES = {"int", "float", "str", "bool", "bytes", "list", "dict", "tuple", "set"}
_BUILTIN_TYPES |= {"None", "Any"}


class EmitError(WiseFuseError):
    """The (workflow, plan) cannot become a Prefect flow file."""


def _identifier(raw: str, taken: set[str]) -> str:
    name = re.sub(r"\W+", "_", raw).strip("_").lower() or "unit"
    if name[0].isdigit() or keyword.iskeyword(name):
        name = f"unit_{name}"
    base, n = name, 1
    while name in taken:
        n += 1
        name = f"{base}_{n}"
    taken.add(name)
    return name


def _q(text: str) -> str:
    """A string literal as ruff format writes it (double quotes unless that needs escapes)."""
    if '"' in text and "'" not in text:
        return repr(text)
    return json.dumps(text)


def _call(head: str, args: list[str], indent: str) -> list[str]:
    """``head(args)`` on one line when it fits in 88 columns, else one argument per line.

    The magic trailing comma keeps ruff format from joining the lines again, so the file
    is stable under any line length from 88 up.
    """
    one = f"{indent}{head}({', '.join(args)})"
    if len(one) <= 88:
        return [one]
    return [f"{indent}{head}(", *(f"{indent}    {a}," for a in args), f"{indent})"]


def _literal(value: Any) -> str:
    """A JSON value as Python source, quoted as ruff format quotes it."""
    if isinstance(value, str):
        return _q(value)
    if isinstance(value, list):
        return f"[{', '.join(_literal(v) for v in value)}]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_q(k)}: {_literal(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _source_signature(workflow: Workflow) -> ast.arguments | None:
    """The original flow function's arguments, from its source file (None: not found)."""
    src = workflow.source
    if not src.path or not src.entry:
        return None
    try:
        tree = ast.parse((Path(src.root) / src.path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == src.entry:
            return node.args
    return None


def _annotation(node: ast.expr | None) -> str | None:
    """The annotation's source when the emitted file can evaluate it, else None."""
    if node is None:
        return None
    names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
    consts = [n for n in ast.walk(node) if isinstance(n, ast.Constant) and n.value is not None]
    others = [n for n in ast.walk(node) if isinstance(n, ast.Attribute)]
    if consts or others or not names <= _BUILTIN_TYPES:
        return None
    return ast.unparse(node)


def _flow_parameters(workflow: Workflow, reserved: set[str]) -> tuple[list[str], list[str]]:
    """The emitted flow's parameters before ``block``: (positional-or-keyword, keyword-only),
    each ``name: annotation = traced value``."""
    traced = workflow.meta.get("parameters")
    if not isinstance(traced, dict) or not traced:
        return [], []
    args = _source_signature(workflow)
    annotations: dict[str, str | None] = {}
    kwonly: set[str] = set()
    if args is not None:
        if args.vararg or args.kwarg:
            star = f"*{args.vararg.arg}" if args.vararg else f"**{args.kwarg.arg}"  # type: ignore[union-attr]
            raise EmitError(
                f"flow {workflow.name!r} takes {star}: the emitted flow cannot give it the "
                "traced values",
                hint="name the flow's parameters, trace it again, then emit",
            )
        for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]:
            annotations[a.arg] = _annotation(a.annotation)
        kwonly = {a.arg for a in args.kwonlyargs}
    clash = sorted(set(traced) & (reserved | {"block"}))
    if clash:
        raise EmitError(
            f"flow {workflow.name!r} has parameters named {clash}, which the emitted flow uses "
            "for itself",
            hint="rename those parameters of the flow, trace it again, then emit",
        )
    out: tuple[list[str], list[str]] = ([], [])
    for name, value in traced.items():
        hint = annotations.get(name)
        head = f"{name}: {hint} = " if hint else f"{name}="
        out[name in kwonly].append(head + _literal(value))
    return out


def require_traced_parameters(workflow: Workflow, /, **given: Any) -> None:
    """Raise unless ``given`` are the parameter values ``workflow`` was traced with.

    The emitted flow calls this first: its plan holds the traced values, so other values
    would silently run the traced flow (the wrong result) instead of the one asked for."""
    from wisefuse_plugins.adapters.prefect.snapshot import jsonable

    traced = workflow.meta.get("parameters") or {}
    changed = sorted(k for k in given if jsonable(given[k]) != traced.get(k))
    if changed:
        shown = ", ".join(f"{k}={traced.get(k)!r}" for k in changed)
        raise EmitError(
            f"this flow file runs the plan of flow {workflow.name!r} for its traced parameters "
            f"only ({shown}); it was called with other values for {', '.join(changed)}",
            hint="call the @wisefuse flow with the new values (it traces them), run `wisefuse "
            "optimize` on that trace, and emit the flow file again",
        )


def _docstring(workflow: Workflow, plan: Plan, flow_name: str) -> list[str]:
    params = workflow.meta.get("parameters")
    shown = ", ".join(f"{k}={v!r}" for k, v in params.items()) if isinstance(params, dict) else ""
    width = max(len("+".join(u.stages)) for u in plan.units)
    rows = []
    for u in plan.units:
        how = f"bundles of {u.bundle_size}" if is_bundled_unit(u, workflow) else "1 invocation"
        rows.append(f"    {'+'.join(u.stages):<{width}}  {how}, {u.memory_mb} MB, {u.arch}")
    returns = (
        "It returns what the original flow returned."
        if isinstance(workflow.meta.get("returns"), dict)
        else "It returns {sink stage: output}: the IR does not say what the flow returned."
    )
    if shown:
        paragraph = (
            f"The IR is specialised to the parameters it was traced with ({shown}): they are "
            "the defaults, and other values are refused. `block`: a WiseFuseLambda block or "
            f"the name of a saved one (default: the embedded local Lambda). {returns}"
        )
    else:
        paragraph = (
            "The flow's only parameter is `block`: a WiseFuseLambda block or the name of a "
            f"saved one (default: the embedded local Lambda). {returns}"
        )
    return [
        f'"""{flow_name}: its WiseFuse plan\'s {len(plan.units)} units on Lambda, as Prefect tasks.',
        "",
        "Generated by wisefuse_plugins.emitters.prefect.emit_flow; change the plan, not this",
        "file. Units (stages fused into one invocation; bundles: instances per invocation):",
        "",
        *rows,
        "",
        *textwrap.wrap(paragraph, width=88, break_on_hyphens=False),
        '"""',
    ]


def emit_flow(workflow: Workflow, plan: Plan, *, flow_name: str | None = None) -> str:
    """The source of a flow file that runs ``workflow`` under ``plan`` (see the module doc)."""
    from wisefuse_plugins.plan.lower import count_source
    from wisefuse_plugins.plan.schema import unit_graph
    from wisefuse_plugins.providers.prefect.decorator import tolerated_failures

    check_plan(plan, workflow)
    tolerated = tolerated_failures(workflow)
    if tolerated is not None:
        raise EmitError(
            f"workflow {workflow.name!r} cannot become a planned flow: {tolerated}",
            hint="keep running the original flow; an emitted flow would fail where it succeeds",
        )
    opaque = [s.id for s in workflow.stages if not s.is_python]
    if opaque:
        raise EmitError(
            f"workflow {workflow.name!r} has opaque stages {opaque} that only Prefect can run",
            hint="keep running the original flow, or make those tasks plain importable functions",
        )
    flow_name = flow_name or workflow.name
    taken = {"run", "chunks", "block", "flow", "task", "unmapped", "invoke_unit", "chunk_labels"}
    taken |= {"PlannedRun", "NO_CACHE", "Any", "WORKFLOW", "PLAN", "CODE_ROOT", "from_json"}
    taken |= {"plan_from_json", "annotations", "WiseFuseLambda", "require_traced_parameters"}
    fn_name = _identifier(flow_name, taken)
    positional, keyword_only = _flow_parameters(workflow, taken | {fn_name, "Any"})
    taken |= set(workflow.meta.get("parameters") or {})  # unit task names must not shadow them
    bundled = {u.id for u in plan.units if is_bundled_unit(u, workflow)}
    task_vars = {u.id: _identifier(u.id, taken) for u in plan.units}
    runs = {uid: f"{v}_runs" if uid in bundled else f"{v}_run" for uid, v in task_vars.items()}
    spread = {uid: f"*{runs[uid]}" if uid in bundled else runs[uid] for uid in runs}
    graph = unit_graph(plan, workflow)
    order = workflow_unit_order(workflow, plan)

    lines = _docstring(workflow, plan, flow_name)
    lines += [
        "",
        "from __future__ import annotations",
        "",
        "from typing import Any",
        "",
        f"from prefect import flow, task{', unmapped' if bundled else ''}",
        "from prefect.cache_policies import NO_CACHE",
        "",
        *(
            ["from wisefuse_plugins.emitters.prefect import require_traced_parameters"]
            if workflow.meta.get("parameters")
            else []
        ),
        "from wisefuse_plugins.ir import from_json",
        "from wisefuse_plugins.plan.schema import plan_from_json",
        "from wisefuse_plugins.prefect import WiseFuseLambda",
    ]
    names = ["PlannedRun", *(["chunk_labels"] if bundled else []), "invoke_unit"]
    lines += _call_import("wisefuse_plugins.providers.prefect.planned", names)
    lines += [
        "",
        "# The folder the stages' source paths are relative to (where the original flow lives).",
        f"CODE_ROOT = {_q(workflow.source.root)}",
        "",
        "# One task per unit: each run of it is one Lambda invocation of the unit.",
    ]
    for u in plan.units:
        label = "+".join(u.stages)
        retries = max((workflow.stage(s).retries for s in u.stages), default=0)
        args = ["invoke_unit", f"name={_q(label)}"]
        run_name = label + " [{chunk}]" if u.id in bundled else label
        args.append(f"task_run_name={_q(run_name)}")
        if retries:
            args.append(f"retries={retries}")
        args += ["cache_policy=NO_CACHE", "persist_result=False"]
        lines += _call(f"{task_vars[u.id]} = task", args, "")

    lines += ["", "", f"@flow(name={_q(flow_name)})"]
    block_arg = "block: WiseFuseLambda | str | None = None"
    if positional or keyword_only:
        params = [*positional, "*", *keyword_only, block_arg]
        one = f"def {fn_name}({', '.join(params)}) -> Any:"
        if len(one) <= 88:
            lines.append(one)
        else:
            lines += [f"def {fn_name}(", *(f"    {a}," for a in params), ") -> Any:"]
    else:
        lines.append(f"def {fn_name}({block_arg}) -> Any:")
    lines.append(
        '    """Run the flow as its plan\'s units; `block`: a WiseFuseLambda block or its name."""'
    )
    if positional or keyword_only:
        names = [p.split(":")[0].split("=")[0] for p in [*positional, *keyword_only]]
        given = [f"{n}={n}" for n in names]
        lines += _call("require_traced_parameters", ["WORKFLOW", *given], "    ")
    lines += [
        "    run = PlannedRun.start(WORKFLOW, PLAN, block, code_root=CODE_ROOT)",
        "    try:",
    ]
    waited: set[str] = set()
    for uid in order:
        unit = plan.unit(uid)
        preds = [p for p in graph.predecessors(uid) if p in task_vars]
        wait_for = [f"wait_for=[{', '.join(spread[p] for p in preds)}]"] if preds else []
        if uid not in bundled:
            args = ["run.run_id", _q(uid), *wait_for]
            lines += _call(f"{runs[uid]} = {task_vars[uid]}.submit", args, "        ")
            continue
        src = count_source(workflow, plan, uid)
        if isinstance(src, tuple) and src[0] not in waited:
            lines.append(
                f"        # {'+'.join(unit.stages)} runs once per chunk of instances: "
                "the number of instances"
            )
            lines.append(f"        # is known when {'+'.join(plan.unit(src[0]).stages)} is done")
            lines.append(f"        {runs[src[0]]}.result()")
            waited.add(src[0])
        lines.append(f"        chunks = run.chunks({_q(uid)})")
        args = [
            "unmapped(run.run_id)",
            f"unmapped({_q(uid)})",
            "chunk=chunk_labels(chunks)",
            "instances=chunks",
            *wait_for,
        ]
        lines += _call(f"{runs[uid]} = {task_vars[uid]}.map", args, "        ")
    everything = f"[{', '.join(spread[u] for u in order)}]"
    lines += _call("return run.finish", [everything], "        ")
    lines += [
        "    finally:",
        "        run.close()",
        "",
        "",
        "# The workflow's IR and the plan this file was generated from.",
        f'WORKFLOW = from_json(r"""{to_json(workflow).rstrip()}""")',
        f'PLAN = plan_from_json(r"""{plan_to_json(plan).rstrip()}""")',
        "",
        "",
        'if __name__ == "__main__":',
        f"    print({fn_name}())",
        "",
    ]
    return "\n".join(lines)


def _call_import(module: str, names: list[str]) -> list[str]:
    one = f"from {module} import {', '.join(names)}"
    if len(one) <= 88:
        return [one]
    return [f"from {module} import (", *(f"    {n}," for n in names), ")"]


def workflow_unit_order(workflow: Workflow, plan: Plan) -> list[str]:
    """Unit ids in dependency order, ties broken by the workflow's stage order."""
    import networkx as nx

    from wisefuse_plugins.plan.schema import unit_graph

    graph = unit_graph(plan, workflow)
    units = {u.id for u in plan.units}
    first = {}
    for i, sid in enumerate(workflow.topological_order()):
        u = plan.unit_of(sid)
        if u is not None:
            first.setdefault(u.id, i)
    ordered = nx.lexicographical_topological_sort(graph, key=lambda n: first.get(n, 1 << 30))
    return [n for n in ordered if n in units]
