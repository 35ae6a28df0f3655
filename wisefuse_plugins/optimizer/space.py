"""The search space and the scoring every planner shares.

A candidate plan is scored by ``(SLO violation, cost)`` compared lexicographically: a plan
that misses the SLO by less is better, and among plans that meet it the cheaper one is.
Hard constraints are checked here once for all planners: memory within Lambda's range and
above what the unit's stages were seen to use, and a predicted P99 invocation time well
inside the 900 s timeout.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from wisefuse_plugins.errors import WiseFuseError
from wisefuse_plugins.ir import Workflow
from wisefuse_plugins.ir.names import safe_name
from wisefuse_plugins.model.predict import Model, Prediction
from wisefuse_plugins.optimizer.menu import TIMEOUT_MARGIN, Menu, build_menu, useful_memories
from wisefuse_plugins.plan.limits import ARCHITECTURES, MAX_MEMORY_MB, MAX_TIMEOUT_S, vcpus
from wisefuse_plugins.plan.lower import expected_instances
from wisefuse_plugins.plan.schema import Plan, Unit, hashes_of, is_bundled_unit

MEMORY_GRID = (
    128,
    256,
    512,
    768,
    1024,
    1536,
    1769,
    2048,
    2560,
    3008,
    3538,
    4096,
    5307,
    6144,
    7076,
    8192,
    8845,
    10240,
)
"""Memory sizes searched (MB): powers of two, the whole-vCPU points (1769 x k) and Lambda's max."""


MEMORY_HEADROOM = 1.1
"""A unit's memory must exceed the largest peak seen in its stages by 10%."""


class SLOError(WiseFuseError):
    """An SLO that cannot be parsed."""


class ArchError(WiseFuseError):
    """Architectures asked for that the workflow's profiles do not cover."""


def profiled_arches(model: Model, workflow: Workflow) -> tuple[str, ...]:
    """The architectures every Python stage of ``workflow`` has profiles for, in
    :data:`~wisefuse_plugins.plan.limits.ARCHITECTURES` order."""
    available = set(model.arches(workflow))
    return tuple(a for a in ARCHITECTURES if a in available)


def is_relative(slo: float | str) -> bool:
    """Whether ``slo`` is a multiple of User-Max's P95 (``"1.5x"``), not seconds."""
    return isinstance(slo, str) and slo.strip().lower().endswith("x")


def parse_slo(slo: float | str, user_max_p95_s: float | None = None) -> float:
    """Seconds from ``12.5``, ``"12.5s"`` or ``"1.5x"`` (a multiple of User-Max P95)."""
    if isinstance(slo, int | float) and not isinstance(slo, bool):
        value = float(slo)
    else:
        text = str(slo).strip().lower()
        try:
            if is_relative(text):
                if user_max_p95_s is None:
                    raise SLOError("a relative SLO needs the User-Max P95")
                value = float(text[:-1]) * user_max_p95_s
            else:
                value = float(text.removesuffix("s"))
        except ValueError:
            raise SLOError(
                f"cannot read the SLO {slo!r}",
                hint="give seconds (12.5 or 12.5s) or a multiple of User-Max P95 (1.5x)",
            ) from None
    if math.isnan(value) or value <= 0:
        raise SLOError(f"the SLO must be a positive duration, got {slo!r}")
    return value


def unit_id(stages: list[str], taken: set[str] | None = None) -> str:
    """A readable, Lambda-safe id for a unit of ``stages`` (first and last stage)."""
    raw = stages[0] if len(stages) == 1 else f"{stages[0]}--{stages[-1]}"
    return safe_name(raw, taken or set())


@dataclass
class Score:
    p95_s: float
    cost_usd: float
    violation_s: float
    feasible: bool  # hard constraints hold
    prediction: Prediction

    def key(self) -> tuple[float, float, float]:
        # infeasible plans sort last; then by SLO violation; then by cost
        return (0.0 if self.feasible else 1.0, round(self.violation_s, 9), self.cost_usd)


@dataclass
class Space:
    """A workflow, its model and the SLO, with a cache of scored plans.

    Searches do not change a space: a different SLO or grid is another space
    (:meth:`with_slo`, :meth:`variant`), with caches of its own.
    ``arches``: the architectures to plan for; each must have profiles for every Python
    stage (:class:`ArchError` otherwise). ``None``: x86_64, or when x86_64 has no
    profiles, every profiled one.
    """

    workflow: Workflow
    model: Model
    slo_s: float = math.inf
    memory_grid: tuple[int, ...] = MEMORY_GRID
    arches: tuple[str, ...] | None = None
    bundle_limit: int = 24  # bundle sizes tried per mapped unit (all of them when N is small)
    prune_memory: bool = False  # skip memory beyond the vCPUs a unit can use (large plans)
    #: no unit below the smallest memory its stages were profiled at: below it a stage
    #: slows by more than its CPU share says (memory pressure, the runtime's own work),
    #: which the laws fitted above it cannot know
    profiled_floor: bool = False
    _cache: dict[tuple, Score] = field(default_factory=dict)
    _menus: dict[tuple[str, ...], Menu] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.model.check(self.workflow)
        available = set(self.model.arches(self.workflow))
        if self.arches is None:
            self.arches = ("x86_64",) if "x86_64" in available else tuple(sorted(available))
            return
        missing = [a for a in self.arches if a not in available]
        if missing:
            raise ArchError(
                f"no profiles on {', '.join(missing)} for every Python stage of "
                f"{self.workflow.name!r} (profiled on every stage: "
                f"{', '.join(sorted(available)) or 'none'})",
                hint="profile the stages on that architecture, or leave it out of the arches asked for",
            )

    def with_slo(self, slo_s: float) -> Space:
        """This space for another SLO: a new one with an empty score cache (scores are per
        SLO); the menus, which do not depend on the SLO, are shared."""
        return dataclasses.replace(self, slo_s=slo_s, _cache={})

    def variant(self, **changes) -> Space:
        """A new space with ``changes`` (model, grids, ...) and empty caches: scores and
        menus depend on them."""
        return dataclasses.replace(self, **changes, _cache={}, _menus={})

    # -- constraints ----------------------------------------------------------------------

    def min_memory(self, stages: list[str]) -> int:
        """The smallest grid memory above the stages' observed peak (with headroom), and
        not below their smallest profiled size with :attr:`profiled_floor`."""
        peak = max((self.model.profiles[s].peak_memory_mb for s in stages), default=0.0)
        floor = peak * MEMORY_HEADROOM
        if self.profiled_floor:
            floor = max(floor, max((min(self._profiled_sizes(s)) for s in stages), default=0))
        for m in self.memory_grid:
            if m >= floor:
                return m
        return MAX_MEMORY_MB

    def _profiled_sizes(self, sid: str) -> list[int]:
        return [m for _, m in self.model.profiles[sid].samples] or [0]

    def memories(self, stages: list[str]) -> list[int]:
        """Grid sizes a unit of ``stages`` may take: from :meth:`min_memory` up, and with
        :attr:`profiled_floor` no more vCPUs than the platform gives (the local backend:
        the host's cores) unless the stages were profiled above that: there a share is
        emulated, and the model only knows the emulation where it was measured (3 BLAS
        threads on a 2-core host measured 31% slower than the model said, from profiles at
        2 vCPUs and less)."""
        floor = self.min_memory(stages)
        sizes = [m for m in self.memory_grid if m >= floor]
        cap = self.model.platform.max_vcpus if self.profiled_floor else None
        if cap is not None:
            cap = max(cap, min(vcpus(max(self._profiled_sizes(s))) for s in stages))
            sizes = [m for m in sizes if vcpus(m) <= cap + 1e-9] or sizes[:1]
        return sizes

    def feasible(self, plan: Plan, pred: Prediction) -> bool:
        limit_ms = TIMEOUT_MARGIN * MAX_TIMEOUT_S * 1000
        for unit, up in zip(plan.units, _in_plan_order(plan, pred), strict=True):
            if unit.memory_mb < self.min_memory(unit.stages) or up.p99_invocation_ms > limit_ms:
                return False
        return True

    # -- scoring --------------------------------------------------------------------------

    def score(self, plan: Plan) -> Score:
        key = (signature(plan), self.slo_s)  # the SLO too: it may be set after a first score
        cached = self._cache.get(key)
        if cached is None:
            pred = self.model.predict(self.workflow, plan)
            cached = Score(
                pred.p95_s,
                pred.cost_usd,
                max(0.0, pred.p95_s - self.slo_s),
                self.feasible(plan, pred),
                pred,
            )
            self._cache[key] = cached
        return cached

    def better(self, a: Plan, b: Plan) -> bool:
        """True when ``a`` scores strictly better than ``b``."""
        return self.score(a).key() < self.score(b).key()

    def plan(self, units: list[Unit], **meta) -> Plan:
        return Plan(
            workflow=self.workflow.name,
            units=units,
            code_hashes=hashes_of(self.workflow),
            meta=meta,
        )

    def bundle_sizes(self, n: int) -> list[int]:
        return bundle_candidates(n, self.bundle_limit)

    def menu(self, stages: tuple[str, ...]) -> Menu:
        """The Pareto set of (bundle size, arch, memory) for a unit of ``stages`` (cached)."""
        key = tuple(stages)
        menu = self._menus.get(key)
        if menu is None:
            n = self.workflow.stage(key[0]).parallelism
            memories = self.memories(list(key))
            menu = build_menu(
                self.model,
                self.workflow,
                key,
                (lambda b: useful_memories(memories, self._busy_vcpus(key, b)))
                if self.prune_memory
                else memories,
                self.bundle_sizes(n),
                self.arches,
            )
            self._menus[key] = menu
        return menu

    def _busy_vcpus(self, stages: tuple[str, ...], bundle: int) -> float:
        """vCPUs a unit of ``stages`` can keep busy: jobs at once x threads per job."""
        wf = self.workflow
        threads = max(self.model.stage_fit(s, a).threads for s in stages for a in self.arches)
        if all(wf.stage(s).mapped for s in stages):
            width = min(bundle, wf.stage(stages[0]).parallelism)
        else:
            width = max(wf.stage(s).parallelism for s in stages)
        return float(width * threads)

    def bundled(self, unit: Unit) -> bool:
        return is_bundled_unit(unit, self.workflow)

    def instances(self, unit: Unit) -> int:
        """Instances of bundled ``unit``, as the lowering counts them before a run."""
        return expected_instances(self.workflow, unit)


def _in_plan_order(plan: Plan, pred: Prediction):
    by_id = {u.unit: u for u in pred.units}
    return [by_id[u.id] for u in plan.units]


def signature(plan: Plan) -> tuple:
    return tuple(sorted((tuple(u.stages), u.bundle_size, u.memory_mb, u.arch) for u in plan.units))


def bundle_candidates(n: int, limit: int = 24) -> list[int]:
    """Bundle sizes that give distinct invocation counts ``ceil(n / b)`` (all of them for
    small ``n``; a geometric subset of about ``limit`` for large ``n``)."""
    sizes = sorted({math.ceil(n / k) for k in range(1, n + 1)})
    if len(sizes) <= limit:
        return sizes
    picks = {sizes[0], sizes[-1]}
    for x in (sizes[0] * (sizes[-1] / sizes[0]) ** (i / (limit - 1)) for i in range(limit)):
        picks.add(min(sizes, key=lambda s: abs(s - x)))
    return sorted(picks)
