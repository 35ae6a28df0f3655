"""The lowering: (workflow, plan, counts) -> the invocations that run it, as input/expected pairs."""

from __future__ import annotations

import doctest

import pytest

from wisefuse_plugins.ir import Collect, Const, ConstItem, Item, Output
from wisefuse_plugins.plan import lower as lower_module
from wisefuse_plugins.plan.lower import (
    CountOrigin,
    LoweringError,
    UnitIO,
    chunks,
    count_name,
    count_source,
    expected_instances,
    invocation_count,
    lower,
    stage_instance_count,
    take_counts,
    unit_instance_count,
)
from wisefuse_plugins.plan.schema import Plan, Unit

from ..ir.helpers import py, workflow


def _plan(*units: Unit) -> Plan:
    return Plan(workflow="wf", units=list(units))


def _invocations(wf, plan, counts) -> dict[str, list[list[int] | None]]:
    return {u.unit: u.invocations for u in lower(wf, plan, counts)}


# --------------------------------------------------------------------------- workflows


def diamond():
    """top (a list) -> left, right (both mapped over it) -> bottom (collects both)."""
    return workflow(
        [
            py("top"),
            py("left", bindings={"x": Item(stage="top")}),
            py("right", bindings={"x": Item(stage="top")}),
            py("bottom", bindings={"l": Collect(stage="left"), "r": Collect(stage="right")}),
        ]
    )


def chain():
    """make (a list) -> square -> middle (both mapped) -> total (collects), config -> total."""
    return workflow(
        [
            py("make", bindings={"n": Const(value=5)}),
            py("square", bindings={"x": Item(stage="make")}),
            py("middle", bindings={"y": Item(stage="square")}),
            py("config"),
            py("total", bindings={"v": Collect(stage="middle"), "base": Output(stage="config")}),
        ]
    )


def zipped():
    """a, b (lists) -> pair (mapped over both) -> out (collects)."""
    return workflow(
        [
            py("a"),
            py("b"),
            py("pair", bindings={"x": Item(stage="a"), "y": Item(stage="b")}),
            py("out", bindings={"v": Collect(stage="pair")}),
        ]
    )


# --------------------------------------------------------------------------- input/expected


CASES = {
    "diamond, two bundled branches of different sizes": (
        diamond(),
        _plan(
            Unit(id="top", stages=["top"]),
            Unit(id="left", stages=["left"], bundle_size=2),
            Unit(id="right", stages=["right"], bundle_size=3),
            Unit(id="bottom", stages=["bottom"]),
        ),
        {"top": 5},
        {
            "top": [None],
            "left": [[0, 1], [2, 3], [4]],
            "right": [[0, 1, 2], [3, 4]],
            "bottom": [None],
        },
    ),
    "bundled fused chain with a remainder chunk": (
        chain(),
        _plan(
            Unit(id="make", stages=["make"]),
            Unit(id="sq", stages=["square", "middle"], bundle_size=2),
            Unit(id="config", stages=["config"]),
            Unit(id="total", stages=["total"]),
        ),
        {"make": 5},
        {"make": [None], "sq": [[0, 1], [2, 3], [4]], "config": [None], "total": [None]},
    ),
    "bundle as large as the count: one chunk": (
        chain(),
        _plan(
            Unit(id="make", stages=["make"]),
            Unit(id="sq", stages=["square", "middle"], bundle_size=8),
            Unit(id="rest", stages=["config", "total"]),
        ),
        {"make": 5},
        {"make": [None], "sq": [[0, 1, 2, 3, 4]], "rest": [None]},
    ),
    "unmapped unit holding mapped stages: one invocation": (
        chain(),
        _plan(
            Unit(id="head", stages=["make", "square"]),
            Unit(id="mid", stages=["middle"], bundle_size=3),
            Unit(id="rest", stages=["config", "total"]),
        ),
        {"square": 4},  # what the head's response reports: instances of square
        {"head": [None], "mid": [[0, 1, 2], [3]], "rest": [None]},
    ),
    "mapped over an empty list: no invocations": (
        chain(),
        _plan(
            Unit(id="make", stages=["make"]),
            Unit(id="sq", stages=["square", "middle"], bundle_size=2),
            Unit(id="rest", stages=["config", "total"]),
        ),
        {"make": 0},
        {"make": [None], "sq": [], "rest": [None]},
    ),
    "zip of two lists that agree": (
        zipped(),
        _plan(
            Unit(id="a", stages=["a"]),
            Unit(id="b", stages=["b"]),
            Unit(id="pair", stages=["pair"], bundle_size=2),
            Unit(id="out", stages=["out"]),
        ),
        {"a": 3, "b": 3},
        {"a": [None], "b": [None], "pair": [[0, 1], [2]], "out": [None]},
    ),
    "a constant list needs no counts": (
        workflow([py("each", bindings={"x": ConstItem(values=[1, 2, 3])}, parallelism=3)]),
        _plan(Unit(id="each", stages=["each"], bundle_size=2)),
        {},
        {"each": [[0, 1], [2]]},
    ),
    "a list inside a dict output is counted as stage[key]": (
        workflow([py("cfg"), py("each", bindings={"f": Item(stage="cfg", key="files")})]),
        _plan(Unit(id="cfg", stages=["cfg"]), Unit(id="each", stages=["each"], bundle_size=2)),
        {"cfg[files]": 3, "cfg": 99},  # the whole dict's size is not what is mapped over
        {"cfg": [None], "each": [[0, 1], [2]]},
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_lowering(name):
    wf, plan, counts, expected = CASES[name]
    assert _invocations(wf, plan, counts) == expected


def test_units_come_in_dependency_order():
    wf, plan, counts, _ = CASES["diamond, two bundled branches of different sizes"]
    order = [u.unit for u in lower(wf, plan, counts)]
    assert order[0] == "top" and order[-1] == "bottom"


# --------------------------------------------------------------------------- reads, writes


def test_reads_and_writes_of_each_unit():
    wf, plan, counts, _ = CASES["unmapped unit holding mapped stages: one invocation"]
    got = {u.unit: u.io for u in lower(wf, plan, counts)}
    assert got == {
        # make is read only by square, inside the unit: not exported, not scattered
        "head": UnitIO("head", ("make", "square"), False, ("square",), (), ()),
        "mid": UnitIO("mid", ("middle",), True, ("middle",), (), ("square",)),
        "rest": UnitIO("rest", ("config", "total"), False, ("total",), (), ("middle",)),
    }


def test_a_list_mapped_by_another_unit_is_scattered():
    wf, plan, counts, _ = CASES["diamond, two bundled branches of different sizes"]
    top = lower(wf, plan, counts)[0].io
    assert top.exports == ("top",) and top.scatter == ("top",)


# --------------------------------------------------------------------------- the one count rule


def test_disagreeing_counts_name_the_stage_and_bindings():
    wf = zipped()
    with pytest.raises(LoweringError) as err:
        stage_instance_count(wf, "pair", {"a": 3, "b": 4})
    assert str(err.value) == (
        "stage 'pair' maps over inputs of different lengths: x=3 (items of 'a'), y=4 (items of 'b')"
    )
    assert "zip them" in (err.value.hint or "")


def test_disagreeing_counts_stop_the_lowering_of_a_bundled_unit():
    wf, plan, _, _ = CASES["zip of two lists that agree"]
    with pytest.raises(LoweringError, match=r"unit 'pair' .* pair\.x=3 .*, pair\.y=2 "):
        lower(wf, plan, {"a": 3, "b": 2})


def test_a_constant_list_must_agree_with_an_item():
    wf = workflow(
        [
            py("up"),
            py("m", bindings={"x": Item(stage="up"), "k": ConstItem(values=[1, 2])}, parallelism=2),
        ]
    )
    with pytest.raises(LoweringError, match=r"k=2 \(a constant list\), x=3 \(items of 'up'\)"):
        stage_instance_count(wf, "m", {"up": 3})
    assert stage_instance_count(wf, "m", {"up": 2}) == 2


def test_a_count_not_known_yet_is_an_error():
    wf, plan, _, _ = CASES["bundled fused chain with a remainder chunk"]
    with pytest.raises(LoweringError, match="unit 'sq' maps over 'make', whose size is not known"):
        lower(wf, plan, {})


def test_the_unit_count_reads_only_what_comes_from_outside():
    wf = chain()
    unit = Unit(id="sq", stages=["square", "middle"], bundle_size=2)
    # middle maps over square inside the unit: no count of square is needed
    assert unit_instance_count(wf, unit, {"make": 5}) == 5


def test_count_names():
    wf = workflow(
        [
            py("lst"),
            py("d"),
            py("m", bindings={"x": Item(stage="lst")}),
            py("k", bindings={"x": Item(stage="d", key="files")}),
            py("f", bindings={"x": Item(stage="m", key="field")}),
        ]
    )
    names = [
        count_name(wf, Item(stage="lst")),
        count_name(wf, Item(stage="d", key="files")),
        count_name(wf, Item(stage="m", key="field")),  # a field of each instance of m
    ]
    assert names == ["lst", "d[files]", "m"]


# --------------------------------------------------------------------------- sources, chunks


def test_count_source_follows_bundled_chains_back_to_the_producer():
    wf = chain()
    plan = _plan(
        Unit(id="make", stages=["make"]),
        Unit(id="square", stages=["square"], bundle_size=2),
        Unit(id="middle", stages=["middle"], bundle_size=3),
        Unit(id="rest", stages=["config", "total"]),
    )
    assert count_source(wf, plan, "middle") == CountOrigin("make", "make", None)
    assert count_source(wf, plan, "make") is None  # not bundled
    const = workflow([py("each", bindings={"x": ConstItem(values=[1, 2, 3])}, parallelism=3)])
    assert count_source(const, _plan(Unit(id="each", stages=["each"])), "each") == 3


@pytest.mark.parametrize(
    ("n", "size", "expected"),
    [(5, 2, [[0, 1], [2, 3], [4]]), (4, 2, [[0, 1], [2, 3]]), (0, 2, []), (2, 5, [[0, 1]])],
)
def test_chunks(n, size, expected):
    assert chunks(n, size) == expected


def test_chunks_refuse_a_bundle_size_below_one():
    with pytest.raises(LoweringError, match="bundle size must be at least 1, got 0"):
        chunks(3, 0)


def test_docstring_examples():
    result = doctest.testmod(lower_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


# --------------------------------------------------------------------------- before a run


def _expected_chain(n: int):
    """make -> square -> middle, both mapped with the IR's expected parallelism ``n``."""
    return workflow(
        [
            py("make"),
            py("square", bindings={"x": Item(stage="make")}, parallelism=n),
            py("middle", bindings={"y": Item(stage="square")}, parallelism=n),
        ]
    )


@pytest.mark.parametrize(
    ("unit", "expected"),
    [
        (Unit(id="make", stages=["make"]), 1),  # unbundled: one invocation
        (Unit(id="sq", stages=["square", "middle"], bundle_size=2), 3),  # 2 + 2 + 1
        (Unit(id="sq", stages=["square", "middle"], bundle_size=5), 1),
        (Unit(id="sq", stages=["square", "middle"], bundle_size=8), 1),
        (Unit(id="mid", stages=["middle"], bundle_size=1), 5),
    ],
)
def test_invocations_before_a_run_come_from_the_irs_parallelism(unit, expected):
    assert invocation_count(_expected_chain(5), unit) == expected


def test_invocations_during_a_run_come_from_the_reported_counts():
    unit = Unit(id="sq", stages=["square", "middle"], bundle_size=2)
    assert invocation_count(_expected_chain(5), unit, {"make": 9}) == 5
    assert invocation_count(_expected_chain(5), unit, {"make": 0}) == 0


def test_expected_instances_follow_the_one_count_rule():
    """Before a run the same rule holds: a constant list that disagrees is an error."""
    wf = _expected_chain(3)
    assert expected_instances(wf, Unit(id="m", stages=["middle"], bundle_size=2)) == 3
    const = workflow([py("each", bindings={"x": ConstItem(values=[1, 2, 3])}, parallelism=3)])
    assert expected_instances(const, Unit(id="each", stages=["each"])) == 3
    with pytest.raises(LoweringError, match="unit 'make' is not bundled"):
        expected_instances(wf, Unit(id="make", stages=["make"]))


def test_responses_are_counted_one_way():
    counts: dict[str, int] = {}
    take_counts(counts, [{"stage": "w", "instance": 0}, {"stage": "w", "instance": 2}])
    take_counts(counts, [{"stage": "w", "instance": 1}])  # a chunk answering late
    take_counts(counts, [{"stage": "d", "instance": None, "key_counts": {"xs": 4}}])
    take_counts(counts, [{"stage": "s", "instance": None, "count": 0}])
    take_counts(counts, [{"stage": "v", "instance": None}])  # a value with no size
    assert counts == {"w": 3, "d[xs]": 4, "s": 0}
