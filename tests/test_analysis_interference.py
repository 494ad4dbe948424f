"""Interference against the data's own null, and pressure zones judged by it, on planted
systems with known answers (numpy, no model)."""

from __future__ import annotations

import numpy as np
import pytest

from constraintlab.analysis import (
    AnalysisConfig,
    analyze_constraints,
    gaussian_null,
    null_reference,
)
from constraintlab.analysis.null import null_factor
from constraintlab.analysis.zones import centered_unit_rows, cross_zone_interference, zone_coupling


def unit(X):
    X = np.asarray(X, dtype=np.float64)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def anisotropic(rng, n=600, k=128):
    """Structureless rows with a real model's geometry: a shared mean direction and a few
    dominant directions of variance (raw cosines spread far beyond 1/sqrt(k))."""
    scales = np.r_[np.full(4, 6.0), np.full(k - 4, 1.0)]
    basis = np.linalg.qr(rng.standard_normal((k, k)))[0]
    mean = 4.0 * basis[:, 5]
    return mean + (rng.standard_normal((n, k)) * scales) @ basis.T


def test_null_has_the_mean_and_covariance_of_the_unit_rows():
    rng = np.random.default_rng(0)
    X = anisotropic(rng, n=3000, k=32)
    U = unit(X)
    mu, F = null_factor(X)
    np.testing.assert_allclose(mu, U.mean(0), atol=1e-12)
    np.testing.assert_allclose(F.T @ F, np.cov(U.T), atol=1e-12)
    Y = gaussian_null(X, 4000, seed=1, factor=(mu, F))
    np.testing.assert_allclose(np.linalg.norm(Y, axis=1), 1.0, atol=1e-5)
    # the same cosine geometry (to second order): mean and spread of the pairwise cosines
    cd, cn = (U[:800] @ U[:800].T)[np.triu_indices(800, 1)], \
        (Y[:800] @ Y[:800].T)[np.triu_indices(800, 1)]
    assert cn.mean() == pytest.approx(cd.mean(), abs=0.02)
    assert cn.std() == pytest.approx(cd.std(), rel=0.1)
    # the N <= k path (no eigendecomposition) gives the same covariance
    small = X[:20]
    _, F2 = null_factor(small)
    np.testing.assert_allclose(F2.T @ F2, np.cov(unit(small).T), atol=1e-12)


def test_structureless_rows_are_rarely_above_their_null():
    # the statistic varies from draw to draw (about 8 % here): with 3 null draws and the
    # excess alone, 5 of these 8 structureless sets read "above the null"; the null's spread
    # (20 draws at this size) and interference_null_sigmas bring it to 1 of 8 (seed 8: 1.20x,
    # 3.1 sd), while the planted clash below stands 6 sd out
    above = []
    for seed in range(1, 9):
        X = anisotropic(np.random.default_rng(seed)).astype(np.float32)
        inter = analyze_constraints(X).interference.summary
        assert inter["null_draws"] == 20
        z = (inter["interference"] - inter["null_interference"]) / inter["null_interference_sd"]
        assert inter["interference_z"] == pytest.approx(z)
        assert inter["interference_above_null"] == (
            inter["interference_excess"] >= 1.15 and z >= 3.0)
        above.append(inter["interference_above_null"])
    assert sum(above) <= 1


def test_structureless_anisotropic_rows_read_near_their_null():
    rng = np.random.default_rng(1)
    X = anisotropic(rng)
    out = analyze_constraints(X.astype(np.float32))
    tau = out.pairs.summary["tau"]
    # raw cosines: "conflicts" beyond 5 sigma of the 1/sqrt(k) noise model, above the old
    # inconsistency threshold (density 0.01) ...
    assert out.pairs.summary["conflict_density"] > 0.01 and tau < 0.5
    inter = out.interference.summary
    # ... but its zones interfere no more than the data's own Gaussian null's
    assert inter["null_conflict_density"] > 0
    assert not inter["interference_above_null"]
    assert 0.8 < inter["interference_excess"] < AnalysisConfig().interference_excess_min
    assert out.zones.summary["pressure_zone_share"] <= 0.1
    assert not out.determinacy.inconsistent


def clash(rng, n_groups=3, per=150, terse=150, k=128):
    """Groups that share a general update; the last ("terse") pulls against the others on
    one direction beyond it."""
    basis = np.linalg.qr(rng.standard_normal((k, k)))[0]
    shared, v = 3.0 * basis[:, 0], basis[:, 1]
    rows, labels = [], []
    for g in range(n_groups):
        c = 1.2 * basis[:, 2 + g] + 0.6 * v
        rows.append(shared + c + 0.5 * rng.standard_normal((per, k)) / np.sqrt(k) * 4)
        labels += [g] * per
    rows.append(shared - 1.8 * v + 0.5 * rng.standard_normal((terse, k)) / np.sqrt(k) * 4)
    labels += [n_groups] * terse
    return np.concatenate(rows), np.array(labels)


def test_a_planted_clash_stands_out_and_names_the_pair():
    rng = np.random.default_rng(2)
    X, lab = clash(rng)
    out = analyze_constraints(X.astype(np.float32))
    inter = out.interference.summary
    assert inter["interference_above_null"]
    assert inter["interference_excess"] >= AnalysisConfig().interference_excess_min
    assert inter["interference_z"] >= 5.0
    zones = out.zones.labels
    terse = lab == 3
    # the terse group is one zone
    zt = np.bincount(zones[terse][zones[terse] >= 0]).argmax()
    m = zones == zt
    f1 = 2 * (m & terse).sum() / (m.sum() + terse.sum())
    assert f1 >= 0.95
    pair = inter["most_interfering_pair"]
    assert zt in (pair["a"], pair["b"])
    # raw cosines say nothing of it: the shared update makes every raw cosine positive
    assert out.pairs.summary["conflict_density"] == 0.0
    assert not out.determinacy.inconsistent


def test_cross_zone_interference_by_hand():
    rng = np.random.default_rng(3)
    U = unit(rng.standard_normal((40, 16)))
    z = np.repeat([0, 1, 2, -1], 10)
    val, ids, sizes, K = cross_zone_interference(U, z)
    assert list(ids) == [0, 1, 2] and list(sizes) == [10, 10, 10]
    for a in range(3):
        for b in range(3):
            A, B = U[z == a], U[z == b]
            C = A @ B.T
            ref = (C.sum() - np.trace(C)) / (10 * 9) if a == b else C.mean()
            assert K[a, b] == pytest.approx(ref)
    off = ~np.eye(3, dtype=bool)
    assert val == pytest.approx(np.maximum(0, -K[off]).mean())
    assert zone_coupling(U, np.full(40, -1))[0].size == 0


def test_pressure_zone_needs_internal_conflict_beyond_the_null():
    # tight clusters (members agree) and one loose group whose members point every which way
    # around a weak common direction: about half of its pairs conflict, more than any zone of
    # the data's Gaussian null; only its zones are pressure zones
    rng = np.random.default_rng(4)
    k = 128
    basis = np.linalg.qr(rng.standard_normal((k, k)))[0]
    rows, lab = [], []
    for g in range(3):
        rows.append(2.0 * basis[:, g] + 0.2 * rng.standard_normal((150, k)) / np.sqrt(k))
        lab += [g] * 150
    rows.append(0.1 * basis[:, 3] + rng.standard_normal((60, k)) / np.sqrt(k))
    lab += [3] * 60
    X, lab = np.concatenate(rows), np.array(lab)
    cfg = AnalysisConfig(tau=0.05)
    out = analyze_constraints(X.astype(np.float32), config=cfg)
    zs = out.zones.summary
    null = out.interference.summary["null"]
    pz = [z for z in zs["zones"] if z["is_pressure_zone"]]
    assert pz, (null["conflict_share_max"], [z["internal_conflict"] for z in zs["zones"]])
    c = np.asarray(null["zone_conflicts"])
    thr = max(c.max(), c.mean() + AnalysisConfig().pressure_null_sigmas * c.std())
    for z in zs["zones"]:
        assert z["is_pressure_zone"] == (z["internal_conflict"] > thr)
    ids = set().union(*[set(z["members"]) for z in pz])
    assert ids <= set(np.flatnonzero(lab == 3))
    assert "null" in zs["pressure_zone_rule"]
    # without a null (no features) the fixed share is the rule, and it says so
    from constraintlab.analysis import analyze_zones
    fixed = analyze_zones(out.pairs.top_idx, out.pairs.top_val, tau=0.05, config=cfg)
    assert "fixed" in fixed.summary["pressure_zone_rule"]


def test_null_reference_is_seeded():
    rng = np.random.default_rng(5)
    X = anisotropic(rng, n=300, k=64)
    a = null_reference(X).to_dict()
    b = null_reference(X).to_dict()
    cfg = AnalysisConfig()
    assert a == b
    # 300 rows: as many interference draws as null_rows_total allows, at most 20; the zone
    # thresholds come from the first null_draws only, the same as with no extra draws
    assert len(a["interference"]) == min(cfg.interference_null_draws,
                                         cfg.null_rows_total // 300) == 20
    assert len(a["coherence"]) == len(a["conflict_density"]) == cfg.null_draws == 3
    few = null_reference(X, config=AnalysisConfig(interference_null_draws=1)).to_dict()
    assert len(few["interference"]) == 3
    assert few["interference"] == a["interference"][:3]
    for key in ("coherence", "conflict_share", "zone_conflicts", "zone_sizes",
                "conflict_density"):
        assert few[key] == a[key]
    assert a["interference_sd"] == pytest.approx(np.std(a["interference"], ddof=1))
    big = null_reference(X, config=AnalysisConfig(null_rows_total=1200)).to_dict()
    assert len(big["interference"]) == 4                    # 1,200 rows // 300
    assert centered_unit_rows(X).shape == X.shape


def test_a_capped_null_is_said_where_the_verdict_is_shown():
    rng = np.random.default_rng(6)
    X = anisotropic(rng, n=300, k=64)
    capped = analyze_constraints(X, config=AnalysisConfig(null_max_n=120)).interference.summary
    assert capped["null"]["n_rows"] == 120
    assert "the null draws have 120 rows, null_max_n; the data 300" in capped["reason"]
    assert "null_note" in capped
    full = analyze_constraints(X).interference.summary
    assert full["null"]["n_rows"] == 300
    assert "null_max_n" not in full["reason"] and "null_note" not in full
