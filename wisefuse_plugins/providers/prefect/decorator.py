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

The pieces: :mod:`.plancheck` decides a call (:class:`PlanCheck`), :mod:`.tracing` runs
and records a traced call, :mod:`.notices` logs in the flow run and tells where a call
runs, :mod:`.engine` is the entry of runs Prefect's engine starts; this module is the
decorator and the flow class that wires them together.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect.flows import Flow

from wisefuse_plugins.errors import WiseFuseError
from wisefuse_plugins.ir.names import safe_name
from wisefuse_plugins.plan.schema import Plan
from wisefuse_plugins.providers.prefect.engine import (
    engine_entry,
    engine_runs,
    run_plan,
    task_runner_problem,
)
from wisefuse_plugins.providers.prefect.notices import being_traced, inside_a_run, telling
from wisefuse_plugins.providers.prefect.notices import logger as logger  # (re-exported)
from wisefuse_plugins.providers.prefect.plancheck import PlanCheck, decide, unfit
from wisefuse_plugins.providers.prefect.plancheck import (  # (re-exported)
    tolerated_failures as tolerated_failures,
)
from wisefuse_plugins.providers.prefect.tracing import jsonable, parameters_digest, traced_call

__all__ = ["PlanCheck", "WiseFuseFlow", "wisefuse"]

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
    run this flow), name, options, ``serve``, ``deploy``. ``with_options`` keeps the
    decorator (:meth:`plain` gives the undecorated copy).
    """

    _wisefuse: _Config

    @classmethod
    def _wrap(cls, flow: Flow, config: _Config) -> WiseFuseFlow:
        new = Flow.with_options(flow)  # a plain copy, whatever ``flow`` is
        own = new.__dict__.pop("fn")
        new.__class__ = cls
        new._wisefuse = config  # type: ignore[attr-defined]
        new.fn = own  # type: ignore[method-assign]
        return new  # type: ignore[return-value]

    def with_options(self, **options: Any) -> WiseFuseFlow:  # type: ignore[override]
        """Prefect's ``with_options``, keeping the decorator: the copy's calls and
        deployment runs run under a plan too (the plan and traces of its own name, when
        ``name=`` changes it), as a user of ``flow.with_options(retries=2)`` expects."""
        return WiseFuseFlow._wrap(self.plain(**options), self._wisefuse)

    def plain(self, **options: Any) -> Flow:
        """A plain Prefect flow of this flow's function and options (``options`` changed):
        what runs when a call does not run under the plan."""
        return Flow.with_options(self, **options)

    @property  # type: ignore[override]
    def fn(self) -> Callable:
        """The flow's function; to Prefect's engine about to run this flow object, the entry
        that runs the plan in that flow run (:func:`.engine.engine_entry`)."""
        own = self.__dict__["_wisefuse_fn"]
        # (a Lambda unit imports the flow file with stand-ins for Prefect: no engine there)
        if getattr(self, "isgenerator", False) or not engine_runs(self):
            return own
        if getattr(self, "isasync", False):
            return telling(own, self._async_notice())
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
        return {k: jsonable(v) for k, v in bound.arguments.items()}

    # ---------------------------------------------------------------- deciding

    def check(self, *args: Any, **kwargs: Any) -> PlanCheck:
        """Would a call with these arguments run under a plan? (It reads files, runs nothing.)"""
        return decide(self, args, kwargs)

    def __call__(  # type: ignore[override]
        self, *args: Any, return_state: bool = False, wait_for: Any = None, **kwargs: Any
    ) -> Any:

        def plain(*args: Any, **kwargs: Any) -> Any:
            # a plain copy: its run's flow is not this object, so the engine calls the function
            copy = self.plain()
            return copy(*args, return_state=return_state, wait_for=wait_for, **kwargs)

        if self.isasync and not self.isgenerator and not being_traced():
            told = self.plain()
            told.fn = telling(self.own_fn, self._async_notice())
            return told(*args, return_state=return_state, wait_for=wait_for, **kwargs)
        if being_traced() or self.isasync:
            return plain(*args, **kwargs)
        try:
            inspect.signature(self.own_fn).bind(*args, **kwargs)
        except TypeError:  # bad arguments: let Prefect report them as it always does
            return plain(*args, **kwargs)
        nested = inside_a_run()
        untraced = None
        if self._wisefuse.record and (return_state or wait_for is not None or nested):
            untraced = "this call is not traced (return_state, wait_for or inside another run)"
        decision = decide(self, args, kwargs, untraced)
        if decision.planned:
            planned = self._planned_flow(decision)
            return planned(*args, return_state=return_state, wait_for=wait_for, **kwargs)
        notice = (decision.level, decision.reason) if decision.reason else None
        if not self._wisefuse.record or untraced is not None:
            if notice is None:
                return plain(*args, **kwargs)
            told = self.plain()
            told.fn = telling(self.own_fn, notice)
            return told(*args, return_state=return_state, wait_for=wait_for, **kwargs)
        return traced_call(self, args, kwargs, notice)

    def _engine_run(self, args: tuple, kwargs: dict[str, Any]) -> Any:
        """The body of a flow run Prefect's engine started (a deployment's, served or on a
        worker): the plan's units as this run's task runs when it fits, else the flow's
        own function, with the reason at WARNING in the run's logs. Such runs are not
        traced: the adapter traces a run it starts itself."""
        from prefect.logging import get_run_logger

        own = self.own_fn
        if being_traced():
            return own(*args, **kwargs)
        untraced = (
            "runs that Prefect's engine starts from a deployment (served or on a worker) "
            "are not traced"
        )
        decision = decide(self, args, kwargs, untraced)
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
            reason = unfit(
                self.name, problem, "run it with the default task runner", decision.plan_path
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

        planned = self.plain(task_runner=ThreadPoolTaskRunner(max_workers=block.concurrency_limit))
        planned.fn = body
        return planned


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
