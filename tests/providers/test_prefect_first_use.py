"""A first use of ``@wisefuse`` (issue 22, item 5): what the user must act on is a WARNING
in the flow run's own logs (read back from the Prefect API), and a bad ``slo`` is an error
at decoration time."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from wisefuse_plugins.errors import WiseFuseError

FLOW = """
from prefect import flow, task


@task
def double(x: int) -> int:
    return 2 * x


@flow(name="first-use")
def first_use(n: int = 3) -> int:
    return double(n)
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("WISEFUSE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("WISEFUSE_DB_URL", raising=False)
    monkeypatch.delenv("WISEFUSE_STORE", raising=False)
    return tmp_path / "home"


@pytest.fixture
def first_use(tmp_path: Path) -> Iterator[Any]:
    from wisefuse_plugins.adapters.prefect import load_flow_file

    path = tmp_path / "first_use_flow.py"
    path.write_text(FLOW, encoding="utf-8")
    yield load_flow_file(path, "first_use")


def run_logs(flow_run_id: Any, wanted: int) -> list[tuple[int, str]]:
    """(level, message) of the flow run's logs, once ``wanted`` WARNINGs are in the API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    async def read() -> list[Any]:
        async with get_client() as client:
            return await client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
            )

    APILogHandler().flush()
    deadline = time.monotonic() + 30
    while True:
        logs = [(r.level, r.message) for r in asyncio.run(read())]
        if sum(level >= logging.WARNING for level, _ in logs) >= wanted:
            return logs
        if time.monotonic() > deadline:
            return logs
        time.sleep(0.25)


@pytest.mark.prefect
def test_no_plan_and_the_recorded_trace_are_warnings_in_the_run_logs(
    prefect_env: dict[str, str], home: Path, first_use: Any
) -> None:
    from wisefuse_plugins.ir import load
    from wisefuse_plugins.prefect import wisefuse

    decorated = wisefuse(slo="2x")(first_use)
    assert decorated() == 6
    wf = load(decorated.trace_paths()[0])
    assert wf.meta["returns"] == {"kind": "output", "stage": "double"}  # the notice changes nothing
    warned = [m for level, m in run_logs(wf.meta["flow_run_id"], 2) if level >= logging.WARNING]
    plan = home / "plans" / "first-use.plan.json"
    assert any(f"no WiseFuse plan for flow 'first-use' at {plan}" in m for m in warned), warned
    recorded = [m for m in warned if m.startswith("recorded the trace of flow 'first-use'")]
    assert recorded, warned
    assert f"--slo 2x --out {plan}" in recorded[0] and "wisefuse profile" in recorded[0]


@pytest.mark.prefect
def test_an_untraced_plain_call_says_so_in_its_run_logs(
    prefect_env: dict[str, str], home: Path, first_use: Any
) -> None:
    """``return_state=True`` runs plain and is not traced: the notice is still in its logs."""
    from wisefuse_plugins.prefect import wisefuse

    state = wisefuse(first_use)(return_state=True)
    assert state.result() == 6
    logs = run_logs(state.state_details.flow_run_id, 1)
    assert any(
        level == logging.WARNING
        and "no WiseFuse plan for flow 'first-use'" in m
        and "this call is not traced" in m
        for level, m in logs
    ), logs


@pytest.mark.parametrize("slo", ["1.5x", "2X", 12.5, 3, "12.5s", "12"])
def test_slo_forms_the_cli_reads_are_accepted(slo: Any, first_use: Any) -> None:
    from wisefuse_plugins.prefect import wisefuse

    assert wisefuse(slo=slo)(first_use)._wisefuse.slo == (
        slo.strip() if isinstance(slo, str) else slo
    )


@pytest.mark.parametrize(
    ("slo", "why"),
    [
        ("fast", "cannot read the SLO 'fast'"),
        ("x", "cannot read the SLO"),
        (0, "positive"),
        (-2.5, "positive"),
        ("0x", "positive"),
        (float("inf"), "finite"),
        (True, "not bool"),
        ([1.5], "not list"),
    ],
)
def test_a_bad_slo_is_an_error_at_decoration(slo: Any, why: str) -> None:
    from wisefuse_plugins.prefect import wisefuse

    with pytest.raises(WiseFuseError) as info:
        wisefuse(slo=slo)
    assert f"@wisefuse(slo={slo!r})" in info.value.message and why in info.value.message
    assert "1.5x" in (info.value.hint or "")
