"""Small builders for hand-written workflows in tests."""

from __future__ import annotations

from wisefuse_plugins.ir import CallableRef, Stage, Workflow, derive_edges

HASH = "0" * 64


def py(stage_id: str, **kw) -> Stage:
    """A Python stage whose callable is a dummy reference (tests of the graph, not of running)."""
    return Stage(
        id=stage_id, callable=CallableRef(path="app.py", qualname=stage_id, code_hash=HASH), **kw
    )


def workflow(stages: list[Stage], control: tuple = (), name: str = "wf") -> Workflow:
    return Workflow(name=name, stages=stages, edges=derive_edges(stages, control=control))
