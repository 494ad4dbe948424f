"""Constraint graph and pressure zones on planted block systems."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from constraintlab.analysis import (
    AnalysisConfig,
    analyze_constraints,
    analyze_zones,
    build_graph,
)
from constraintlab.analysis.zones import (
    centered_unit_rows,
    merge_zones,
    refine_zones,
    zone_coupling,
)
from constraintlab.io.example import Example, Message


def _blocks(seed=0, size=40, k=64, sigma=0.06):
    rng = np.random.default_rng(seed)
    D = np.linalg.qr(rng.standard_normal((k, 4)))[0].T  # 4 orthonormal directions
    rows, truth = [], []
    for b in range(4):
        sign = rng.choice([-1.0, 1.0], size)[:, None] if b == 2 else np.ones((size, 1))
        rows.append(sign * D[b] + sigma * rng.standard_normal((size, k)))
        truth += [b] * size
    outl = rng.standard_normal((3, k))
    outl /= np.linalg.norm(outl, axis=1, keepdims=True)
    return np.vstack([*rows, outl]), np.array(truth)


def _example(i, text, topic):
    return Example(index=i, line=i + 1, source="<records>", schema="qa",
                   messages=(Message("user", f"{topic} question {text}"),
                             Message("assistant", f"{topic} answer")),
                   targets=(1,), chat=False, raw={})


def test_four_blocks_recovered_and_conflicted_ranked_first():
    X, truth = _blocks()
    topics = ["apples", "rivers", "taxes", "planets"]
    examples = [_example(i, str(i), topics[truth[i]] if i < len(truth) else "misc")
                for i in range(len(X))]
    cfg = AnalysisConfig(top_m=10)
    out = analyze_constraints(X.astype(np.float32), examples=examples, config=cfg)
    # the graph alone (no rows: no refinement, no null; the fixed conflict-share rule)
    z = analyze_zones(out.pairs.top_idx, out.pairs.top_val, ids=out.ids,
                      texts=[e.input_text for e in examples], tau=out.pairs.summary["tau"],
                      config=cfg)
    G = z.graph
    zones = z.summary["zones"]
    assert "fixed" in z.summary["pressure_zone_rule"]
    assert z.summary["count"] == 4
    labels = z.table["zone"].to_numpy()
    assert adjusted_rand_score(truth, labels[: len(truth)]) >= 0.9
    # the block with +/- members (block 2) is ranked first, the others have no conflict
    first = set(zones[0]["members"])
    assert first == set(np.flatnonzero(truth == 2))
    assert zones[0]["internal_conflict_share"] > 0.3 and zones[0]["is_pressure_zone"]
    assert all(zz["internal_conflict_share"] == 0 and zz["pressure"] == 0 for zz in zones[1:])
    assert "taxes" in zones[0]["label"]
    assert z.summary["outliers"] == [160, 161, 162]
    assert z.table["is_outlier"].sum() == 3
    assert ((z.table["pressure_score"] >= 0) & (z.table["pressure_score"] <= 1)).all()
    # zone stats against networkx on the same graph
    sub = G.subgraph(zones[0]["members"])
    w = np.array([d["weight"] for _, _, d in sub.edges(data=True)])
    assert zones[0]["density"] == pytest.approx(nx.density(sub))
    assert zones[0]["internal_conflict_share"] == pytest.approx(
        np.abs(w[w < 0]).sum() / np.abs(w).sum())
    assert zones[0]["mean_alignment"] == pytest.approx(w.mean())
    assert zones[0]["pressure"] == pytest.approx(
        zones[0]["internal_conflict_share"] * np.abs(w).mean() * np.log1p(len(zones[0]["members"])))


def test_refined_zones_keep_agreeing_blocks_and_split_opposed_members():
    # with the rows, zones are refined on the mean-removed unit rows: blocks whose members
    # agree stay whole; the +/- members of block 2 ask opposite things and do not stay one
    # zone; what they do to each other is interference beyond the data's null
    X, truth = _blocks()
    out = analyze_constraints(X.astype(np.float32), config=AnalysisConfig(top_m=10))
    labels = out.zones.labels[: len(truth)]
    assert out.zones.summary["refined"]
    for b in (0, 1, 3):
        assert len(set(labels[truth == b])) == 1
    b2 = truth == 2
    sign = np.sign(X[: len(truth)][b2] @ np.linalg.qr(np.random.default_rng(0).standard_normal(
        (64, 4)))[0].T[2])
    for s in (-1, 1):                     # each half lies in one zone, the halves in two
        assert len(set(labels[b2][sign == s])) == 1
    assert len(set(labels[b2])) == 2
    assert out.interference.summary["interference_above_null"]


def test_graph_edges_signed_and_thresholded():
    top_idx = np.array([[1, 2], [0, 2], [0, -1]])
    top_val = np.array([[0.9, -0.2], [0.9, -0.7], [-0.2, 0.0]], dtype=np.float32)
    G = build_graph(top_idx, top_val, np.array([10, 11, 12]), edge_min=0.5)
    assert sorted(G.edges(data="weight")) == [(10, 11, pytest.approx(0.9)),
                                              (11, 12, pytest.approx(-0.7))]
    res = analyze_zones(top_idx, top_val, ids=np.array([10, 11, 12]),
                        config=AnalysisConfig(zone_edge_min=0.5))
    assert res.summary["count"] + res.summary["n_outliers"] >= 1
    assert set(res.graph.nodes) == {10, 11, 12}


def test_zones_invariant_to_permutation():
    X, _ = _blocks(seed=1)
    n = len(X)
    perm = np.random.default_rng(5).permutation(n)
    a = analyze_constraints(X).zones.table["zone"].to_numpy()
    b = analyze_constraints(X[perm], ids=perm).zones.table["zone"].to_numpy()
    assert adjusted_rand_score(a[perm], b) == pytest.approx(1.0)


def _brute_refine_round(U, z, candidates):
    """One refinement round by loops: each zoned row to the candidate zone whose other members
    it aligns with most (mean dot product; lowest zone id on ties), then zones of one
    dissolve."""
    new = z.copy()
    for i in np.flatnonzero(z >= 0):
        best, bz = -np.inf, z[i]
        for c in sorted(candidates(i)):
            mem = [j for j in np.flatnonzero(z == c) if j != i]
            if mem and np.mean([U[i] @ U[j] for j in mem]) > best:
                best, bz = np.mean([U[i] @ U[j] for j in mem]), c
        new[i] = bz
    sizes = {c: int((new == c).sum()) for c in set(new[new >= 0].tolist())}
    return np.array([c if c >= 0 and sizes[c] >= 2 else -1 for c in new])


def _noisy_zones(seed=0, n=240, k=16):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, k))
    for b in range(3):
        X[b * 60:(b + 1) * 60] += 1.5 * rng.standard_normal(k)
    return centered_unit_rows(X), rng.integers(-1, 7, n), rng


def test_refinement_round_against_loops():
    U, z0, rng = _noisy_zones()
    zs = set(z0[z0 >= 0].tolist())
    assert np.array_equal(refine_zones(U, z0, 1), _brute_refine_round(U, z0, lambda i: zs))
    nb = rng.integers(-1, len(U), (len(U), 4))   # candidates: own zone + neighbours' zones
    ref = _brute_refine_round(
        U, z0, lambda i: {z0[i]} | {z0[j] for j in nb[i] if j >= 0 and z0[j] >= 0})
    assert np.array_equal(refine_zones(U, z0, 1, neighbours=nb), ref)
    # every row a neighbour of every row: the same as comparing with every zone, all rounds
    everyone = np.tile(np.arange(len(U)), (len(U), 1))
    assert np.array_equal(refine_zones(U, z0, 30, neighbours=everyone),
                          refine_zones(U, z0, 30))


def test_merge_against_recomputed_coupling():
    U, z0, _ = _noisy_zones(seed=3)
    for above in (-1.0, 0.0, 0.05, 0.2):
        ref = z0.copy()                        # merge the most coupled pair, recompute, repeat
        while True:
            ids, _, K = zone_coupling(U, ref)
            if len(ids) < 2:
                break
            off = K.copy()
            np.fill_diagonal(off, -np.inf)
            a, b = np.unravel_index(int(np.argmax(off)), off.shape)
            if not off[a, b] > above:
                break
            ref[ref == ids[b]] = ids[a]
        assert np.array_equal(merge_zones(U, z0, above), ref), above


def test_refinement_above_the_cap_uses_neighbours_and_says_so():
    X, _ = _blocks()
    out = analyze_constraints(X.astype(np.float32), config=AnalysisConfig(top_m=10))
    assert out.zones.summary["refine_rule"] == "each row against every zone"
    # at most zone_refine_largest zones: the exact refinement whatever the cap
    few = analyze_constraints(X.astype(np.float32),
                              config=AnalysisConfig(top_m=10, zone_refine_exact_max_cells=1))
    assert few.zones.summary["refine_rule"] == "each row against every zone"
    assert np.array_equal(few.zones.labels, out.zones.labels)
    capped = analyze_constraints(X.astype(np.float32), config=AnalysisConfig(
        top_m=10, zone_refine_exact_max_cells=1, zone_refine_largest=1))
    rule = capped.zones.summary["refine_rule"]
    assert "neighbours' zones and the 1 largest" in rule
    assert "zone_refine_exact_max_cells = 1" in rule


def test_refinement_with_the_largest_zones_against_loops():
    U, z0, rng = _noisy_zones(seed=7)
    nb = rng.integers(-1, len(U), (len(U), 3))
    sizes = {c: int((z0 == c).sum()) for c in set(z0[z0 >= 0].tolist())}
    big = sorted(sorted(sizes, key=lambda c: (-sizes[c], c))[:2])
    ref = _brute_refine_round(
        U, z0, lambda i: {z0[i], *big} | {z0[j] for j in nb[i] if j >= 0 and z0[j] >= 0})
    assert np.array_equal(refine_zones(U, z0, 1, neighbours=nb, largest=2), ref)


@pytest.mark.parametrize("outlier_share", [0.1, 0.7])
def test_zones_without_rows_are_networkx_louvain_communities(outlier_share):
    # no rows: no refinement; the zones are networkx's Louvain communities of the constraint
    # graph's rows with an edge (computed on arrays by constraintlab._kernels.louvain)
    rng = np.random.default_rng(4)
    n, m = 400, 8
    active = np.flatnonzero(rng.random(n) >= outlier_share)   # the others have no edge
    top_idx = active[rng.integers(0, len(active), (n, m))]
    top_val = rng.uniform(-1, 1, (n, m)).astype(np.float32)
    top_val[np.setdiff1d(np.arange(n), active)] = 0.0
    ids = rng.permutation(10 * n)[:n]
    cfg = AnalysisConfig(zone_edge_min=0.3, seed=7)
    z = analyze_zones(top_idx, top_val, ids=ids, config=cfg)
    G = build_graph(top_idx, top_val, ids, edge_min=0.3)
    core = G.subgraph([v for v in G if G.degree(v) > 0])
    assert (2 * len(core) < n) == (outlier_share > 0.5)   # both of zones' node orders
    ref = nx.community.louvain_communities(core, weight="abs_weight", seed=7)
    assert sorted(sorted(c) for c in ref if len(c) >= 2) == sorted(
        zz["members"] for zz in z.summary["zones"])
    assert sorted(z.summary["outliers"]) == sorted(
        [v for c in ref if len(c) < 2 for v in c] + [v for v in G if G.degree(v) == 0])
    # the lazily built graph is build_graph's, with the zones on its nodes
    assert sorted(z.graph.edges(data="weight")) == sorted(G.edges(data="weight"))
    zone_of = z.table["zone"]
    assert all(z.graph.nodes[v]["zone"] == zone_of[v] for v in G)
