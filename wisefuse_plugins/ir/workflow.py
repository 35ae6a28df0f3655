"""The workflow: a validated DAG of stages, the one graph every adapter produces.

It sits above :mod:`wisefuse_plugins.ir.validate`, so building a :class:`Workflow` checks
every rule while the rules themselves read only the parts in :mod:`wisefuse_plugins.ir.nodes`
(no import cycle between the graph and its checks).
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

from wisefuse_plugins.ir.graphs import adjacency, topological_order
from wisefuse_plugins.ir.nodes import Edge, Source, Stage
from wisefuse_plugins.ir.validate import check

if TYPE_CHECKING:
    import networkx as nx


class Workflow(BaseModel):
    """A validated DAG of stages. Constructing one runs :func:`~wisefuse_plugins.ir.validate.check`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    stages: list[Stage]
    edges: list[Edge] = Field(default_factory=list)
    source: Source = Field(default_factory=Source)
    meta: dict[str, JsonValue] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _validate(self) -> Workflow:
        check(self)
        return self

    @cached_property
    def graph(self) -> nx.DiGraph:
        """The stage graph (nodes: stage ids with a ``stage`` attribute; edges: ``edge``)."""
        import networkx as nx  # lazily: the Lambda handler never needs it

        g = nx.DiGraph()
        for s in self.stages:
            g.add_node(s.id, stage=s)
        for e in self.edges:
            g.add_edge(e.src, e.dst, edge=e)
        return g

    @cached_property
    def _by_id(self) -> dict[str, Stage]:
        return {s.id: s for s in self.stages}

    def with_stages(self, stages: list[Stage]) -> Workflow:
        """The same workflow with ``stages`` (same ids and edges, other settings), validated
        anew; not ``model_copy``, which would carry the cached graph of the old stages."""
        return Workflow(
            name=self.name, stages=stages, edges=self.edges, source=self.source, meta=self.meta
        )

    def stage(self, stage_id: str) -> Stage:
        try:
            return self._by_id[stage_id]
        except KeyError:
            raise KeyError(f"workflow {self.name!r} has no stage {stage_id!r}") from None

    # Plain dicts for what a DAG file's parse asks (the drop-in rewrite): the same answers
    # as ``graph``, without importing networkx (see wisefuse_plugins.ir.graphs).
    @cached_property
    def _succ(self) -> dict[str, list[str]]:
        return adjacency([s.id for s in self.stages], [(e.src, e.dst) for e in self.edges])

    @cached_property
    def _pred(self) -> dict[str, list[str]]:
        return adjacency([s.id for s in self.stages], [(e.dst, e.src) for e in self.edges])

    @cached_property
    def _edge_by_ends(self) -> dict[tuple[str, str], Edge]:
        return {(e.src, e.dst): e for e in self.edges}  # the last one wins, as in ``graph``

    def edge(self, src: str, dst: str) -> Edge:
        return self._edge_by_ends[src, dst]

    def topological_order(self) -> list[str]:
        """Stage ids in a deterministic topological order (ties broken by declaration order)."""
        return topological_order(self._succ)

    def predecessors(self, stage_id: str) -> list[str]:
        return list(self._pred[stage_id])

    def successors(self, stage_id: str) -> list[str]:
        return list(self._succ[stage_id])

    @property
    def python_stages(self) -> list[Stage]:
        return [s for s in self.stages if s.is_python]
