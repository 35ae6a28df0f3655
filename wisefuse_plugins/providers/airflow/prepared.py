"""A drop-in DAG's layout, computed once per (plan, DAG) and read back by every later parse.

Airflow parses a DAG file in a fresh process again and again: the dag-processor every
``min_file_process_interval``, and every task instance at start-up. What the drop-in
:func:`~.rewrite.rewrite` computes from the plan (reading the DAG into the IR with the
adapter, parsing and checking the plan, laying out the unit tasks) imports the pydantic IR,
plan and spec models and the adapter, which cost a fresh process more than the rest of the
rewrite; and the result depends only on the plan and on what the adapter reads from the DAG.
So the first parse of a (plan, DAG) pair computes it and keeps it as plain JSON (a
**prepared layout**: the unit tasks with their specs as JSON, relays, kept tasks, edges; or
the plan's problems with the DAG), and every later parse builds the DAG from that record
without importing any of it (issue 19 item 6).

The record's key (:func:`fingerprint`) is the SHA-256 of everything the result depends on:

- the plan's bytes (their SHA-256);
- every task of the live DAG as the adapter sees it, canonically encoded: its class, id,
  upstream ids, arguments (``op_args``, ``op_kwargs``, mapped arguments, templated
  fields), settings (trigger rule, retries, pool, queue, assets...), task groups;
- the bytes of the DAG file and of every file that defines a task's ``python_callable``
  (a plan is stale when a function's source changes);
- the parallelism overrides, Airflow's version, and the size and mtime of the wisefuse
  modules that compute a layout (a new version of them computes anew).

A value it cannot encode faithfully (a cycle, a structure too deep) makes the parse compute
everything itself, as does ``WISEFUSE_LAYOUT_CACHE=0``. Records live beside the plan pins
(:func:`~.planfiles.state_dir`, ``dags/<dag>/layouts/<key>.json``), a few per DAG; a folder
that cannot be written only costs the next parse the full computation.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import hashlib
import json
import logging
import os
import re
import sys
import types
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wisefuse_plugins.providers.airflow.layout import ChunkSource, OpaqueInput, Relay, UnitTask
from wisefuse_plugins.providers.airflow.planfiles import PlanState, _key, _write_atomic
from wisefuse_plugins.providers.airflow.xcomrefs import xcom_fields

if TYPE_CHECKING:
    from airflow.sdk import DAG

    from wisefuse_plugins.ir import Workflow
    from wisefuse_plugins.plan.schema import Plan
    from wisefuse_plugins.providers.airflow.layout import Layout

log = logging.getLogger("wisefuse_plugins.airflow")

FORMAT = 1
CACHE_ENV = "WISEFUSE_LAYOUT_CACHE"
"""``0`` turns prepared layouts off: every parse computes its layout (as the first does)."""
KEEP = 16
"""Records kept per DAG (the newest): a plan or DAG edited back and forth finds its own."""

#: Task attributes the adapter reads (besides the task's class, id, upstream ids and
#: templated fields); any change to one gives another key.
TASK_ATTRS = (
    "trigger_rule",
    "retries",
    "is_setup",
    "is_teardown",
    "multiple_outputs",
    "python_callable",
    "op_args",
    "op_kwargs",
    "templates_dict",
    "partial_kwargs",
    "expand_input",
    "op_kwargs_expand_input",
    "owner",
    "pool",
    "pool_slots",
    "queue",
    "priority_weight",
    "weight_rule",
    "executor",
    "executor_config",
    "run_as_user",
    "max_active_tis_per_dag",
    "max_active_tis_per_dagrun",
    "depends_on_past",
    "wait_for_downstream",
    "inlets",
    "outlets",
)
#: The wisefuse modules whose code decides a prepared layout (their size and mtime are in the key).
CODE = ("adapters", "ir", "plan", "runtime/spec.py", "providers/airflow")
#: Types whose ``repr`` is their whole value (dates, durations, paths, decimals, UUIDs).
_REPR_MODULES = ("datetime", "decimal", "uuid", "pathlib", "pendulum", "fractions")
_MAX_DEPTH = 48
_DAG_MODULE = re.compile(r"^unusual_prefix_[0-9a-f]{40}_")


def enabled() -> bool:
    return os.environ.get(CACHE_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


# --------------------------------------------------------------------------- the key


class Unencodable(Exception):
    """A value the fingerprint cannot encode faithfully: no record for this parse."""


def fingerprint(
    dag: DAG, plan_sha: str, parallelism: Mapping[str, int] | None = None
) -> str | None:
    """The key of ``dag``'s prepared layout under the plan ``plan_sha``; None when the DAG
    holds something it cannot encode faithfully (then nothing is cached)."""
    files: set[str] = set()
    fileloc = getattr(dag, "fileloc", None)
    if fileloc:
        files.add(os.path.realpath(fileloc))
    try:
        tasks = [_task(task, files) for task in dag.task_dict.values()]
    except (Unencodable, RecursionError) as err:
        log.debug("DAG %r: no prepared layout (%s)", dag.dag_id, err)
        return None
    airflow = sys.modules.get("airflow")
    doc = [
        FORMAT,
        str(getattr(airflow, "__version__", "")),
        _code_stamp(),
        plan_sha,
        dag.dag_id,
        os.path.realpath(fileloc) if fileloc else "",  # one file, however a process names it
        os.getcwd() if not fileloc else "",  # a DAG without a file: paths are the cwd's
        sorted((str(k), int(v)) for k, v in (parallelism or {}).items()),
        tasks,
        [[f, _file_sha(f)] for f in sorted(files)],
    ]
    text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _task(task: Any, files: set[str]) -> list[Any]:
    cls = getattr(task, "operator_class", None)
    cls = cls if isinstance(cls, type) else type(task)
    fields = dict.fromkeys(TASK_ATTRS)
    with contextlib.suppress(Exception):
        fields.update(dict.fromkeys(xcom_fields(task)))
    values = []
    for attr in fields:
        try:
            value = getattr(task, attr, None)
        except Exception as err:  # a mapped operator may not resolve some before expansion
            values.append([attr, "!", type(err).__name__])
            continue
        values.append([attr, _encode(value, 0, set())])
    fn = getattr(task, "python_callable", None)
    if fn is None:
        with contextlib.suppress(Exception):
            fn = (getattr(task, "partial_kwargs", None) or {}).get("python_callable")
    _source_files(fn, files)
    groups = []
    group = task.task_group
    while group is not None and group.group_id is not None:
        groups.append(
            [
                group.group_id,
                _type_name(group.__class__),  # a weakref proxy: type() would name the proxy
                bool(getattr(group, "prefix_group_id", True)),
                _encode(getattr(group, "_expand_input", None), 0, set()),
            ]
        )
        group = group.parent_group
    return [
        task.task_id,
        _type_name(type(task)),
        _type_name(cls),
        sorted(task.upstream_task_ids),
        values,
        groups,
    ]


def _source_files(fn: Any, files: set[str]) -> None:
    """The files of ``fn`` and of what it wraps (a stage's code hash is their source)."""
    seen = 0
    while fn is not None and seen < 8:
        code = getattr(fn, "__code__", None)
        if code is not None and code.co_filename and not code.co_filename.startswith("<"):
            files.add(os.path.realpath(code.co_filename))
        fn = getattr(fn, "__wrapped__", None)
        seen += 1


def _type_name(cls: Any) -> str:
    return f"{_module(getattr(cls, '__module__', '?'))}.{getattr(cls, '__qualname__', repr(cls))}"


def _module(name: Any) -> Any:
    """A module name as every process names it: Airflow names a DAG file's module after the
    SHA-1 of the path it was given (``unusual_prefix_<sha1>_<stem>``), which differs between
    the dag-processor and ``wisefuse optimize`` for one file; the file itself is in the key."""
    if isinstance(name, str) and name.startswith("unusual_prefix_"):
        return _DAG_MODULE.sub("unusual_prefix_", name, count=1)
    return name


def _encode(value: Any, depth: int, stack: set[int]) -> Any:
    """``value`` as JSON that differs whenever the adapter could see it differently."""
    kind = type(value)
    if value is None or kind is bool or kind is int or kind is str:
        return value
    if kind is float:
        return ["float", repr(value)]
    if depth > _MAX_DEPTH:
        raise Unencodable("a value nested too deep")
    how = _KINDS.get(kind) or _kind_of(kind)
    if how == "callable":
        return _callable(value)
    if how == "method":
        return ["method", _type_name(type(value.__self__)), _callable(value.__func__)]
    if how == "xcom":
        return ["xcom", value.operator.task_id, value.key]
    if how == "task":  # a task referenced by another: by its id
        return ["task", str(value.task_id)]
    if how == "dag":
        return ["dag", str(getattr(value, "dag_id", ""))]
    if how == "group":
        return ["group", str(getattr(value, "group_id", ""))]
    if how == "bytes":
        return [kind.__name__, hashlib.sha256(value).hexdigest()]
    if how == "enum":
        return ["enum", _type_name(kind), _encode(value.value, depth + 1, stack)]
    if how == "repr":
        return ["repr", _type_name(kind), repr(value)]
    if how == "object":
        # Not a JSON value for the adapter (the task stays opaque whatever its value), and
        # it holds no XComArg the adapter would follow: its type is what matters.
        return ["object", _type_name(kind)]
    if id(value) in stack:
        raise Unencodable(f"a {kind.__name__} that contains itself")
    stack.add(id(value))
    try:
        depth += 1
        name = _type_name(kind)
        if how == "map":
            items = [[_encode(k, depth, stack), _encode(v, depth, stack)] for k, v in value.items()]
            return ["map", name, items]
        if how == "seq":
            return ["seq", name, [_encode(v, depth, stack) for v in value]]
        if how == "set":
            found = [json.dumps(_encode(v, depth, stack), sort_keys=True) for v in value]
            return ["set", name, sorted(found)]
        if how == "attrs":  # XComArg kinds, expand inputs, assets: attrs classes
            fields = [f.name for f in kind.__attrs_attrs__]
        else:  # a dataclass
            fields = list(kind.__dataclass_fields__)
        return [how, name, [[f, _encode(getattr(value, f, None), depth, stack)] for f in fields]]
    finally:
        stack.discard(id(value))


#: How :func:`_encode` treats each type met so far (a parse meets a few dozen).
_KINDS: dict[type, str] = {}


def _kind_of(kind: type) -> str:
    names = {c.__name__ for c in kind.__mro__}
    if issubclass(kind, types.FunctionType | types.BuiltinFunctionType | type):
        how = "callable"
    elif issubclass(kind, types.MethodType):
        how = "method"
    elif "PlainXComArg" in names:
        how = "xcom"
    elif names & {"AbstractOperator", "BaseOperator", "MappedOperator"}:
        how = "task"
    elif "DAG" in names:
        how = "dag"
    elif "TaskGroup" in names:
        how = "group"
    elif issubclass(kind, bytes | bytearray):
        how = "bytes"
    elif issubclass(kind, enum.Enum):
        how = "enum"
    elif issubclass(kind, dict):
        how = "map"
    elif issubclass(kind, list | tuple):
        how = "seq"
    elif issubclass(kind, set | frozenset):
        how = "set"
    elif issubclass(kind, Mapping):  # an ABC check walks its registry: after the builtins
        how = "map"
    elif hasattr(kind, "__attrs_attrs__"):
        how = "attrs"
    elif hasattr(kind, "__dataclass_fields__"):
        how = "dc"
    elif kind.__module__.split(".")[0] in _REPR_MODULES:
        how = "repr"
    else:
        how = "object"
    _KINDS[kind] = how
    return how


def _callable(fn: Any) -> list[Any]:
    code = getattr(fn, "__code__", None)
    where = [_real(code.co_filename), code.co_firstlineno] if code is not None else []
    module = _module(getattr(fn, "__module__", None))
    return ["callable", module, getattr(fn, "__qualname__", None), *where]


@functools.lru_cache(maxsize=1024)
def _real(path: str) -> str:
    return path if path.startswith("<") else os.path.realpath(path)


def _file_sha(path: str) -> str | None:
    try:
        with open(path, "rb") as fh:
            return hashlib.sha256(fh.read()).hexdigest()
    except OSError:
        return None


@functools.cache
def _code_stamp() -> list[list[Any]]:
    """Size and mtime of the wisefuse modules that compute a layout."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    found = []
    for part in CODE:
        path = os.path.join(root, part)
        try:
            if part.endswith(".py"):
                st = os.stat(path)
                found.append([part, st.st_size, st.st_mtime_ns])
                continue
            with os.scandir(path) as entries:
                for e in entries:
                    if e.name.endswith(".py"):
                        st = e.stat()
                        found.append([f"{part}/{e.name}", st.st_size, st.st_mtime_ns])
        except OSError:
            found.append([part, None, None])
    return sorted(found)


# --------------------------------------------------------------------------- the record


def record(dag: DAG, workflow: Workflow, plan: Plan) -> dict[str, Any]:
    """What a parse without a record computes for ``dag`` (read as ``workflow``) under
    ``plan``: ``{"problems": [[path, reason], ...]}`` when the plan no longer fits it, else
    ``{"layout": ...}`` (:func:`prepare`). The drop-in's parse and ``wisefuse optimize``
    (:mod:`.ahead`) both call it, so a record made at plan time is the parse's own."""
    from wisefuse_plugins.plan.schema import plan_problems

    problems = plan_problems(plan, workflow)
    if problems:
        return {"problems": [[p, reason] for p, reason in problems]}
    return {"layout": prepare(dag, workflow, plan)}


def prepare(dag: DAG, workflow: Workflow, plan: Plan) -> dict[str, Any]:
    """The layout record of ``dag`` rewritten under ``plan`` (a plan that fits it: see
    :func:`~wisefuse_plugins.plan.schema.plan_problems`). The part of a rewrite that a
    parse with a record skips; raises what :func:`~.layout.layout` raises."""
    from wisefuse_plugins.providers.airflow.layout import layout
    from wisefuse_plugins.providers.airflow.xcomrefs import opaque_reads

    return layout_record(layout(workflow, plan, reads=opaque_reads(dag, workflow)))


def layout_record(lay: Layout) -> dict[str, Any]:
    """What building a rewritten DAG reads of ``lay``, as JSON."""
    wf = lay.workflow
    return {
        "root": wf.source.root,
        "units": [
            {
                "task_id": u.task_id,
                "unit": u.unit.model_dump(mode="json"),
                "spec": u.spec.model_dump(mode="json"),
                "bundled": u.bundled,
                "last_stage": u.last_stage,
                "stage_tasks": u.stage_tasks,
                "multiple_outputs": u.multiple_outputs,
                "opaque_inputs": {k: v.to_json() for k, v in u.opaque_inputs.items()},
                "chunks": None if u.chunks is None else _chunks_json(u.chunks),
                "retries": u.retries,
            }
            for u in lay.units
        ],
        "opaque": [wf.stage(sid).name for sid in lay.opaque],
        "relays": {
            sid: {
                "task_id": r.task_id,
                "stage": r.stage,
                "source_task_id": r.source_task_id,
                "key": r.key,
                "flatten": r.flatten,
                "multiple_outputs": r.multiple_outputs,
            }
            for sid, r in lay.relays.items()
        },
        "edges": [list(e) for e in lay.edges],
        "targets": {s.name: lay.xcom_source(s.id) for s in wf.python_stages},
    }


def _chunks_json(c: ChunkSource) -> dict[str, Any]:
    return {
        "kind": c.kind,
        "size": c.size,
        "task_id": c.task_id,
        "key": c.key,
        "mapped": c.mapped,
        "chunks": c.chunks,
        "chunk_task_id": c.chunk_task_id,
    }


class UnitRecord:
    """A plan unit as a prepared layout keeps it (what a unit task reads of a ``Unit``)."""

    __slots__ = ("arch", "bundle_size", "id", "memory_mb", "stages")

    def __init__(self, doc: Mapping[str, Any]) -> None:
        self.id = str(doc["id"])
        self.stages = list(doc["stages"])
        self.bundle_size = int(doc.get("bundle_size", 1))
        self.memory_mb = int(doc["memory_mb"])
        self.arch = str(doc["arch"])


class StageRecord:
    __slots__ = ("id",)

    def __init__(self, sid: str) -> None:
        self.id = sid


class SpecRecord:
    """A unit spec as JSON, read back without the ``UnitSpec`` model: a unit task stores
    it as JSON (``model_dump``) and validates it when it runs."""

    __slots__ = ("_doc", "bundled", "exports", "stages")

    def __init__(self, doc: dict[str, Any]) -> None:
        self._doc = doc
        self.stages = [StageRecord(s["id"]) for s in doc["stages"]]
        self.exports = list(doc["exports"])
        self.bundled = bool(doc["bundled"])

    def model_dump(self, mode: str = "json") -> dict[str, Any]:
        return self._doc  # read fresh from the record by each parse: the operator owns it


class PreparedLayout:
    """A layout read back from its record: what :func:`~.tasks.build_tasks` and the
    rewrite read of a :class:`~.layout.Layout` (``units``, ``relays``), and the rest of
    the rewritten DAG's shape (kept tasks, edges, where opaque consumers read)."""

    def __init__(self, doc: Mapping[str, Any]) -> None:
        self.root: str = doc["root"]
        self.units = [
            UnitTask(
                unit=UnitRecord(u["unit"]),  # type: ignore[arg-type]
                task_id=u["task_id"],
                spec=SpecRecord(u["spec"]),  # type: ignore[arg-type]
                bundled=bool(u["bundled"]),
                last_stage=u["last_stage"],
                stage_tasks=dict(u["stage_tasks"]),
                multiple_outputs=bool(u["multiple_outputs"]),
                opaque_inputs={k: OpaqueInput.from_json(v) for k, v in u["opaque_inputs"].items()},
                chunks=None if u["chunks"] is None else ChunkSource(**u["chunks"]),
                retries=int(u["retries"]),
            )
            for u in doc["units"]
        ]
        self.opaque: list[str] = list(doc["opaque"])  # task ids, in workflow order
        self.relays = {sid: Relay(**r) for sid, r in doc["relays"].items()}
        self.edges = [(a, b) for a, b in doc["edges"]]
        self.targets: dict[str, str] = dict(doc["targets"])

    def target(self, task_id: str) -> str:
        """The task of the rewritten DAG that an opaque task reading ``task_id`` reads."""
        return self.targets.get(task_id, task_id)


# --------------------------------------------------------------------------- the store


class Records:
    """Prepared layouts under the plan state folder, one JSON file per key."""

    def __init__(self, state: PlanState | None = None) -> None:
        self.state = state or PlanState()

    def _folder(self, dag_id: str) -> Path:
        return self.state.root / "dags" / _key(dag_id) / "layouts"

    def get(self, dag_id: str, key: str) -> dict[str, Any] | None:
        try:
            doc = json.loads((self._folder(dag_id) / f"{key}.json").read_bytes())
        except (OSError, ValueError):
            return None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("key") != key:
            return None
        return doc

    def put(self, dag_id: str, key: str, doc: dict[str, Any], *, made: str = "parse") -> bytes:
        """Keep ``doc`` (best effort); returns its JSON, the bytes a later parse reads.
        ``made``: who computed it, ``parse`` or ``plan`` (``wisefuse optimize``)."""
        head = {"format": FORMAT, "key": key, "dag_id": dag_id, "made": made}
        data = json.dumps({**head, **doc}).encode()
        folder = self._folder(dag_id)
        try:
            _write_atomic(folder / f"{key}.json", data)
            self._prune(folder)
        except OSError as err:
            log.debug("DAG %r: could not keep its prepared layout in %s: %s", dag_id, folder, err)
        return data

    @staticmethod
    def _prune(folder: Path) -> None:
        found = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
        for old in found[KEEP:]:
            with contextlib.suppress(OSError):
                old.unlink()
