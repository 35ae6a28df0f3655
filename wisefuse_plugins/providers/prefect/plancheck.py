"""Whether a call of a ``@wisefuse`` flow runs under its plan, and if not, why and the fix.

Why a module: the decision is the decorator's one judgement, made the same way for a
direct call, a subflow and a run Prefect's engine started, and it reads only files (the
plan, the recorded traces, the flow's code): it runs nothing. Each reason a plan does not
fit (none, unreadable, no trace with the call's parameters, changed code, plan problems,
an opaque or failure-tolerant flow, a return value units cannot rebuild) comes with the
fix a user can apply. ``flow`` below is the :class:`~.decorator.WiseFuseFlow` (its plan and
trace paths, settings and own function).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wisefuse_plugins.errors import WiseFuseError
from wisefuse_plugins.ir import IRError, Workflow, code_hash
from wisefuse_plugins.plan.schema import Plan, load_plan, plan_problems
from wisefuse_plugins.providers.prefect.planned import opaque_problem

__all__ = [
    "PlanCheck",
    "changed_code",
    "decide",
    "fix_hint",
    "tolerated_failures",
    "trace_for",
    "unfit",
]

#: Prefect state types of a task run that did not complete.
_FAILED_STATES = ("FAILED", "CRASHED", "CANCELLED")


@dataclass(frozen=True)
class PlanCheck:
    """Whether a call runs under a plan, and if not, why (``level``: how loudly to say it)."""

    planned: bool
    reason: str | None = None
    level: int = logging.INFO
    workflow: Workflow | None = field(default=None, repr=False)
    plan: Plan | None = field(default=None, repr=False)
    plan_path: Path | None = None
    trace_path: Path | None = None


def decide(
    flow: Any, args: tuple, kwargs: dict[str, Any], untraced: str | None = None
) -> PlanCheck:
    """:meth:`~.decorator.WiseFuseFlow.check`, for a run that is traced unless ``untraced``
    says why it is not: the reasons' fixes say how to get the trace the plan needs."""
    record = flow._wisefuse.record and untraced is None
    why_not = untraced or "@wisefuse(record=False) records no trace"

    def retrace(what: str, then: str) -> str:
        return f"call the flow directly{what} once to record its trace ({why_not}); then {then}"

    name = flow.name
    plan_path = flow.plan_path
    fix = fix_hint(flow)
    plan = flow._wisefuse.plan
    if not isinstance(plan, Plan):
        assert plan_path is not None
        if not plan_path.exists():
            return PlanCheck(
                False,
                f"no WiseFuse plan for flow {name!r} at {plan_path}: running it as it "
                "is"
                + (
                    " and recording its trace"
                    if record
                    else (f"; {untraced}" if untraced and flow._wisefuse.record else "")
                ),
                logging.WARNING,
                plan_path=plan_path,
            )
        try:
            plan = load_plan(plan_path)
        except (IRError, OSError) as err:
            return unfit(name, f"its plan {plan_path} cannot be read: {err}", fix, plan_path)
    params = flow.call_parameters(*args, **kwargs)
    workflow, trace_path, others = trace_for(flow, params, plan_path)
    if workflow is None:
        if others:
            old, path = others[0]
            changed = sorted(k for k in {*old, *params} if old.get(k) != params.get(k))
            why = (
                f"its plan was made for a trace with other parameters ({path}; "
                f"different: {', '.join(changed)}), and the plan's IR holds the traced "
                "values"
            )
            return unfit(
                name,
                why,
                "this run is traced with the new parameters: the next call with them runs "
                "under the plan if it fits that trace (or run `wisefuse optimize` on it)"
                if record
                else retrace(
                    " with these parameters",
                    "runs with them run under the plan if it fits that trace (or run "
                    "`wisefuse optimize` on it)",
                ),
                plan_path,
            )
        return unfit(
            name,
            "there is no recorded trace of it to check the plan against",
            "this run is traced; the next call runs under the plan if it fits"
            if record
            else retrace(" with these parameters", "runs with them run under the plan if it fits"),
            plan_path,
        )
    stale = changed_code(workflow, flow.own_fn)
    if stale:
        return unfit(
            name,
            f"its code changed since the trace {trace_path} (stages {', '.join(stale)})",
            f"this run records a new trace; then {fix}" if record else retrace("", fix),
            plan_path,
            trace_path,
        )
    problems = plan_problems(plan, workflow)
    if problems:
        shown = "; ".join(f"{where}: {what}" for where, what in problems[:4])
        more = f" (and {len(problems) - 4} more)" if len(problems) > 4 else ""
        return unfit(
            name,
            f"its plan does not fit its trace {trace_path}: {shown}{more}",
            fix,
            plan_path,
            trace_path,
        )
    opaque = opaque_problem(workflow) or tolerated_failures(workflow)
    if opaque is not None:
        return unfit(name, opaque, "keep the flow as it is", plan_path, trace_path)
    if not isinstance(workflow.meta.get("returns"), dict):
        why = workflow.meta.get("returns_problem") or "the trace does not say what it returns"
        return unfit(
            name,
            f"its return value cannot be rebuilt from the units' outputs: {why}",
            "return a task's output (or a list or dict of them) from the flow",
            plan_path,
            trace_path,
        )
    return PlanCheck(True, None, logging.DEBUG, workflow, plan, plan_path, trace_path)


def unfit(
    name: str, why: str, fix: str, plan_path: Path | None, trace_path: Path | None = None
) -> PlanCheck:
    """The check of flow ``name`` that runs plain: ``why``, and ``fix``, at WARNING."""
    return PlanCheck(
        False,
        f"flow {name!r} runs as it is, not under its WiseFuse plan: {why}. Fix: {fix}",
        logging.WARNING,
        plan_path=plan_path,
        trace_path=trace_path,
    )


def fix_hint(flow: Any) -> str:
    """The commands that re-plan ``flow`` from its latest trace."""
    latest, _ = flow.trace_paths()
    slo = f" --slo {flow._wisefuse.slo}" if flow._wisefuse.slo is not None else ""
    out = flow.plan_path or "<the plan file you pass to @wisefuse>"
    return (
        f"re-plan from the latest trace: `wisefuse profile {latest}` then "
        f"`wisefuse optimize {latest}{slo} --out {out}`"
    )


def trace_for(
    flow: Any, params: dict[str, Any], plan_path: Path | None
) -> tuple[Workflow | None, Path | None, list[tuple[dict[str, Any], Path]]]:
    """The recorded trace with these parameters, and the parameters of the others seen."""
    latest, exact = flow.trace_paths(params)
    candidates = []
    if plan_path is not None:
        stem = plan_path.name.removesuffix(".json").removesuffix(".plan")
        candidates.append(plan_path.with_name(f"{stem}.ir.json"))
    candidates += [exact, latest]
    others = []
    for path in candidates:
        if path is None or not path.exists():
            continue
        with contextlib.suppress(WiseFuseError, OSError):
            from wisefuse_plugins.targets import load_workflow

            wf = load_workflow(path)  # a relative code root is relative to the file
            if wf.name != flow.name:
                continue
            traced = wf.meta.get("parameters")
            if traced == params:
                return wf, path, others
            if isinstance(traced, dict):
                others.append((traced, path))
    return None, None, others


def changed_code(workflow: Workflow, own_fn: Callable) -> list[str]:
    """Stages whose function's code hash is no longer the traced one (``own_fn``: the
    flow's function, whose module holds the functions of the flow's own file)."""
    changed = []
    for s in workflow.python_stages:
        if s.callable is None:
            continue
        try:
            now = code_hash(_function(s.callable, workflow, own_fn))
        except Exception:
            changed.append(s.id)
            continue
        if now != s.callable.code_hash:
            changed.append(s.id)
    return changed


def _function(ref: Any, workflow: Workflow, own_fn: Callable) -> Callable:
    from wisefuse_plugins.runtime.loader import load_callable, unwrap

    if ref.path == workflow.source.path:  # the flow's own file: already imported
        obj: Any = own_fn.__globals__
        with contextlib.suppress(KeyError, AttributeError):
            for i, part in enumerate(ref.qualname.split(".")):
                obj = obj[part] if i == 0 else getattr(obj, part)
            fn = unwrap(obj)
            if Path(inspect.getsourcefile(fn) or "").is_file():
                return fn
        # not from a file: a served flow is pickled into its run's process, with its
        # functions' code but not their source. Units import the file: check that.
    return load_callable(ref, workflow.source.root, verify_hash=False)


def tolerated_failures(workflow: Workflow) -> str | None:
    """Why a plan cannot run a flow whose traced run completed with failed task runs.

    Such a flow tolerates failures (``.map(return_state=True)``, ``allow_failure``); a plan
    runs every instance and fails the run at the first error, where the flow goes on, and
    the IR does not record which values the flow kept. (The adapter records the traced task
    runs' states in ``Stage.meta["states"]``.)"""
    failed = {
        s.id: [x for x in s.meta.get("states") or [] if x in _FAILED_STATES]  # type: ignore[union-attr]
        for s in workflow.stages
    }
    shown = "; ".join(f"{sid} ({', '.join(states)})" for sid, states in failed.items() if states)
    if not shown:
        return None
    return (
        f"its traced run completed although task runs of it did not: {shown}. The flow "
        "tolerates failed tasks (return_state=True or allow_failure), and a plan runs every "
        "instance and fails the run at the first error"
    )
