"""``@wisefuse`` over ``@flow``: run a flow's tasks as its plan's Lambda units when a plan fits.

On each call the decorated flow decides, before any flow run starts:

* **a plan fits** -- a plan for this flow exists (``plan=`` a path or a :class:`Plan`, else
  ``$WISEFUSE_HOME/plans/<flow>.plan.json``), a recorded trace of the flow *with the call's
  parameters* exists, the flow's task code still has the traced code hashes, and
  :func:`~wisefuse_plugins.plan.schema.plan_problems` finds nothing: one flow run of
  the same name runs the plan's units as Prefect task runs on the block's backend
  (:mod:`.planned`) and returns what the plain flow returns (``Workflow.meta["returns"]``);
* **otherwise** it runs the flow as it is and, unless ``record=False``, *traces* that run
  (:func:`~wisefuse_plugins.adapters.prefect.trace_flow`, the same single run): the IR
  goes to ``$WISEFUSE_HOME/traces/<flow>.ir.json`` (the latest, for ``wisefuse optimize``)
  and ``traces/<flow>/<parameters digest>.ir.json`` (found again by parameters), and the
  task timings into the profile archive. A missing plan, a plan that does not fit (stale
  code, other parameters, problems) and the recorded trace are logged at WARNING, with
  the reason and the fix, in the flow run's own logs (``prefect.flow_runs``: shown on the
  console and in Prefect's UI; the root logger's default level hides INFO).

Parameters: the IR is specialised to the traced parameters (they become constants in the
stages' bindings), so a plan only runs on a trace made with exactly the call's
parameters. A call with other parameters runs the plain flow and records a trace for
them (a warning says so); later calls with those parameters run under the plan, if it fits
that trace. A plan is never run on a trace of other values.

The return value: the traced run records which stages' outputs make up the returned
value (see :mod:`.returns`: the adapter does not record it, so the decorator finds it
during the traced run and adds it to the IR's ``meta``). A flow whose return value cannot
be rebuilt from stage outputs always runs plain, with a warning that says why; so does a
flow whose traced run completed with failed task runs (:func:`tolerated_failures`).

Runs Prefect's engine starts -- a deployment's, served with ``flow.serve()`` or picked up
by a worker (``flow.deploy()``, ``.to_deployment()``, ``prefect deploy``), ``run_deployment``
-- decide the same way inside the flow run the engine started (see :mod:`.engine`): under
a fitting plan its task runs are the plan's units; otherwise the reason is logged at
WARNING in its logs. They are not traced (the adapter traces a run it starts): record the
trace the plan needs by calling the flow directly with the same parameters.

Not traced either: ``return_state=True`` and ``wait_for`` calls and calls inside another
flow or task run (they run plain, saying so, or under a fitting plan). Async flows always
run plain, saying so at WARNING (the adapter traces sync flows only).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import json
import logging
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect.flows import Flow

from wisefuse_plugins.errors import WiseFuseError
from wisefuse_plugins.ir import IRError, Source, Workflow, code_hash
from wisefuse_plugins.ir.names import safe_name
from wisefuse_plugins.plan.schema import Plan, load_plan, plan_problems
from wisefuse_plugins.providers.prefect.engine import (
    engine_entry,
    engine_runs,
    run_plan,
    task_runner_problem,
)
from wisefuse_plugins.providers.prefect.planned import opaque_problem

__all__ = ["PlanCheck", "WiseFuseFlow", "wisefuse"]

logger = logging.getLogger("wisefuse_plugins.prefect")

#: Memory recorded for task timings of plain runs (the samples' key in the profile archive).
DEFAULT_TRACE_MEMORY_MB = 1769


@dataclass(frozen=True)
class _Config:
    slo: float | str | None
    plan: Plan | Path | None
    block: Any
    root: Path | None
    record: bool
    trace_memory_mb: int


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


def wisefuse(
    flow: Flow | None = None,
    *,
    slo: float | str | None = None,
    plan: Plan | str | Path | None = None,
    block: Any = None,
    root: str | Path | None = None,
    record: bool = True,
    trace_memory_mb: int = DEFAULT_TRACE_MEMORY_MB,
) -> Any:
    """Put ``@wisefuse(...)`` above ``@flow`` (see the module doc for what a call does).

    ``slo``: the latency objective to plan for (seconds or ``"1.5x"``), recorded with the
    trace and shown in the hint to run ``wisefuse optimize``. ``plan``: a plan file or
    :class:`Plan` (default: ``$WISEFUSE_HOME/plans/<flow>.plan.json``). ``block``: a
    ``WiseFuseLambda`` block or the name of a saved one (default: the local backend).
    ``root``: the folder task source paths are relative to (default: the flow's folder).
    ``record``: trace plain runs. ``trace_memory_mb``: the memory the task timings of
    plain runs are filed under in the profile archive.
    """
    config = _Config(
        slo=_checked_slo(slo),
        plan=Path(plan) if isinstance(plan, str | Path) else plan,
        block=block,
        root=Path(root).resolve() if root is not None else None,
        record=record,
        trace_memory_mb=trace_memory_mb,
    )

    def decorate(f: Flow) -> WiseFuseFlow:
        if not isinstance(f, Flow):
            name = getattr(f, "__qualname__", None)
            what = f"the plain function {name!r}" if callable(f) and name else repr(f)
            raise TypeError(
                f"@wisefuse decorates Prefect flows, not {what}: put @wisefuse(...) above @flow"
            )
        return WiseFuseFlow._wrap(f, config)

    return decorate(flow) if flow is not None else decorate


class WiseFuseFlow(Flow):
    """A Prefect flow whose runs run under a WiseFuse plan when one fits: called directly,
    as a subflow, or started by Prefect's engine from a deployment (see :mod:`.engine`).

    Everything else is the original flow's: ``fn`` (to every reader but the engine about to
    run this flow), name, options, ``serve``, ``deploy``. ``with_options`` returns a plain flow.
    """

    _wisefuse: _Config

    @classmethod
    def _wrap(cls, flow: Flow, config: _Config) -> WiseFuseFlow:
        new = flow.with_options()
        own = new.__dict__.pop("fn")
        new.__class__ = cls
        new._wisefuse = config  # type: ignore[attr-defined]
        new.fn = own  # type: ignore[method-assign]
        return new  # type: ignore[return-value]

    @property  # type: ignore[override]
    def fn(self) -> Callable:
        """The flow's function; to Prefect's engine about to run this flow object, the entry
        that runs the plan in that flow run (:func:`.engine.engine_entry`)."""
        own = self.__dict__["_wisefuse_fn"]
        # (a Lambda unit imports the flow file with stand-ins for Prefect: no engine there)
        if getattr(self, "isgenerator", False) or not engine_runs(self):
            return own
        if getattr(self, "isasync", False):
            return _telling(own, self._async_notice())
        return engine_entry(own, self._engine_run)

    @fn.setter
    def fn(self, value: Callable) -> None:
        self.__dict__["_wisefuse_fn"] = value

    @property
    def own_fn(self) -> Callable:
        """The decorated flow's own function, always."""
        return self.__dict__["_wisefuse_fn"]

    # ---------------------------------------------------------------- paths

    @property
    def file_name(self) -> str:
        """The flow's name as a file name (plans, traces and unit specs are filed under it)."""
        return safe_name(self.name)

    @property
    def code_root(self) -> Path:
        if self._wisefuse.root is not None:
            return self._wisefuse.root
        return Path(inspect.getsourcefile(self.own_fn) or ".").resolve().parent

    @property
    def plan_path(self) -> Path | None:
        """Where this flow's plan is read from (None: a Plan object was given)."""
        plan = self._wisefuse.plan
        if isinstance(plan, Plan):
            return None
        if plan is not None:
            return plan
        return _home() / "plans" / f"{self.file_name}.plan.json"

    def trace_paths(self, parameters: dict[str, Any] | None = None) -> tuple[Path, Path | None]:
        """The latest trace, and the trace for ``parameters``."""
        base = _home() / "traces"
        latest = base / f"{self.file_name}.ir.json"
        if parameters is None:
            return latest, None
        return latest, base / self.file_name / f"{parameters_digest(parameters)}.ir.json"

    def call_parameters(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The call's parameters as the trace records them (defaults applied, JSON values)."""
        bound = inspect.signature(self.own_fn).bind(*args, **kwargs)
        bound.apply_defaults()
        return {k: _jsonable(v) for k, v in bound.arguments.items()}

    # ---------------------------------------------------------------- deciding

    def check(self, *args: Any, **kwargs: Any) -> PlanCheck:
        """Would a call with these arguments run under a plan? (It reads files, runs nothing.)"""
        return self._decide(args, kwargs)

    def _decide(
        self, args: tuple, kwargs: dict[str, Any], untraced: str | None = None
    ) -> PlanCheck:
        """:meth:`check`, for a run that is traced unless ``untraced`` says why it is not:
        the reasons' fixes say how to get the trace the plan needs."""
        record = self._wisefuse.record and untraced is None
        why_not = untraced or "@wisefuse(record=False) records no trace"

        def retrace(what: str, then: str) -> str:
            return f"call the flow directly{what} once to record its trace ({why_not}); then {then}"

        plan_path = self.plan_path
        fix = self._fix_hint()
        plan = self._wisefuse.plan
        if not isinstance(plan, Plan):
            assert plan_path is not None
            if not plan_path.exists():
                return PlanCheck(
                    False,
                    f"no WiseFuse plan for flow {self.name!r} at {plan_path}: running it as it "
                    "is"
                    + (
                        " and recording its trace"
                        if record
                        else (f"; {untraced}" if untraced and self._wisefuse.record else "")
                    ),
                    logging.WARNING,
                    plan_path=plan_path,
                )
            try:
                plan = load_plan(plan_path)
            except (IRError, OSError) as err:
                return self._unfit(f"its plan {plan_path} cannot be read: {err}", fix, plan_path)
        params = self.call_parameters(*args, **kwargs)
        workflow, trace_path, others = self._trace_for(params, plan_path)
        if workflow is None:
            if others:
                old, path = others[0]
                changed = sorted(k for k in {*old, *params} if old.get(k) != params.get(k))
                why = (
                    f"its plan was made for a trace with other parameters ({path}; "
                    f"different: {', '.join(changed)}), and the plan's IR holds the traced "
                    "values"
                )
                return self._unfit(
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
            return self._unfit(
                "there is no recorded trace of it to check the plan against",
                "this run is traced; the next call runs under the plan if it fits"
                if record
                else retrace(
                    " with these parameters", "runs with them run under the plan if it fits"
                ),
                plan_path,
            )
        stale = self._changed_code(workflow)
        if stale:
            return self._unfit(
                f"its code changed since the trace {trace_path} (stages {', '.join(stale)})",
                f"this run records a new trace; then {fix}" if record else retrace("", fix),
                plan_path,
                trace_path,
            )
        problems = plan_problems(plan, workflow)
        if problems:
            shown = "; ".join(f"{where}: {what}" for where, what in problems[:4])
            more = f" (and {len(problems) - 4} more)" if len(problems) > 4 else ""
            return self._unfit(
                f"its plan does not fit its trace {trace_path}: {shown}{more}",
                fix,
                plan_path,
                trace_path,
            )
        opaque = opaque_problem(workflow) or tolerated_failures(workflow)
        if opaque is not None:
            return self._unfit(opaque, "keep the flow as it is", plan_path, trace_path)
        if not isinstance(workflow.meta.get("returns"), dict):
            why = workflow.meta.get("returns_problem") or "the trace does not say what it returns"
            return self._unfit(
                f"its return value cannot be rebuilt from the units' outputs: {why}",
                "return a task's output (or a list or dict of them) from the flow",
                plan_path,
                trace_path,
            )
        return PlanCheck(True, None, logging.DEBUG, workflow, plan, plan_path, trace_path)

    def _unfit(
        self, why: str, fix: str, plan_path: Path | None, trace_path: Path | None = None
    ) -> PlanCheck:
        return PlanCheck(
            False,
            f"flow {self.name!r} runs as it is, not under its WiseFuse plan: {why}. Fix: {fix}",
            logging.WARNING,
            plan_path=plan_path,
            trace_path=trace_path,
        )

    def _fix_hint(self) -> str:
        latest, _ = self.trace_paths()
        slo = f" --slo {self._wisefuse.slo}" if self._wisefuse.slo is not None else ""
        out = self.plan_path or "<the plan file you pass to @wisefuse>"
        return (
            f"re-plan from the latest trace: `wisefuse profile {latest}` then "
            f"`wisefuse optimize {latest}{slo} --out {out}`"
        )

    def _trace_for(
        self, params: dict[str, Any], plan_path: Path | None
    ) -> tuple[Workflow | None, Path | None, list[tuple[dict[str, Any], Path]]]:
        """The recorded trace with these parameters, and the parameters of the others seen."""
        latest, exact = self.trace_paths(params)
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
                if wf.name != self.name:
                    continue
                traced = wf.meta.get("parameters")
                if traced == params:
                    return wf, path, others
                if isinstance(traced, dict):
                    others.append((traced, path))
        return None, None, others

    def _changed_code(self, workflow: Workflow) -> list[str]:
        """Stages whose function's code hash is no longer the traced one."""
        changed = []
        for s in workflow.python_stages:
            if s.callable is None:
                continue
            try:
                now = code_hash(self._function(s.callable, workflow))
            except Exception:
                changed.append(s.id)
                continue
            if now != s.callable.code_hash:
                changed.append(s.id)
        return changed

    def _function(self, ref: Any, workflow: Workflow) -> Callable:
        from wisefuse_plugins.runtime.loader import load_callable, unwrap

        if ref.path == workflow.source.path:  # the flow's own file: already imported
            obj: Any = self.own_fn.__globals__
            with contextlib.suppress(KeyError, AttributeError):
                for i, part in enumerate(ref.qualname.split(".")):
                    obj = obj[part] if i == 0 else getattr(obj, part)
                fn = unwrap(obj)
                if Path(inspect.getsourcefile(fn) or "").is_file():
                    return fn
            # not from a file: a served flow is pickled into its run's process, with its
            # functions' code but not their source. Units import the file: check that.
        return load_callable(ref, workflow.source.root, verify_hash=False)

    # ---------------------------------------------------------------- calling

    def __call__(  # type: ignore[override]
        self, *args: Any, return_state: bool = False, wait_for: Any = None, **kwargs: Any
    ) -> Any:

        def plain(*args: Any, **kwargs: Any) -> Any:
            # a plain copy: its run's flow is not this object, so the engine calls the function
            copy = self.with_options()
            return copy(*args, return_state=return_state, wait_for=wait_for, **kwargs)

        if self.isasync and not self.isgenerator and not _being_traced():
            told = self.with_options()
            told.fn = _telling(self.own_fn, self._async_notice())
            return told(*args, return_state=return_state, wait_for=wait_for, **kwargs)
        if _being_traced() or self.isasync:
            return plain(*args, **kwargs)
        try:
            inspect.signature(self.own_fn).bind(*args, **kwargs)
        except TypeError:  # bad arguments: let Prefect report them as it always does
            return plain(*args, **kwargs)
        nested = _inside_a_run()
        untraced = None
        if self._wisefuse.record and (return_state or wait_for is not None or nested):
            untraced = "this call is not traced (return_state, wait_for or inside another run)"
        decision = self._decide(args, kwargs, untraced)
        if decision.planned:
            planned = self._planned_flow(decision)
            return planned(*args, return_state=return_state, wait_for=wait_for, **kwargs)
        notice = (decision.level, decision.reason) if decision.reason else None
        if not self._wisefuse.record or untraced is not None:
            if notice is None:
                return plain(*args, **kwargs)
            told = self.with_options()
            told.fn = _telling(self.own_fn, notice)
            return told(*args, return_state=return_state, wait_for=wait_for, **kwargs)
        return self._traced_call(args, kwargs, notice)

    def _engine_run(self, args: tuple, kwargs: dict[str, Any]) -> Any:
        """The body of a flow run Prefect's engine started (a deployment's, served or on a
        worker): the plan's units as this run's task runs when it fits, else the flow's
        own function, with the reason at WARNING in the run's logs. Such runs are not
        traced: the adapter traces a run it starts itself."""
        from prefect.logging import get_run_logger

        own = self.own_fn
        if _being_traced():
            return own(*args, **kwargs)
        untraced = (
            "runs that Prefect's engine starts from a deployment (served or on a worker) "
            "are not traced"
        )
        decision = self._decide(args, kwargs, untraced)
        reason = decision.reason
        if decision.planned:
            problem = task_runner_problem()
            if problem is None:
                assert decision.workflow is not None and decision.plan is not None
                return run_plan(
                    decision.workflow,
                    decision.plan,
                    self._block(),
                    namespace=self.name,
                    code_root=self._wisefuse.root or Path(decision.workflow.source.root),
                )
            reason = self._unfit(
                problem, "run it with the default task runner", decision.plan_path
            ).reason
        if reason:
            get_run_logger().warning("%s", reason)
        return own(*args, **kwargs)

    def _async_notice(self) -> tuple[int, str]:
        return (
            logging.WARNING,
            f"flow {self.name!r} runs as it is, not under a WiseFuse plan: it is async, and "
            "WiseFuse traces and plans sync flows only. Fix: keep it as it is, or make the "
            "flow function sync (`def`) to plan it",
        )

    def _block(self) -> Any:
        """The WiseFuseLambda block the units run on (loaded by name if given one)."""
        from wisefuse_plugins.providers.prefect.blocks import WiseFuseLambda

        block = self._wisefuse.block
        if block is None:
            return WiseFuseLambda()
        if isinstance(block, str):
            return WiseFuseLambda.load(block)
        return block

    def _planned_flow(self, decision: PlanCheck) -> Flow:
        """A flow of the same name whose body runs the plan's units as Prefect tasks."""
        from prefect.task_runners import ThreadPoolTaskRunner

        block = self._block()
        workflow, plan = decision.workflow, decision.plan
        assert workflow is not None and plan is not None
        name, root = self.name, self._wisefuse.root or Path(workflow.source.root)

        @functools.wraps(self.own_fn)
        def body(*args: Any, **kwargs: Any) -> Any:
            return run_plan(workflow, plan, block, namespace=name, code_root=root)

        planned = self.with_options(
            task_runner=ThreadPoolTaskRunner(max_workers=block.concurrency_limit)
        )
        planned.fn = body
        return planned

    def _traced_call(
        self, args: tuple, kwargs: dict[str, Any], notice: tuple[int, str] | None = None
    ) -> Any:
        """Run the flow as it is, once, traced; return what ``flow()`` returns (or raise).

        ``notice``: (level, message) to log in the flow run's logs as it starts."""
        from wisefuse_plugins.adapters.prefect import trace_flow

        box: dict[str, Any] = {}

        def keep_state(flow: Any, flow_run: Any, state: Any) -> None:
            box["state"] = state

        traced = self.with_options(
            on_completion=[*self.on_completion_hooks, keep_state],
            on_failure=[*self.on_failure_hooks, keep_state],
            on_crashed=[*self.on_crashed_hooks, keep_state],
            on_cancellation=[*self.on_cancellation_hooks, keep_state],
        )
        body = _telling(self.own_fn, notice) if notice else self.own_fn
        traced.fn = _returning(body, box, self.own_fn)
        try:
            workflow = trace_flow(traced, *args, root=self.code_root, **kwargs)
        except Exception as err:
            state = box.get("state")
            if state is None:
                raise
            if state.is_completed():  # the flow ran; only the trace failed
                _tell(
                    logging.WARNING,
                    f"flow {self.name!r} ran, but its trace could not be recorded: {err}",
                    state.state_details.flow_run_id,
                    self,
                )
            return state.result()  # raises the flow's own error when it failed
        value = box["state"].result()
        try:
            self._record(workflow, box, args, kwargs)
        except Exception as err:  # recording must never fail a run that succeeded
            _tell(
                logging.WARNING,
                f"flow {self.name!r} ran, but its trace could not be recorded: {err}",
                box["state"].state_details.flow_run_id,
                self,
            )
        return value

    # ---------------------------------------------------------------- recording

    def _record(
        self, workflow: Workflow, box: dict[str, Any], args: tuple, kwargs: dict[str, Any]
    ) -> None:
        from wisefuse_plugins.ir import dump
        from wisefuse_plugins.providers.prefect.returns import ReturnsUnknown, resolve_runs

        meta = dict(workflow.meta)
        if "returns" in box:
            try:
                order = box.get("run_order")
                runs = None if order is not None else _task_runs(meta.get("flow_run_id"))
                meta["returns"] = resolve_runs(
                    box["returns"], workflow, order=order, task_runs=runs
                )
            except ReturnsUnknown as err:
                meta["returns_problem"] = str(err)
        else:
            meta["returns_problem"] = box.get("returns_problem", "the flow did not return")
        if self._wisefuse.slo is not None:
            meta["slo"] = self._wisefuse.slo
        flow_file = Path(inspect.getsourcefile(self.own_fn) or "").resolve()
        root = self.code_root
        rel = flow_file.relative_to(root).as_posix() if flow_file.is_relative_to(root) else None
        data = workflow.model_dump()
        data.update(
            meta=meta,
            source=Source(
                framework="prefect", root=str(root), path=rel, entry=self.own_fn.__name__
            ),
        )
        workflow = Workflow.model_validate(data)

        params = meta.get("parameters") or self.call_parameters(*args, **kwargs)
        latest, exact = self.trace_paths(params)
        assert exact is not None
        exact.parent.mkdir(parents=True, exist_ok=True)
        dump(workflow, exact)
        dump(workflow, latest)
        archived = self._archive(workflow)
        _tell(
            logging.WARNING,
            f"recorded the trace of flow {self.name!r} at {latest} "
            f"({len(workflow.stages)} stages){archived}; to plan it: "
            + self._fix_hint().removeprefix("re-plan from the latest trace: "),
            box["state"].state_details.flow_run_id,
            self,
        )

    def _archive(self, workflow: Workflow) -> str:
        """File the traced run's task timings in the profile archive (when it exists)."""
        try:
            from wisefuse_plugins.profiles.archive import Sample, open_archive
        except ImportError:
            return " (no profile archive in this version: the timings stay in the IR's meta)"
        run_id = workflow.meta.get("flow_run_id", "?")
        samples = [
            Sample(
                workflow=workflow.name,
                stage=s.id,
                code_hash=s.callable.code_hash,
                memory_mb=self._wisefuse.trace_memory_mb,
                duration_ms=float(ms),
                backend="prefect",
                instance=i if s.mapped else None,
                source="prefect",
                ref=f"prefect:{run_id}:{s.id}:{i}",
            )
            for s in workflow.python_stages
            if s.callable is not None
            for i, ms in enumerate(s.meta.get("observed_ms") or [])  # type: ignore[arg-type]
            if isinstance(ms, int | float) and ms >= 0
        ]
        with open_archive() as archive:
            added = archive.add(samples)
            shown = archive._shown_url()
        return f" and {added} task timings in the profile archive {shown}"


# =========================================================================== helpers

#: Prefect state types of a task run that did not complete.
_FAILED_STATES = ("FAILED", "CRASHED", "CANCELLED")


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


def _checked_slo(slo: Any) -> float | str | None:
    """``slo`` as ``wisefuse optimize --slo`` reads it, or an error now: at decoration time,
    not in the hint a user copies after the first run."""
    if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        return slo  # a unit imports the flow file for its tasks: nothing plans there
    from wisefuse_plugins.optimizer.space import SLOError, parse_slo

    if slo is None:
        return None
    hint = "give seconds (12.5, or '12.5s') or a multiple of User-Max's P95 ('1.5x')"
    if not isinstance(slo, int | float | str) or isinstance(slo, bool):
        raise WiseFuseError(
            f"@wisefuse(slo={slo!r}): an SLO is a number or a string, not {type(slo).__name__}",
            hint=hint,
        )
    try:
        seconds = parse_slo(slo, 1.0)  # a relative SLO: only its form is checked here
    except SLOError as err:
        raise WiseFuseError(f"@wisefuse(slo={slo!r}): {err.message}", hint=hint) from None
    if not math.isfinite(seconds):
        raise WiseFuseError(f"@wisefuse(slo={slo!r}): the SLO must be finite", hint=hint)
    return slo.strip() if isinstance(slo, str) else slo


def _home() -> Path:
    from wisefuse_plugins.runtime.store import wisefuse_home

    return wisefuse_home()


def parameters_digest(parameters: dict[str, Any]) -> str:
    """A short, stable name for a set of parameter values."""
    text = json.dumps(parameters, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _jsonable(value: Any) -> Any:
    """The value as the Prefect adapter records parameters: a JSON copy, else its repr."""
    try:
        return json.loads(json.dumps(value, allow_nan=False)) if _plain_json(value) else repr(value)
    except (TypeError, ValueError):
        return repr(value)


def _plain_json(value: Any) -> bool:
    if value is None or type(value) in (bool, str, int, float):
        return True
    if type(value) is list:
        return all(_plain_json(v) for v in value)
    if type(value) is dict:
        return all(isinstance(k, str) and _plain_json(v) for k, v in value.items())
    return False


def _being_traced() -> bool:
    """True while the Prefect adapter traces a run here: then a decorated flow is plain.

    A small cooperation with :mod:`wisefuse_plugins.adapters.prefect` (its tracer's context
    variable), so that tracing a decorated flow traces the flow, not its plan's units.
    """
    adapter = sys.modules.get("wisefuse_plugins.adapters.prefect.patch")
    active = getattr(adapter, "_ACTIVE", None)
    return active is not None and active.get() is not None


def _inside_a_run() -> bool:
    from prefect.context import FlowRunContext, TaskRunContext

    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


def _tell(level: int, message: str, flow_run_id: Any = None, flow: Any = None) -> None:
    """Log ``message`` in the flow run's logs (console, API, UI), else on this module's logger.

    After a run has finished there is no run context: the run's id names it."""
    if flow_run_id is not None:
        from prefect.logging.loggers import flow_run_logger

        flow_run_logger(flow_run_id=flow_run_id, flow=flow).log(level, message)
    else:
        logger.log(level, message)


def _telling(fn: Callable, notice: tuple[int, str]) -> Callable:
    """``fn``, logging ``notice`` (level, message) in the flow run's logs as the run starts
    (a coroutine function for a coroutine function: Prefect awaits it)."""
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def awaited(*args: Any, **kwargs: Any) -> Any:
            from prefect.logging import get_run_logger

            get_run_logger().log(*notice)
            return await fn(*args, **kwargs)

        return awaited

    @functools.wraps(fn)
    def body(*args: Any, **kwargs: Any) -> Any:
        from prefect.logging import get_run_logger

        get_run_logger().log(*notice)
        return fn(*args, **kwargs)

    return body


def _returning(fn: Callable, box: dict[str, Any], source: Callable | None = None) -> Callable:
    """``fn``, noting in ``box`` what its return value is made of (inside the flow run);
    ``source``: the function whose code makes that value (default ``fn``)."""
    from wisefuse_plugins.providers.prefect.returns import (
        ReturnsUnknown,
        describe_return,
        run_order_from_tracer,
    )

    @functools.wraps(fn)
    def body(*args: Any, **kwargs: Any) -> Any:
        value = fn(*args, **kwargs)
        box.pop("returns", None)
        try:
            box["run_order"] = run_order_from_tracer()
            box["returns"] = describe_return(value, source or fn)
        except ReturnsUnknown as err:
            box["returns_problem"] = str(err)
        except Exception as err:
            box["returns_problem"] = f"the returned value could not be analysed: {err}"
        return value

    return body


def _task_runs(flow_run_id: Any) -> list[Any]:
    """Every task run of one flow run (paged), from the Prefect API."""
    if not flow_run_id:
        raise WiseFuseError("the trace has no flow run id")
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    runs: list[Any] = []
    with get_client(sync_client=True) as client:
        while True:
            page = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                limit=200,
                offset=len(runs),
            )
            runs += page
            if len(page) < 200:
                return runs
