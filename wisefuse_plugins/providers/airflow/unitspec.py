"""Which unit a :class:`~.operators.WiseFuseLambdaOperator` runs, however it was given.

A unit task names its unit either inline (a spec, its JSON, or a spec file, as the drop-in
rewrite does) or by the plan and IR files to build it from when the task runs (as emitted
DAG files do, so that parsing them reads no file). Both become one :class:`ResolvedUnit`:
the spec and the settings (memory, architecture, code root, XCom keys, opaque inputs) the
run needs. The operator imports it when its task runs: resolving reads files and builds
pydantic models, which a DAG file's parse must not pay for.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wisefuse_plugins.providers.airflow.layout import OpaqueInput
from wisefuse_plugins.providers.airflow.planfiles import EMITTED_FIX, PlanFileError, pinned_bytes

if TYPE_CHECKING:
    from wisefuse_plugins.plan.schema import Arch
    from wisefuse_plugins.runtime.spec import UnitSpec

DEFAULT_MEMORY_MB = 1769
"""A unit's memory when neither its plan nor its task says (1 vCPU on Lambda)."""


@dataclass(frozen=True)
class ResolvedUnit:
    """Everything the operator needs about its unit, however it was given."""

    spec: UnitSpec
    memory_mb: int
    arch: Arch
    code_root: str | None
    stage_tasks: dict[str, str]
    opaque_inputs: dict[str, OpaqueInput]

    @property
    def last_stage(self) -> str:
        return self.spec.stages[-1].id


def inline_unit(
    spec: Path | Mapping[str, Any],
    *,
    memory_mb: int | None,
    arch: Arch | None,
    code_root: str | None,
    stage_tasks: Mapping[str, str],
    opaque_inputs: Mapping[str, Mapping[str, Any]],
) -> ResolvedUnit:
    """A unit given inline: ``spec`` is a spec file's path or a spec's JSON dict."""
    from wisefuse_plugins.runtime.spec import UnitSpec, read_spec

    unit = read_spec(spec) if isinstance(spec, Path) else UnitSpec.model_validate(spec)
    return ResolvedUnit(
        spec=unit,
        memory_mb=memory_mb or DEFAULT_MEMORY_MB,
        arch=arch or "x86_64",
        code_root=code_root,
        stage_tasks=dict(stage_tasks) or {s.id: s.id for s in unit.stages},
        opaque_inputs={k: OpaqueInput.from_json(v) for k, v in opaque_inputs.items()},
    )


def planned_unit(
    plan: Path,
    workflow: Path,
    unit_id: str,
    *,
    plan_sha: str | None,
    workflow_sha: str | None,
    memory_mb: int | None,
    arch: Arch | None,
    code_root: str | None,
    warn: Callable[[str], None],
) -> ResolvedUnit:
    """A unit built from its plan and IR files (pinned by their SHA-256, see :mod:`.planfiles`);
    ``warn`` gets the note of a replaced file that was not used."""
    plan_text, plan_note = pinned_bytes(plan, plan_sha, "plan file")
    wf_text, wf_note = pinned_bytes(workflow, workflow_sha, "IR file")
    for note in (plan_note, wf_note):
        if note:
            warn(note)
    names = (f"plan file {str(plan)!r}", f"IR file {str(workflow)!r}")
    wf, task = _from_files(plan_text, wf_text, unit_id, names)
    return ResolvedUnit(
        spec=task.spec,
        memory_mb=memory_mb or task.unit.memory_mb,
        arch=arch or task.unit.arch,
        code_root=code_root or wf.source.root,
        stage_tasks=task.stage_tasks,
        opaque_inputs=task.opaque_inputs,
    )


@functools.lru_cache(maxsize=64)
def _from_files(plan: bytes, workflow: bytes, unit_id: str, names: tuple[str, str]) -> Any:
    """Build a unit's layout from the bytes of an IR file and a plan file (``names``: how
    errors name them); cached by content, so a replaced file is never served from the cache."""
    from wisefuse_plugins.ir.serde import from_json
    from wisefuse_plugins.plan.schema import plan_from_json
    from wisefuse_plugins.providers.airflow.layout import layout

    wf = from_json(workflow, what=names[1])
    lay = layout(wf, plan_from_json(plan, wf, what=names[0]))
    try:
        return wf, lay.unit_task(unit_id)
    except KeyError:
        raise PlanFileError(
            f"{names[0]} has no unit {unit_id!r}",
            hint="the DAG file and its plan do not belong together: " + EMITTED_FIX,
        ) from None
