"""Louvain on arrays against networkx's ``louvain_communities`` (the same communities), its
NumPy twin, networkx's adjacency and degree, and networkx's modularity."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from constraintlab._kernels.louvain import (
    adjacency_from_edges,
    aggregate,
    degrees,
    degrees_numpy,
    louvain,
    modularity,
    one_level,
    one_level_numpy,
)


def _clustered_edges(seed: int, n: int, per_node: float, in_cluster: float = 0.7,
                     ties: bool = False):
    """Edges of a graph with clusters of about 20 nodes, in a random insertion order, with a
    tenth of the pairs listed twice (the later weight wins, as in networkx)."""
    rng = np.random.default_rng(seed)
    E = max(1, int(per_node * n))
    cl = rng.integers(0, max(1, n // 20), n)
    order = np.argsort(cl, kind="stable")
    a = rng.integers(0, n, E)
    b = rng.integers(0, n, E)
    same = rng.random(E) < in_cluster
    start = np.searchsorted(cl[order], cl[a])
    count = np.bincount(cl)[cl[a]]
    b[same] = order[start[same] + rng.integers(0, 10**9, same.sum()) % count[same]]
    keep = a != b
    a, b = a[keep], b[keep]
    w = (np.round(rng.uniform(0.1, 1.0, len(a)), 1) if ties
         else rng.uniform(0.05, 1.0, len(a)))
    rep = rng.integers(0, len(a), len(a) // 10) if len(a) else np.zeros(0, int)
    return (np.r_[a, b[rep]], np.r_[b, a[rep]],
            np.r_[w, rng.uniform(0.05, 1.0, len(rep))])


def _networkx_graph(n, a, b, w):
    G = nx.Graph()
    G.add_nodes_from(range(n))
    G.add_edges_from((int(x), int(y), {"abs_weight": float(v)})
                     for x, y, v in zip(a, b, w, strict=True))
    return G


def _labels(comms, n):
    lab = np.full(n, -1)
    for i, c in enumerate(comms):
        lab[list(c)] = i
    return lab


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 300), per_node=st.floats(0.3, 6.0),
       resolution=st.sampled_from([0.5, 1.0, 2.0]), ties=st.booleans(),
       louvain_seed=st.integers(0, 1000))
def test_communities_equal_networkx_and_the_twin(seed, n, per_node, resolution, ties,
                                                 louvain_seed):
    a, b, w = _clustered_edges(seed, n, per_node, ties=ties)
    ref = nx.community.louvain_communities(_networkx_graph(n, a, b, w), weight="abs_weight",
                                           resolution=resolution, seed=louvain_seed)
    adj = adjacency_from_edges(n, a, b, w)
    got = louvain(*adj, resolution=resolution, seed=louvain_seed)
    np.testing.assert_array_equal(got, _labels(ref, n))
    twin = louvain(*adj, resolution=resolution, seed=louvain_seed, level=one_level_numpy)
    np.testing.assert_array_equal(twin, got)


def test_a_gain_of_one_ulp_moves_as_in_networkx():
    # two nodes, one edge, resolution 2: the gain of joining is 1 - 2 w^2 / (2 m**2), which
    # Python's pow makes 1.1e-16 > 0 where m * m would make it 0 - networkx joins them
    a, b, w = np.array([1, 0]), np.array([0, 1]), np.array([0.40928588, 0.43596446204144446])
    ref = nx.community.louvain_communities(_networkx_graph(2, a, b, w), weight="abs_weight",
                                           resolution=2.0, seed=0)
    assert [sorted(c) for c in ref] == [[0, 1]]
    np.testing.assert_array_equal(louvain(*adjacency_from_edges(2, a, b, w), resolution=2.0),
                                  [0, 0])


def test_adjacency_and_degree_are_networkx_s():
    a, b, w = _clustered_edges(3, 120, 4.0)
    G = _networkx_graph(120, a, b, w)
    H = nx.Graph()                     # the copy louvain_partitions works on
    H.add_nodes_from(G)
    H.add_weighted_edges_from(G.edges(data="abs_weight"))
    indptr, indices, data = adjacency_from_edges(120, a, b, w)
    for u in range(120):
        assert indices[indptr[u]:indptr[u + 1]].tolist() == list(H.adj[u])
        assert data[indptr[u]:indptr[u + 1]].tolist() == [d["weight"] for d in H.adj[u].values()]
    want = [d for _, d in H.degree(weight="weight")]
    assert degrees(indptr, indices, data).tolist() == want          # same sums, bit for bit
    assert degrees_numpy(indptr, indices, data).tolist() == want


def test_aggregated_level_is_networkx_gen_graph_and_keeps_modularity():
    from networkx.algorithms.community.louvain import _gen_graph

    a, b, w = _clustered_edges(5, 150, 3.0)
    indptr, indices, data = adjacency_from_edges(150, a, b, w)
    H = nx.Graph()
    H.add_nodes_from(range(150))
    H.add_weighted_edges_from(_networkx_graph(150, a, b, w).edges(data="abs_weight"))
    com = np.random.default_rng(0).integers(0, 12, 150)
    com = np.unique(com, return_inverse=True)[1]
    parts = [set(np.flatnonzero(com == c).tolist()) for c in range(com.max() + 1)]
    ref = _gen_graph(H, parts)
    p2, i2, d2 = aggregate(indptr, indices, data, com)
    for c in range(len(parts)):           # rows, order and summed weights, bit for bit
        assert i2[p2[c]:p2[c + 1]].tolist() == list(ref.adj[c])
        assert d2[p2[c]:p2[c + 1]].tolist() == [d["weight"] for d in ref.adj[c].values()]
    # modularity: of the partition on the graph = of the singletons on the aggregated graph
    # = networkx's
    m = sum(degrees(indptr, indices, data).tolist()) / 2
    q = nx.community.modularity(H, parts, weight="weight", resolution=1.3)
    assert modularity(indptr, indices, data, degrees(indptr, indices, data), com, m,
                      1.3) == pytest.approx(q, abs=1e-12)
    assert modularity(p2, i2, d2, degrees(p2, i2, d2), np.arange(len(parts)), m,
                      1.3) == pytest.approx(q, abs=1e-12)


def test_one_level_equals_its_twin_on_a_graph_with_self_loops():
    a, b, w = _clustered_edges(7, 200, 5.0)
    indptr, indices, data = adjacency_from_edges(200, a, b, w)
    com = np.unique(np.random.default_rng(1).integers(0, 60, 200), return_inverse=True)[1]
    p2, i2, d2 = aggregate(indptr, indices, data, com)
    assert (i2 == np.repeat(np.arange(len(p2) - 1), np.diff(p2))).any()     # loops present
    deg = degrees(p2, i2, d2)
    m = sum(degrees(indptr, indices, data).tolist()) / 2
    order = np.random.default_rng(2).permutation(len(deg))
    got = one_level(p2, i2, d2, deg, order, m, 2 * m**2, 1.0)
    twin = one_level_numpy(p2, i2, d2, deg, order, m, 2 * m**2, 1.0)
    np.testing.assert_array_equal(got[0], twin[0])
    assert got[1] == twin[1]


def test_planted_blocks_are_found_and_empty_graphs_are_singletons():
    G = nx.planted_partition_graph(6, 30, 0.6, 0.01, seed=3)
    a, b = (np.array(x) for x in zip(*G.edges(), strict=True))
    lab = louvain(*adjacency_from_edges(180, a, b, np.ones(len(a))), seed=0)
    truth = np.repeat(np.arange(6), 30)
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(truth, lab) == pytest.approx(1.0)
    empty = adjacency_from_edges(4, np.zeros(0, int), np.zeros(0, int), np.zeros(0))
    np.testing.assert_array_equal(louvain(*empty), np.arange(4))
