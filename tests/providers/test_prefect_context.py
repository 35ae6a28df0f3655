"""Tasks that use Prefect's run context, through ``@wisefuse`` with real planned runs.

Supported on Lambda: ``get_run_logger()`` and ``print`` under ``log_prints=True``: the
planned run returns the plain result and the lines are in the Prefect task runs' logs.
Refused: a task reading ``prefect.runtime`` keeps the flow in Prefect (it runs plain) and
the check says which task and why. And item 2 of issue 22 as a user meets it: a nested
call, after its input file changed, gives the plain result under a plan.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from wisefuse_plugins.ir import load
from wisefuse_plugins.plan.schema import single_stage_plan

from .test_prefect_decorator import block, chains_fused, home  # noqa: F401  (fixtures)
from .test_prefect_logs import flow_logs

pytestmark = [pytest.mark.prefect, pytest.mark.slow]

FLOWS = Path(__file__).resolve().parents[1] / "adapters" / "flows"


def test_run_logger_and_prints_work_on_lambda(
    prefect_env: dict[str, str],
    block: Any,  # noqa: F811  (the fixture)
) -> None:
    from prefect.logging.handlers import APILogHandler

    from wisefuse_plugins.adapters.prefect import load_flow_file
    from wisefuse_plugins.prefect import wisefuse

    flow = load_flow_file(FLOWS / "context.py", "logs-and-prints")
    first = wisefuse(flow, block=block)
    assert first() == 8  # plain, traced
    wf = load(first.trace_paths()[0])
    assert all(s.is_python for s in wf.stages), {s.id: s.opaque_reason for s in wf.stages}

    planned = wisefuse(flow, plan=chains_fused(wf), block=block)
    check = planned.check()
    assert check.planned, check.reason
    state = planned(return_state=True)
    assert state.is_completed(), state.message
    assert state.result() == 8
    APILogHandler().flush()
    logs = flow_logs(state.state_details.flow_run_id, "prints got 4")
    lines = [m for ms in logs.values() for m in ms]
    assert any("logs got 3" in m and "INFO" in m for m in lines), lines
    assert any("logs warns about 3" in m and "WARNING" in m for m in lines), lines
    assert any("prints stdout | prints got 4" in m for m in lines), lines
    by_line = {m: name for name, ms in logs.items() for m in ms}
    logged = next(m for m in lines if "logs got 3" in m)
    assert by_line[logged].startswith("logs"), by_line[logged]  # the unit task run's own log


def test_a_task_reading_the_run_context_keeps_the_flow_in_prefect(
    prefect_env: dict[str, str],
    block: Any,  # noqa: F811  (the fixture)
    caplog: pytest.LogCaptureFixture,
) -> None:
    from wisefuse_plugins.adapters.prefect import load_flow_file
    from wisefuse_plugins.prefect import wisefuse

    flow = load_flow_file(FLOWS / "context.py", "reads-run-name")
    first = wisefuse(flow, block=block)
    value = first()
    assert value.endswith(":4")  # the plain run: the flow run's name, then logs(3) + 1
    wf = load(first.trace_paths()[0])
    reason = wf.stage("run_name").opaque_reason or ""
    assert "reads Prefect's run context (prefect.runtime.flow_run)" in reason, reason

    planned = wisefuse(flow, plan=single_stage_plan(wf), block=block)
    check = planned.check()
    assert not check.planned
    assert "run_name" in check.reason and "prefect.runtime.flow_run" in check.reason
    with caplog.at_level(logging.WARNING, logger="wisefuse_plugins.prefect"):
        again = planned()
    assert again.endswith(":4") and again != value  # run plain: a new flow run's name


def test_a_nested_call_follows_its_changed_input_under_a_plan(
    prefect_env: dict[str, str],
    block: Any,  # noqa: F811  (the fixture)
    tmp_path: Path,
) -> None:
    from wisefuse_plugins.adapters.prefect import load_flow_file
    from wisefuse_plugins.prefect import wisefuse

    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("4", encoding="utf-8")
    flow = load_flow_file(FLOWS / "callsites.py", "nested-call")
    first = wisefuse(flow, block=block)
    assert first(str(data)) == 8
    wf = load(first.trace_paths()[0])
    planned = wisefuse(flow, plan=single_stage_plan(wf), block=block)
    (data / "a.txt").write_text("5", encoding="utf-8")
    check = planned.check(str(data))
    assert check.planned, check.reason
    assert planned(str(data)) == flow(str(data)) == 10
