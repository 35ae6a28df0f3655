"""Bindings over call-site shapes: a planned run returns what the plain flow returns, even
after the inputs changed between the trace and the run.

Each flow of ``flows/callsites.py`` is traced over one set of files, the files change, and
then the plain flow (a real Prefect run) and the traced IR (every stage its own unit, run
in this process) must agree -- or the IR has an opaque stage, which keeps the flow in
Prefect (the decorator runs it plain). The expected kind of the last stage pins which
shapes the adapter binds and which it refuses: a fix that made everything opaque would
fail here too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.prefect

FLOWS = Path(__file__).resolve().parent / "flows"
TRACED = {"a.txt": "4", "b.txt": "4", "words.txt": "alpha beta gamma"}
CHANGED = {"a.txt": "5", "b.txt": "7", "words.txt": "one two three fourteen"}

# flow -> "python" (every stage bound) or "opaque" (a stage refused, for the reason given)
SHAPES: dict[str, tuple[str, str]] = {
    "nested-call": ("python", ""),
    "nested-calls-two": ("python", ""),
    "variable": ("python", ""),
    "equal-results": ("python", ""),
    "equal-results-nested": ("python", ""),
    "computed": ("opaque", "computed in the flow"),
    "computed-variable": ("opaque", "computed in the flow"),
    "builtin-of-result": ("opaque", "computed in the flow"),
    "key-of-result": ("python", ""),
    "starred": ("python", ""),
    "starred-literal": ("python", ""),
    "double-starred": ("python", ""),
    "keyword-only": ("python", ""),
    "defaults": ("python", ""),
    "list-of-calls": ("opaque", "list of outputs"),
    "dict-of-calls": ("opaque", "computed in the flow"),
    "future-nested": ("python", ""),
    "future-result": ("python", ""),
    "futures-in-list": ("opaque", "list of outputs"),
    "futures-in-dict": ("opaque", "nests a task's future"),
    "map-unmapped": ("python", ""),
    "map-computed": ("opaque", "(`[n, n + 1]`) is computed in the flow"),
    "loop-over-result": ("opaque", "(`sizes`) is computed in the flow"),
    "mutated": ("opaque", "the flow body changes `words` in place"),
    "quoted": ("python", ""),
    "wait-for": ("python", ""),
    "constants": ("python", ""),
    "literal-equal-to-result": ("python", ""),
    "branch-on-result": ("opaque", "it is called under `if read_count(folder) > 4"),
    "loop-over-constant": ("python", ""),
    "helper-function": ("opaque", "(`folder`) is computed in the flow"),
    "comprehension-over-constant": ("python", ""),
    "conditional-value": ("opaque", "(`a if a > b else b`) is computed in the flow"),
}


def write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")


def planned_result(wf: Any, tmp_path: Path) -> Any:
    """The last stage's output with every stage its own unit, run in this process."""
    from wisefuse_plugins.plan.schema import single_stage_plan
    from wisefuse_plugins.runtime import store as st
    from wisefuse_plugins.runtime.backends.inprocess import InProcessBackend
    from wisefuse_plugins.runtime.executor import execute

    store = st.LocalStore(tmp_path / "store")
    backend = InProcessBackend(store, FLOWS)
    result = execute(wf, single_stage_plan(wf), backend, store, workdir=tmp_path / "units")
    return result.outputs[wf.stages[-1].id]


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_planned_equals_plain_after_the_inputs_change(
    prefect_env: dict[str, str], tmp_path: Path, name: str
) -> None:
    from wisefuse_plugins.adapters.prefect import load_flow_file, trace_flow

    data = tmp_path / "data"
    data.mkdir()
    write(data, TRACED)
    flow = load_flow_file(FLOWS / "callsites.py", name)
    wf = trace_flow(flow, str(data))
    write(data, CHANGED)

    kind, why = SHAPES[name]
    reasons = {s.id: s.opaque_reason for s in wf.stages if not s.is_python}
    if kind == "opaque":  # the decorator runs such a flow plain: nothing to compare
        assert any(why in r for r in reasons.values()), reasons
        return
    assert reasons == {}, {s.id: s.bindings for s in wf.stages}
    assert planned_result(wf, tmp_path) == flow(str(data))  # the plain flow, a real run
