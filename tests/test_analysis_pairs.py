"""All-pairs analysis against brute force over the full cosine matrix; planted conflicts;
the sampled estimate beyond exact_max_n."""

from __future__ import annotations

import numpy as np
import pytest

from constraintlab._kernels.pairs import hist_bin
from constraintlab.analysis import AnalysisConfig, analyze_constraints, analyze_pairs, unit_rows


def _full(X):
    Xn = unit_rows(X)[0].astype(np.float32)
    return (Xn @ Xn.T).astype(np.float64)


def test_pairs_match_brute_force_with_many_blocks():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 10)) @ rng.standard_normal((10, 32))
    cfg = AnalysisConfig(block_size=64, top_m=6, hist_bins=50)
    res = analyze_pairs(X, ids=np.arange(1000, 1300), config=cfg)
    tau = res.summary["tau"]
    assert tau == pytest.approx(max(0.05, 5 / np.sqrt(32)))
    C = _full(X)
    iu = np.triu_indices(300, 1)
    v = C[iu]
    s = res.summary
    assert s["method"] == "exact" and s["n_pairs"] == len(v)
    assert s["conflicting_pairs"] == int((v < -tau).sum())
    assert s["aligned_pairs"] == int((v > tau).sum())
    assert s["conflict_density"] == pytest.approx((v < -tau).mean())
    assert s["alignment_density"] == pytest.approx((v > tau).mean())
    np.testing.assert_array_equal(s["histogram"]["counts"],
                                  np.bincount(hist_bin(v, 50), minlength=50))
    np.fill_diagonal(C, 0.0)
    t = res.table
    assert list(t.index[:2]) == [1000, 1001]
    np.testing.assert_array_equal(t["conflict_count"], (C < -tau).sum(1))
    np.testing.assert_allclose(t["conflict_score"], (C < -tau).sum(1) / 299)
    np.testing.assert_allclose(t["conflict_mass"], np.where(C < -tau, -C, 0).sum(1), rtol=1e-5)
    assert ((t["conflict_score"] >= 0) & (t["conflict_score"] <= 1)).all()
    # top-m neighbours by |cos|
    A = np.abs(C)
    np.fill_diagonal(A, -1)
    ref = -np.sort(-A, axis=1)[:, :6]
    np.testing.assert_allclose(np.abs(res.top_val), ref, atol=1e-6)
    got_nb = res.top_idx
    assert (np.abs(np.take_along_axis(C, got_nb, 1)) - ref < 1e-6).all()
    # listed conflicts = exactly the brute-force set, with ids, a < b, most negative first
    conf = {(p["a"], p["b"]) for p in res.pairs}
    rows, cols = np.nonzero(np.triu(C < -tau, 1))
    assert conf == {(1000 + r, 1000 + c) for r, c in zip(rows, cols, strict=True)}
    scores = [p["score"] for p in res.pairs]
    assert scores == sorted(scores, reverse=True)
    assert all(p["kind"] == "conflict" and p["a"] < p["b"] for p in res.pairs)


def test_max_pairs_keeps_the_most_negative():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((200, 4))
    cfg = AnalysisConfig(block_size=32, max_pairs=7, tau=0.2)
    res = analyze_pairs(X, config=cfg)
    C = _full(X)
    v = np.sort(C[np.triu_indices(200, 1)])
    assert len(res.pairs) == 7
    np.testing.assert_allclose(sorted(-p["score"] for p in res.pairs), v[:7], atol=1e-6)
    assert res.summary["conflicting_pairs"] == int((v < -0.2).sum())


def test_planted_opposite_pairs_are_exactly_the_conflicts():
    rng = np.random.default_rng(2)
    N, k = 200, 256
    X = rng.standard_normal((N, k))
    planted = [(3, 150), (10, 11), (40, 199), (77, 120), (5, 6), (90, 91)]
    for a, b in planted:
        X[b] = -X[a] + 0.05 * rng.standard_normal(k)
    out = analyze_constraints(X.astype(np.float32), config=AnalysisConfig(block_size=64))
    conf = sorted((p["a"], p["b"]) for p in out.pairs.pairs)
    assert conf == sorted(planted)
    flagged = set(np.flatnonzero(out.pairs.table["is_conflict"]))
    assert flagged == {i for ab in planted for i in ab}
    # conflict is interference, never inconsistency (that needs contradictions)
    assert not out.determinacy.inconsistent
    clean = analyze_constraints(rng.standard_normal((N, k)))
    assert clean.pairs.summary["conflicting_pairs"] == 0
    assert not clean.determinacy.inconsistent


def test_sampled_mode_beyond_exact_max_n():
    rng = np.random.default_rng(3)
    N = 600
    centers = rng.standard_normal((3, 8))
    X = centers[rng.integers(0, 3, N)] * rng.choice([-1, 1], (N, 1)) + 0.8 * rng.standard_normal(
        (N, 8))
    exact = analyze_pairs(X, config=AnalysisConfig(tau=0.3))
    cfg = AnalysisConfig(tau=0.3, exact_max_n=500, sample_pairs=50_000, sample_reference=300,
                         block_size=128)
    samp = analyze_pairs(X, config=cfg)
    s = samp.summary
    assert s["method"] == "sampled" and "Wilson" in s["method_note"]
    lo, hi = s["conflict_density_ci95"]
    assert lo <= exact.summary["conflict_density"] <= hi
    lo, hi = s["alignment_density_ci95"]
    assert lo <= exact.summary["alignment_density"] <= hi
    # per-example scores estimated against 300 references: close to the exact ones
    diff = samp.table["conflict_score"] - exact.table["conflict_score"]
    assert np.abs(diff).mean() < 0.05
    assert ((samp.table["conflict_score"] >= 0) & (samp.table["conflict_score"] <= 1)).all()
    # every listed conflict is a true conflict
    C = _full(X)
    assert all(C[p["a"], p["b"]] < -0.3 for p in samp.pairs)


def test_zero_rows_are_reported_not_conflicting():
    X = np.zeros((5, 6))
    X[1:, :] = np.random.default_rng(4).standard_normal((4, 6))
    res = analyze_pairs(X)
    assert res.summary["n_zero_vectors"] == 1
    assert bool(res.table["is_zero_vector"].iloc[0])
    assert res.table["conflict_count"].iloc[0] == 0


def test_conflict_pairs_read_as_the_dicts_of_make_pair():
    """The conflict pairs are held as arrays and read as :func:`make_pair` dicts (iteration,
    indexing, slices, JSON)."""
    import json

    from constraintlab.analysis.result import PairArrays, make_pair

    rng = np.random.default_rng(4)
    X = rng.standard_normal((60, 6)).astype(np.float32)
    ids = np.arange(100, 160)[::-1].copy()                  # ids not in row order
    res = analyze_pairs(X, ids=ids, config=AnalysisConfig(tau=0.2))
    assert isinstance(res.pairs, PairArrays) and len(res.pairs) > 5
    C = (X / np.linalg.norm(X, axis=1, keepdims=True)) @ (
        X / np.linalg.norm(X, axis=1, keepdims=True)).T
    want = sorted((make_pair("conflict", ids[i], ids[j], -C[i, j], {"cos": C[i, j]})
                   for i, j in zip(*np.triu_indices(60, 1), strict=True) if C[i, j] < -0.2),
                  key=lambda p: (p["a"], p["b"]))
    got = sorted(res.pairs, key=lambda p: (p["a"], p["b"]))
    assert [(p["kind"], p["a"], p["b"]) for p in got] == [(p["kind"], p["a"], p["b"])
                                                         for p in want]
    np.testing.assert_allclose([p["score"] for p in got], [p["score"] for p in want],
                               rtol=1e-5)
    assert res.pairs[-1] == list(res.pairs)[-1] and res.pairs[1:3] == list(res.pairs)[1:3]
    assert json.loads(json.dumps(list(res.pairs))) == list(res.pairs)
