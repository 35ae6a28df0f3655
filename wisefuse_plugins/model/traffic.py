"""A unit's data traffic: the store GETs and PUTs (or values passed by value) of its
stages, and what each costs in time.

Which transfers a unit makes depends on which stages share it, not on its memory: the
results are cached per (workflow, stages), because the planner asks for the same unit at
every memory and bundle size.
"""

from __future__ import annotations

from wisefuse_plugins.ir import Collect, Item, Output, Workflow
from wisefuse_plugins.model.state import ModelState

Transfers = list[tuple[float, float]]
"""(wall ms, CPU ms at one vCPU) of each store transfer, in order."""


def edge_bytes(m: ModelState, workflow: Workflow, src: str, dst: str) -> float:
    """Bytes ``src`` hands ``dst``: the edge's, else ``src``'s profiled output."""
    found = workflow.edge(src, dst).bytes if workflow.graph.has_edge(src, dst) else 0
    if found:
        return float(found)
    prof = m.profiles.get(src)
    return float(prof.output_bytes) if prof else 0.0


def out_bytes(m: ModelState, sid: str) -> float:
    """``sid``'s profiled output bytes (per instance), 0 when unprofiled."""
    prof = m.profiles.get(sid)
    return float(prof.output_bytes) if prof else 0.0


def by_value(m: ModelState, sid: str) -> bool:
    """Whether ``sid``'s output (an instance's, for a mapped stage) travels by value
    here (:attr:`Platform.by_value_bytes`): a profiled size within the limit."""
    limit = m.platform.by_value_bytes
    prof = m.profiles.get(sid)
    return bool(limit) and prof is not None and prof.output_bytes <= limit


def exported(workflow: Workflow, sid: str, unit: set[str] | frozenset[str]) -> bool:
    """Whether ``sid``'s output leaves the unit (a data edge out, or no successor at all)."""
    succ = workflow.successors(sid)
    return not succ or any(d not in unit and workflow.edge(sid, d).kind == "data" for d in succ)


def scattered_elements(workflow: Workflow, sid: str, unit: set[str] | frozenset[str]) -> int:
    """Elements an unmapped output is split into because another unit maps over it."""
    if workflow.stage(sid).mapped:
        return 0
    for d in workflow.successors(sid):
        dst = workflow.stage(d)
        if d not in unit and any(
            isinstance(b, Item) and b.stage == sid for b in dst.bindings.values()
        ):
            return dst.parallelism
    return 0


def job_io(
    m: ModelState, workflow: Workflow, stages: tuple[str, ...], unit: frozenset[str]
) -> tuple[list[tuple[str, Transfers]], float, float]:
    """Per stage of a job (one instance's chain), its store transfers, and the job's
    GETs/PUTs: each instance reads its element of an outside list and writes its
    exported outputs (one PUT per element when another unit maps over it)."""
    key = (id(workflow), stages, unit)
    cached = m.cache.io.get(key)
    if cached is not None:
        return cached
    p = m.platform
    io: list[tuple[str, Transfers]] = []
    gets = puts = 0.0
    for sid in stages:
        transfers: Transfers = []
        stage = workflow.stage(sid)
        for b in stage.bindings.values():
            if isinstance(b, Item) and b.stage not in unit:  # read this instance's element
                nbytes = edge_bytes(m, workflow, b.stage, sid)
                if by_value(m, b.stage):  # the whole list comes in the event
                    transfers.append(p.by_value_ms(nbytes))
                    continue
                if not workflow.stage(b.stage).mapped:
                    nbytes /= max(stage.parallelism, 1)
                transfers.append(p.request_ms(nbytes))
                gets += 1
        if exported(workflow, sid, unit):
            if by_value(m, sid):
                transfers.append(p.by_value_ms(out_bytes(m, sid)))
            else:
                requests = 1 + scattered_elements(workflow, sid, unit)
                transfers.append(p.request_ms(out_bytes(m, sid), requests, put=True))
                puts += requests
        io.append((sid, transfers))
    m.cache.io[key] = (io, gets, puts)
    return io, gets, puts


def shared_reads(
    m: ModelState, workflow: Workflow, stages: list[str], unit: set[str]
) -> tuple[float, float, float]:
    """(fixed ms, CPU ms at one vCPU, GETs) of the inputs an invocation reads once for
    all its instances: Output and Collect from outside the unit."""
    key = (id(workflow), tuple(stages), "shared")
    cached = m.cache.io.get(key)
    if cached is None:
        cached = m.cache.io[key] = _shared_reads(m, workflow, stages, unit)
    return cached


def _shared_reads(
    m: ModelState, workflow: Workflow, stages: list[str], unit: set[str]
) -> tuple[float, float, float]:
    p = m.platform
    ms = cpu = gets = 0.0
    seen: set[tuple[str, str]] = set()
    for sid in stages:
        for b in workflow.stage(sid).bindings.values():
            if (
                isinstance(b, Output | Collect)
                and b.stage not in unit
                and (b.stage, b.kind) not in seen
            ):
                seen.add((b.stage, b.kind))
                nbytes = edge_bytes(m, workflow, b.stage, sid)
                requests = 1.0
                if isinstance(b, Collect):
                    n = workflow.stage(b.stage).parallelism
                    nbytes *= n
                    requests = float(n)
                if by_value(m, b.stage):
                    fixed, work = p.by_value_ms(nbytes)
                    requests = 0.0
                else:
                    fixed, work = p.request_ms(nbytes, requests)
                ms, cpu = ms + fixed, cpu + work
                gets += requests
    return ms, cpu, gets
