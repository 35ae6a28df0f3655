"""From measured samples to what the model is built from: one
:class:`~wisefuse_plugins.model.profile.StageProfile` per stage, and summaries per setting.

The samples come from the profile archive (``profiles.archive.Sample`` rows of a
workflow's current code); these functions read only the fields of :class:`Measured`, so
the statistics live with the model and the archive only stores and queries.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from wisefuse_plugins.model.parallel import estimate, setting_cores
from wisefuse_plugins.model.profile import StageProfile
from wisefuse_plugins.model.skew import instance_factors, normalised


class Measured(Protocol):
    """One run of one stage instance, as the archive records it."""

    @property
    def stage(self) -> str: ...
    @property
    def code_hash(self) -> str: ...
    @property
    def arch(self) -> str: ...
    @property
    def memory_mb(self) -> int: ...
    @property
    def bundle_size(self) -> int: ...
    @property
    def instance(self) -> int | None: ...
    @property
    def duration_ms(self) -> float: ...
    @property
    def init_ms(self) -> float | None: ...
    @property
    def cold(self) -> bool: ...
    @property
    def output_bytes(self) -> int | None: ...
    @property
    def peak_memory_mb(self) -> float | None: ...


@dataclass(frozen=True)
class Stats:
    """Summary of the samples of one (stage, memory, bundle) setting."""

    count: int
    p50_ms: float
    p95_ms: float
    mean_ms: float


def stage_profiles(samples: Iterable[Measured]) -> dict[str, StageProfile]:
    """One :class:`StageProfile` per stage with samples at bundle size 1.

    Durations are those of bundle size 1 (the model composes bundles itself); at each
    (arch, memory) warm samples are used when there are any, as the model adds cold
    starts itself (``init_ms``: the median of the cold samples' init). Samples of larger
    bundles give the stage's ``parallel_fraction`` (:mod:`.parallel`). ``output_bytes``
    is the mean per instance; ``peak_memory_mb`` the most any invocation used. Stages
    without samples at bundle size 1 are absent. ``code_hash`` is the first sample's:
    pass the samples of one version of the code.
    """
    by_stage: dict[str, list[Measured]] = defaultdict(list)
    for s in samples:
        by_stage[s.stage].append(s)
    profiles = {}
    for sid, rows in by_stage.items():
        single = [r for r in rows if r.bundle_size == 1]
        if not single:
            continue
        groups: dict[tuple[str, int], list[Measured]] = defaultdict(list)
        for r in single:
            groups[r.arch, r.memory_mb].append(r)
        durations = {}
        per_instance: dict[tuple[str, int], dict[int, np.ndarray]] = {}
        for key, group in groups.items():
            kept = [r for r in group if not r.cold] or group
            durations[key] = np.asarray([r.duration_ms for r in kept], dtype=float)
            by_index: dict[int, list[float]] = defaultdict(list)
            for r in kept:
                if r.instance is not None:
                    by_index[r.instance].append(r.duration_ms)
            per_instance[key] = {i: np.asarray(v) for i, v in by_index.items()}
        factors = instance_factors(per_instance)
        phi, by_cores = parallel_fractions(rows)
        outputs = [r.output_bytes for r in rows if r.output_bytes is not None]
        peaks = [r.peak_memory_mb for r in rows if r.peak_memory_mb is not None]
        inits = [r.init_ms for r in rows if r.cold and r.init_ms is not None]
        profiles[sid] = StageProfile(
            stage=sid,
            code_hash=rows[0].code_hash,
            samples=durations,
            output_bytes=float(np.mean(outputs)) if outputs else 0.0,
            peak_memory_mb=float(max(peaks)) if peaks else 0.0,
            init_ms=float(np.median(inits)) if inits else 0.0,
            parallel_fraction=phi,
            parallel_fractions=by_cores or None,
            instance_factors=factors,
            noise=None if factors is None else normalised(per_instance, factors),
        )
    return profiles


def parallel_fractions(rows: Sequence[Measured]) -> tuple[float | None, dict[float, float]]:
    """:func:`~wisefuse_plugins.model.parallel.estimate` over the bundle settings of one
    stage that can tell (warm samples, per instance): their median (``None`` without
    any), and the median per number of cores the instances shared (:func:`setting_cores`)."""
    per: dict[tuple[str, int, int], dict[object, list[float]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for r in rows:
        if not r.cold:
            per[r.arch, r.memory_mb, r.bundle_size][r.instance].append(r.duration_ms)
    found: dict[float, list[float]] = defaultdict(list)
    for (arch, memory, bundle), together in per.items():
        alone = per.get((arch, memory, 1))
        if bundle == 1 or alone is None:
            continue
        phi = estimate(
            {k: np.asarray(v) for k, v in alone.items()},
            {k: np.asarray(v) for k, v in together.items()},
            memory,
            bundle,
        )
        if phi is not None:
            found[round(setting_cores(memory, bundle), 2)].append(phi)
    if not found:
        return None, {}
    every = [phi for phis in found.values() for phi in phis]
    return float(np.median(every)), {n: float(np.median(v)) for n, v in sorted(found.items())}


def setting_stats(samples: Iterable[Measured]) -> dict[tuple[str, int, int], Stats]:
    """``(stage, memory_mb, bundle_size) -> Stats`` of the warm samples (all of a setting
    that has only cold ones), in key order."""
    groups: dict[tuple[str, int, int], list[Measured]] = defaultdict(list)
    for s in samples:
        groups[s.stage, s.memory_mb, s.bundle_size].append(s)
    out = {}
    for key, rows in sorted(groups.items()):
        values = np.asarray(
            [r.duration_ms for r in rows if not r.cold] or [r.duration_ms for r in rows]
        )
        out[key] = Stats(
            count=len(rows),
            p50_ms=float(np.quantile(values, 0.5)),
            p95_ms=float(np.quantile(values, 0.95)),
            mean_ms=float(values.mean()),
        )
    return out
