"""Validation rules: each case is an input workflow and the problem it must report."""

from __future__ import annotations

import pytest

from wisefuse_plugins.ir import (
    CallableRef,
    Collect,
    Const,
    ConstItem,
    Edge,
    EdgeKind,
    EdgePattern,
    IRError,
    Item,
    Output,
    Stage,
    Workflow,
    derive_edges,
    safe_name,
)

from .helpers import py, workflow


def video_like() -> Workflow:
    stages = [
        py("split"),
        py("extract", bindings={"chunk": Item(stage="split")}, parallelism=4),
        py("classify", bindings={"features": Item(stage="extract")}, parallelism=4),
        py("aggregate", bindings={"results": Collect(stage="classify"), "top": Const(value=3)}),
        Stage(id="notify", kind="opaque", opaque_reason="BashOperator runs a shell command"),
    ]
    return workflow(stages, control=[("aggregate", "notify")])


def test_valid_workflow_patterns_follow_bindings():
    wf = video_like()
    patterns = {(e.src, e.dst): (e.kind, e.pattern) for e in wf.edges}
    assert patterns == {
        ("split", "extract"): (EdgeKind.DATA, EdgePattern.SCATTER),
        ("extract", "classify"): (EdgeKind.DATA, EdgePattern.ONE_TO_ONE),
        ("classify", "aggregate"): (EdgeKind.DATA, EdgePattern.GATHER),
        ("aggregate", "notify"): (EdgeKind.CONTROL, EdgePattern.ONE_TO_ONE),
    }
    assert wf.topological_order() == ["split", "extract", "classify", "aggregate", "notify"]
    assert wf.stage("extract").mapped and not wf.stage("split").mapped


def test_broadcast_and_all_to_all():
    stages = [
        py("data"),
        py(
            "trial",
            bindings={"data": Output(stage="data"), "p": ConstItem(values=[1, 2, 3])},
            parallelism=3,
        ),
        py(
            "score",
            bindings={"all": Collect(stage="trial"), "p": ConstItem(values=[1, 2, 3])},
            parallelism=3,
        ),
    ]
    wf = workflow(stages)
    assert wf.edge("data", "trial").pattern == EdgePattern.BROADCAST
    assert wf.edge("trial", "score").pattern == EdgePattern.ALL_TO_ALL


CASES = [
    # (name, stages, control, edges override, expected path fragment, expected reason fragment)
    ("duplicate id", [py("a"), py("a")], (), None, "$.stages[1].id", "used by 2 stages"),
    ("unsafe id", [py("a.b")], (), None, "$.stages[0].id", "not a valid Lambda name"),
    (
        "python without callable",
        [Stage(id="a")],
        (),
        None,
        "$.stages[0].callable",
        "has no callable",
    ),
    (
        "opaque without reason",
        [Stage(id="a", kind="opaque")],
        (),
        None,
        "opaque_reason",
        "needs a reason",
    ),
    (
        "unknown upstream",
        [py("a", bindings={"x": Output(stage="ghost")})],
        (),
        None,
        "bindings.x",
        "does not exist",
    ),
    (
        "self loop",
        [py("a", bindings={"x": Output(stage="a")})],
        (),
        None,
        "bindings.x",
        "its own output",
    ),
    ("unmapped parallelism", [py("a", parallelism=3)], (), None, "parallelism", "is not mapped"),
    (
        "literal length",
        [py("a", bindings={"x": ConstItem(values=[1, 2])}, parallelism=3)],
        (),
        None,
        "bindings.x",
        "2 literal values",
    ),
    (
        "one-to-one length",
        [
            py("a", bindings={"x": ConstItem(values=[1, 2])}, parallelism=2),
            py("b", bindings={"y": Item(stage="a")}, parallelism=3),
        ],
        (),
        None,
        "bindings.y",
        "2 instances",
    ),
    (
        "output of mapped stage",
        [
            py("a", bindings={"x": ConstItem(values=[1, 2])}, parallelism=2),
            py("b", bindings={"y": Output(stage="a")}),
        ],
        (),
        None,
        "$.edges[0]",
        "use 'collect' or 'item'",
    ),
    (
        "collect of unmapped",
        [py("a"), py("b", bindings={"y": Collect(stage="a")})],
        (),
        None,
        "$.edges[0]",
        "must read a mapped stage",
    ),
    (
        "binding without edge",
        [py("a"), py("b", bindings={"y": Output(stage="a")})],
        (),
        [],
        "bindings.y",
        "no edge",
    ),
    (
        "wrong pattern",
        [py("a"), py("b", bindings={"y": Output(stage="a")})],
        (),
        [Edge(src="a", dst="b", pattern=EdgePattern.SCATTER)],
        "$.edges[0]",
        "expected one_to_one",
    ),
    (
        "data edge without binding",
        [py("a"), py("b")],
        (),
        [Edge(src="a", dst="b", pattern=EdgePattern.ONE_TO_ONE)],
        "$.edges[0]",
        "make it a control edge",
    ),
    (
        "edge to unknown stage",
        [py("a")],
        (),
        [Edge(src="a", dst="zz", kind=EdgeKind.CONTROL, pattern=EdgePattern.ONE_TO_ONE)],
        "$.edges[0]",
        "unknown stage",
    ),
    ("cycle", [py("a"), py("b")], (("a", "b"), ("b", "a")), None, "$.edges", "cycle: a -> b -> a"),
]


@pytest.mark.parametrize(
    ("stages", "control", "edges", "path", "reason"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_rule_violations_name_path_and_reason(stages, control, edges, path, reason):
    if edges is None:
        edges = derive_edges(stages, control=control)
    with pytest.raises(IRError) as info:
        Workflow(name="bad", stages=stages, edges=edges)
    found = info.value.problems
    assert any(path in p and reason in r for p, r in found), found


def test_all_problems_reported_at_once():
    stages = [Stage(id="a b"), Stage(id="c", kind="opaque")]
    with pytest.raises(IRError) as info:
        Workflow(name="bad", stages=stages)
    assert len(info.value.problems) == 3
    assert "and" not in str(info.value) or "more" in str(info.value)


def test_callable_ref_rejects_bad_qualname_and_hash():
    with pytest.raises(ValueError):
        CallableRef(path="a.py", qualname="not valid", code_hash="0" * 64)
    with pytest.raises(ValueError):
        CallableRef(path="a.py", qualname="f", code_hash="abc")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("extract", "extract"),
        ("group.task", "group-task"),
        ("my task (v2)", "my-task-v2"),
        ("ünïcode", "n-code"),
        ("...", "stage"),
        ("", "stage"),
    ],
)
def test_safe_name(raw, expected):
    assert safe_name(raw) == expected


def test_safe_name_long_and_unique():
    a, b = "x" * 70 + "a", "x" * 70 + "b"
    na, nb = safe_name(a), safe_name(b)
    assert len(na) == len(nb) == 64 and na != nb
    assert safe_name("t", taken={"t", "t-2"}) == "t-3"
    long_taken = {safe_name(a)}
    again = safe_name(a, taken=long_taken)
    assert len(again) <= 64 and again not in long_taken
