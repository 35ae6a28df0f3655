"""Airflow DAG source for a (workflow, plan): a readable file to commit instead of the drop-in.

The source renderer beside the object renderer (:mod:`.rewrite`), both drawing one
:func:`~wisefuse_plugins.providers.airflow.layout.layout`, as astronomer-cosmos keeps one
converter; :mod:`wisefuse_plugins.emitters.airflow` writes its output to files.

:func:`dag_source` writes the same tasks :func:`wisefuse_plugins.airflow.rewrite` builds in
memory (the shape comes from :func:`~wisefuse_plugins.providers.airflow.layout.layout`):
one ``WiseFuseLambdaOperator`` per unit, ``.partial().expand(instances=...)`` for a bundled
unit, a ``<task>__chunks`` task where the chunks are known only at run time, and ``>>``
lines for the dependencies. Each unit task names its plan unit; its spec is built from the
plan and IR files beside the DAG file when the task runs, so parsing the emitted file
reads nothing and is as fast as any DAG file.

Opaque tasks (Bash, sensors, SQL, anything the adapter keeps in Airflow) are **copied from
the original DAG file** rather than re-written as source: ``ORIGINAL.copy("publish",
xcom={...})`` imports the original file when the emitted one is parsed and copies the task
with its arguments, trigger rule and callbacks, re-pointing its XCom inputs at the tasks
that now produce them. That keeps any operator exactly as the user configured it, at the
price of importing the original file; a DAG without opaque tasks imports nothing of it.
DAG settings (schedule, default_args, params, tags...) are written as literals when they
are plain values, else read from the original DAG the same way.

The units run the user's functions from the code root (``CODE_ROOT``: by default the
folder of the emitted file, so emit it beside the original DAG file). The original file
must stay there for its functions; if both files sit in the DAG folder they need
different dag_ids (the default adds ``_wisefuse``), or list the original in
``.airflowignore``.
"""

from __future__ import annotations

import datetime as dt
import json
import keyword
import math
import re
import textwrap
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wisefuse_plugins.errors import WiseFuseError
from wisefuse_plugins.ir import Workflow
from wisefuse_plugins.ir.serde import to_json as dump_workflow_json
from wisefuse_plugins.plan.schema import Plan, check_plan, plan_to_json
from wisefuse_plugins.providers.airflow.layout import Layout, UnitTask, layout
from wisefuse_plugins.providers.airflow.planfiles import sha_of

if TYPE_CHECKING:
    from airflow.sdk import DAG

__all__ = ["DEFAULT_SUFFIX", "dag_source"]

DEFAULT_SUFFIX = "_wisefuse"
LINE_LENGTH = 88  # ruff's default: emitted files live in the user's project
TAG = "wisefuse"

#: DAG constructor arguments the emitted DAG carries over when they differ from the default.
_DAG_FIELDS = (
    "description",
    "schedule",
    "start_date",
    "end_date",
    "catchup",
    "default_args",
    "params",
    "max_active_tasks",
    "max_active_runs",
    "max_consecutive_failed_dag_runs",
    "dagrun_timeout",
    "template_searchpath",
    "user_defined_macros",
    "user_defined_filters",
    "on_success_callback",
    "on_failure_callback",
    "access_control",
    "is_paused_upon_creation",
    "jinja_environment_kwargs",
    "render_template_as_native_obj",
    "owner_links",
    "fail_fast",
    "dag_display_name",
    "deadline",
    "template_undefined",
    "allowed_run_types",
    "auto_register",
    "disable_bundle_versioning",
    "rerun_with_latest_version",
)


# --------------------------------------------------------------------------- literals


class _Imports:
    def __init__(self) -> None:
        self.datetime: set[str] = set()


def _q(text: str) -> str:
    """A string literal as ruff format writes it: double quotes, unless that needs more escapes."""
    quoted = json.dumps(text, ensure_ascii=False)
    if '"' in text and "'" not in text:
        return "'" + quoted[1:-1].replace('\\"', '"') + "'"
    return quoted


def _literal(value: Any, imports: _Imports) -> str | None:
    """``value`` as Python source, or None when it is not a plain value."""
    if isinstance(value, str):
        return _q(value)
    if value is None or isinstance(value, bool | int):
        return repr(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None
    if isinstance(value, dt.timedelta):
        imports.datetime.add("timedelta")
        return f"timedelta(seconds={value.total_seconds()!r})"
    if isinstance(value, dt.datetime):
        if value.utcoffset() != dt.timedelta(0):
            return None
        imports.datetime.update({"datetime", "timezone"})
        parts = [value.year, value.month, value.day, value.hour, value.minute, value.second]
        while len(parts) > 3 and parts[-1] == 0:
            parts.pop()
        micro = f", {value.microsecond}" if value.microsecond else ""
        return f"datetime({', '.join(map(str, parts))}{micro}, tzinfo=timezone.utc)"
    if isinstance(value, list | tuple):
        items = [_literal(v, imports) for v in value]
        if any(i is None for i in items):
            return None
        body = ", ".join(items)  # type: ignore[arg-type]
        return (
            f"[{body}]" if isinstance(value, list) else f"({body}{',' if len(items) == 1 else ''})"
        )
    if isinstance(value, dict):
        pairs = []
        for k, v in value.items():
            lit = _literal(v, imports)
            if not isinstance(k, str) or lit is None:
                return None
            pairs.append(f"{_q(k)}: {lit}")
        return "{" + ", ".join(pairs) + "}"
    return None


def _params_literal(params: Any, imports: _Imports) -> str | None:
    """Params as a dict of values, when none carries a schema or description."""
    try:
        raw = {k: params.get_param(k) for k in params}
    except Exception:
        return None
    values = {}
    for k, p in raw.items():
        if getattr(p, "schema", None) or getattr(p, "description", None):
            return None
        values[k] = getattr(p, "value", p)
    return _literal(values, imports)


def _dag_settings(dag: DAG | None, imports: _Imports) -> tuple[list[str], bool]:
    """``name=value`` lines for the DAG's non-default settings; True if ORIGINAL is needed."""
    if dag is None:
        return [
            "schedule=None,  # TODO: the original DAG was not available: set its schedule"
        ], False
    from airflow.sdk import DAG

    default = DAG("wisefuse_default")
    lines: list[str] = []
    needs_original = False
    for name in _DAG_FIELDS:
        value = getattr(dag, name, None)
        if name == "params":
            if not len(value or {}):
                continue
            lit = _params_literal(value, imports)
        elif name == "dag_display_name" and value == dag.dag_id:
            continue  # the default, which follows the emitted DAG's own id
        else:
            if value == getattr(default, name, None) and name != "schedule":
                continue
            lit = _literal(value, imports)
        if lit is None:
            lit = f"ORIGINAL.dag.{name}"
            needs_original = True
        lines.append(f"{name}={lit},")
    tags = sorted({*map(str, dag.tags or ()), TAG})
    lines.append(f"tags=[{', '.join(map(_q, tags))}],")
    if dag.doc_md:
        lines.append("doc_md=__doc__,")
    return lines, needs_original


# --------------------------------------------------------------------------- names


def _variables(task_ids: list[str], reserved: Collection[str] = ()) -> dict[str, str]:
    """A distinct Python identifier per task id (none of ``reserved``)."""
    names: dict[str, str] = {}
    taken = {"dag", "ORIGINAL", "HERE", "UNITS", "PLAN_FILES", "PlanFiles", "Path", "DAG"}
    taken |= {"TaskGroup", *reserved}
    for tid in task_ids:
        base = re.sub(r"\W", "_", tid)
        if not base or base[0].isdigit() or keyword.iskeyword(base):
            base = f"t_{base}"
        name, n = base, 1
        while name in taken:
            n += 1
            name = f"{base}_{n}"
        taken.add(name)
        names[tid] = name
    return names


def _describe(wf: Workflow, u: UnitTask) -> str:
    """A one-line comment: which stages the unit runs, how, and on what."""
    names = " -> ".join(wf.stage(s.id).name for s in u.spec.stages)
    how = []
    if len(u.unit.stages) > 1:
        how.append("fused")
    if u.bundled:
        n = u.unit.bundle_size
        how.append(f"{n} instance{'s' if n > 1 else ''} per invocation")
    extra = f" ({', '.join(how)})" if how else ""
    return f"unit {u.unit.id!r}: {names}{extra}, {u.unit.memory_mb} MB {u.unit.arch}"


def _comment(text: str, indent: str) -> list[str]:
    """``text`` as comment lines that fit in LINE_LENGTH columns."""
    width = LINE_LENGTH - len(indent) - 2
    return [f"{indent}# {line}" for line in textwrap.wrap(text, width)]


def _call(head: str, args: list[str], indent: str, tail: str = "") -> str:
    """``head(arg, ...)tail`` on one line if it fits ruff's default 88 columns, else one
    argument per line (with the trailing comma that keeps ruff format from joining them)."""
    one = f"{indent}{head}({', '.join(args)}){tail}"
    if len(one) <= LINE_LENGTH:
        return one
    inner = indent + "    "
    return f"{indent}{head}(\n" + "".join(f"{inner}{a},\n" for a in args) + f"{indent}){tail}"


# --------------------------------------------------------------------------- emit


def dag_source(
    workflow: Workflow,
    plan: Plan,
    *,
    dag_id: str | None = None,
    dag: DAG | None = None,
    plan_file: str | None = None,
    workflow_file: str | None = None,
    original_file: str | None = None,
    code_root: str | None = None,
    backend: str = "local",
    aws_conn_id: str | None = None,
) -> str:
    """The source of a DAG file that runs ``workflow`` under ``plan`` with the provider's operator.

    ``dag_id``: default ``<workflow>_wisefuse``. ``dag``: the original DAG (for its settings
    and opaque tasks' XCom inputs); loaded from the workflow's source file when not given,
    if it can be. ``plan_file`` / ``workflow_file``: where the plan and IR JSON will be,
    relative to the emitted file (default ``<workflow>.plan.json`` / ``<workflow>.ir.json``;
    :func:`~wisefuse_plugins.emitters.airflow.write_dag` writes all three).
    ``original_file``: the original DAG file, relative to the emitted file (default: its
    name in the workflow's source). ``code_root``: the folder the callables are relative
    to (default: the emitted file's folder).
    """
    check_plan(plan, workflow)
    if dag is None:
        dag = _load_original(workflow)
    from wisefuse_plugins.providers.airflow.xcomrefs import opaque_reads

    reads = opaque_reads(dag, workflow) if dag is not None else None
    lay = layout(workflow, plan, reads=reads)
    dag_id = dag_id or f"{workflow.name}{DEFAULT_SUFFIX}"
    imports = _Imports()
    settings, needs_original = _dag_settings(dag, imports)
    unit_args = {u.task_id: _unit_settings(dag, u, imports) for u in lay.units}
    groups = _unit_groups(dag, lay, imports)
    needs_original = needs_original or any("ORIGINAL" in line for line in groups.lines)
    needs_original = needs_original or bool(lay.opaque)
    needs_original = needs_original or any("ORIGINAL" in a for v in unit_args.values() for a in v)
    original = original_file or Path(workflow.source.path or f"{workflow.name}.py").name
    plan_file = plan_file or f"{workflow.name}.plan.json"
    workflow_file = workflow_file or f"{workflow.name}.ir.json"
    return _source(
        lay,
        dag_id=dag_id,
        settings=settings,
        imports=imports,
        needs_original=needs_original,
        original=original,
        plan_file=plan_file,
        workflow_file=workflow_file,
        code_root=code_root,
        backend=backend,
        aws_conn_id=aws_conn_id,
        reads=reads,
        unit_args=unit_args,
        groups=groups,
    )


def _unit_settings(dag: DAG | None, u: UnitTask, imports: _Imports) -> list[str]:
    """Arguments for the unit task's settings (the rule: ``tasks.unit_settings``): literals
    when plain, the rest read from the original DAG when the emitted file is parsed."""
    from wisefuse_plugins.providers.airflow.tasks import unit_settings

    task_ids = [u.stage_tasks[s.id] for s in u.spec.stages]
    args, rest = [], []
    for name, value in unit_settings(dag, task_ids).items():
        if name == "retries" and value == u.retries:
            continue  # written with the unit's other arguments
        lit = _literal(value, imports)
        if lit is None:
            rest.append(name)
        elif isinstance(value, str) and len(f"{' ' * 8}{name}={lit},") > LINE_LENGTH:
            args.append(f"{name}={_split_string(value, 8)}")  # a docstring as doc_md
        else:
            args.append(f"{name}={lit}")
    if rest:  # an argument of the unit task's call, which is split one argument per line
        ids = f"[{', '.join(map(_q, task_ids))}]"
        call = _call("**ORIGINAL.settings", [ids, *map(_q, rest)], " " * 8)
        args.append(call.lstrip())
    return args


@dataclass
class _Groups:
    """The task groups unit tasks go in: source lines that make them, and per unit task id
    its label and the group's variable."""

    lines: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    of: dict[str, tuple[str, str]] = field(default_factory=dict)


def _unit_groups(dag: DAG | None, lay: Layout, imports: _Imports) -> _Groups:
    """Each unit task goes in its last stage's task group, as in the drop-in
    (``tasks.unit_group``); the groups are written as ``TaskGroup(...)`` lines, with their
    settings as literals or read from the original. Opaque copies join the same groups."""
    found = _Groups()
    if dag is None:
        return found
    import attrs

    made: dict[str, str] = {}

    def make(group: Any) -> str | None:
        if group is None or group.group_id is None:
            return None
        if group.group_id in made:
            return made[group.group_id]
        parent = make(group.parent_group)
        name = "group_" + re.sub(r"\W", "_", group.group_id)
        args = [_q(group._group_id)]
        if parent is not None:
            args.append(f"parent_group={parent}")
        for f in attrs.fields(type(group)):
            if not f.init or f.name in _GROUP_SKIP:
                continue
            value = getattr(group, f.name)
            default = f.default.factory() if isinstance(f.default, attrs.Factory) else f.default  # type: ignore[misc]
            if value == default:
                continue
            lit = _literal(value, imports)
            if lit is None:
                lit = f"ORIGINAL.group({_q(group.group_id)}).{f.name}"
            args.append(f"{f.alias or f.name}={lit}")
        found.lines.append(_call(f"{name} = TaskGroup", args, ""))
        found.names.append(name)
        made[group.group_id] = name
        return name

    from wisefuse_plugins.providers.airflow.tasks import unit_group

    for u in lay.units:
        task = dag.task_dict.get(u.task_id)
        if task is None or task.task_group is None or hasattr(task.task_group, "_expand_input"):
            continue
        label, group = unit_group(dag, dag, u.task_id)  # the original's own group: no copy
        name = make(group)
        if name is not None:
            found.of[u.task_id] = (label, name)
    return found


_GROUP_SKIP = {"_group_id", "parent_group", "dag", "children", "used_group_ids"}


def _split_string(text: str, indent: int) -> str:
    """A long string as parenthesised pieces that each fit in LINE_LENGTH columns (an
    argument at ``indent`` columns of a call split one argument per line)."""
    width = LINE_LENGTH - indent - 4 - 2
    pieces: list[str] = []
    current = ""
    for word in re.findall(r"\S*\s*", text):
        while len(_q(current + word)) - 2 > width and current:
            pieces.append(current)
            current = ""
        while len(_q(word)) - 2 > width:  # a word longer than a line
            pieces.append(word[:width])
            word = word[width:]
        current += word
    if current or not pieces:
        pieces.append(current)
    inner = " " * (indent + 4)
    body = "".join(f"{inner}{_q(piece)}\n" for piece in pieces)
    return f"(\n{body}{' ' * indent})"


def _load_original(workflow: Workflow) -> DAG | None:
    if workflow.source.framework != "airflow" or not workflow.source.path:
        return None
    path = Path(workflow.source.root) / workflow.source.path
    try:
        from wisefuse_plugins.adapters.airflow import load_dag_file

        return load_dag_file(path, workflow.source.entry)
    except WiseFuseError:
        return None


def _source(
    lay: Layout,
    *,
    dag_id: str,
    settings: list[str],
    imports: _Imports,
    needs_original: bool,
    original: str,
    plan_file: str,
    workflow_file: str,
    code_root: str | None,
    backend: str,
    aws_conn_id: str | None,
    reads: Mapping[str, set[str]] | None,
    unit_args: Mapping[str, list[str]],
    groups: _Groups,
) -> str:
    wf = lay.workflow
    order = _task_order(lay)
    var = _variables(order, reserved=set(groups.names))
    by_task = {u.task_id: u for u in lay.units}
    chunk_of = {u.chunks.chunk_task_id: u for u in lay.units if u.chunks and u.chunks.chunk_task_id}
    relay_of = {r.task_id: r for r in lay.relays.values()}
    opaque_of = {wf.stage(s).name: s for s in lay.opaque}
    operators = {"WiseFuseLambdaOperator"}
    if chunk_of:
        operators.add("WiseFuseChunksOperator")
    if relay_of:
        operators.add("WiseFuseXComRelayOperator")

    body: list[str] = []
    ind = "    "
    for tid in order:
        v = var[tid]
        if tid in by_task:
            u = by_task[tid]
            body += _comment(_describe(wf, u), ind)
            label, group = groups.of.get(tid, (tid, None))
            args = [f"task_id={_q(label)}"]
            if group is not None:
                args.append(f"task_group={group}")
            args += [
                f"unit_id={_q(u.unit.id)}",
                f"memory_mb={u.unit.memory_mb}",
                f"arch={_q(u.unit.arch)}",
            ]
            if u.retries:
                args.append(f"retries={u.retries}")
            if u.multiple_outputs:
                args.append("multiple_outputs=True")
            args += unit_args.get(tid, [])
            args.append("**UNITS")
            if not u.bundled:
                body.append(_call(f"{v} = WiseFuseLambdaOperator", args, ind))
            else:
                assert u.chunks is not None
                if u.chunks.kind == "static":
                    instances = repr(u.chunks.chunks)
                else:
                    assert u.chunks.chunk_task_id is not None
                    instances = f"{var[u.chunks.chunk_task_id]}.output"
                tail = f".expand(instances={instances})"
                body.append(_call(f"{v} = WiseFuseLambdaOperator.partial", args, ind, tail))
        elif tid in chunk_of:
            u = chunk_of[tid]
            src = u.chunks
            assert src is not None and src.task_id is not None
            body += _comment(f"the instance chunks {u.task_id!r} maps over, known at run time", ind)
            args = [f"task_id={_q(tid)}", f"source_task_id={_q(src.task_id)}", f"size={src.size}"]
            if src.kind == "opaque":
                args.append('mode="opaque"')
            if src.key is not None:
                args.append(f"key={_q(src.key)}")
            if src.mapped:
                args.append("mapped=True")
            body.append(_call(f"{v} = WiseFuseChunksOperator", args, ind))
        elif tid in relay_of:
            r = relay_of[tid]
            body += _comment(
                f"the value of {wf.stage(r.stage).name!r} for the opaque tasks that read it", ind
            )
            args = [
                f"task_id={_q(tid)}",
                f"source_task_id={_q(r.source_task_id)}",
                f"key={_q(r.key)}",
            ]
            if r.flatten:
                args.append("flatten=True")
            if r.multiple_outputs:
                args.append("multiple_outputs=True")
            body.append(_call(f"{v} = WiseFuseXComRelayOperator", args, ind))
        else:
            sid = opaque_of[tid]
            stage = wf.stage(sid)
            reason = stage.opaque_reason or "kept in Airflow"
            body += _comment(f"kept from {original}: {reason}", ind)
            sources = _xcom_sources(lay, sid, reads)
            args = [_q(tid)]
            if sources:
                mapping = ", ".join(f"{_q(t)}: {var[src]}" for t, src in sources.items())
                args.append(f"xcom={{{mapping}}}")
            body.append(_call(f"{v} = ORIGINAL.copy", args, ind))
    if lay.edges:
        rank = {t: i for i, t in enumerate(order)}
        body.append("")
        for a, b in sorted(lay.edges, key=lambda e: (rank[e[0]], rank[e[1]])):
            body.append(f"{ind}{var[a]} >> {var[b]}")

    n = len(lay.units)
    summary = textwrap.fill(
        f'"""{dag_id}: the DAG {wf.name!r} with its Python tasks run on Lambda as WiseFuse units.',
        LINE_LENGTH,
    )
    about = textwrap.fill(
        f"Written by wisefuse from the DAG {wf.name!r} and its plan ({n} unit{'s' if n != 1 else ''}). "
        f"The units read the plan ({plan_file}) and the workflow ({workflow_file}) beside this "
        "file when they run; re-emit the file after `wisefuse optimize` rather than editing it.",
        LINE_LENGTH,
    )
    head: list[str] = [
        summary,
        "",
        about,
        '"""',
        "",
        "from __future__ import annotations",
        "",
    ]
    if imports.datetime:
        head.append(f"from datetime import {', '.join(sorted(imports.datetime))}")
    head.append("from pathlib import Path")
    head += ["", f"from airflow.sdk import DAG{', TaskGroup' if groups.lines else ''}", ""]
    if needs_original:
        head.append("from wisefuse_plugins.airflow import OriginalDag")
    ops = sorted(operators)
    if len(ops) == 1:
        head.append(f"from wisefuse_plugins.providers.airflow.operators import {ops[0]}")
    else:
        head.append("from wisefuse_plugins.providers.airflow.operators import (")
        head += [f"    {o}," for o in ops]
        head.append(")")
    root = "str(HERE)" if code_root is None else _q(str(code_root))
    head.append("from wisefuse_plugins.providers.airflow.planfiles import PlanFiles")
    head += [
        "",
        "HERE = Path(__file__).resolve().parent",
        "# The plan and workflow files, and the SHA-256 of those this file was written for.",
        "PLAN_FILES = PlanFiles(",
        f"    plan=HERE / {_q(plan_file)},",
        f"    plan_sha={_q(sha_of(plan_to_json(lay.plan).encode()))},",
        f"    workflow=HERE / {_q(workflow_file)},",
        f"    workflow_sha={_q(sha_of(dump_workflow_json(wf).encode()))},",
        ")",
        "# For every unit task: its plan and workflow, where its functions live, where it runs.",
        "UNITS = {",
        "    **PLAN_FILES.units,",
        f'    "code_root": {root},',
        f'    "backend": {_q(backend)},',
    ]
    if aws_conn_id:
        head.append(f'    "aws_conn_id": {_q(aws_conn_id)},')
    head.append("}")
    if needs_original:
        entry = wf.source.entry or wf.name
        head.append(f"ORIGINAL = OriginalDag(HERE / {_q(original)}, {_q(entry)})")
    head += ["", "with DAG(", f"    dag_id={_q(dag_id)},"]
    head += [f"    {line}" for line in settings]
    head.append(") as dag:")
    if groups.lines:
        body = [f"{ind}{line}" for line in groups.lines] + body
    if not body:
        body = [f"{ind}pass"]
    tail = ["", "PLAN_FILES.check(dag)  # a missing or replaced file: a warning in the DAG's docs"]
    return "\n".join(head + body + tail) + "\n"


def _xcom_sources(lay: Layout, sid: str, reads: Mapping[str, set[str]] | None) -> dict[str, str]:
    """Original task id -> task id that stands for it, for the XComArgs of opaque stage ``sid``."""
    wf = lay.workflow
    found: dict[str, str] = {}
    candidates = reads.get(sid, set()) if reads is not None else set(wf.predecessors(sid))
    if reads is not None:  # opaque producers are read too; reads lists only Python ones
        candidates |= {p for p in wf.predecessors(sid) if not wf.stage(p).is_python}
    for p in sorted(candidates, key=lambda s: wf.stage(s).name):
        stage = wf.stage(p)
        found[stage.name] = lay.xcom_source(p) if stage.is_python else stage.name
    return found


def _task_order(lay: Layout) -> list[str]:
    """Every task id of the layout, producers first (ties in workflow order)."""
    import networkx as nx

    wf = lay.workflow
    tasks: list[str] = []
    for s in wf.stages:  # workflow order, then helpers next to their unit
        tid = lay.task_of[s.id]
        if tid not in tasks:
            tasks.append(tid)
    for u in lay.units:
        if u.chunks and u.chunks.chunk_task_id:
            tasks.append(u.chunks.chunk_task_id)
    tasks += [r.task_id for r in lay.relays.values()]
    g = nx.DiGraph()
    g.add_nodes_from(tasks)
    g.add_edges_from(lay.edges)
    rank = {t: i for i, t in enumerate(tasks)}
    return list(nx.lexicographical_topological_sort(g, key=rank.__getitem__))
