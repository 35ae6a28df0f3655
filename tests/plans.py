"""Plans the tests (and a few benchmarks) run by hand, not the optimizer's.

``chains_plan`` lived in ``wisefuse_plugins.plan.schema``; only tests and benchmarks used it.
"""

from __future__ import annotations

import networkx as nx

from wisefuse_plugins.ir import Workflow
from wisefuse_plugins.ir.nodes import EdgePattern
from wisefuse_plugins.optimizer.partition import acyclic
from wisefuse_plugins.plan.scheduling import same_scheduling
from wisefuse_plugins.plan.schema import Arch, Plan, Unit, check_plan, hashes_of


def chains_plan(
    workflow: Workflow, bundle_size: int = 1, memory_mb: int = 1769, arch: Arch = "x86_64"
) -> Plan:
    """Every chain fused: stages joined by one-to-one data edges share a unit (unless their
    scheduling settings differ: a unit task has one pool, queue...).

    Unmapped chains become one invocation; mapped chains one unit per ``bundle_size``
    instances. Fusing every chain edge at once can make units depend on each other in a
    cycle (a diamond ``a -> b -> d``, ``a -> c -> d`` whose ``a -> c`` is not a chain edge:
    unit ``{a, b, d}`` before and after ``{c}``); then the chain edges are fused one at a
    time in topological order, each only when the units stay acyclic, so the plan is valid.
    """
    order = {sid: i for i, sid in enumerate(workflow.topological_order())}
    chain_edges = []
    for e in workflow.edges:
        src, dst = workflow.stage(e.src), workflow.stage(e.dst)
        chain = e.kind == "data" and e.pattern == EdgePattern.ONE_TO_ONE
        alike = src.mapped == dst.mapped and src.parallelism == dst.parallelism
        alike = alike and same_scheduling(workflow, [e.src, e.dst])  # one task, one pool...
        if chain and alike and src.is_python and dst.is_python:
            chain_edges.append((e.src, e.dst))
    g = nx.Graph()
    g.add_nodes_from(s.id for s in workflow.python_stages)
    g.add_edges_from(chain_edges)
    groups = [set(c) for c in nx.connected_components(g)]
    if not acyclic(workflow, groups):
        owner = {s.id: {s.id} for s in workflow.python_stages}
        for a, b in sorted(chain_edges, key=lambda ab: (order[ab[0]], order[ab[1]])):
            if owner[a] is owner[b]:
                continue
            joined = owner[a] | owner[b]
            others = [grp for grp in _distinct(owner.values()) if grp not in (owner[a], owner[b])]
            if acyclic(workflow, [*others, joined]):
                for s in joined:
                    owner[s] = joined
        groups = _distinct(owner.values())
    units = []
    for comp in sorted(groups, key=lambda c: min(order[s] for s in c)):
        stages = sorted(comp, key=order.__getitem__)
        mapped = workflow.stage(stages[0]).mapped
        uid = stages[0] if len(stages) == 1 else f"{stages[0]}--{stages[-1]}"
        units.append(
            Unit(
                id=uid[:64],
                stages=stages,
                bundle_size=bundle_size if mapped else 1,
                memory_mb=memory_mb,
                arch=arch,
            )
        )
    return check_plan(
        Plan(workflow=workflow.name, units=units, code_hashes=hashes_of(workflow)), workflow
    )


def _distinct(groups) -> list[set[str]]:
    out: list[set[str]] = []
    for grp in groups:
        if not any(grp is g for g in out):
            out.append(grp)
    return out
