"""Spectrum, ranks, leverage and the verdict against NumPy/SciPy and planted systems."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from constraintlab.analysis import (
    GROWTH_VERDICTS,
    AnalysisConfig,
    analyze_constraints,
    analyze_spectrum,
    determinacy_verdict,
    effective_rank,
    rank_tolerance,
)
from constraintlab.errors import ConfigError, InputError


def test_singular_values_rank_leverage_match_numpy():
    rng = np.random.default_rng(0)
    for N, k in ((80, 30), (25, 60)):
        X = (rng.standard_normal((N, 6)) @ rng.standard_normal((6, k))).astype(np.float32)
        X[:, :] += 1e-7 * rng.standard_normal((N, k)).astype(np.float32)
        res = analyze_spectrum(X)
        s_ref = np.linalg.svd(X.astype(np.float64), compute_uv=False)
        s = np.array(res.summary["singular_values"])
        np.testing.assert_allclose(s[:6], s_ref[:6], rtol=1e-9)
        assert res.summary["rank"] == 6
        tol = res.summary["rank_tolerance"]
        assert tol == pytest.approx(
            rank_tolerance(s_ref[0], np.linalg.norm(X.astype(np.float64)), N, k, 1e-3), rel=1e-9)
        assert res.summary["rank"] == int((s_ref > tol).sum())
        # leverage = diag of the hat matrix on the rank-6 column space
        U = np.linalg.svd(X.astype(np.float64), full_matrices=False)[0][:, :6]
        np.testing.assert_allclose(res.table["leverage_score"], np.square(U).sum(1), atol=1e-8)
        assert math.isclose(res.summary["leverage_sum"], 6.0, rel_tol=1e-8)
        assert math.isclose(res.summary["stable_rank"], (s_ref**2).sum() / s_ref[0] ** 2,
                            rel_tol=1e-8)
        p = s_ref[:6] / s_ref[:6].sum()
        assert math.isclose(res.summary["effective_rank"], math.exp(-(p * np.log(p)).sum()),
                            rel_tol=1e-8)
        json.dumps(res.summary)


def test_energy_directions_and_effective_rank_formula():
    assert effective_rank(np.ones(7)) == pytest.approx(7.0)
    assert effective_rank(np.array([1.0, 0.0, 0.0])) == pytest.approx(1.0)
    X = np.diag([10.0, 3.0, 1.0, 0.1]).astype(np.float32)
    res = analyze_spectrum(X, config=AnalysisConfig(rank_noise=0.0))
    # energies 100, 9, 1, 0.01 (total 110.01): 50 % -> 1, 90 % -> 1, 99 % -> 2 (99.08 %)
    assert res.summary["energy_directions"] == {"50": 1, "90": 1, "99": 2}
    assert res.summary["rank"] == 4


def test_random_rows_keep_growing_and_are_consistent():
    # every example adds its own direction: N < P is no rule any more, the growth curve is
    rng = np.random.default_rng(1)
    X = rng.standard_normal((50, 128))
    out = analyze_constraints(X, n_params=10_000)
    s = out.spectrum.summary
    assert s["rank"] == 50 and not s["rank_is_lower_bound"]
    d = out.determinacy.summary
    assert d["determinacy"] == "still_growing" and out.determinacy.verdict == "still_growing"
    assert d["consistency"] == "unknown"  # no texts, no factors
    fired = {r["rule"]: r["fired"] for r in d["rules"]}
    assert fired == {"too_few_examples": False, "limited_by_sketch": False,
                     "limited_by_adapter": False, "saturating": False, "still_growing": True,
                     "slowing": False, "inconsistent": False}
    assert d["elasticity"] > 0.6
    assert d["sentence"].startswith("still growing: ") and "directions carry 90%" in d["sentence"]
    assert s["ledger"] == {"equations": 50, "unknowns": 10_000, "sketch_dim": 128, "rank": 50,
                           "rank_is_lower_bound": False, "effective_rank": s["effective_rank"],
                           "redundant_equations": 0, "free_directions": 9_950}
    np.testing.assert_allclose(out.spectrum.table["leverage_score"], 1.0, atol=1e-9)


def test_repeated_directions_saturate_and_are_near_duplicates():
    rng = np.random.default_rng(2)
    D = rng.standard_normal((10, 64))
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    X = np.repeat(D, 50, axis=0) + 1e-3 * rng.standard_normal((500, 64))
    out = analyze_constraints(X.astype(np.float32), n_params=1_000_000)
    s = out.spectrum.summary
    assert abs(s["effective_rank"] - 10.0) < 1.0
    assert s["energy_directions"]["99"] == 10
    d = out.determinacy.summary
    assert d["determinacy"] == "saturating" and abs(d["elasticity"]) < 0.1
    # the repeats are found as gradient near duplicates: 10 sets of 50
    red = out.redundancy
    sets = red.summary["sets"]
    assert len(sets) == 10
    assert sorted(st["members"] for st in sets) == [list(range(50 * g, 50 * g + 50))
                                                    for g in range(10)]
    grad = [p for p in red.pairs if p["kind"] == "near_duplicate"]
    assert len(grad) == 10 * 50 * 49 // 2
    assert all(p["detail"]["signal"] == "gradient" for p in grad)
    assert red.summary["redundancy_ratio"] == pytest.approx(490 / 500)


def test_rank_at_k_is_a_lower_bound_and_limited_by_the_sketch():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((400, 16))
    out = analyze_constraints(X)
    s = out.spectrum.summary
    assert s["rank"] == 16 and s["rank_is_lower_bound"]
    assert "at least this" in s["rank_note"]
    d = out.determinacy.summary
    assert d["determinacy"] == "limited_by_sketch" and "k = 16" in d["rule"]


def test_randomized_path_states_its_error():
    rng = np.random.default_rng(4)
    X = (rng.standard_normal((300, 12)) @ rng.standard_normal((12, 200))
         + 0.05 * rng.standard_normal((300, 200))).astype(np.float32)
    # rank_noise 0.05: the added noise (about 1.4 % of a row) stays below the rank tolerance
    exact = analyze_spectrum(X, config=AnalysisConfig(rank_noise=0.05))
    cfg = AnalysisConfig(svd_exact_max_dim=100, svd_components=40, rank_noise=0.05)
    approx = analyze_spectrum(X, config=cfg)
    assert approx.summary["spectrum_method"] == "randomized_svd"
    s_ref = np.linalg.svd(X.astype(np.float64), compute_uv=False)
    np.testing.assert_allclose(approx.summary["singular_values"][:12], s_ref[:12], rtol=1e-4)
    err = approx.summary["error"]
    tail = (s_ref[40:] ** 2).sum() / (s_ref**2).sum()
    assert err["residual_energy_fraction"] == pytest.approx(tail, rel=0.05, abs=1e-9)
    assert err["residual_spectral_norm_estimate"] <= s_ref[40] * 1.05
    assert err["residual_spectral_norm_estimate"] >= s_ref[41] * 0.5
    assert approx.summary["rank"] == exact.summary["rank"] == 12
    assert not approx.summary["rank_is_lower_bound"]
    np.testing.assert_allclose(approx.table["leverage_score"], exact.table["leverage_score"],
                               atol=1e-3)


def _growth(verdict: str = "saturating") -> dict:
    return {"verdict": verdict, "reason": "r", "rules": [], "caveats": [],
            "slope_per_100": 1.0, "elasticity": 0.1}


def test_only_contradictions_make_a_system_inconsistent():
    cfg = AnalysisConfig()
    d = determinacy_verdict(_growth(), n=100, n_contradictions=0, config=cfg)
    assert d["consistency"] == "consistent" and d["consistency"] != "inconsistent"
    assert d["determinacy"] == "saturating" and "Consistent: 0 contradiction pairs" in d["sentence"]
    d = determinacy_verdict(_growth(), n=100, n_contradictions=1, config=cfg)
    assert d["consistency"] == "inconsistent"
    assert "contradiction pairs" in d["inconsistent_reasons"][0]
    need = AnalysisConfig(inconsistent_contradiction_share=0.05)
    assert determinacy_verdict(_growth(), n=100, n_contradictions=4, config=need)[
        "consistency"] == "consistent"
    got = determinacy_verdict(_growth(), n=100, n_contradictions=5, config=need)
    assert got["consistency"] == "inconsistent"
    # interference is named beside consistency, never as it
    inter = {"interference_above_null": True, "interference_excess": 1.4, "n_zones": 3}
    d = determinacy_verdict(_growth(), n=100, n_contradictions=0,
                            interference_summary=inter, config=cfg)
    assert d["consistency"] != "inconsistent"
    assert d["interference"] == {"above_null": True, "excess": 1.4, "n_zones": 3}
    assert "Interference 1.40x its null (above" in d["sentence"]
    # no pair statistic enters the verdict any more
    assert "pairs_summary" not in determinacy_verdict.__code__.co_varnames


def test_strongly_conflicting_rows_are_not_inconsistent():
    # two groups asking opposite things: conflict everywhere, but no same-input contradiction
    rng = np.random.default_rng(5)
    v = rng.standard_normal(64)
    X = np.concatenate([v + 0.3 * rng.standard_normal((60, 64)),
                        -v + 0.3 * rng.standard_normal((60, 64))])
    f = rng.standard_normal((120, 8))
    out = analyze_constraints(X, input_factors=f, output_factors=f)
    assert out.pairs.summary["conflict_density"] > 0.4
    assert out.determinacy.summary["consistency"] == "consistent"
    assert not out.determinacy.inconsistent


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 1000), n=st.integers(3, 40), k=st.integers(3, 40))
def test_spectrum_invariant_to_row_permutation(seed, n, k):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, k))
    perm = rng.permutation(n)
    a = analyze_spectrum(X)
    b = analyze_spectrum(X[perm])
    assert a.summary["rank"] == b.summary["rank"]
    np.testing.assert_allclose(a.summary["singular_values"], b.summary["singular_values"],
                               rtol=1e-8, atol=1e-10)
    lev = a.table["leverage_score"].to_numpy()
    np.testing.assert_allclose(lev[perm], b.table["leverage_score"].to_numpy(), atol=1e-8)
    assert ((lev >= 0) & (lev <= 1)).all()


def test_config_validation_and_bad_input():
    with pytest.raises(ConfigError):
        AnalysisConfig(tau=1.5)
    with pytest.raises(ConfigError):
        AnalysisConfig(eps=0.5, tau=0.6)
    with pytest.raises(ConfigError):
        AnalysisConfig(top_m=0)
    with pytest.raises(ConfigError):
        AnalysisConfig(lsh_bands=4)
    with pytest.raises(ConfigError):
        AnalysisConfig(factor_input_min=0.2, factor_output_max=0.5)
    assert AnalysisConfig().tau_for(1024) == pytest.approx(5 / 32)
    assert AnalysisConfig().tau_for(16) == 0.9
    assert AnalysisConfig().tau_for(1_000_000) == 0.05
    X = np.ones((3, 4))
    X[1, 2] = np.nan
    with pytest.raises(InputError, match="<features>:2"):
        analyze_constraints(X)


@pytest.mark.parametrize("shape", [(1, 4), (2, 1), (3, 2), (5, 300)])
def test_tiny_and_degenerate_inputs_give_strict_json(shape):
    X = np.random.default_rng(0).standard_normal(shape)
    out = analyze_constraints(X)
    json.dumps(out.summary(), allow_nan=False)
    assert out.spectrum.summary["rank"] == min(shape)
    assert out.determinacy.verdict in GROWTH_VERDICTS
    zero = analyze_constraints(np.zeros(shape))
    assert zero.spectrum.summary["rank"] == 0
    assert zero.determinacy.verdict in GROWTH_VERDICTS
    json.dumps(zero.summary(), allow_nan=False)
