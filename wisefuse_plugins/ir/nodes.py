"""The parts of the IR: stages, their bindings, and the edges between them.

A :class:`~wisefuse_plugins.ir.workflow.Workflow` is a DAG of :class:`Stage` s joined by
:class:`Edge` s. A stage is either a plain Python function we can run anywhere
(``kind="python"``) or something that must stay in its framework (``kind="opaque"``: Bash,
SQL, sensors...). Each parameter of a Python stage has a :data:`Binding` that says where
its value comes from; data edges follow from the bindings (see :func:`edge_pattern`).

Mapped stages (Airflow ``.expand()``, Prefect ``.map()``) run as ``parallelism``
instances; instance ``i`` gets element ``i`` of every :class:`Item` / :class:`ConstItem`
binding (zipped, as Prefect's ``.map()`` does).

All nodes are immutable pydantic models, so JSON (de)serialisation and its error paths
come for free (see :mod:`wisefuse_plugins.ir.serde`). The workflow itself lives in
:mod:`wisefuse_plugins.ir.workflow`, above the rules of :mod:`wisefuse_plugins.ir.validate`
that read these parts (so the parts import neither).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator


class _Node(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --------------------------------------------------------------------------- callables


class CallableRef(_Node):
    """Where a stage's function lives: a source file and a qualified name in it.

    ``path`` is relative to the workflow's root (the DAG folder or the flow's project
    root), POSIX-style. We reference files, not modules, because Airflow imports DAG
    files under mangled module names. ``code_hash`` is the SHA-256 of the function's
    source; a changed function never reuses old profiles or plans.
    """

    path: str = Field(min_length=1)
    qualname: str = Field(
        min_length=1, pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
    )
    code_hash: str = Field(pattern=r"^[0-9a-f]{64}$")


# --------------------------------------------------------------------------- bindings


class Const(_Node):
    """The same JSON value for every instance (a literal argument)."""

    kind: Literal["const"] = "const"
    value: JsonValue = None


class ConstItem(_Node):
    """Element ``i`` of a literal list for instance ``i`` (``.expand(x=[1, 2, 3])``)."""

    kind: Literal["const_item"] = "const_item"
    values: list[JsonValue]


class Output(_Node):
    """The whole output of an unmapped upstream stage (``key``: one entry of a dict output)."""

    kind: Literal["output"] = "output"
    stage: str
    key: str | None = None


class Item(_Node):
    """Element ``i`` of an upstream output for instance ``i`` of a mapped stage.

    From an unmapped stage that returns a list this is a scatter; from a mapped stage it
    pairs instance ``i`` with instance ``i`` (one-to-one).
    """

    kind: Literal["item"] = "item"
    stage: str
    key: str | None = None


class Collect(_Node):
    """The list of all outputs of a mapped upstream stage, in instance order (gather)."""

    kind: Literal["collect"] = "collect"
    stage: str


Binding = Annotated[Const | ConstItem | Output | Item | Collect, Field(discriminator="kind")]
"""How one parameter of a stage gets its value."""

MAPPING_BINDINGS = (Item, ConstItem)


def upstream_of(binding: Binding) -> str | None:
    """The stage a binding reads from, or None for a literal."""
    return getattr(binding, "stage", None)


# --------------------------------------------------------------------------- edges


class EdgePattern(StrEnum):
    """How data moves along an edge between stage instances."""

    ONE_TO_ONE = "one_to_one"  # 1 -> 1, or instance i -> instance i of two mapped stages
    SCATTER = "scatter"  # one list -> N instances, element i to instance i
    GATHER = "gather"  # N instances -> one consumer of the whole list
    BROADCAST = "broadcast"  # the same value to every one of N instances
    ALL_TO_ALL = "all_to_all"  # every instance of a mapped stage -> every instance of another


class EdgeKind(StrEnum):
    DATA = "data"  # carries a value (some binding of dst reads src)
    CONTROL = "control"  # ordering only (Airflow ``>>`` without XCom, opaque stages)


def edge_pattern(binding_kind: str | None, src_mapped: bool, dst_mapped: bool) -> EdgePattern:
    """The pattern an edge must have, given how ``dst`` reads ``src``.

    ``binding_kind`` is the binding's ``kind`` for a data edge, None for a control edge.
    Raises ValueError for combinations that cannot happen (e.g. ``output`` of a mapped
    stage: a consumer must ``collect`` it or take it ``item`` by item).
    """
    if binding_kind == "item":
        if not dst_mapped:
            raise ValueError("an 'item' binding belongs to a mapped stage")
        return EdgePattern.ONE_TO_ONE if src_mapped else EdgePattern.SCATTER
    if binding_kind == "collect":
        if not src_mapped:
            raise ValueError("a 'collect' binding must read a mapped stage")
        return EdgePattern.ALL_TO_ALL if dst_mapped else EdgePattern.GATHER
    if binding_kind == "output" and src_mapped:
        raise ValueError("an 'output' binding cannot read a mapped stage; use 'collect' or 'item'")
    return {
        (False, False): EdgePattern.ONE_TO_ONE,
        (False, True): EdgePattern.BROADCAST,
        (True, False): EdgePattern.GATHER,
        (True, True): EdgePattern.ALL_TO_ALL,
    }[(src_mapped, dst_mapped)]


class Edge(_Node):
    """A dependency ``src -> dst``; ``bytes`` is the expected size moved per consumer (0: unknown)."""

    src: str
    dst: str
    kind: EdgeKind = EdgeKind.DATA
    pattern: EdgePattern
    bytes: int = Field(default=0, ge=0)


# --------------------------------------------------------------------------- stages


class StageKind(StrEnum):
    PYTHON = "python"
    OPAQUE = "opaque"


class Stage(_Node):
    """One task of the workflow.

    ``name`` keeps the framework's own id (``group.task``); ``id`` is the Lambda-safe
    version of it (see :func:`wisefuse_plugins.ir.names.safe_name`).
    ``parallelism`` is the number of instances of a mapped stage; when it is only known
    at run time, ``parallelism_source`` says where the figure came from.
    """

    id: str
    name: str = ""
    kind: StageKind = StageKind.PYTHON
    callable: CallableRef | None = None
    bindings: dict[str, Binding] = Field(default_factory=dict)
    parallelism: int = Field(default=1, ge=1)
    parallelism_source: Literal["static", "observed", "expected", "override"] = "static"
    opaque_reason: str | None = None
    retries: int = Field(default=0, ge=0)
    meta: dict[str, JsonValue] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _default_name(self) -> Stage:
        if not self.name:
            object.__setattr__(self, "name", self.id)
        return self

    @property
    def mapped(self) -> bool:
        """True for a stage that runs once per element (``.expand()`` / ``.map()``)."""
        return any(isinstance(b, MAPPING_BINDINGS) for b in self.bindings.values())

    @property
    def is_python(self) -> bool:
        return self.kind == StageKind.PYTHON

    def upstream_ids(self) -> set[str]:
        """The stages whose data this stage reads."""
        return {s for b in self.bindings.values() if (s := upstream_of(b)) is not None}


# --------------------------------------------------------------------------- where from


class Source(_Node):
    """Where a workflow came from, so emitters and the runtime can find the user's files."""

    framework: Literal["airflow", "prefect", "ir"] = "ir"
    root: str = "."  # the DAG folder / flow root that CallableRef paths are relative to
    path: str | None = None  # the DAG or flow file, relative to root
    entry: str | None = None  # dag_id or flow function name


def derive_edges(
    stages: list[Stage],
    control: list[tuple[str, str]] | tuple = (),
    sizes: dict[tuple[str, str], int] | None = None,
) -> list[Edge]:
    """The edges implied by the stages' bindings, plus ordering-only ``control`` edges.

    Adapters build stages with bindings and call this, so edge patterns always agree with
    the bindings. A control pair that also carries data becomes a data edge.
    """
    by_id = {s.id: s for s in stages}
    sizes = sizes or {}
    edges: dict[tuple[str, str], Edge] = {}
    for dst in stages:
        for binding in dst.bindings.values():
            src_id = upstream_of(binding)
            if src_id is None or src_id not in by_id or (src_id, dst.id) in edges:
                continue
            src_mapped = by_id[src_id].mapped
            try:
                pattern = edge_pattern(binding.kind, src_mapped, dst.mapped)
            except ValueError:  # an impossible binding: validation reports it with its path
                pattern = edge_pattern(None, src_mapped, dst.mapped)
            edges[src_id, dst.id] = Edge(
                src=src_id, dst=dst.id, pattern=pattern, bytes=sizes.get((src_id, dst.id), 0)
            )
    for src_id, dst_id in control:
        if (src_id, dst_id) in edges or src_id not in by_id or dst_id not in by_id:
            continue
        pattern = edge_pattern(None, by_id[src_id].mapped, by_id[dst_id].mapped)
        edges[src_id, dst_id] = Edge(src=src_id, dst=dst_id, kind=EdgeKind.CONTROL, pattern=pattern)
    return list(edges.values())
