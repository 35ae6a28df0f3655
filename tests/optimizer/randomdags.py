"""Random small workflows with synthetic profiles (for property tests and the optimality benchmark)."""

from __future__ import annotations

import numpy as np

from wisefuse_plugins.ir import (
    CallableRef,
    Collect,
    Const,
    Item,
    Output,
    Stage,
    Workflow,
    derive_edges,
)
from wisefuse_plugins.model.limits import vcpus
from wisefuse_plugins.model.profile import StageProfile

SIZES = (512, 1769, 3538)


def random_workflow(rng: np.random.Generator, n_stages: int, max_width: int = 20) -> Workflow:
    """Stages in topological order; each reads one earlier stage the way its kind allows."""
    stages: list[Stage] = []
    for i in range(n_stages):
        sid = f"s{i}"
        ref = CallableRef(path="app.py", qualname=sid, code_hash=f"{i:064x}")
        if i == 0:
            stages.append(Stage(id=sid, callable=ref, bindings={"x": Const(value=1)}))
            continue
        src = stages[int(rng.integers(0, i))]
        if src.mapped:
            if rng.random() < 0.5:  # one-to-one continuation
                stages.append(
                    Stage(
                        id=sid,
                        callable=ref,
                        bindings={"x": Item(stage=src.id)},
                        parallelism=src.parallelism,
                    )
                )
            else:  # gather
                stages.append(Stage(id=sid, callable=ref, bindings={"x": Collect(stage=src.id)}))
        elif rng.random() < 0.4:  # scatter
            n = int(rng.integers(2, max_width + 1))
            stages.append(
                Stage(
                    id=sid,
                    callable=ref,
                    bindings={"x": Item(stage=src.id)},
                    parallelism=n,
                    parallelism_source="expected",
                )
            )
        else:
            stages.append(Stage(id=sid, callable=ref, bindings={"x": Output(stage=src.id)}))
    return Workflow(name="random", stages=stages, edges=derive_edges(stages))


def random_profiles(
    rng: np.random.Generator, wf: Workflow, samples: int = 30
) -> dict[str, StageProfile]:
    """Skewed lognormal durations following the vcpu law, data sizes 1 KB-50 MB."""
    out = {}
    for s in wf.python_stages:
        cpu = float(rng.lognormal(np.log(400), 0.8))
        wait = float(rng.lognormal(np.log(50), 1.0))
        sigma = float(rng.uniform(0.05, 0.5))
        by = {}
        for m in SIZES:
            base = wait + cpu / min(vcpus(m), 1)
            by["x86_64", m] = base * rng.lognormal(0, sigma, samples)
        out[s.id] = StageProfile(
            stage=s.id,
            code_hash=s.callable.code_hash,
            samples=by,
            output_bytes=float(np.exp(rng.uniform(np.log(1e3), np.log(5e7)))),
            peak_memory_mb=float(rng.uniform(60, 600)),
        )
    return out
