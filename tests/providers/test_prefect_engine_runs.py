"""Runs of a ``@wisefuse`` flow that Prefect's engine starts without calling the flow object
(issue 22 item 1), in this process: ``prefect.flow_engine.run_flow(flow)`` is what a served
flow's run subprocess and ``python -m prefect.engine`` (a worker's) call once they have the
flow. The same runs, served and on a process worker against ``prefect server start``, are
in tests/live_prefect/test_deployments.py.

What must hold: ``flow.fn`` is the flow's own function to every reader (signature, source
file, deployment entrypoints, pickling), and the engine's call of it runs the plan's units
in the run it started, or says at WARNING in that run's logs why it runs plain.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from wisefuse_plugins.ir import load
from wisefuse_plugins.plan.schema import Plan, Unit, dump_plan, hashes_of

pytestmark = [pytest.mark.prefect, pytest.mark.slow]

FLOW = """
from prefect import flow, task

from wisefuse_plugins.prefect import WiseFuseLambda, wisefuse


@task
def make(n: int) -> list:
    return list(range(n))


@task
def square(x: int) -> int:
    return x * x


@task
def total(values: list) -> int:
    return sum(values)


@wisefuse(block=WiseFuseLambda(local_preload=["prefect"]))
@flow(name="engine-runs")
def engine_runs(n: int = 4) -> int:
    return total(square.map(make(n)))


@flow(name="engine-parent")
def parent() -> int:
    return engine_runs() + 1


@wisefuse
@flow(name="engine-async")
async def engine_async(n: int = 2) -> int:
    return n + 1
"""
UNITS = Counter({"make": 1, "square [0-1]": 1, "square [2-3]": 1, "total": 1})


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("wisefuse-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WISEFUSE_HOME", str(path))
        mp.delenv("WISEFUSE_DB_URL", raising=False)
        mp.delenv("WISEFUSE_STORE", raising=False)
        yield path


@pytest.fixture(scope="module")
def flows(
    prefect_env: dict[str, str],
    home: Path,
    tmp_path_factory: pytest.TempPathFactory,
    load_module: Callable[..., ModuleType],
) -> Iterator[dict[str, Any]]:
    """The flow file, its decorated flow (on a local block) and a parent flow calling it."""
    from wisefuse_plugins.providers.prefect.blocks import close_local_lambdas

    path = tmp_path_factory.mktemp("engine-flows") / "engine_flows.py"
    path.write_text(FLOW, encoding="utf-8")
    module = load_module(path)
    yield {"path": path, "decorated": module.engine_runs, "parent": module.parent, "module": module}
    close_local_lambdas()


def run_by_engine(flow: Any, **parameters: Any) -> Any:
    """What a deployment's run process does with the flow it loaded: the final state."""
    from prefect.flow_engine import run_flow

    return run_flow(flow, parameters=parameters or None, return_type="state")


def api(read: Any) -> Any:
    from prefect.client.orchestration import get_client

    async def go() -> Any:
        async with get_client() as client:
            return await read(client)

    return asyncio.run(go())


def task_run_names(flow_run_id: Any, expected: int) -> Counter[str]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    flt = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
    deadline = time.monotonic() + 30
    while True:
        runs = api(lambda c: c.read_task_runs(flow_run_filter=flt))
        done = [r for r in runs if r.state is not None and r.state.is_completed()]
        if len(done) >= expected or time.monotonic() > deadline:
            return Counter(r.name for r in runs)
        time.sleep(0.25)


def run_logs(flow_run_id: Any, wanted: str) -> list[tuple[int, str]]:
    """(level, message) of the flow run's logs in the API, once one contains ``wanted``."""
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()
    flt = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
    deadline = time.monotonic() + 30
    while True:
        logs = [(r.level, r.message) for r in api(lambda c: c.read_logs(log_filter=flt))]
        if any(wanted in m for _, m in logs) or time.monotonic() > deadline:
            return logs
        time.sleep(0.25)


def test_fn_is_the_flows_own_function_to_every_reader(flows: dict[str, Any]) -> None:
    import cloudpickle

    decorated = flows["decorated"]
    assert decorated.fn is decorated.own_fn
    assert decorated.fn.__code__.co_filename == str(flows["path"])
    assert inspect.getsourcefile(decorated.fn) == str(flows["path"])
    assert list(inspect.signature(decorated.fn).parameters) == ["n"]
    # what flow.serve() and flow.deploy() record and a worker imports again
    deployment = decorated.to_deployment(name="entry")
    assert deployment.entrypoint.endswith("engine_flows.py:engine_runs")
    # what flow.serve() pickles into each run's process
    copy = cloudpickle.loads(cloudpickle.dumps(decorated))
    assert type(copy) is type(decorated) and copy._wisefuse == decorated._wisefuse
    assert copy.fn.__name__ == "engine_runs"


def test_an_engine_run_without_a_plan_runs_plain_and_says_why(flows: dict[str, Any]) -> None:
    state = run_by_engine(flows["decorated"])
    assert state.is_completed() and state.result() == 14
    logs = run_logs(state.state_details.flow_run_id, "no WiseFuse plan")
    warned = [m for level, m in logs if level == 30 and "no WiseFuse plan" in m]
    assert len(warned) == 1, logs
    assert "runs that Prefect's engine starts from a deployment" in warned[0]
    names = task_run_names(state.state_details.flow_run_id, 6)
    assert Counter(n.rsplit("-", 1)[0] for n in names.elements()) == {
        "make": 1,
        "square": 4,
        "total": 1,
    }


@pytest.fixture(scope="module")
def plan(flows: dict[str, Any], home: Path) -> Plan:
    """The flow called directly once (plain, traced), then a plan from that trace."""
    decorated = flows["decorated"]
    assert decorated() == 14
    wf = load(decorated.trace_paths()[0])
    plan = Plan(
        workflow=wf.name,
        units=[
            Unit(id="make", stages=["make"]),
            Unit(id="square", stages=["square"], bundle_size=2),
            Unit(id="total", stages=["total"]),
        ],
        code_hashes=hashes_of(wf),
    )
    path = decorated.plan_path
    assert path is not None
    dump_plan(plan, path)
    check = decorated.check()
    assert check.planned, check.reason
    return plan


def test_an_engine_run_runs_under_the_plan(flows: dict[str, Any], plan: Plan) -> None:
    state = run_by_engine(flows["decorated"])
    assert state.is_completed() and state.result() == 14
    run_id = state.state_details.flow_run_id
    assert task_run_names(run_id, 4) == UNITS
    logs = run_logs(run_id, "WiseFuse plan:")
    assert any(m.startswith("WiseFuse plan: 4 invocations of 3 units") for _, m in logs), logs
    assert not [m for level, m in logs if level >= 30], logs


def test_an_engine_run_with_other_parameters_says_how_to_plan_them(
    flows: dict[str, Any], plan: Plan
) -> None:
    state = run_by_engine(flows["decorated"], n=3)
    assert state.is_completed() and state.result() == 5
    logs = run_logs(state.state_details.flow_run_id, "not under its WiseFuse plan")
    warned = [m for level, m in logs if level == 30 and "not under its WiseFuse plan" in m]
    assert len(warned) == 1, logs
    assert "other parameters" in warned[0]
    assert "call the flow directly with these parameters once to record its trace" in warned[0]


def test_a_subflow_runs_under_the_plan(flows: dict[str, Any], plan: Plan) -> None:
    """A parent flow (itself run by the engine) calling the decorated flow."""
    state = run_by_engine(flows["parent"])
    assert state.is_completed() and state.result() == 15

    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    flt = FlowRunFilter(
        parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[state.state_details.flow_run_id])
    )
    children = api(lambda c: c.read_flow_runs(flow_run_filter=flt))
    assert len(children) == 1
    assert task_run_names(children[0].id, 4) == UNITS


def test_an_async_flow_runs_plain_and_says_why(flows: dict[str, Any]) -> None:
    """Called directly or run by the engine: the adapter traces sync flows only."""
    flow = flows["module"].engine_async
    direct = asyncio.run(flow(return_state=True))
    by_engine = asyncio.run(run_by_engine(flow, n=4))
    for state, value in [(direct, 3), (by_engine, 5)]:
        assert state.is_completed() and state.result() == value
        logs = run_logs(state.state_details.flow_run_id, "it is async")
        warned = [m for level, m in logs if level == 30 and "it is async" in m]
        assert len(warned) == 1 and "not under a WiseFuse plan" in warned[0], logs
