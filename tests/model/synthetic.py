"""Synthetic profiles that follow a known law, for analytic checks of the model."""

from __future__ import annotations

import numpy as np

from wisefuse_plugins.model.profile import StageProfile
from wisefuse_plugins.plan.limits import vcpus

SIZES = (512, 1769, 3538)


def law_ms(wait: float, cpu: float, memory: float) -> float:
    return wait + cpu / min(vcpus(memory), 1)


def profile(
    stage: str,
    code_hash: str,
    wait: float = 0.0,
    cpu: float = 100.0,
    sizes=SIZES,
    noise: float = 0.0,
    n: int = 40,
    output_bytes: float = 0.0,
    seed: int = 0,
    parallel_fraction: float | None = None,
) -> StageProfile:
    rng = np.random.default_rng(seed)
    samples = {}
    for m in sizes:
        base = law_ms(wait, cpu, m)
        samples["x86_64", m] = (
            base * (1 + noise * rng.standard_normal(n)) if noise else np.full(n, base)
        )
    return StageProfile(
        stage=stage,
        code_hash=code_hash,
        samples=samples,
        output_bytes=output_bytes,
        parallel_fraction=parallel_fraction,
    )
