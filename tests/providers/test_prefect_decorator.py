"""``@wisefuse`` and the emitted flow files, on the example flows, with real Prefect runs.

Each example flow is decorated and called once with no plan: it runs plain and records
its trace (the IR with ``meta["returns"]``). Plans are then built by hand from that
trace, as tests/runtime/toyflows.py does, and the decorated flow must return exactly what
the plain flow returned under each of them, on the local backend. One Prefect server
(``prefect_env``) and one local Lambda (the block's shared one) serve the whole module:
the first invocation of each unit function is a cold start that imports the flow file,
hence Prefect (a few seconds); later ones are warm.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from uuid import UUID

import pytest

from examples.apps import ml_pipeline, svd, video
from wisefuse_plugins.ir import EdgePattern, Workflow, dump, load
from wisefuse_plugins.plan.lower import invocation_count
from wisefuse_plugins.plan.schema import Plan, Unit, dump_plan, hashes_of, single_stage_plan
from wisefuse_plugins.runtime.compare import differences

pytestmark = [pytest.mark.prefect, pytest.mark.slow]

FLOWS = {
    # file: (flow function, app, final stage)
    "video_analytics.py": ("video_analytics", video, "aggregate"),
    "ml_pipeline.py": ("ml_pipeline_flow", ml_pipeline, "pick_best"),
    "approx_svd.py": ("approx_svd", svd, "combine"),
}
PLANS = ("no-fusion", "chains-fused", "bundles-of-2", "bundles-of-5")


# --------------------------------------------------------------------------- plans by hand


def chains_fused(wf: Workflow, bundle: int = 1) -> Plan:
    """Fuse every one-to-one chain of stages alike (both mapped or both not); bundle the
    all-mapped units by ``bundle``."""
    group = {s.id: [s.id] for s in wf.stages}
    for e in wf.edges:
        src, dst = wf.stage(e.src), wf.stage(e.dst)
        if (
            e.pattern == EdgePattern.ONE_TO_ONE
            and src.mapped == dst.mapped
            and wf.successors(e.src) == [e.dst]
            and wf.predecessors(e.dst) == [e.src]
        ):
            merged = group[e.src] + [s for s in group[e.dst] if s not in group[e.src]]
            for sid in merged:
                group[sid] = merged
    units, seen = [], set()
    for s in wf.stages:
        stages = group[s.id]
        if stages[0] in seen:
            continue
        seen.add(stages[0])
        mapped = all(wf.stage(x).mapped for x in stages)
        units.append(Unit(id="-".join(stages), stages=stages, bundle_size=bundle if mapped else 1))
    return Plan(workflow=wf.name, units=units, code_hashes=hashes_of(wf))


def make_plan(kind: str, wf: Workflow) -> Plan:
    if kind == "no-fusion":
        return single_stage_plan(wf)
    if kind == "chains-fused":
        return chains_fused(wf)
    return chains_fused(wf, bundle=int(kind.rsplit("-", 1)[1]))


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A WiseFuse home of the module's own: plans, traces, unit specs, store, archive.

    The unit workers get this process's BLAS thread count (tests/conftest.py sets one, as
    units use by default): OpenBLAS sums in another order with another number of threads,
    and "exactly the same result" would then hold only to the last bits.
    """
    from wisefuse_plugins.runtime.backends.units import THREAD_VARS

    path = tmp_path_factory.mktemp("wisefuse-home")
    threads = str(len(os.sched_getaffinity(0)))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WISEFUSE_HOME", str(path))
        mp.delenv("WISEFUSE_DB_URL", raising=False)
        mp.delenv("WISEFUSE_STORE", raising=False)
        for name in THREAD_VARS:
            mp.setenv(name, os.environ.get(name, threads))
        yield path


@pytest.fixture(scope="module")
def block(home: Path) -> Iterator[Any]:
    """A local-backend block; its local Lambda is shared by the module. Room for every unit
    function of the module to stay warm, and Prefect imported once by a fork server, keep
    cold starts few and short."""
    from wisefuse_plugins.prefect import WiseFuseLambda
    from wisefuse_plugins.providers.prefect.blocks import close_local_lambdas

    yield WiseFuseLambda(concurrency_limit=32, local_preload=["prefect"])
    close_local_lambdas()


@pytest.fixture(scope="module")
def traced(
    prefect_env: dict[str, str],
    block: Any,
    prefect_flows_folder: Path,
    load_module: Callable[..., ModuleType],
) -> dict[str, dict[str, Any]]:
    """Each example flow, decorated, called once with no plan: plain, traced, recorded."""
    from wisefuse_plugins.prefect import wisefuse

    out = {}
    for file_name, (fn_name, app, _) in FLOWS.items():
        flow = getattr(load_module(prefect_flows_folder / file_name), fn_name)
        decorated = wisefuse(block=block)(flow)
        check = decorated.check()
        value = decorated()
        out[file_name] = {
            "flow": flow,
            "decorated": decorated,
            "check": check,
            "value": value,
            "expected": app.run(**app.SIZES["small"]),
            "workflow": load(decorated.trace_paths()[0]),
        }
    return out


def task_runs(flow_run_id: UUID, expected: int) -> list[Any]:
    """The flow run's task runs, once the API shows ``expected`` of them completed.

    Prefect 3 reports task run states through events, which the server records a moment
    after the flow run returns.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async def read() -> list[Any]:
        async with get_client() as client:
            return await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )

    deadline = time.monotonic() + 30
    while True:
        runs = asyncio.run(read())
        done = [r for r in runs if r.state is not None and r.state.is_completed()]
        if len(done) >= expected or time.monotonic() > deadline:
            return runs
        time.sleep(0.25)


# --------------------------------------------------------------------------- first run


@pytest.mark.parametrize("file_name", sorted(FLOWS))
def test_first_run_is_plain_and_recorded(
    file_name: str, traced: dict[str, dict[str, Any]], home: Path
) -> None:
    got = traced[file_name]
    assert not got["check"].planned and "no WiseFuse plan" in got["check"].reason
    assert not differences(got["value"], got["expected"])
    wf: Workflow = got["workflow"]
    final = FLOWS[file_name][2]
    assert wf.meta["returns"] == {"kind": "output", "stage": final}
    assert wf.source.framework == "prefect" and wf.source.path == file_name
    latest, exact = got["decorated"].trace_paths(wf.meta["parameters"])
    assert exact is not None and exact.exists() and latest.exists()
    from wisefuse_plugins.profiles.archive import open_archive

    with open_archive() as archive:
        samples = archive.samples(wf.name, source="prefect")
    instances = sum(s.parallelism for s in wf.python_stages)
    assert len({(s.stage, s.instance) for s in samples}) == instances


# --------------------------------------------------------------------------- under plans


@pytest.mark.parametrize("kind", PLANS)
@pytest.mark.parametrize("file_name", sorted(FLOWS))
def test_plan_returns_the_plain_result(
    file_name: str, kind: str, traced: dict[str, dict[str, Any]], block: Any
) -> None:
    from wisefuse_plugins.prefect import wisefuse

    got = traced[file_name]
    wf: Workflow = got["workflow"]
    plan = make_plan(kind, wf)
    decorated = wisefuse(plan=plan, block=block)(got["flow"])
    check = decorated.check()
    assert check.planned, check.reason

    state = decorated(return_state=True)
    assert state.is_completed()
    assert not differences(state.result(), got["expected"])
    assert not differences(got["value"], got["expected"])

    # one task run per unit invocation, named after the unit's stages
    expected = Counter({"+".join(u.stages): invocation_count(wf, u) for u in plan.units})
    runs = task_runs(state.state_details.flow_run_id, sum(expected.values()))
    assert all(r.state.is_completed() for r in runs)
    assert Counter(r.name.split(" [")[0] for r in runs) == expected
    names = {r.name for r in runs}
    for u in plan.units:
        if u.bundle_size > 1:
            n = wf.stage(u.stages[0]).parallelism
            first = f"{'+'.join(u.stages)} [0-{min(u.bundle_size, n) - 1}]"
            assert first in names


def test_with_options_keeps_the_decorator(traced: dict[str, dict[str, Any]], block: Any) -> None:
    """``flow.with_options(retries=1)`` is how users change a flow's settings (for a
    deployment, a test): the copy still runs under the plan, with the new settings."""
    from wisefuse_plugins.prefect import WiseFuseFlow, wisefuse

    got = traced["approx_svd.py"]
    plan = make_plan("chains-fused", got["workflow"])
    decorated = wisefuse(plan=plan, block=block)(got["flow"])
    copy = decorated.with_options(retries=1, description="with options")
    assert isinstance(copy, WiseFuseFlow) and copy.retries == 1
    assert copy.description == "with options" and decorated.retries != 1
    assert copy.check().planned, copy.check().reason
    state = copy(return_state=True)
    assert state.is_completed() and not differences(state.result(), got["expected"])
    wf: Workflow = got["workflow"]
    expected = Counter({"+".join(u.stages): invocation_count(wf, u) for u in plan.units})
    runs = task_runs(state.state_details.flow_run_id, sum(expected.values()))
    assert Counter(r.name.split(" [")[0] for r in runs) == expected
    assert type(decorated.plain()).__name__ == "Flow"  # the undecorated copy, on purpose


# --------------------------------------------------------------------------- fallbacks


def test_stale_plan_runs_plain_with_a_warning(
    traced: dict[str, dict[str, Any]], block: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from wisefuse_plugins.prefect import wisefuse

    got = traced["approx_svd.py"]
    wf: Workflow = got["workflow"]
    plan = chains_fused(wf)
    stale_hashes = {**plan.code_hashes, "combine": "0" * 64}
    stale = plan.model_copy(update={"code_hashes": stale_hashes})
    decorated = wisefuse(plan=stale, block=block, slo="1.5x")(got["flow"])
    check = decorated.check()
    assert not check.planned
    assert "changed since the plan was made" in check.reason
    assert "wisefuse optimize" in check.reason and "--slo 1.5x" in check.reason

    with caplog.at_level(logging.WARNING, logger="wisefuse_plugins.prefect"):
        state_value = decorated()
    assert not differences(state_value, got["expected"])
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("not under its WiseFuse plan" in r.getMessage() for r in warned)


def test_changed_code_is_detected(traced: dict[str, dict[str, Any]], block: Any) -> None:
    """A trace whose code hash is not the code's any more is not trusted (nothing runs)."""
    from wisefuse_plugins.prefect import wisefuse

    got = traced["ml_pipeline.py"]
    wf: Workflow = got["workflow"]
    data = wf.model_dump()
    for s in data["stages"]:
        if s["id"] == "pca":
            s["callable"]["code_hash"] = "f" * 64
    edited = Workflow.model_validate(data)
    plan_dir = Path(got["decorated"].trace_paths()[0]).parent.parent / "edited"
    plan_path = plan_dir / "ml.plan.json"
    plan_dir.mkdir()
    dump_plan(chains_fused(edited), plan_path)
    dump(edited, plan_dir / "ml.ir.json")  # the plan's own trace, beside it
    check = wisefuse(plan=plan_path, block=block)(got["flow"]).check()
    assert not check.planned
    assert "code changed since the trace" in check.reason and "pca" in check.reason


def test_other_parameters_run_plain_then_planned(
    traced: dict[str, dict[str, Any]], block: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The plan never runs on an IR traced with other values: a new call is traced first."""
    from wisefuse_plugins.prefect import wisefuse

    got = traced["video_analytics.py"]
    plan = chains_fused(got["workflow"], bundle=2)
    decorated = wisefuse(plan=plan, block=block)(got["flow"])
    other = {**video.SIZES["small"], "n_chunks": 3, "seed": 11}

    check = decorated.check(**other)
    assert not check.planned
    assert "other parameters" in check.reason and "n_chunks" in check.reason
    with caplog.at_level(logging.WARNING, logger="wisefuse_plugins.prefect"):
        assert decorated(**other) == video.run(**other)
    assert any("other parameters" in r.getMessage() for r in caplog.records)

    assert decorated.check(**other).planned  # traced with these values now
    assert decorated(**other) == video.run(**other)
    assert decorated.check().planned  # the original parameters still have their trace


# --------------------------------------------------------------------------- emitter


@pytest.mark.parametrize("file_name", ["video_analytics.py", "ml_pipeline.py"])
def test_emitted_flow_file_runs(
    file_name: str,
    traced: dict[str, dict[str, Any]],
    block: Any,
    tmp_path: Path,
    repo_root: Path,
) -> None:
    from wisefuse_plugins.adapters.prefect import load_flow_file
    from wisefuse_plugins.emitters.prefect import emit_flow

    got = traced[file_name]
    wf: Workflow = got["workflow"]
    plan = chains_fused(wf, bundle=2)
    path = tmp_path / f"planned_{file_name}"
    path.write_text(emit_flow(wf, plan), encoding="utf-8")

    config = str(repo_root / "pyproject.toml")
    for command in (["check"], ["format", "--check"]):
        lint = subprocess.run(
            [sys.executable, "-m", "ruff", *command, "--config", config, str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert lint.returncode == 0, lint.stdout + lint.stderr

    emitted = load_flow_file(path)
    assert emitted.name == wf.name
    # the original's parameters, with the traced values as defaults, then block (issue 22)
    import inspect

    original = inspect.signature(got["flow"].fn).parameters
    params = inspect.signature(emitted.fn).parameters
    assert list(params) == [*original, "block"]
    assert {k: p.default for k, p in params.items() if k != "block"} == wf.meta["parameters"]
    assert all(params[k].annotation == "int" for k in original)
    assert params["block"].kind == inspect.Parameter.KEYWORD_ONLY
    state = emitted(block=block, return_state=True)
    assert state.is_completed()
    assert not differences(state.result(), got["expected"])
    # the traced values, given explicitly, run; other values are refused before any unit runs
    assert not differences(emitted(**wf.meta["parameters"], block=block), got["expected"])
    first = next(iter(original))
    other = {first: wf.meta["parameters"][first] + 1}
    refused = emitted(**other, block=block, return_state=True)
    assert refused.is_failed()
    with pytest.raises(Exception, match=f"traced parameters only.*other values for {first}"):
        refused.result()
    expected = Counter({"+".join(u.stages): invocation_count(wf, u) for u in plan.units})
    runs = task_runs(state.state_details.flow_run_id, sum(expected.values()))
    assert Counter(r.name.split(" [")[0] for r in runs) == expected


def test_emitted_flow_without_returns_gives_sink_outputs(
    traced: dict[str, dict[str, Any]], block: Any
) -> None:
    """An IR that does not say what the flow returns (e.g. from Airflow) maps sinks to outputs."""
    from wisefuse_plugins.providers.prefect.planned import PlannedRun, run_in_flow

    wf: Workflow = traced["approx_svd.py"]["workflow"]
    meta = {k: v for k, v in wf.meta.items() if k != "returns"}
    bare = Workflow.model_validate({**wf.model_dump(), "meta": meta})
    from prefect import flow

    @flow(name="approx-svd")
    def sinks() -> Any:
        run = PlannedRun.start(bare, chains_fused(bare), block)
        try:
            return run_in_flow(run)
        finally:
            run.close()

    assert not differences(sinks(), {"combine": traced["approx_svd.py"]["expected"]})


def test_tracing_a_decorated_flow_traces_the_flow(
    traced: dict[str, dict[str, Any]], block: Any
) -> None:
    """The adapter sees the user's tasks, not the plan's units, even when a plan fits."""
    from wisefuse_plugins.adapters.prefect import trace_flow
    from wisefuse_plugins.prefect import wisefuse

    got = traced["approx_svd.py"]
    decorated = wisefuse(plan=chains_fused(got["workflow"]), block=block)(got["flow"])
    assert decorated.check().planned
    wf = trace_flow(decorated)
    assert [s.id for s in wf.stages] == [s.id for s in got["workflow"].stages]


def test_return_specs_of_other_shapes(
    prefect_env: dict[str, str], home: Path, block: Any, tmp_path: Path
) -> None:
    """Containers of task outputs, gathers, literals and parameters map to stages; an element
    of an output, a value computed in the flow and futures do not."""
    source = """
from prefect import flow, task


@task
def double(x: int) -> dict:
    return {"v": 2 * x}


@task
def both(x: int) -> dict:
    return {"v": [x, x]}


@task
def total(values: list) -> int:
    return sum(v["v"] for v in values)


@flow(name="shapes")
def shapes(n: int = 3) -> dict:
    parts = double.map(list(range(n)))
    s = total(parts)
    return {"parts": parts.result(), "sum": s, "n": n, "label": "ok", "pair": (s, None)}


@flow(name="element")
def element() -> list:
    d = both(4)
    return d["v"]


@flow(name="computed")
def computed() -> int:
    return total([double(1)]) + 1


@flow(name="futures")
def futures() -> list:
    return double.map([1, 2])
"""
    path = tmp_path / "shapes_flows.py"
    path.write_text(source, encoding="utf-8")
    from wisefuse_plugins.adapters.prefect import load_flow_file
    from wisefuse_plugins.prefect import wisefuse

    shapes = load_flow_file(path, "shapes")
    decorated = wisefuse(shapes, block=block)
    expected = {"parts": [{"v": 0}, {"v": 2}, {"v": 4}], "sum": 6, "n": 3, "label": "ok", "pair": (6, None)}  # fmt: skip
    assert decorated() == expected
    wf = load(decorated.trace_paths()[0])
    spec = wf.meta["returns"]
    assert json.loads(json.dumps(spec)) == {
        "kind": "dict",
        "items": [
            ["parts", {"kind": "collect", "stage": "double"}],
            ["sum", {"kind": "output", "stage": "total"}],
            ["n", {"kind": "const", "value": 3}],
            ["label", {"kind": "const", "value": "ok"}],
            [
                "pair",
                {
                    "kind": "tuple",
                    "items": [{"kind": "output", "stage": "total"}, {"kind": "const", "value": None}],
                },
            ],
        ],
    }  # fmt: skip
    # one unit runs both stages: the gathered instances never leave it, yet the flow
    # returns them, so the unit writes them to the store too
    all_in_one = Plan(
        workflow=wf.name,
        units=[Unit(id="all", stages=["double", "total"])],
        code_hashes=hashes_of(wf),
    )
    fused = wisefuse(shapes, plan=all_in_one, block=block)
    assert fused.check().planned
    assert fused() == expected

    for name, why in [
        ("element", "element of a value"),
        ("computed", "computed in the flow body"),
        ("futures", "futures or states"),
    ]:
        decorated = wisefuse(load_flow_file(path, name))
        decorated()
        wf = load(decorated.trace_paths()[0])
        assert "returns" not in wf.meta and why in wf.meta["returns_problem"], name


# --------------------------------------------------------------------------- values by value

BY_VALUE_FLOW = """
from prefect import flow, task


@task
def make(n: int) -> list:
    return list(range(n))


@task
def square(x: int) -> int:
    return x * x


@task
def shift(x: int) -> int:
    return x + 1


@task
def total(values: list) -> int:
    return sum(values)


@flow(name="by-value")
def by_value(n: int = 6) -> int:
    return total(shift.map(square.map(make(n))))
"""


def test_small_values_pass_by_value(
    prefect_env: dict[str, str],
    home: Path,
    block: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A scatter into a bundled unit and a gather: values up to ``BY_VALUE_BYTES`` travel in
    the responses and events, never through the store; larger ones still go through it."""
    from prefect import flow

    from wisefuse_plugins.adapters.prefect import load_flow_file
    from wisefuse_plugins.prefect import WiseFuseLambda, wisefuse
    from wisefuse_plugins.providers.prefect.planned import PlannedRun, run_in_flow
    from wisefuse_plugins.runtime import passing

    path = tmp_path / "by_value_flow.py"
    path.write_text(BY_VALUE_FLOW, encoding="utf-8")
    decorated = wisefuse(load_flow_file(path, "by_value"), block=block)
    assert decorated() == 61  # plain, traced
    wf = load(decorated.trace_paths()[0])
    plan = chains_fused(wf, bundle=2)
    assert [u.id for u in plan.units] == ["make", "square-shift", "total"]

    def run_plan(on: Any) -> tuple[Any, list[str], list[str], list[dict[str, Any]]]:
        """The flow's value, the run's store keys before and after ``close``, its calls."""
        box: dict[str, Any] = {}

        @flow(name="by-value")
        def planned() -> Any:
            run = PlannedRun.start(wf, plan, on)
            box["run"] = run
            try:
                value = run_in_flow(run)
                box["stored"] = run.store.list(f"runs/{run.run_id}")
                return value
            finally:
                run.close()

        value = planned()
        run = box["run"]
        left = run.store.list(f"runs/{run.run_id}")
        run.store.delete_prefix(f"runs/{run.run_id}")
        return value, box["stored"], left, run.calls

    def store_requests(calls: list[dict[str, Any]]) -> tuple[int, int]:
        assert all(c["values_stored"] == 0 for c in calls)  # every event held its values
        return sum(c["store"]["gets"] for c in calls), sum(c["store"]["puts"] for c in calls)

    # a block that keeps outputs stores them all, and keeps them: the old path, for reference
    keep = WiseFuseLambda(concurrency_limit=32, local_preload=["prefect"], keep_outputs=True)
    value, stored, left, calls = run_plan(keep)
    assert value == 61 and len(calls) == 1 + 3 + 1
    assert left == stored and len(stored) == 1 + 6 + 6 + 1  # make, its 6 elements, shift, total
    assert store_requests(calls) == (6 + 6, 14)  # elements read, instances gathered

    # by value: the same result, no object in the store, no store request at all
    value, stored, left, calls = run_plan(block)
    assert value == 61
    assert stored == [] and left == []
    assert store_requests(calls) == (0, 0)

    # a limit under the list's pickle (ints pickle in 5 bytes): the scattered list and its
    # elements go through the store, the rest still by value; cleanup removes them
    monkeypatch.setattr(passing, "BY_VALUE_BYTES", 16)
    value, stored, left, calls = run_plan(block)
    assert value == 61
    assert sorted(k.rsplit("/", 2)[-2] for k in stored) == ["make"] * 7 and left == []
    assert store_requests(calls) == (6, 7)  # each instance reads its element
