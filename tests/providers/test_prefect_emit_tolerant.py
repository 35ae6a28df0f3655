"""An emitted flow of a flow that tolerates a failed ``.map`` instance (issue 22, item 6):
the plain flow succeeds, and a plan fails the run at the failed instance: so such a flow is
not emitted, and the decorator runs it plain, each saying why."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.prefect, pytest.mark.slow]

FLOW = """
from prefect import flow, task


@task
def make(n: int) -> list:
    return list(range(n))


@task
def risky(x: int) -> int:
    if x == 1:
        raise ValueError("instance 1 fails")
    return 10 * x


@task
def total(values: list) -> int:
    return sum(values)


@flow(name="tolerant")
def tolerant(n: int = 4) -> int:
    states = risky.map(make(n), return_state=True)
    return total([s.result() for s in states if s.is_completed()])
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from wisefuse_plugins.runtime.backends.units import THREAD_VARS

    monkeypatch.setenv("WISEFUSE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("WISEFUSE_DB_URL", raising=False)
    monkeypatch.delenv("WISEFUSE_STORE", raising=False)
    for name in THREAD_VARS:
        monkeypatch.setenv(name, os.environ.get(name, "1"))
    return tmp_path / "home"


@pytest.fixture
def block(home: Path) -> Iterator[Any]:
    from wisefuse_plugins.prefect import WiseFuseLambda
    from wisefuse_plugins.providers.prefect.blocks import close_local_lambdas

    yield WiseFuseLambda(concurrency_limit=8, local_preload=["prefect"])
    close_local_lambdas()


def test_a_tolerated_failure_is_refused_not_run_into(
    prefect_env: dict[str, str], home: Path, block: Any, tmp_path: Path
) -> None:
    from wisefuse_plugins.adapters.prefect import load_flow_file
    from wisefuse_plugins.emitters.prefect import EmitError, emit_flow
    from wisefuse_plugins.ir import load
    from wisefuse_plugins.plan.schema import single_stage_plan
    from wisefuse_plugins.prefect import wisefuse

    path = tmp_path / "tolerant_flow.py"
    path.write_text(FLOW, encoding="utf-8")
    original = load_flow_file(path, "tolerant")
    plain = original()
    assert plain == 0 + 20 + 30

    decorated = wisefuse(original, block=block)
    assert decorated() == plain  # plain, traced
    wf = load(decorated.trace_paths()[0])
    assert "FAILED" in wf.stage("risky").meta["states"]
    plan = single_stage_plan(wf)

    # emitted: refused, with the reason (it used to be emitted, and its run failed at
    # instance 1 where the plain flow succeeds)
    # (the gather, computed in the flow body by a condition on the states, is opaque too:
    # issue 22 item 2; either reason keeps the flow in Prefect)
    with pytest.raises(EmitError) as info:
        emit_flow(wf, plan)
    assert (
        "risky (FAILED)" in info.value.message and "tolerates failed tasks" in info.value.message
    ) or ("opaque stages ['total']" in info.value.message), info.value.message

    # decorated, with a plan: runs plain, says why, returns the plain result
    planned = wisefuse(original, plan=plan, block=block)
    check = planned.check()
    assert not check.planned
    assert "risky (FAILED)" in check.reason or "is computed in the flow body" in check.reason
    assert planned() == plain


def test_a_flow_without_failures_still_emits(
    prefect_env: dict[str, str], home: Path, block: Any, tmp_path: Path
) -> None:
    """The same flow traced with no failing instance (n=1) is not refused for failures; its
    gather, computed in the flow body by a condition on the states, keeps ``total`` opaque
    (issue 22 item 2: a planned run would replay the traced list), so it is not emitted."""
    from wisefuse_plugins.adapters.prefect import load_flow_file
    from wisefuse_plugins.emitters.prefect import EmitError, emit_flow
    from wisefuse_plugins.ir import load
    from wisefuse_plugins.plan.schema import single_stage_plan
    from wisefuse_plugins.prefect import wisefuse

    path = tmp_path / "tolerant_flow.py"
    path.write_text(FLOW, encoding="utf-8")
    decorated = wisefuse(load_flow_file(path, "tolerant"), block=block)
    assert decorated(n=1) == 0
    wf = load(decorated.trace_paths()[0])
    assert "FAILED" not in wf.stage("risky").meta.get("states", [])
    assert "is computed in the flow body" in (wf.stage("total").opaque_reason or "")
    with pytest.raises(EmitError) as info:
        emit_flow(wf, single_stage_plan(wf))
    assert "opaque stages ['total']" in info.value.message
    assert "tolerates failed tasks" not in info.value.message
