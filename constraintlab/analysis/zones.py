"""Constraint graph and pressure zones.

Graph: nodes are examples (by id); each example is linked to its top-m neighbours by ``|cos|``
when ``|cos| > zone_edge_min`` (default: the conflict threshold tau, i.e. above the noise floor);
edge attribute ``weight`` is the signed cosine, ``abs_weight`` its magnitude. Examples left
without edges are outliers.

Zones: Louvain communities (networkx's ``louvain_communities``, seeded, computed on arrays by
:mod:`constraintlab._kernels.louvain`: the same communities) on ``abs_weight``; communities of
one example are outliers too. With the feature rows, the communities are then refined on the
mean-removed unit rows (``u_i - mean(u)``, renormalised: the "general update" every example
shares taken out):

1. every example in a zone moves to the zone whose other members its row aligns with most (mean
   cosine), repeated up to ``zone_refine_iters`` times (Lloyd-style; Louvain on a top-m graph
   cuts one dense mode into several communities and places examples with strong *negative*
   edges into the zone they oppose);
2. two zones merge when the mean cosine between their members exceeds ``merge_above`` (the
   largest internal coherence a zone of the data's Gaussian null reaches,
   :func:`constraintlab.analysis.null.null_reference`): together they are one mode
   the null cannot produce; then step 1 once more.

On planted style clashes (GSM8K test rows, 25-30 % answered "The answer is N.", reference model,
3 seeds) this raised the terse group's membership F1 from 0.45-0.56 (Louvain alone) to
0.97-0.99 (``bench_validity.py``, 30 % terse, seeds 0 / 1: 0.973 / 0.988). Per zone, over
its internal edges:

- ``conflict_share`` = negative edge mass / total edge mass (sum of ``|w|``), in [0, 1];
- ``mean_alignment`` = mean signed weight, in [-1, 1];
- ``density`` = internal edges / (size (size - 1) / 2), in [0, 1];
- ``pressure = conflict_share * mean_abs_weight * log(1 + size)``: how much of the zone
  collides, how strongly its members are coupled, and (sub-linearly) how many they are;
- ``coherence`` = mean pairwise cosine of the members' mean-removed unit rows (with features).

A zone is a **pressure zone** when its ``internal_conflict`` (share of negative cosine mass
over every pair of its members) exceeds ``pressure_above``: in the pipeline, ``mean +
pressure_null_sigmas * sd`` (and at least the largest) of the internal conflict of every zone of
the data's Gaussian null run through the same pairs, graph and zones
(:meth:`constraintlab.analysis.null.NullReference.pressure_threshold`), so its internal
conflict stands out from what the data's own cosine geometry gives. Without a null (no
features) the fixed ``zone_conflict_share`` on the edge conflict share is used and the summary
says so. On real GSM8K rows every zone has an edge conflict share of 0.15-0.47 and so does every
null zone (0.11-0.44): the fixed 0.1 made 96-100 % of clean examples "pressure". The null's
largest zone alone was not enough either: on 1,000 clean GSM8K test rows (seed 0) one zone of
164 had internal conflict 0.125 against a null maximum of 0.124 (16 % "pressure"); null zones
there have mean 0.05 and sd 0.035, so the 3-sigma threshold is about 0.15.

Zones are ranked by pressure (then size); zone 0 is the highest-pressure zone. Labels are the
zone's most distinctive TF-IDF terms (mean member TF-IDF minus the corpus mean).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import networkx as nx
import numpy as np
import pandas as pd
import scipy.sparse as sp

from constraintlab._kernels.louvain import adjacency_from_edges, louvain, unique_pairs
from constraintlab.analysis.config import AnalysisConfig
from constraintlab.analysis.registry import Analyzer, Metric
from constraintlab.analysis.result import AnalyzerResult

logger = logging.getLogger(__name__)

#: Most (rows x zones) cells of one block of the refinement (float64: 8 bytes each).
_CELLS = 4_000_000
_ROW_BLOCK = 4096          # rows of one refinement block (neighbour rule)

__all__ = ["ZonesResult", "analyze_zones", "build_graph", "centered_unit_rows",
           "cross_zone_interference", "internal_conflict", "merge_zones", "refine_zones",
           "zone_coupling"]


@dataclass
class ZonesResult(AnalyzerResult):
    """What :func:`analyze_zones` found.

    Attributes
    ----------
    labels : (N,) int64
        Zone of each row position (its rank, -1 = outlier), as the table's ``zone``.
    ranked : list of int
        Zone ids, highest pressure first.
    edges : pandas.DataFrame or None
        The constraint graph's edges, one row per pair: ``a < b`` (example ids), ``cos`` (the
        signed cosine), sorted by ``(a, b)``.
    graph : networkx.Graph or None
        The constraint graph (node attributes ``zone`` and ``label``; edge attributes
        ``weight`` and ``abs_weight``), built from ``edges`` the first time it is read.
    """

    labels: np.ndarray | None = field(default=None, repr=False)
    ranked: list[int] = field(default_factory=list)
    edges: pd.DataFrame | None = field(default=None, repr=False)
    _graph: nx.Graph | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def graph(self) -> nx.Graph | None:
        if self._graph is None and self.edges is not None:
            names = {z["id"]: z["label"] for z in self.summary.get("zones", [])}
            G = nx.Graph()
            G.add_nodes_from((int(i), {"zone": int(z), "label": names.get(int(z), "outlier")})
                             for i, z in self.table["zone"].items())
            G.add_edges_from((a, b, {"weight": w, "abs_weight": abs(w)}) for a, b, w in
                             zip(self.edges["a"].tolist(), self.edges["b"].tolist(),
                                 self.edges["cos"].tolist(), strict=True))
            self._graph = G
        return self._graph


def _edge_arrays(top_idx: np.ndarray, top_val: np.ndarray, edge_min: float
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The graph's edges from top-m lists, in the order they are inserted (row by row, then
    by rank; a pair listed by both rows appears twice, the later one setting the weight).

    Returns
    -------
    a, b : (E,) int64
        Row positions of the two ends (``a != b``).
    w : (E,) float64
        Signed cosines.
    """
    rows, cols = np.nonzero((top_idx >= 0) & (np.abs(top_val) > edge_min))
    b = np.asarray(top_idx[rows, cols], dtype=np.int64)
    w = top_val[rows, cols].astype(np.float64)
    keep = rows != b
    return rows[keep].astype(np.int64), b[keep], w[keep]


def _graph(nodes, ids: np.ndarray, a: np.ndarray, b: np.ndarray, w: np.ndarray) -> nx.Graph:
    G = nx.Graph()
    G.add_nodes_from(nodes)
    G.add_edges_from((x, y, {"weight": v, "abs_weight": abs(v)})
                     for x, y, v in zip(ids[a].tolist(), ids[b].tolist(), w.tolist(),
                                        strict=True))
    return G


def build_graph(top_idx: np.ndarray, top_val: np.ndarray, ids: np.ndarray,
                edge_min: float) -> nx.Graph:
    """The constraint graph from top-m lists.

    Parameters
    ----------
    top_idx : (N, m) int64
        Row positions of each example's neighbours (-1 = empty).
    top_val : (N, m) float
        Signed cosines.
    ids : (N,) int
        Example ids (node names).
    edge_min : float
        Keep edges with ``|cos| > edge_min``.
    """
    ids = np.asarray(ids)
    a, b, w = _edge_arrays(top_idx, top_val, edge_min)
    return _graph(ids.tolist(), ids, a, b, w)


def _zone_sums(U: np.ndarray, own: np.ndarray, n_zones: int) -> np.ndarray:
    """(n_zones, k) sums of the rows of ``U`` by zone index ``own`` (one sparse product,
    O(N k); ``np.add.at`` was 10x slower)."""
    n = len(own)
    ind = sp.csr_matrix((np.ones(n), (own, np.arange(n))), shape=(n_zones, n))
    return np.asarray(ind @ U, dtype=np.float64).reshape(n_zones, U.shape[1])


def centered_unit_rows(features: np.ndarray) -> np.ndarray:
    """Unit rows with their mean removed, renormalised (zero rows stay zero).

    Parameters
    ----------
    features : (N, k) float

    Returns
    -------
    (N, k) float64
        ``(u_i - mean(u)) / ||u_i - mean(u)||`` with ``u_i = g_i / ||g_i||``.
    """
    X = np.asarray(features, dtype=np.float64)
    n = np.linalg.norm(X, axis=1, keepdims=True)
    U = X / np.where(n > 0, n, 1.0)
    U = U - U.mean(0)
    n = np.linalg.norm(U, axis=1, keepdims=True)
    return U / np.where(n > 0, n, 1.0)


def zone_coupling(U: np.ndarray, zones: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean pairwise dot product of rows between and within zones.

    Parameters
    ----------
    U : (N, k) float
        Rows (unit rows give mean cosines).
    zones : (N,) int
        Zone per row; negative = no zone (left out).

    Returns
    -------
    zone_ids : (Z,) int64
        Zones in ascending order.
    sizes : (Z,) int64
    K : (Z, Z) float64
        ``K[a, b]`` = mean of ``u_i . u_j`` over ``i`` in a, ``j`` in b (``i != j`` on the
        diagonal; 0 for a zone of one).
    """
    zones = np.asarray(zones)
    zone_ids = np.unique(zones[zones >= 0]).astype(np.int64)
    if not len(zone_ids):
        return zone_ids, np.zeros(0, np.int64), np.zeros((0, 0))
    inz = zones >= 0
    row = np.searchsorted(zone_ids, zones[inz])
    Uz = np.asarray(U, dtype=np.float64)[inz]
    S = _zone_sums(Uz, row, len(zone_ids))
    sq = np.bincount(row, weights=np.einsum("ij,ij->i", Uz, Uz), minlength=len(zone_ids))
    sizes = np.bincount(row, minlength=len(zone_ids)).astype(np.int64)
    M = S @ S.T
    pairs = np.outer(sizes, sizes).astype(np.float64)
    M[np.diag_indices(len(zone_ids))] -= sq
    pairs[np.diag_indices(len(zone_ids))] -= sizes
    return zone_ids, sizes, M / np.maximum(pairs, 1.0)


def cross_zone_interference(U: np.ndarray, zones: np.ndarray
                            ) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """Size-weighted mean of ``max(0, -K[A, B])`` over ordered zone pairs ``A != B``: the
    interference statistic (:mod:`constraintlab.analysis.interference`), beside the coupling it
    reads because the null (:mod:`constraintlab.analysis.null`) takes it on every draw too.

    Parameters
    ----------
    U : (N, k) float
        Mean-removed unit rows (:func:`constraintlab.analysis.zones.centered_unit_rows`).
    zones : (N,) int
        Negative = outlier (left out).

    Returns
    -------
    value : float
        0 with fewer than two zones.
    zone_ids : (Z,) int64
    sizes : (Z,) int64
    K : (Z, Z) float64
        Mean cosines between / within zones (:func:`zone_coupling`).
    """
    zone_ids, sizes, K = zone_coupling(U, zones)
    if len(zone_ids) < 2:
        return 0.0, zone_ids, sizes, K
    W = np.outer(sizes, sizes).astype(np.float64)
    np.fill_diagonal(W, 0.0)
    return float((W * np.maximum(0.0, -K)).sum() / W.sum()), zone_ids, sizes, K


def _best_among_neighbours(Ui: np.ndarray, sq: np.ndarray, own: np.ndarray, S: np.ndarray,
                           sizes: np.ndarray, ids: np.ndarray, z: np.ndarray, inz: np.ndarray,
                           neighbours: np.ndarray, largest: int) -> np.ndarray:
    """One round of :func:`refine_zones` with each row's candidates its own zone, its
    neighbours' zones and the ``largest`` largest zones: (n,) index into ``ids`` of the best
    candidate (lowest index on ties)."""
    nb = np.asarray(neighbours)[inz]
    nz = np.where(nb >= 0, z[np.maximum(nb, 0)], -1)          # neighbours' zone ids
    cand = np.where(nz >= 0, np.searchsorted(ids, np.maximum(nz, 0)), len(ids))
    big = np.sort(np.argsort(-sizes, kind="stable")[:largest])
    cand = np.concatenate([own[:, None], cand, np.broadcast_to(big, (len(inz), len(big)))],
                          axis=1)
    cand = np.sort(cand, axis=1)                                # lowest first
    best = np.empty(len(inz), np.int64)
    # rows in blocks of one zone at a time (sorted by their own zone): a block's candidates
    # overlap, so one GEMM against the union of its candidate zones' sums replaces a gather
    # of (rows, candidates, k) zone sums; the (rows, union) block holds <= _CELLS values
    step = max(1, min(_ROW_BLOCK, _CELLS // max(1, len(ids) + 1)))
    by_zone = np.argsort(own, kind="stable")
    Sx = np.vstack([S, np.zeros((1, S.shape[1]))])             # row len(ids): no candidate
    cnt_x = np.append(sizes, 0.0)
    for r0 in range(0, len(inz), step):
        rows = by_zone[r0:r0 + step]
        c = cand[rows]
        o = own[rows, None]
        union = np.unique(c)
        full = Ui[rows] @ Sx[union].T                           # (rows, union): sums of dots
        A = np.take_along_axis(full, np.searchsorted(union, c), axis=1)
        mine = c == o
        A = A - np.where(mine, sq[rows, None], 0.0)
        cnt = cnt_x[c] - mine
        A = np.where((cnt > 0) & (c < len(ids)), A / np.maximum(cnt, 1.0), -np.inf)
        best[rows] = c[np.arange(len(c)), np.argmax(A, axis=1)]
    return best


def refine_zones(U: np.ndarray, zones: np.ndarray, iters: int,
                 neighbours: np.ndarray | None = None, largest: int = 0) -> np.ndarray:
    """Move every zoned row to the zone whose *other* members it aligns with most (mean dot
    product), up to ``iters`` rounds or until nothing moves; rows with a negative zone stay
    outliers; zones left with fewer than 2 members dissolve into outliers.

    Every row is compared with every zone (O(N x zones x k) a round), or, with
    ``neighbours``, only with its own zone, its neighbours' zones and the ``largest``
    largest zones (O(N x (m + largest) x k) a round; ties go to the lowest zone id in both).

    Parameters
    ----------
    U : (N, k) float
        Rows (mean-removed unit rows, :func:`centered_unit_rows`).
    zones : (N,) int
    iters : int
    neighbours : (N, m) int, optional
        Row positions of each row's neighbours (-1 = none), e.g. the pairs' top-m lists.
    largest : int
        With ``neighbours``: the number of largest zones (ties: lowest id) every row is also
        compared with.

    Returns
    -------
    (N,) int64
        The refined zones (ids of the input zones, -1 = outlier).
    """
    z = np.asarray(zones, dtype=np.int64).copy()
    inz = np.flatnonzero(z >= 0)
    Ui = np.asarray(U, dtype=np.float64)[inz]               # read once, not once a round
    sq = np.einsum("ij,ij->i", Ui, Ui)
    cur = z[inz]
    for _ in range(iters):
        ids = np.unique(cur)
        if len(ids) < 2:
            break
        own = np.searchsorted(ids, cur)
        S = _zone_sums(Ui, own, len(ids))
        sizes = np.bincount(own, minlength=len(ids)).astype(np.float64)
        best = np.empty(len(inz), np.int64)
        if neighbours is not None:
            z[inz] = cur
            best = _best_among_neighbours(Ui, sq, own, S, sizes, ids, z, inz, neighbours,
                                          largest)
        step = max(1, _CELLS // len(ids))                   # (rows, Z) blocks of <= _CELLS
        for r0 in range(0, len(inz) if neighbours is None else 0, step):
            o = own[r0:r0 + step]
            r = np.arange(len(o))
            A = Ui[r0:r0 + step] @ S.T                      # (rows, Z): sum of dots to members
            A[r, o] -= sq[r0:r0 + step]                     # not with itself
            own_cnt = sizes[o] - 1.0
            own_mean = np.where(own_cnt > 0, A[r, o] / np.maximum(own_cnt, 1.0), -np.inf)
            A /= sizes
            A[r, o] = own_mean
            best[r0:r0 + step] = np.argmax(A, axis=1)
        new = ids[best]
        if np.array_equal(new, cur):
            break
        cur = new
    z[inz] = cur
    counts = np.bincount(z[inz] - z[inz].min(), minlength=1) if len(inz) else np.zeros(0)
    if len(inz):
        small = np.flatnonzero(counts < 2) + z[inz].min()
        z[np.isin(z, small)] = -1
    return z


def internal_conflict(features: np.ndarray, members: np.ndarray, max_members: int = 2000,
                      seed: int = 0) -> float:
    """Share of the negative cosine mass over every pair of a zone's members:
    ``sum max(0, -cos) / sum |cos|`` over ``i < j`` (raw unit rows; at most ``max_members``
    members, drawn with ``seed``, enter).

    Parameters
    ----------
    features : (N, k) float
    members : (n,) int
        Row positions.

    Returns
    -------
    float
        In [0, 1]; 0 for fewer than two members.
    """
    members = np.asarray(members)
    if len(members) > max_members:
        members = np.sort(np.random.default_rng(seed).choice(members, max_members,
                                                             replace=False))
    if len(members) < 2:
        return 0.0
    x = np.asarray(features[members], dtype=np.float64)
    nrm = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / np.where(nrm > 0, nrm, 1.0)
    c = (x @ x.T)[np.triu_indices(len(members), 1)]
    tot = np.abs(c).sum()
    return float(np.maximum(0.0, -c).sum() / tot) if tot > 0 else 0.0


def merge_zones(U: np.ndarray, zones: np.ndarray, above: float) -> np.ndarray:
    """Merge the two zones with the largest mean cross dot product while it exceeds ``above``.

    Parameters
    ----------
    U : (N, k) float
    zones : (N,) int
    above : float

    Returns
    -------
    (N,) int64
    """
    z = np.asarray(zones, dtype=np.int64).copy()
    ids, sizes, K = zone_coupling(U, z)
    if len(ids) < 2:
        return z
    # the coupling is updated per merge from the zones' row sums (O(Z k) a merge, not O(N k))
    inz = z >= 0
    own = np.searchsorted(ids, z[inz])
    Uz = np.asarray(U, dtype=np.float64)[inz]
    S = _zone_sums(Uz, own, len(ids))
    sq = np.bincount(own, weights=np.einsum("ij,ij->i", Uz, Uz), minlength=len(ids))
    sizes = sizes.astype(np.float64)
    alive = np.ones(len(ids), bool)
    target = np.arange(len(ids))                            # zone index -> the one it joined
    off = K.copy()
    np.fill_diagonal(off, -np.inf)
    while alive.sum() >= 2:
        a, b = np.unravel_index(int(np.argmax(off)), off.shape)
        if not off[a, b] > above:
            break
        S[a] += S[b]
        sq[a] += sq[b]
        sizes[a] += sizes[b]
        alive[b] = False
        target[target == b] = a
        row = (S @ S[a]) / np.maximum(sizes * sizes[a], 1.0)
        row[~alive] = -np.inf
        row[a] = -np.inf
        off[a, :] = row
        off[:, a] = row
        off[b, :] = -np.inf
        off[:, b] = -np.inf
    z[inz] = ids[target[own]]
    return z


def _labels(texts: Sequence[str], zones: list[list[int]], n_terms: int) -> list[str]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    try:
        vec = TfidfVectorizer(stop_words="english", max_features=50_000, sublinear_tf=True,
                              token_pattern=r"(?u)\b[^\W\d_]{2,}\b")
        M = vec.fit_transform(texts)
    except ValueError:  # empty vocabulary
        return [""] * len(zones)
    terms = np.asarray(vec.get_feature_names_out())
    mean_all = np.asarray(M.mean(axis=0)).ravel()
    out = []
    for members in zones:
        d = np.asarray(M[members].mean(axis=0)).ravel() - mean_all
        top = np.argsort(-d, kind="stable")[:n_terms]
        out.append(" / ".join(terms[t] for t in top if d[t] > 0))
    return out


def analyze_zones(
    top_idx: np.ndarray,
    top_val: np.ndarray,
    *,
    ids: np.ndarray | None = None,
    texts: Sequence[str] | None = None,
    tau: float | None = None,
    features: np.ndarray | None = None,
    merge_above: float | None = None,
    pressure_above: float | None = None,
    config: AnalysisConfig | None = None,
) -> ZonesResult:
    """Constraint graph, Louvain zones ranked by pressure, outliers.

    Parameters
    ----------
    top_idx : (N, m) int64
    top_val : (N, m) float
        From ``analyze_pairs(...).top_idx`` / ``.top_val``.
    ids : (N,) int, optional
    texts : sequence of N str, optional
        Example texts for the zone labels.
    tau : float, optional
        Default edge threshold when ``config.zone_edge_min`` is None (0 if both are None).
    features : (N, k) float, optional
        The constraint rows: the communities are refined on their mean-removed unit rows
        (module docstring) and each zone gets its ``coherence``.
    merge_above : float, optional
        Merge zones whose mean cross cosine (mean-removed unit rows) exceeds this (the null's
        largest zone coherence); needs ``features``.
    pressure_above : float, optional
        A zone is a pressure zone when its conflict share exceeds this (the null's largest
        zone conflict share). None: the fixed ``config.zone_conflict_share``.
    config : AnalysisConfig

    Returns
    -------
    ZonesResult
        ``name="zones"``. Table: ``zone`` (rank, -1 = outlier), ``is_outlier``,
        ``is_pressure_zone``, ``zone_pressure``, ``pressure_score`` (zone pressure / the largest,
        in [0, 1]). Summary: ``zones`` (ranked list of dicts), ``outliers``, ``pressure_rule``.
        ``graph``: the constraint graph, node attributes ``zone`` and ``label``.
    """
    config = config if config is not None else AnalysisConfig()
    N = top_idx.shape[0]
    ids = np.arange(N) if ids is None else np.asarray(ids)
    edge_min = config.zone_edge_min if config.zone_edge_min is not None else (tau or 0.0)
    ea, eb, ew = _edge_arrays(top_idx, top_val, edge_min)
    pos = {int(i): p for p, i in enumerate(ids)}
    # Louvain on the rows with an edge, in the node and adjacency order networkx's
    # louvain_communities would see (a graph of them built as the constraint graph is: a set
    # of them when fewer than half of the rows, as networkx's subgraph view listed them):
    # constraintlab._kernels.louvain gives networkx's communities from arrays
    deg = np.bincount(np.concatenate([ea, eb]), minlength=N) if len(ea) else np.zeros(N, int)
    core_nodes = ids[deg > 0].tolist()
    if 2 * len(core_nodes) < N:
        core_nodes = list(set(core_nodes))
    core_pos = np.array([pos[int(v)] for v in core_nodes], np.int64)
    at = np.full(N, -1, np.int64)
    at[core_pos] = np.arange(len(core_pos))
    comm = np.full(N, -1, np.int64)
    n_comms = 0
    if len(core_pos):
        lab = louvain(*adjacency_from_edges(len(core_pos), at[ea], at[eb], np.abs(ew)),
                      resolution=config.louvain_resolution, seed=config.seed)
        size = np.bincount(lab)
        n_comms = len(size)
        keep = size[lab] >= 2
        comm[core_pos[keep]] = lab[keep]
    ga, gb, gw, _ = unique_pairs(ea, eb, ew, N)        # one weight per pair: the last listed
    del ea, eb, ew
    refined = features is not None and n_comms > 0
    coherence: dict[int, float] = {}
    refine_rule = None
    if refined:
        Uc = centered_unit_rows(features)
        n_zones = len(np.unique(comm[comm >= 0]))
        cells = int((comm >= 0).sum()) * n_zones
        if cells > config.zone_refine_exact_max_cells and n_zones > config.zone_refine_largest:
            nbrs = top_idx
            refine_rule = (f"each row against its own zone, its top-m neighbours' zones and "
                           f"the {config.zone_refine_largest} largest zones (rows x zones = "
                           f"{cells:,} > zone_refine_exact_max_cells = "
                           f"{config.zone_refine_exact_max_cells:,})")
        else:
            nbrs = None
            refine_rule = "each row against every zone"
        comm = refine_zones(Uc, comm, config.zone_refine_iters, nbrs,
                            config.zone_refine_largest)
        if merge_above is not None:
            comm = merge_zones(Uc, comm, merge_above)
            comm = refine_zones(Uc, comm, config.zone_refine_iters, nbrs,
                                config.zone_refine_largest)
        zid, _, K = zone_coupling(Uc, comm)
        coherence = {int(a): float(K[i, i]) for i, a in enumerate(zid)}
        del Uc
    # every zone's internal edges at once (one weight per pair, the last listed)
    zone_ids = np.unique(comm[comm >= 0])
    inside = (comm[ga] == comm[gb]) & (comm[ga] >= 0)
    ez = np.searchsorted(zone_ids, comm[ga[inside]])
    wz = gw[inside]
    nz = len(zone_ids)
    e_count = np.bincount(ez, minlength=nz)
    e_abs = np.bincount(ez, weights=np.abs(wz), minlength=nz)
    e_neg = np.bincount(ez, weights=np.where(wz < 0, -wz, 0.0), minlength=nz)
    e_sum = np.bincount(ez, weights=wz, minlength=nz)
    order = np.lexsort((np.arange(N), comm))                 # by zone, positions ascending
    starts = np.searchsorted(comm[order], zone_ids)
    ends = np.searchsorted(comm[order], zone_ids, side="right")
    zones = []
    outliers = sorted(int(ids[p]) for p in np.flatnonzero(comm < 0))
    for j, c_id in enumerate(zone_ids):
        at = order[starts[j]:ends[j]]                         # row positions, ascending
        members = sorted(ids[at].tolist())
        n_w = int(e_count[j])
        total = float(e_abs[j])
        size = len(members)
        conflict_share = float(e_neg[j] / total) if total > 0 else 0.0
        mean_abs = total / n_w if n_w else 0.0
        zones.append({
            "size": size,
            "members": members,
            "internal_edges": n_w,
            "conflict_share": conflict_share,
            "mean_alignment": float(e_sum[j] / n_w) if n_w else 0.0,
            "mean_abs_weight": mean_abs,
            "density": 2.0 * n_w / (size * (size - 1)),
            "pressure": conflict_share * mean_abs * math.log1p(size),
            "coherence": coherence.get(int(c_id)),
            "internal_conflict": (internal_conflict(features, at, seed=config.seed)
                                  if features is not None else None),
        })
    zones.sort(key=lambda z: (-z["pressure"], -z["size"], z["members"][0]))
    outliers.sort()
    if texts is not None and zones:
        labels = _labels(list(texts), [[pos[m] for m in z["members"]] for z in zones],
                         config.zone_terms)
    else:
        labels = [""] * len(zones)
    zone_of = np.full(N, -1, np.int64)
    pressure = np.zeros(N)
    is_pz = np.zeros(N, bool)
    for rank, (z, lab) in enumerate(zip(zones, labels, strict=True)):
        z["zone"] = rank
        z["label"] = lab or f"zone {rank}"
        z["is_pressure_zone"] = bool(
            z["internal_conflict"] > pressure_above
            if pressure_above is not None and z["internal_conflict"] is not None
            else z["conflict_share"] >= config.zone_conflict_share)
        p = [pos[m] for m in z["members"]]
        zone_of[p] = rank
        pressure[p] = z["pressure"]
        is_pz[p] = z["is_pressure_zone"]
    pmax = pressure.max() if N and pressure.max() > 0 else 1.0
    table = pd.DataFrame({
        "zone": zone_of,
        "is_outlier": zone_of < 0,
        "is_pressure_zone": is_pz,
        "zone_pressure": pressure,
        "pressure_score": np.clip(pressure / pmax, 0.0, 1.0),
    }, index=pd.Index(ids, name="index"))
    summary = {
        "count": len(zones),
        "pressure_zones": int(sum(z["is_pressure_zone"] for z in zones)),
        "max_zone_pressure": max((z["pressure"] for z in zones), default=0.0),
        "zones": [{"id": z["zone"], "rank": z["zone"] + 1, "label": z["label"],
                   "size": z["size"], "members": z["members"],
                   "internal_edges": z["internal_edges"],
                   "internal_conflict_share": z["conflict_share"],
                   "mean_alignment": z["mean_alignment"], "density": z["density"],
                   "pressure": z["pressure"], "coherence": z["coherence"],
                   "internal_conflict": z["internal_conflict"],
                   "is_pressure_zone": z["is_pressure_zone"]}
                  for z in zones],
        "pressure_zone_examples": int(is_pz.sum()),
        "pressure_zone_share": float(is_pz.mean()) if N else 0.0,
        "pressure_zone_rule": (
            f"internal_conflict > {pressure_above:.4g}: mean + pressure_null_sigmas * sd of the "
            "internal conflict of the zones of the data's Gaussian null (same pairs, graph and "
            "zones), and at least their largest" if pressure_above is not None
            else f"conflict_share >= zone_conflict_share = {config.zone_conflict_share} (fixed: "
                 "no null without features)"),
        "refined": bool(refined),
        "refine_rule": refine_rule,
        "merge_above": merge_above,
        "outliers": outliers,
        "n_outliers": len(outliers),
        "edge_min": edge_min,
        "graph_edges": len(ga),
        "pressure_rule": "conflict_share * mean_abs_weight * log(1 + size)",
        "louvain": {"seed": config.seed, "resolution": config.louvain_resolution,
                    "weight": "abs(cos)"},
    }
    ea, eb = ids[ga], ids[gb]
    edges = pd.DataFrame({"a": np.minimum(ea, eb), "b": np.maximum(ea, eb), "cos": gw})
    edges = edges.sort_values(["a", "b"], kind="stable", ignore_index=True)
    return ZonesResult("zones", table, summary, labels=zone_of,
                       ranked=[z["zone"] for z in zones], edges=edges)


def _run(system, results, config: AnalysisConfig) -> ZonesResult | None:
    pairs, null = results.pairs, results.null
    if pairs is None:
        return None
    text = system.text
    ref = null.reference if null is not None else None
    return analyze_zones(
        pairs.top_idx, pairs.top_val, ids=system.ids,
        texts=text.record if text is not None else None, tau=pairs.summary["tau"],
        features=system.features, merge_above=ref.coherence_max if ref is not None else None,
        pressure_above=(ref.pressure_threshold(config.pressure_null_sigmas)
                        if ref is not None else None), config=config)


ANALYZER = Analyzer(
    name="zones", run=_run, section="zones", after=("pairs", "null"),
    metrics={"zones": Metric("count", "communities of the constraint graph"),
             "pressure_zones": Metric("pressure_zones", "zones whose internal conflict exceeds "
                                      "what the data's Gaussian null gives"),
             "pressure_zone_share": Metric("pressure_zone_share", "share of the examples in a "
                                           "pressure zone"),
             "max_zone_pressure": Metric("max_zone_pressure", "the highest zone pressure "
                                         "score")})

