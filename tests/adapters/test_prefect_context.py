"""Tasks that use Prefect itself: the trace keeps what a Lambda unit cannot run opaque, with
the reason, and plans what it can (the run logger, ``print``)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.prefect

FLOWS = Path(__file__).resolve().parent / "flows"

# stage -> words of its opaque reason ("" for a stage planned onto Lambda)
EXPECTED = {
    "logs": "",
    "prints": "",
    "run_name": "reads Prefect's run context (prefect.runtime.flow_run)",
    "task_run_inside": "reads Prefect's run context (prefect.runtime.task_run)",
    "through_helper": "reads Prefect's run context (prefect.runtime",
    "client": "uses Prefect's API (get_client())",
    "context": "reads Prefect's run context (TaskRunContext.get())",
    "variable": "uses Prefect's API (Variable)",
    "artifact": "uses Prefect's API (create_markdown_artifact())",
    "hooked": "it has on_completion hooks (_done)",
    "conditional_retry": "it has a retry_condition_fn",
}


def test_what_needs_prefect_is_opaque_with_its_reason(prefect_env: dict[str, str]) -> None:
    from wisefuse_plugins.adapters.prefect import load_flow_file, trace_flow

    wf = trace_flow(load_flow_file(FLOWS / "context.py", "uses-prefect"))
    got = {s.id: s.opaque_reason or "" for s in wf.stages}
    assert set(got) == set(EXPECTED)
    for sid, words in EXPECTED.items():
        if not words:
            assert wf.stage(sid).is_python, (sid, got[sid])
        else:
            assert words in got[sid], (sid, got[sid])
    # names the function it is in, the helper the task calls
    assert "in _flow_run_id (context.py:" in got["through_helper"], got["through_helper"]
    assert got["logs"] == got["prints"] == ""


def test_refusal_names_real_prefect_objects(prefect_env: dict[str, str]) -> None:
    """The table of refusals matches the objects Prefect really has (their modules move)."""
    import prefect
    from prefect.concurrency.sync import concurrency
    from prefect.context import FlowRunContext, get_run_context
    from prefect.deployments import run_deployment
    from prefect.events import emit_event

    from wisefuse_plugins.adapters.prefect.context import refusal

    for obj in (
        prefect.get_client,
        prefect.pause_flow_run,
        prefect.suspend_flow_run,
        get_run_context,
        FlowRunContext,
        run_deployment,
        emit_event,
        concurrency,
        prefect.runtime.deployment,
    ):
        assert refusal(obj) is not None, obj
    for obj in (prefect.get_run_logger, prefect.task, prefect.unmapped, prefect.tags, print):
        assert refusal(obj) is None, obj
