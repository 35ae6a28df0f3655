"""A Prefect planned run counts a bundled unit's chunks with the lowering, or says why not.

No Prefect run is needed: :meth:`PlannedRun.chunks` reads only the counts the units'
responses reported (fed here as :func:`take_counts` records, as ``invoke`` does).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from wisefuse_plugins.ir import Collect, Const, Item
from wisefuse_plugins.plan.lower import LoweringError, take_counts
from wisefuse_plugins.plan.schema import Plan, Unit
from wisefuse_plugins.providers.prefect.planned import PlannedRun

from ..ir.helpers import py, workflow


def _run(tmp_path: Path, *, keyed: bool = False) -> PlannedRun:
    """make (a list, or a dict holding one) -> square -> middle (two bundled units) -> total."""
    wf = workflow(
        [
            py("make", bindings={"n": Const(value=5)}),
            py("square", bindings={"x": Item(stage="make", key="xs" if keyed else None)}),
            py("middle", bindings={"y": Item(stage="square")}),
            py("total", bindings={"v": Collect(stage="middle")}),
        ]
    )
    plan = Plan(
        workflow="wf",
        units=[
            Unit(id="make", stages=["make"]),
            Unit(id="square", stages=["square"], bundle_size=2),
            Unit(id="middle", stages=["middle"], bundle_size=3),
            Unit(id="total", stages=["total"]),
        ],
    )
    return PlannedRun(
        workflow=wf, plan=plan, invoker=None, store=None, workdir=tmp_path, run_id="r-1"
    )


def _reported(run: PlannedRun, *records: dict) -> None:
    take_counts(run.counts, records)


def test_chunks_come_from_the_reported_count(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _reported(run, {"stage": "make", "instance": None, "count": 5})
    assert run.chunks("square") == [[0, 1], [2, 3], [4]]


def test_a_bundled_unit_after_a_bundled_unit_is_counted_while_its_chunks_still_run(
    tmp_path: Path,
) -> None:
    run = _run(tmp_path)
    _reported(run, {"stage": "make", "instance": None, "count": 5})
    assert run.chunks("square") == [[0, 1], [2, 3], [4]]
    _reported(run, {"stage": "square", "instance": 1})  # only the first chunk has answered
    assert run.chunks("middle") == [[0, 1, 2], [3, 4]]


def test_a_list_inside_a_dict_output_is_counted_from_its_key_counts(tmp_path: Path) -> None:
    run = _run(tmp_path, keyed=True)
    _reported(run, {"stage": "make", "instance": None, "key_counts": {"xs": 3}})
    assert run.chunks("square") == [[0, 1], [2]]


def test_an_unknown_count_is_an_error_naming_the_unit_and_what_it_waits_for(
    tmp_path: Path,
) -> None:
    """Was: silently the first stage's static parallelism (here 1, so one chunk [0])."""
    run = _run(tmp_path)
    with pytest.raises(LoweringError) as err:
        run.chunks("square")
    text = str(err.value)
    assert "unit 'square'" in text and "'make'" in text and "not known yet" in text
    assert "run the unit that produces 'make' first" in (err.value.hint or "")


def test_an_unbundled_unit_has_no_chunks(tmp_path: Path) -> None:
    run = _run(tmp_path)
    with pytest.raises(LoweringError, match="unit 'total' is not bundled"):
        run.chunks("total")
