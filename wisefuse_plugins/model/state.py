"""What every part of the model reads: the profiles and constants it was built from, its
common random numbers, and caches of what it derived from them.

The model's functions (:mod:`.stage`, :mod:`.traffic`, :mod:`.shape`, :mod:`.invocation`,
:mod:`.cost`, :mod:`.predict`) take a :class:`ModelState`;
:class:`~wisefuse_plugins.model.predict.Model` is one, with those functions as methods.
The planner asks for the same stage and unit many times, so each function keeps what it
computed in :class:`Caches`, keyed by the workflow's ``id`` (kept alive in
``Caches.known`` so that no other workflow takes the same ``id``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from wisefuse_plugins.errors import WiseFuseError
from wisefuse_plugins.ir import Workflow
from wisefuse_plugins.model.profile import Platform, StageProfile
from wisefuse_plugins.model.scaling import Fit
from wisefuse_plugins.plan.pricing import DEFAULT, Pricing
from wisefuse_plugins.plan.schema import Unit

Corrections = dict[tuple[tuple[str, ...], int, str], dict[int, float]]
"""(stages, bundle size, arch) -> {memory MB: measured / predicted invocation time}."""


class ModelError(WiseFuseError):
    """The model cannot predict a plan (missing or stale profiles, impossible memory)."""


@dataclass
class Caches:
    """What the model derived, per stage or unit; the first three depend on the profiles
    only and are shared by models of the same profiles (:meth:`ModelState.share_fits`)."""

    fits: dict[tuple[str, str, bool], Fit] = field(default_factory=dict)
    parts: dict[tuple[str, int, str, bool], tuple[np.ndarray, np.ndarray, int]] = field(
        default_factory=dict
    )
    cpu_means: dict[tuple, float] = field(default_factory=dict)  # mean of parts' CPU, same key
    fighting: dict[str, bool] = field(default_factory=dict)  # parallel fraction < 0 somewhere
    levels: dict[tuple[str, int, int], np.ndarray] = field(default_factory=dict)
    invocations: dict[tuple, Any] = field(default_factory=dict)  # PredictedInvocation(s)
    known: dict[int, Workflow] = field(default_factory=dict)
    ranks: dict[int, dict[str, int]] = field(default_factory=dict)
    durations: dict[tuple, tuple[np.ndarray, int]] = field(default_factory=dict)
    io: dict[tuple, Any] = field(default_factory=dict)  # what of a unit does not depend on memory
    costs: dict[tuple, float] = field(default_factory=dict)
    by_stage: dict[int, dict[tuple[str, bool], float]] = field(default_factory=dict)

    def remember(self, workflow: Workflow) -> None:
        """Keep ``workflow`` alive so that its ``id`` in the keys is not reused."""
        self.known.setdefault(id(workflow), workflow)


class ModelState:
    """A performance and cost model's inputs, random numbers and caches.

    Parameters
    ----------
    profiles
        ``stage id -> StageProfile`` for every Python stage of the workflows to predict.
    platform
        Store, orchestration and cold-start constants of the target.
    pricing
        Prices (:data:`wisefuse_plugins.plan.pricing.DEFAULT`).
    draws
        Monte Carlo draws per prediction (1000 gives P99 within a few percent).
    law
        Force a scaling law (``"vcpu"`` or ``"exp"``); default: the better by held-out error.
    corrections
        Measured-over-predicted factors of units' invocation times, from runs of plans
        (:mod:`.correct`; which unit takes which factor: :func:`.correction.correction`).
        Empty: the profiles alone.
    """

    def __init__(
        self,
        profiles: dict[str, StageProfile],
        platform: Platform | None = None,
        pricing: Pricing = DEFAULT,
        *,
        draws: int = 1000,
        seed: int = 0,
        law: str | None = None,
        corrections: Corrections | None = None,
    ) -> None:
        self.profiles = profiles
        self.corrections: Corrections = dict(corrections or {})
        self.platform = platform or Platform()
        self.pricing = pricing
        self.draws = draws
        self.seed = seed
        self.law = law
        self.cache = Caches()
        rng = np.random.default_rng(seed)
        self.order_u = rng.random(draws)  # uniforms for order statistics (max of n)
        self.normal_z = rng.standard_normal(draws)  # for large-bundle sums
        self.cold_u = rng.random(draws)  # which draws start cold

    def correction(self, unit: Unit, workflow: Workflow) -> float:
        """The factor measured runs give ``unit``'s invocation time: the one question the
        model's functions ask back through the model, so that a model can answer it its
        own way (:class:`~wisefuse_plugins.model.predict.Model` answers with
        :func:`.correction.correction`; a test's plant with the slowdown it simulates)."""
        raise NotImplementedError(f"{type(self).__name__} does not say how units are corrected")

    def share_fits(self, other: ModelState) -> None:
        """Use ``other``'s fitted laws and parts (the same profiles: the slow part of
        building a model is not redone)."""
        self.cache.fits = other.cache.fits
        self.cache.parts = other.cache.parts
        self.cache.cpu_means = other.cache.cpu_means


def unit_key(workflow: Workflow, unit: Unit) -> tuple:
    """Cache key of a unit of a workflow: what its predicted invocations depend on."""
    return (id(workflow), tuple(unit.stages), unit.memory_mb, unit.arch, unit.bundle_size)
