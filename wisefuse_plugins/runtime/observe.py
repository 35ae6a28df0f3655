"""Learn a workflow's run-time parallelism by running it once, in this process.

Adapters cannot always know how many instances a mapped stage has (``.expand()`` over an
upstream's list): they put an expected figure in the IR. Running the workflow once with
no fusion on the in-process backend tells the real counts; :func:`observe` returns the
workflow with those counts (``parallelism_source="observed"``) and the run's outputs.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from wisefuse_plugins.ir import ConstItem, Workflow
from wisefuse_plugins.plan.schema import single_stage_plan
from wisefuse_plugins.runtime import store as st
from wisefuse_plugins.runtime.backends.inprocess import InProcessBackend
from wisefuse_plugins.runtime.executor import execute


def with_parallelism(
    workflow: Workflow, counts: dict[str, int], source: str = "observed"
) -> Workflow:
    """``workflow`` with the parallelism of its mapped stages set from ``counts``."""
    stages = []
    for s in workflow.stages:
        literal = any(isinstance(b, ConstItem) for b in s.bindings.values())
        if s.mapped and not literal and counts.get(s.id, 0) >= 1:
            s = s.model_copy(update={"parallelism": counts[s.id], "parallelism_source": source})
        stages.append(s)
    return workflow.with_stages(stages)


def observe(
    workflow: Workflow, code_root: str | Path | None = None
) -> tuple[Workflow, dict[str, Any]]:
    """Run ``workflow`` once in-process; return it with observed parallelism, and its outputs."""
    root = Path(code_root or workflow.source.root)
    with tempfile.TemporaryDirectory(prefix="wisefuse-observe-") as tmp:
        store = st.LocalStore(Path(tmp) / "store")
        result = execute(
            workflow,
            single_stage_plan(workflow),
            InProcessBackend(store, root),
            store,
            workdir=Path(tmp) / "units",
        )
        counts: dict[str, int] = {}
        for call in result.calls:
            for out in call.invoked.payload.get("outputs", []):
                if out.get("instance") is not None:
                    counts[out["stage"]] = max(counts.get(out["stage"], 0), out["instance"] + 1)
    return with_parallelism(workflow, counts), result.outputs
