"""What a unit's functions print and log appears in the log of the Prefect task run that
invoked the unit, read back from the Prefect API after a real planned flow run."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from .test_prefect_decorator import block, chains_fused, home  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.prefect, pytest.mark.slow]

CHATTY_FLOW = """
from __future__ import annotations

import logging

from prefect import flow, task

log = logging.getLogger(__name__)


@task
def numbers(n: int) -> list[int]:
    print(f"making {n} numbers")
    return list(range(n))


@task
def shout(x: int) -> int:
    print(f"shout {x}")
    log.warning("shout warning %d", x)
    return x * 10


@task
def total(xs: list[int]) -> int:
    if sum(xs) > 1000:
        raise ValueError("too much")
    return sum(xs)


@flow
def chatty_flow(n: int = 4) -> int:
    return total(shout.map(numbers(n)))
"""


def flow_logs(flow_run_id: Any, wanted: str) -> dict[str, list[str]]:
    """Task run name -> its log messages, once ``wanted`` shows up (logs arrive in batches)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )

    async def read() -> dict[str, list[str]]:
        async with get_client() as client:
            logs = await client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
            )
            runs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
        names = {r.id: r.name for r in runs}
        out: dict[str, list[str]] = {}
        for entry in sorted(logs, key=lambda e: e.timestamp):
            out.setdefault(names.get(entry.task_run_id, "<flow>"), []).append(entry.message)
        return out

    deadline = time.monotonic() + 30
    while True:
        found = asyncio.run(read())
        if any(wanted in m for ms in found.values() for m in ms) or time.monotonic() > deadline:
            return found
        time.sleep(0.25)


def test_unit_lines_are_in_the_prefect_task_run_logs(
    prefect_env: dict[str, str],
    block: Any,  # noqa: F811  (the fixture)
    tmp_path: Path,
) -> None:
    from prefect import flow
    from prefect.logging.handlers import APILogHandler
    from prefect.runtime import flow_run

    from wisefuse_plugins.adapters.prefect import load_flow_file, trace_flow
    from wisefuse_plugins.providers.prefect.planned import PlannedRun, run_in_flow

    path = tmp_path / "chatty_flow.py"
    path.write_text(CHATTY_FLOW, encoding="utf-8")
    wf = trace_flow(load_flow_file(path, "chatty_flow"), root=tmp_path)
    plan = chains_fused(wf, bundle=2)  # numbers / shout in bundles of 2 / total
    box: dict[str, Any] = {}

    @flow(name="chatty-planned")
    def planned() -> Any:
        box["id"] = flow_run.id
        run = PlannedRun.start(wf, plan, block, code_root=tmp_path)
        try:
            return run_in_flow(run)
        finally:
            run.close()

    assert planned() == {"total": 60}  # no return spec: the sink's output
    APILogHandler().flush()
    logs = flow_logs(box["id"], "shout warning 3")
    by_line = {m: name for name, ms in logs.items() for m in ms}
    assert "numbers stdout | making 4 numbers" in by_line
    for i in range(4):
        assert f"shout[{i}] stdout | shout {i}" in by_line
        assert f"shout[{i}] log | WARNING chatty_flow: shout warning {i}" in by_line
    # each line is in the log of the task run that invoked its chunk
    assert by_line["shout[0] stdout | shout 0"] == by_line["shout[1] stdout | shout 1"]
    assert by_line["shout[0] stdout | shout 0"] != by_line["shout[2] stdout | shout 2"]
    assert by_line["numbers stdout | making 4 numbers"] != by_line["shout[0] stdout | shout 0"]
