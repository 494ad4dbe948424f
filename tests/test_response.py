"""Response map against the dense Gram matrix (its own pass and the one pass it shares with the
all-pairs statistics), the zone matrix against a brute-force double loop, and the signed top-m
kernel against its NumPy twin."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tolerance import assert_close_tree

from constraintlab._kernels.pairs import hist_bin
from constraintlab._kernels.response import (
    block_signed_topm,
    block_signed_topm_numpy,
    new_signed_state,
)
from constraintlab.analysis import (
    AnalysisConfig,
    analyze_constraints,
    analyze_pairs,
    analyze_response,
)
from constraintlab.analysis.blocks import unit_rows
from constraintlab.analysis.response import zone_matrix

N, K, M = 60, 12, 5


@pytest.fixture(scope="module")
def system() -> dict:
    rng = np.random.default_rng(7)
    # a few shared directions so that helpers and hurters are not all noise
    basis = rng.normal(size=(4, K))
    G = (rng.normal(size=(N, 4)) @ basis + 0.5 * rng.normal(size=(N, K))).astype(np.float32)
    G[5] = 0.0  # a zero row: no helper, no hurter, no effect
    zones = rng.integers(-1, 4, N)
    ids = np.arange(1000, 1000 + N) * 3
    D = G.astype(np.float64) @ G.astype(np.float64).T  # the dense Gram matrix
    return {"G": G, "zones": zones, "ids": ids, "D": D}


def _check(res, G, D, ids, m) -> None:
    n = len(G)
    off = ~np.eye(n, dtype=bool)
    Doff = np.where(off, D, 0.0)
    t = res.table
    assert list(t.index) == list(ids)
    np.testing.assert_allclose(t["net_effect"], -Doff.sum(1), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(t["help_effect"], -np.clip(Doff, 0, None).sum(1), rtol=1e-5,
                               atol=1e-4)
    np.testing.assert_allclose(t["hurt_effect"], -np.clip(Doff, None, 0).sum(1), rtol=1e-5,
                               atol=1e-4)
    np.testing.assert_allclose(t["help_effect"] + t["hurt_effect"], t["net_effect"], rtol=1e-5,
                               atol=1e-4)
    np.testing.assert_allclose(t["self_effect"], -np.diag(D), rtol=1e-9)
    for i in range(n):
        cand = np.flatnonzero(off[i])
        by_desc = cand[np.argsort(-D[i, cand], kind="stable")]
        want_help = [j for j in by_desc[:m] if D[i, j] > 0]
        want_hurt = [j for j in by_desc[::-1][:m] if D[i, j] < 0]
        got_help = [j for j in res.helper_idx[i] if j >= 0]
        got_hurt = [j for j in res.hurter_idx[i] if j >= 0]
        assert got_help == want_help, i  # same partners, same order
        assert got_hurt == want_hurt, i
        np.testing.assert_allclose(res.helper_effect[i, :len(want_help)], -D[i, want_help],
                                   rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(res.hurter_effect[i, :len(want_hurt)], -D[i, want_hurt],
                                   rtol=1e-4, atol=1e-4)
        assert list(res.helper_ids[i, :len(want_help)]) == list(ids[want_help])
        assert t["top_helper"].iloc[i] == (ids[want_help[0]] if want_help else -1)
        assert t["top_hurter"].iloc[i] == (ids[want_hurt[0]] if want_hurt else -1)
        assert (res.helper_effect[i] <= 0).all() and (res.hurter_effect[i] >= 0).all()


@pytest.mark.parametrize("block_size", [16, 2048])
def test_response_map_equals_the_dense_gram_matrix(system, block_size) -> None:
    G, D, ids = system["G"], system["D"], system["ids"]
    cfg = AnalysisConfig(block_size=block_size, response_top_m=M)
    res = analyze_response(G, ids=ids, zones=system["zones"], config=cfg)
    _check(res, G, D, ids, M)
    assert res.summary["method"] == "exact"
    assert res.helper_idx[5].max() == -1 and res.hurter_idx[5].max() == -1
    assert res.table["net_effect"].iloc[5] == 0.0
    net = -np.where(~np.eye(N, dtype=bool), D, 0).sum(1)
    assert res.summary["total_effect"] == pytest.approx(net.sum(), rel=1e-9)
    assert res.summary["helpful_examples"] == int((net < -1e-9).sum())
    assert [e["index"] for e in res.summary["most_helpful"]] == \
        list(ids[np.argsort(net)[: cfg.response_list]][net[np.argsort(net)][:20] < 0])
    json.dumps(res.summary, allow_nan=False)


def test_sampled_mode_with_every_example_as_reference_is_exact(system) -> None:
    G, D, ids = system["G"], system["D"], system["ids"]
    cfg = AnalysisConfig(block_size=16, response_top_m=M, exact_max_n=10, sample_reference=N)
    res = analyze_response(G, ids=ids, config=cfg)
    assert res.summary["method"] == "sampled"
    _check(res, G, D, ids, M)


def test_zone_matrix_equals_a_brute_force_double_loop(system) -> None:
    G, D, zones = system["G"], system["D"], system["zones"]
    res = analyze_response(G, zones=zones, config=AnalysisConfig(block_size=16))
    s = res.summary
    assert s["zone_ids"] == [0, 1, 2, 3, -1]
    Z = len(s["zone_ids"])
    brute = np.zeros((Z, Z))
    pairs = np.zeros((Z, Z), int)
    for a, za in enumerate(s["zone_ids"]):
        for b, zb in enumerate(s["zone_ids"]):
            for i in np.flatnonzero(zones == za):
                for j in np.flatnonzero(zones == zb):
                    if i != j:
                        brute[a, b] -= D[i, j]
                        pairs[a, b] += 1
    np.testing.assert_allclose(s["zone_matrix"], brute, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(s["zone_matrix_mean"], brute / pairs, rtol=1e-9, atol=1e-9)
    assert s["zone_sizes"] == [int((zones == z).sum()) for z in s["zone_ids"]]
    np.testing.assert_allclose(s["zone_net_effect"], brute.sum(1) - np.diag(brute), rtol=1e-9)
    # every pair in exactly one cell: the matrix sums to the total net effect
    assert np.sum(s["zone_matrix"]) == pytest.approx(s["total_effect"], rel=1e-9)


def test_zone_matrix_singleton_zone_has_no_mean_on_its_diagonal() -> None:
    G = np.array([[1.0, 0.0], [0.5, 0.5], [-1.0, 2.0]], np.float32)
    res = analyze_response(G, zones=np.array([0, 0, 1]))
    s = res.summary
    # zone 0 = rows 0, 1; zone 1 = row 2. M[0,1] = -(g0 + g1) . g2 = -(-1 + 0.5) = 0.5
    np.testing.assert_allclose(s["zone_matrix"], [[-1.0, 0.5], [0.5, 0.0]], atol=1e-12)
    assert s["zone_matrix_mean"][1][1] is None
    assert s["zone_matrix_mean"][0][0] == pytest.approx(-0.5)
    json.dumps(s, allow_nan=False)
    _, sizes, _, pairs = zone_matrix(G, np.array([0, 0, 1]))
    assert list(sizes) == [2, 1] and pairs.tolist() == [[2, 2], [2, 0]]


@pytest.mark.parametrize(("diag", "do_cols", "shared"), [(True, True, False),
                                                         (False, True, False),
                                                         (False, False, False),
                                                         (False, False, True)])
@pytest.mark.parametrize("n_chunks", [1, 3])  # 1: one chunk, as in a lane
def test_signed_topm_kernel_matches_its_numpy_twin(diag, do_cols, shared, n_chunks) -> None:
    rng = np.random.default_rng(3)
    n, m = 40, 4
    R = 13
    rows = np.arange(5, 5 + R, dtype=np.int64)
    if diag:
        cols = rows
    elif shared:
        cols = np.sort(rng.choice(n, 17, replace=False)).astype(np.int64)
        cols[0] = rows[2]  # an example against itself: skipped
        cols.sort()
    else:
        cols = np.arange(20, 37, dtype=np.int64)
    C = rng.normal(size=(R, len(cols))).astype(np.float32)
    if diag:
        C = np.triu(C) + np.triu(C, 1).T
    s1, s2 = new_signed_state(n, m), new_signed_state(n, m)
    wr, wc = np.ones(R, np.float32), np.ones(len(cols), np.float32)
    for _ in range(2):  # twice: the second fold merges into filled heaps
        block_signed_topm(C, rows, cols, diag, do_cols, n_chunks, wr, wc, *s1)
        block_signed_topm_numpy(C, rows, cols, diag, do_cols, n_chunks, wr, wc, *s2)
    for key, idx, val in ((0, 1, 2), (3, 4, 5)):
        o1 = np.argsort(-s1[key], axis=1, kind="stable")
        o2 = np.argsort(-s2[key], axis=1, kind="stable")
        for arr in (key, idx, val):
            np.testing.assert_array_equal(np.take_along_axis(s1[arr], o1, 1),
                                          np.take_along_axis(s2[arr], o2, 1))
    np.testing.assert_allclose(s1[6], s2[6], rtol=1e-12)
    np.testing.assert_allclose(s1[7], s2[7], rtol=1e-12)


def test_analyze_constraints_adds_the_response_map_with_the_zones(system) -> None:
    G = system["G"]
    res = analyze_constraints(G, config=AnalysisConfig(block_size=16))
    r = res.response
    assert r.name == "response"
    zone_ids = res.zones.table["zone"].to_numpy()
    want = sorted({int(z) for z in zone_ids if z >= 0}) + ([-1] if (zone_ids < 0).any() else [])
    assert r.summary["zone_ids"] == want
    _check(r, G, system["D"], np.arange(N), AnalysisConfig().response_top_m)


@pytest.mark.parametrize("block_size", [16, 2048])
def test_one_pass_gives_the_dense_gram_statistics_and_response_map(system, block_size) -> None:
    """analyze_pairs folds the statistics and the response partners from the same blocks;
    both equal the dense NumPy Gram matrix, and the response map equals its own pass."""
    G, D, ids, zones = system["G"], system["D"], system["ids"], system["zones"]
    cfg = AnalysisConfig(block_size=block_size, response_top_m=M, top_m=4, hist_bins=30)
    p = analyze_pairs(G, ids=ids, config=cfg)
    assert p.partners is not None and p.partners.reference is None
    res = analyze_response(G, ids=ids, zones=zones, pairs=p, config=cfg)
    _check(res, G, D, ids, M)
    # the statistics against the dense cosine matrix
    Xn = unit_rows(G)[0]
    Cn = (Xn @ Xn.T).astype(np.float64)
    tau = p.summary["tau"]
    v = Cn[np.triu_indices(N, 1)]
    np.testing.assert_array_equal(p.summary["histogram"]["counts"],
                                  np.bincount(hist_bin(v, 30), minlength=30))
    np.fill_diagonal(Cn, 0.0)
    np.testing.assert_array_equal(p.table["conflict_count"], (Cn < -tau).sum(1))
    np.testing.assert_array_equal(p.table["alignment_count"], (Cn > tau).sum(1))
    A = np.abs(Cn)
    np.fill_diagonal(A, -1)
    np.testing.assert_allclose(np.abs(p.top_val), -np.sort(-A, axis=1)[:, :4], atol=1e-6)
    # the same numbers as the response map's own pass
    own = analyze_response(G, ids=ids, zones=zones, config=cfg)
    for col in own.table.columns:
        np.testing.assert_allclose(res.table[col], own.table[col], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(res.helper_idx, own.helper_idx)
    np.testing.assert_array_equal(res.hurter_idx, own.hurter_idx)
    assert_close_tree(res.summary, own.summary)      # two passes: floats to rel 1e-9


def test_one_pass_sampled_mode_reads_the_reference_rows(system) -> None:
    """Sampled mode: partners and help/hurt sums against the pairs' reference rows only
    (brute force on the dense Gram matrix), sums scaled to N - 1 partners."""
    G, D, ids = system["G"], system["D"], system["ids"]
    cfg = AnalysisConfig(block_size=16, response_top_m=M, exact_max_n=10, sample_reference=25,
                         sample_pairs=500)
    p = analyze_pairs(G, ids=ids, config=cfg)
    ref = p.partners.reference
    assert len(ref) == 25 and (np.diff(ref) > 0).all()
    res = analyze_response(G, ids=ids, pairs=p, config=cfg)
    assert res.summary["method"] == "sampled"
    for i in range(N):
        cand = ref[ref != i]
        d = D[i, cand]
        scale = (N - 1) / len(cand)
        assert res.table["help_effect"].iloc[i] == pytest.approx(
            -scale * np.clip(d, 0, None).sum(), rel=1e-5, abs=1e-4)
        assert res.table["hurt_effect"].iloc[i] == pytest.approx(
            -scale * np.clip(d, None, 0).sum(), rel=1e-5, abs=1e-4)
        order = cand[np.argsort(-d, kind="stable")]
        want = [j for j in order[:M] if D[i, j] > 0]
        assert [j for j in res.helper_idx[i] if j >= 0] == want, i
    # the response map's own sampled pass draws the same reference
    own = analyze_response(G, ids=ids, config=cfg)
    np.testing.assert_array_equal(own.helper_idx, res.helper_idx)
    np.testing.assert_allclose(own.table["help_effect"], res.table["help_effect"], rtol=1e-6)


@pytest.mark.parametrize("n_chunks", [1, 2])
def test_signed_topm_kernel_with_weights_matches_its_numpy_twin(n_chunks) -> None:
    """Cosine blocks scaled back to dot products by row/column weights."""
    rng = np.random.default_rng(5)
    n, m, R, Q = 50, 3, 11, 19
    rows = np.arange(0, R, dtype=np.int64)
    cols = np.arange(20, 20 + Q, dtype=np.int64)
    C = rng.uniform(-1, 1, (R, Q)).astype(np.float32)
    wr = rng.uniform(0.1, 5.0, R).astype(np.float32)
    wc = rng.uniform(0.1, 5.0, Q).astype(np.float32)
    s1, s2 = new_signed_state(n, m), new_signed_state(n, m)
    block_signed_topm(C, rows, cols, False, True, n_chunks, wr, wc, *s1)
    block_signed_topm_numpy(C, rows, cols, False, True, n_chunks, wr, wc, *s2)
    for key, idx, val in ((0, 1, 2), (3, 4, 5)):
        o1 = np.argsort(-s1[key], axis=1, kind="stable")
        o2 = np.argsort(-s2[key], axis=1, kind="stable")
        for arr in (key, idx, val):
            np.testing.assert_array_equal(np.take_along_axis(s1[arr], o1, 1),
                                          np.take_along_axis(s2[arr], o2, 1))
    V = (C.astype(np.float64) * wr[:, None]) * wc[None, :]
    np.testing.assert_allclose(s1[6][rows], np.clip(V, 0, None).sum(1), rtol=1e-6)
    np.testing.assert_allclose(s1[7][cols], np.clip(V, None, 0).sum(0), rtol=1e-6)
    np.testing.assert_allclose(s1[6], s2[6], rtol=1e-6)
    np.testing.assert_allclose(s1[7], s2[7], rtol=1e-6)
