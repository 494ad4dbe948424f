"""Louvain communities on raw arrays, equal to networkx's ``louvain_communities``.

networkx's implementation (3.x, Blondel et al. 2008) keeps the graph in dicts and costs tens of
seconds at 100,000 nodes and a million edges (most of the zones analyzer's time). This module
runs the same algorithm on arrays and returns the same communities: same visiting order (the
same ``random.Random(seed)`` shuffles), same neighbour order, same order of every
floating-point sum, same tie rule, same stopping rule - so the partition equals networkx's,
which the tests check on random graphs.

Graphs are *adjacency arrays in insertion order*: CSR arrays ``indptr``, ``indices``, ``data``
whose row ``u`` lists ``u``'s neighbours in the order networkx's ``Graph.adj[u]`` holds them,
self loop included (aggregated levels have them). ``one_level`` moves every node, in the given
order, to the neighbouring community with the largest modularity gain (strictly positive; the
first in neighbour order on ties) until a pass moves nothing; :func:`aggregate` builds the next
level's graph as networkx's ``_gen_graph`` does; :func:`louvain` drives the levels.

- :func:`one_level` (numba, one thread) and its twin :func:`one_level_numpy` (the oracle: same
  labels, not close ones); :func:`degrees` and :func:`degrees_numpy` (sequential row sums, self
  loop counted twice, as networkx's weighted degree).
- :func:`aggregate`, :func:`adjacency_from_edges`, :func:`louvain` (NumPy): the driver, shared
  by both.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import numba as nb
import numpy as np

__all__ = ["adjacency_from_edges", "aggregate", "degrees", "degrees_numpy", "louvain",
           "modularity", "one_level", "one_level_numpy", "unique_pairs"]


@nb.njit(cache=True, nogil=True)
def degrees(indptr, indices, data):
    """Weighted degree of every node: the row's weights summed in order (from 0), plus the
    self loop once more (networkx's ``Graph.degree(weight=...)``).

    Parameters
    ----------
    indptr : (n + 1,) int64
    indices : (nnz,) int64
    data : (nnz,) float64

    Returns
    -------
    (n,) float64
    """
    n = indptr.shape[0] - 1
    out = np.zeros(n)
    for u in range(n):
        s = 0.0
        loop = 0.0
        for p in range(indptr[u], indptr[u + 1]):
            s += data[p]
            if indices[p] == u:
                loop = data[p]
        out[u] = s + loop
    return out


def degrees_numpy(indptr, indices, data):
    """NumPy twin of :func:`degrees` (Python's sequential ``sum`` per row)."""
    n = len(indptr) - 1
    out = np.zeros(n)
    for u in range(n):
        row = data[indptr[u]:indptr[u + 1]]
        loop = data[indptr[u]:indptr[u + 1]][indices[indptr[u]:indptr[u + 1]] == u]
        out[u] = sum(row.tolist(), 0.0) + (float(loop[0]) if len(loop) else 0.0)
    return out


@nb.njit(cache=True, nogil=True)
def one_level(indptr, indices, data, degree, order, m, two_m2, resolution):
    """One level of Louvain moves (networkx's ``_one_level``, undirected).

    Parameters
    ----------
    indptr, indices, data : CSR arrays (int64, int64, float64)
        Adjacency in insertion order (module docstring).
    degree : (n,) float64
        From :func:`degrees`.
    order : (n,) int64
        The order nodes are visited in (a permutation of ``0..n-1``).
    m : float
        Half the total weight of the first level's graph (the same at every level).
    two_m2 : float
        ``2 * m**2`` as Python computes it (``pow``, which can differ from ``m * m`` in the last
        bit; networkx's gains divide by it).
    resolution : float

    Returns
    -------
    node2com : (n,) int64
        Community of each node, named by the node it started from.
    improved : bool
        Whether any node moved.
    """
    n = degree.shape[0]
    node2com = np.arange(n)
    stot = degree.copy()
    nw = np.zeros(n)
    seen = np.zeros(n, np.bool_)
    touched = np.empty(n, np.int64)
    improved = False
    moves = 1
    while moves > 0:
        moves = 0
        for t in range(n):
            u = order[t]
            own = node2com[u]
            nt = 0
            for p in range(indptr[u], indptr[u + 1]):
                v = indices[p]
                if v == u:
                    continue
                c = node2com[v]
                if not seen[c]:
                    seen[c] = True
                    touched[nt] = c
                    nt += 1
                nw[c] += data[p]
            deg = degree[u]
            stot[own] -= deg
            remove_cost = -nw[own] / m + resolution * (stot[own] * deg) / two_m2
            best = own
            best_gain = 0.0
            for q in range(nt):
                c = touched[q]
                gain = remove_cost + nw[c] / m - resolution * (stot[c] * deg) / two_m2
                if gain > best_gain:
                    best_gain = gain
                    best = c
            stot[best] += deg
            if best != own:
                node2com[u] = best
                moves += 1
                improved = True
            for q in range(nt):
                c = touched[q]
                nw[c] = 0.0
                seen[c] = False
    return node2com, improved


def one_level_numpy(indptr, indices, data, degree, order, m, two_m2, resolution):
    """NumPy twin of :func:`one_level` (same contract; vectorised per node)."""
    n = degree.shape[0]
    node2com = np.arange(n)
    stot = degree.copy()
    improved = False
    moves = 1
    while moves > 0:
        moves = 0
        for u in order:
            own = node2com[u]
            nbr = indices[indptr[u]:indptr[u + 1]]
            w = data[indptr[u]:indptr[u + 1]][nbr != u]
            coms = node2com[nbr[nbr != u]]
            cand, first, inv = np.unique(coms, return_index=True, return_inverse=True)
            sums = np.zeros(len(cand))
            np.add.at(sums, inv, w)                      # in neighbour order, from 0.0
            enc = np.argsort(first, kind="stable")       # first-seen order
            cand, sums = cand[enc], sums[enc]
            deg = degree[u]
            stot[own] -= deg
            w_own = sums[cand == own][0] if (cand == own).any() else 0.0
            remove_cost = -w_own / m + resolution * (stot[own] * deg) / two_m2
            gains = remove_cost + sums / m - resolution * (stot[cand] * deg) / two_m2
            best = own
            if len(gains) and gains.max() > 0.0:
                best = int(cand[int(np.argmax(gains))])
            stot[best] += deg
            if best != own:
                node2com[u] = best
                moves += 1
                improved = True
    return node2com, improved


def _csr(u: np.ndarray, v: np.ndarray, w: np.ndarray, rank: np.ndarray, n: int
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR arrays of directed entries ``u -> v``, each row ordered by ``rank``."""
    o = np.lexsort((rank, u))
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(u, minlength=n), out=indptr[1:])
    return indptr, v[o].astype(np.int64), w[o].astype(np.float64)


def unique_pairs(a: np.ndarray, b: np.ndarray, w: np.ndarray, n: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One entry per unordered pair of an edge list, as ``nx.Graph.add_edges_from`` keeps it:
    the weight of the pair's last listing, its place that of its first.

    Parameters
    ----------
    a, b : (E,) int
        Edge ends in listing order, in ``0..n-1``.
    w : (E,) float
    n : int

    Returns
    -------
    lo, hi : (E',) int64
        The pairs, ``lo <= hi``, sorted by ``(lo, hi)``.
    w : (E',) float64
        The last listing's weight.
    first : (E',) int64
        Index of the first listing.
    """
    a = np.asarray(a, np.int64)
    b = np.asarray(b, np.int64)
    w = np.asarray(w, np.float64)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    key = lo * np.int64(n) + hi
    uniq, first = np.unique(key, return_index=True)
    _, last_rev = np.unique(key[::-1], return_index=True)
    return uniq // n, uniq % n, w[len(key) - 1 - last_rev], first


def adjacency_from_edges(n: int, a: np.ndarray, b: np.ndarray, w: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The adjacency networkx's ``louvain_partitions`` works on, for a graph built as
    ``G.add_nodes_from(range(n)); G.add_edges_from(zip(a, b, weights))``: its copy made by
    ``add_weighted_edges_from(G.edges(data=weight))``.

    Parameters
    ----------
    n : int
    a, b : (E,) int
        Edge ends in insertion order (``a != b``; a pair may repeat: the last weight wins).
    w : (E,) float
        Non-negative weights.

    Returns
    -------
    indptr, indices, data : CSR arrays in insertion order (module docstring).
    """
    if not len(a):
        return np.zeros(n + 1, np.int64), np.zeros(0, np.int64), np.zeros(0)
    lo, hi, wt, first = unique_pairs(a, b, w, n)
    # G.adj[x] lists x's neighbours by first listing; G.edges yields (lo, hi) while iterating
    # lo (the lower node), at hi's place in G.adj[lo]: that order builds the copy's adjacency
    e_order = np.lexsort((first, lo))
    rank = np.empty(len(lo), np.int64)
    rank[e_order] = np.arange(len(lo))
    return _csr(np.concatenate([lo, hi]), np.concatenate([hi, lo]), np.concatenate([wt, wt]),
                np.concatenate([rank, rank]), n)


def aggregate(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, com: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The next level's graph (networkx's ``_gen_graph``): one node per community, edges
    yielded in ``G.edges`` order (each node's row, skipping neighbours already iterated), their
    weights summed in that order, each new pair appended to both ends' rows.

    Parameters
    ----------
    indptr, indices, data : CSR arrays in insertion order
    com : (n,) int64
        Community of each node, ``0..C-1``.

    Returns
    -------
    indptr, indices, data : the (C, C) graph's CSR arrays in insertion order
    """
    n = len(indptr) - 1
    C = int(com.max()) + 1 if n else 0
    u = np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr))
    y = indices >= u                          # G.edges: a neighbour not iterated yet
    u, v, w = u[y], indices[y], data[y]       # already in G.edges order (row, then position)
    c1, c2 = com[u], com[v]
    lo, hi = np.minimum(c1, c2), np.maximum(c1, c2)
    key = lo * np.int64(C) + hi
    uniq, first, inv = np.unique(key, return_index=True, return_inverse=True)
    sums = np.zeros(len(uniq))
    np.add.at(sums, inv, w)                   # wt + temp, in G.edges order, from 0
    lo, hi = uniq // C, uniq % C
    # H.add_edge(com1, com2) appends com2 to com1's row and com1 to com2's (once for a loop)
    a = np.where(lo == hi, -1, 0)
    ends_u = np.concatenate([lo, hi[a == 0]])
    ends_v = np.concatenate([hi, lo[a == 0]])
    ends_w = np.concatenate([sums, sums[a == 0]])
    ends_r = np.concatenate([first, first[a == 0]])
    return _csr(ends_u, ends_v, ends_w, ends_r, C)


def modularity(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, deg: np.ndarray,
               com: np.ndarray, m: float, resolution: float) -> float:
    """Modularity of the partition ``com`` (networkx's definition: ``sum_c L_c / m -
    resolution * (d_c / 2m)^2``, ``L_c`` the weight inside ``c`` with a self loop counted once,
    ``d_c`` the summed degrees ``deg``); used for the stopping rule only."""
    n = len(indptr) - 1
    C = int(com.max()) + 1 if n else 0
    u = np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr))
    inside = com[u] == com[indices]
    twice_in = np.bincount(com[u[inside]], weights=np.where(u == indices, 2.0, 1.0)[inside]
                           * data[inside], minlength=C)
    d = np.bincount(com, weights=deg, minlength=C)
    return float(np.sum(twice_in / (2.0 * m)) - resolution * np.sum((d / (2.0 * m)) ** 2))


def louvain(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, *,
            resolution: float = 1.0, seed: int = 0, threshold: float = 1e-7,
            level: Callable | None = None) -> np.ndarray:
    """Louvain communities: networkx's ``louvain_communities(G, resolution=resolution,
    threshold=threshold, seed=seed)`` on the graph whose adjacency is given.

    Parameters
    ----------
    indptr, indices, data : CSR arrays in insertion order
        e.g. from :func:`adjacency_from_edges`; non-negative weights.
    resolution : float
    seed : int
        ``random.Random(seed)`` shuffles the nodes of every level, as networkx's
        ``py_random_state`` does with an int seed.
    threshold : float
        A level is kept only when it raises modularity by more than this.
    level : callable, optional
        :func:`one_level` (default) or :func:`one_level_numpy`.

    Returns
    -------
    (n,) int64
        Community of each node: its place in networkx's list of communities.
    """
    level = one_level if level is None else level
    deg_fn = degrees if level is one_level else degrees_numpy
    n = len(indptr) - 1
    if n == 0 or len(indices) == 0:
        return np.arange(n, dtype=np.int64)
    rng = random.Random(seed)
    deg = deg_fn(indptr, indices, data)
    m = sum(deg.tolist(), 0) / 2                      # Graph.size(weight): a sequential sum
    two_m2 = float(2 * m**2)                          # as networkx writes it: pow, not m * m

    def run(indptr, indices, data, deg):
        order = list(range(len(deg)))
        rng.shuffle(order)
        node2com, improved = level(indptr, indices, data, deg, np.asarray(order, np.int64),
                                   m, two_m2, float(resolution))
        # the communities in networkx's order: by the node that names them
        return np.unique(node2com, return_inverse=True)[1].astype(np.int64), improved

    mod = modularity(indptr, indices, data, deg, np.arange(n), m, resolution)
    com, _ = run(indptr, indices, data, deg)
    part = com
    while True:
        result = part
        new_mod = modularity(indptr, indices, data, deg, com, m, resolution)
        if new_mod - mod <= threshold:
            break
        mod = new_mod
        indptr, indices, data = aggregate(indptr, indices, data, com)
        deg = deg_fn(indptr, indices, data)
        com, improved = run(indptr, indices, data, deg)
        if not improved:
            break
        part = com[part]
    return result
