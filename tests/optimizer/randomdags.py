"""Random small workflows with synthetic profiles (for property tests and the optimality benchmark)."""

from __future__ import annotations

import numpy as np

from wisefuse_plugins.ir import (
    CallableRef,
    Collect,
    Const,
    ConstItem,
    Item,
    Output,
    Stage,
    Workflow,
    derive_edges,
)
from wisefuse_plugins.model.profile import StageProfile
from wisefuse_plugins.plan.limits import vcpus

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


# --------------------------------------------------------------------------- realistic


def _ref(i: int, sid: str) -> CallableRef:
    return CallableRef(path="app.py", qualname=sid, code_hash=f"{i:064x}")


def realistic_workflow(rng: np.random.Generator, n_stages: int, max_width: int = 20) -> Workflow:
    """A small DAG with the shapes real pipelines have: chains, scatter, one-to-one mapped
    continuations, gathers, broadcasts (a mapped stage also reads an unmapped output) and
    joins (an unmapped stage reads two upstream stages). Stage 0 is the only source."""
    stages: list[Stage] = []
    for i in range(n_stages):
        sid = f"s{i}"
        if i == 0:
            stages.append(Stage(id=sid, callable=_ref(i, sid), bindings={"x": Const(value=1)}))
            continue
        # prefer recent stages, so chains are common but branches happen
        j = int(max(0, i - 1 - rng.geometric(0.6) + 1))
        src = stages[j]
        unmapped_before = [s for s in stages[:i] if not s.mapped and s.id != src.id]
        if src.mapped:
            if rng.random() < 0.45:  # one-to-one continuation
                bindings = {"x": Item(stage=src.id)}
                if unmapped_before and rng.random() < 0.3:  # and a broadcast input
                    other = unmapped_before[int(rng.integers(len(unmapped_before)))]
                    bindings["cfg"] = Output(stage=other.id)
                stages.append(
                    Stage(
                        id=sid,
                        callable=_ref(i, sid),
                        bindings=bindings,
                        parallelism=src.parallelism,
                    )
                )
            else:  # gather
                stages.append(
                    Stage(id=sid, callable=_ref(i, sid), bindings={"x": Collect(stage=src.id)})
                )
        elif rng.random() < 0.45:  # scatter
            n = int(rng.integers(2, max_width + 1))
            stages.append(
                Stage(
                    id=sid,
                    callable=_ref(i, sid),
                    bindings={"x": Item(stage=src.id)},
                    parallelism=n,
                    parallelism_source="expected",
                )
            )
        else:
            bindings = {"x": Output(stage=src.id)}
            if unmapped_before and rng.random() < 0.25:  # join
                other = unmapped_before[int(rng.integers(len(unmapped_before)))]
                bindings["y"] = Output(stage=other.id)
            stages.append(Stage(id=sid, callable=_ref(i, sid), bindings=bindings))
    return Workflow(name="random", stages=stages, edges=derive_edges(stages))


def realistic_profiles(
    rng: np.random.Generator, wf: Workflow, samples: int = 40, sizes=SIZES
) -> dict[str, StageProfile]:
    """Profiles that follow the vcpu law ``wait + cpu / min(vCPU, threads)`` with skewed
    lognormal noise (heavier for mapped stages: their instances differ), CPU work around
    0.5 s per unmapped stage and 2.5 s per mapped instance, some stages multi-threaded,
    peak memory 60 MB-2 GB, outputs 1 KB-50 MB (log-uniform)."""
    out = {}
    for s in wf.python_stages:
        # a stage is mapped because each element is real work: heavier per instance
        cpu = float(rng.lognormal(np.log(2500 if s.mapped else 500), 0.9))
        wait = float(rng.lognormal(np.log(80), 1.0))
        threads = int(rng.choice([1, 1, 1, 2, 4]))
        sigma = float(rng.uniform(0.2, 0.8) if s.mapped else rng.uniform(0.05, 0.35))
        noise = rng.lognormal(-(sigma**2) / 2, sigma, samples)  # mean 1, right-skewed
        by = {
            ("x86_64", m): (wait + cpu / min(vcpus(m), threads)) * noise[rng.permutation(samples)]
            for m in sizes
        }
        out[s.id] = StageProfile(
            stage=s.id,
            code_hash=s.callable.code_hash,
            samples=by,
            output_bytes=float(np.exp(rng.uniform(np.log(1e3), np.log(5e7)))),
            peak_memory_mb=float(np.exp(rng.uniform(np.log(60), np.log(2000)))),
        )
    return out


# --------------------------------------------------------------------------- large

WIDE = 20_000


def layered_workflow(
    rng: np.random.Generator,
    n_stages: int,
    depth: int,
    max_width: int,
    mapped_share: float = 0.15,
    name: str = "large",
) -> Workflow:
    """A large DAG in ``depth`` layers: each stage reads one or two stages of earlier
    layers (mostly the previous one); about ``mapped_share`` of the stages are mapped
    (scatter from an unmapped stage, or one-to-one after a mapped one), their widths
    lognormal with at least one at ``max_width``; mapped stages are gathered later.

    Stages wider than :data:`WIDE` map over a literal list instead of a scatter and are
    never gathered: one invocation cannot write or read that many elements one by one
    within the 900 s timeout (25 ms per request), so such a workflow has no valid plan."""
    layer_of = np.sort(np.concatenate([np.arange(depth), rng.integers(0, depth, n_stages - depth)]))
    stages: list[Stage] = []
    by_layer: list[list[Stage]] = [[] for _ in range(depth)]
    control: list[tuple[str, str]] = []
    widest = False
    for i, layer in enumerate(layer_of):
        sid = f"s{i}"
        ref = _ref(i, sid)
        if layer == 0:
            st = Stage(id=sid, callable=ref, bindings={"x": Const(value=i)})
        else:
            back = int(min(layer, 1 + rng.geometric(0.7) - 1))
            pool = by_layer[layer - max(back, 1)] or by_layer[layer - 1]
            src = pool[int(rng.integers(len(pool)))]
            if src.mapped and rng.random() < 0.5:
                st = Stage(
                    id=sid,
                    callable=ref,
                    bindings={"x": Item(stage=src.id)},
                    parallelism=src.parallelism,
                )
            elif src.mapped and src.parallelism <= WIDE:
                st = Stage(id=sid, callable=ref, bindings={"x": Collect(stage=src.id)})
            elif src.mapped:  # too wide to gather: the results stay in the store
                st = Stage(id=sid, callable=ref, bindings={"x": Const(value=i)})
                control.append((src.id, sid))
            elif rng.random() < mapped_share:
                if not widest:
                    n, widest = max_width, True
                else:
                    n = int(min(max_width, max(2, rng.lognormal(np.log(50), 1.5))))
                if n <= WIDE:
                    st = Stage(
                        id=sid, callable=ref, bindings={"x": Item(stage=src.id)}, parallelism=n
                    )
                else:  # mapped over a known list (e.g. object keys), after src
                    st = Stage(
                        id=sid,
                        callable=ref,
                        bindings={"x": ConstItem(values=list(range(n)))},
                        parallelism=n,
                    )
                    control.append((src.id, sid))
            else:
                bindings = {"x": Output(stage=src.id)}
                others = [s for s in by_layer[layer - 1] if not s.mapped and s.id != src.id]
                if others and rng.random() < 0.3:
                    bindings["y"] = Output(stage=others[int(rng.integers(len(others)))].id)
                st = Stage(id=sid, callable=ref, bindings=bindings)
        stages.append(st)
        by_layer[layer].append(st)
    return Workflow(name=name, stages=stages, edges=derive_edges(stages, control))


def azure_max_workflow(width: int = 10_900, depth: int = 47) -> Workflow:
    """Azure's extremes in one DAG (WiseFuse, Sec. 3): longest path ``depth`` stages, one
    ``width``-wide mapped stage. A chain that forks into two parallel stages and joins
    again every fourth level; in the middle a scatter to ``width`` instances, a one-to-one
    mapped continuation, then a gather."""
    stages: list[Stage] = []

    def add(bindings, parallelism=1) -> Stage:
        sid = f"s{len(stages)}"
        st = Stage(
            id=sid, callable=_ref(len(stages), sid), bindings=bindings, parallelism=parallelism
        )
        stages.append(st)
        return st

    level_out = [add({"x": Const(value=0)})]
    mid = depth // 2
    for level in range(1, depth):
        if level in (mid, mid + 1):
            level_out = [add({"x": Item(stage=level_out[0].id)}, width)]
        elif level == mid + 2:
            level_out = [add({"x": Collect(stage=level_out[0].id)})]
        elif level % 4 == 0 and len(level_out) == 1:  # fork
            level_out = [add({"x": Output(stage=level_out[0].id)}) for _ in range(2)]
        else:  # continue (joining a fork)
            level_out = [add({f"x{k}": Output(stage=s.id) for k, s in enumerate(level_out)})]
    return Workflow(name="azure-max", stages=stages, edges=derive_edges(stages))
