"""The parse path's plain-Python graph functions give networkx's answers (random graphs)."""

from __future__ import annotations

import random

import networkx as nx
import pytest

from wisefuse_plugins.ir.graphs import adjacency, find_cycle, is_connected, topological_order


def random_graph(rng: random.Random, acyclic: bool) -> tuple[list[str], list[tuple[str, str]]]:
    n = rng.randint(1, 12)
    nodes = [f"n{i}" for i in rng.sample(range(40), n)]
    edges = []
    for _ in range(rng.randint(0, 2 * n)):
        a, b = rng.randrange(n), rng.randrange(n)
        if acyclic and a >= b:
            continue
        edges.append((nodes[a], nodes[b]))  # duplicates on purpose
    return nodes, edges


def nx_graph(nodes: list[str], edges: list[tuple[str, str]]) -> nx.DiGraph:
    g = nx.DiGraph()
    g.add_nodes_from(nodes)
    g.add_edges_from(edges)
    return g


@pytest.mark.parametrize("seed", range(100))
def test_topological_order_is_networkx_lexicographic_order(seed: int) -> None:
    rng = random.Random(seed)
    nodes, edges = random_graph(rng, acyclic=True)
    g = nx_graph(nodes, edges)
    succ = adjacency(nodes, edges)
    assert list(succ) == list(g.nodes) and succ == {n: list(g.successors(n)) for n in g}
    rank = {n: i for i, n in enumerate(g.nodes)}
    assert topological_order(succ) == list(nx.lexicographical_topological_sort(g, key=rank.get))
    key = {n: rng.random() for n in nodes}.get
    assert topological_order(succ, key) == list(nx.lexicographical_topological_sort(g, key=key))


@pytest.mark.parametrize("seed", range(100))
def test_find_cycle_finds_a_cycle_exactly_when_there_is_one(seed: int) -> None:
    rng = random.Random(seed)
    nodes, edges = random_graph(rng, acyclic=seed % 3 == 0)
    g = nx_graph(nodes, edges)
    cycle = find_cycle(adjacency(nodes, edges))
    assert (cycle is not None) == (not nx.is_directed_acyclic_graph(g))
    if cycle is not None:
        ring = list(zip(cycle, cycle[1:] + cycle[:1], strict=True))
        assert all(g.has_edge(a, b) for a, b in ring)
        assert cycle == [a for a, _ in nx.find_cycle(g)]  # the same one: messages stay put
        with pytest.raises(ValueError, match="cycle"):
            topological_order(adjacency(nodes, edges))
    else:
        assert sorted(topological_order(adjacency(nodes, edges))) == sorted(nodes)


@pytest.mark.parametrize("seed", range(100))
def test_is_connected_is_weak_connectivity_of_the_subgraph(seed: int) -> None:
    rng = random.Random(seed)
    nodes, edges = random_graph(rng, acyclic=False)
    g = nx_graph(nodes, edges)
    members = rng.sample(nodes, rng.randint(1, len(nodes)))
    want = nx.is_weakly_connected(g.subgraph(members))
    assert is_connected(members, adjacency(nodes, edges)) == want


def test_topological_order_refuses_a_cycle() -> None:
    with pytest.raises(ValueError, match="cycle"):
        topological_order(adjacency(["a", "b"], [("a", "b"), ("b", "a")]))
