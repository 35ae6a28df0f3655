"""How a (workflow, plan) maps onto Airflow tasks, decided from the IR alone (no Airflow needed)."""

from __future__ import annotations

from pathlib import Path

from wisefuse_plugins.ir import (
    Collect,
    Const,
    ConstItem,
    Item,
    Output,
    Stage,
    StageKind,
    Workflow,
    derive_edges,
)
from wisefuse_plugins.ir.nodes import CallableRef
from wisefuse_plugins.plan.lower import chunks as chunk_list
from wisefuse_plugins.plan.schema import Plan, Unit, hashes_of, plan_problems
from wisefuse_plugins.providers.airflow.layout import count_key, layout

HASH = "0" * 64


def py(sid: str, name: str | None = None, **kw) -> Stage:
    ref = CallableRef(path="flow.py", qualname=sid, code_hash=HASH)
    return Stage(id=sid, name=name or sid, callable=ref, **kw)


def opaque(sid: str, **kw) -> Stage:
    return Stage(
        id=sid, kind=StageKind.OPAQUE, opaque_reason="BashOperator: runs a shell command", **kw
    )


def workflow(stages: list[Stage], control: list[tuple[str, str]] = ()) -> Workflow:
    wf = Workflow(name="flow", stages=stages, edges=derive_edges(stages, control))
    return wf


def plan(wf: Workflow, *groups: list[str], bundle: dict[str, int] | None = None) -> Plan:
    bundle = bundle or {}
    units = [Unit(id="-".join(g), stages=g, bundle_size=bundle.get(g[0], 1)) for g in groups]
    p = Plan(workflow=wf.name, units=units, code_hashes=hashes_of(wf))
    assert plan_problems(p, wf) == []
    return p


def test_units_are_named_after_their_last_stage_and_export_it() -> None:
    wf = workflow(
        [
            py("load", "etl.load"),
            py("clean", bindings={"d": Output(stage="load")}),
            py("report", bindings={"d": Output(stage="clean")}),
            opaque("publish"),
        ],
        control=[("report", "publish")],
    )
    lay = layout(wf, plan(wf, ["load", "clean", "report"]))
    (unit,) = lay.units
    assert unit.task_id == "report" and unit.last_stage == "report"
    assert unit.spec.exports == ["report"]  # an ordering edge to an opaque task exports it too
    assert unit.stage_tasks["load"] == "etl.load"
    assert lay.edges == [("report", "publish")]
    assert lay.relays == {}


def test_opaque_readers_of_inner_stages_get_a_relay() -> None:
    wf = workflow(
        [
            py("load"),
            py("clean", bindings={"d": Output(stage="load")}),
            opaque("audit"),
        ],
        control=[("load", "audit")],
    )
    lay = layout(wf, plan(wf, ["load", "clean"]), reads={"audit": {"load"}})
    (unit,) = lay.units
    assert unit.spec.exports == ["load", "clean"]
    assert unit.xcom_keys == {"load": "load", "clean": "return_value"}
    relay = lay.relays["load"]
    assert (relay.task_id, relay.source_task_id, relay.key) == ("load__xcom", "clean", "load")
    assert ("load__xcom", "audit") in lay.edges and ("clean", "load__xcom") in lay.edges
    assert lay.xcom_source("load") == "load__xcom"
    # an ordering dependency alone reads nothing: no relay
    assert layout(wf, plan(wf, ["load", "clean"]), reads={"audit": set()}).relays == {}


def test_chunks_come_from_the_counting_unit() -> None:
    wf = workflow(
        [
            py("split"),
            py("work", bindings={"x": Item(stage="split")}, parallelism=7),
            py("label", bindings={"x": Item(stage="work")}, parallelism=7),
            py("gather", bindings={"xs": Collect(stage="label")}),
        ]
    )
    lay = layout(wf, plan(wf, ["split"], ["work"], ["label"], ["gather"], bundle={"work": 3}))
    work, label = lay.unit_task("work"), lay.unit_task("label")
    assert work.bundled and work.chunks is not None
    assert (work.chunks.kind, work.chunks.task_id, work.chunks.key) == (
        "unit",
        "split",
        count_key("work"),
    )
    assert label.chunks is not None and label.chunks.task_id == "split"  # traced back past 'work'
    assert [b.unit for b in lay.unit_task("split").spec.bundles] == ["label", "work"]
    assert ("split", "work__chunks") in lay.edges and ("work__chunks", "work") in lay.edges


def test_static_counts_are_written_into_the_dag() -> None:
    wf = workflow(
        [
            py("square", bindings={"x": ConstItem(values=[1, 2, 3, 4, 5])}, parallelism=5),
            py("total", bindings={"xs": Collect(stage="square")}),
        ]
    )
    lay = layout(wf, plan(wf, ["square"], ["total"], bundle={"square": 2}))
    chunks = lay.unit_task("square").chunks
    assert chunks is not None and chunks.kind == "static"
    assert chunks.chunks == chunk_list(5, 2) == [[0, 1], [2, 3], [4]]
    assert chunks.chunk_task_id is None


def test_values_from_opaque_tasks_are_staged_and_counted() -> None:
    wf = workflow(
        [
            opaque("listing"),
            py(
                "fetch",
                bindings={"url": Item(stage="listing"), "cfg": Const(value=1)},
                parallelism=4,
            ),
            opaque("config"),
            py(
                "merge",
                bindings={"pages": Collect(stage="fetch"), "c": Output(stage="config", key="k")},
            ),
        ]
    )
    lay = layout(wf, plan(wf, ["fetch"], ["merge"], bundle={"fetch": 2}))
    fetch, merge = lay.unit_task("fetch"), lay.unit_task("merge")
    assert fetch.chunks is not None and fetch.chunks.kind == "opaque"
    assert (fetch.chunks.task_id, fetch.chunks.mapped) == ("listing", False)
    assert fetch.opaque_inputs["listing"].elements
    assert merge.opaque_inputs["config"].keys == ("k",)
    assert set(lay.opaque) == {"listing", "config"}


def test_layout_module_imports_no_airflow() -> None:
    import subprocess
    import sys

    code = (
        "import sys, wisefuse_plugins.providers.airflow.layout, wisefuse_plugins.providers.airflow;"
        "from wisefuse_plugins.providers.airflow import get_provider_info; get_provider_info();"
        "import wisefuse_plugins.emitters.airflow, wisefuse_plugins.airflow;"
        "assert 'airflow' not in sys.modules, sorted(m for m in sys.modules if m.startswith('airflow'))"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)
