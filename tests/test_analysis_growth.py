"""The growth curve and its verdict on planted systems with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from constraintlab.analysis import (
    GROWTH_VERDICTS,
    AnalysisConfig,
    analyze_growth,
    analyze_spectrum,
    effective_rank,
    growth_curve,
    growth_verdict,
)
from constraintlab.analysis.growth import subsample_sizes


def test_sizes_are_nested_halvings():
    assert subsample_sizes(1000, 5) == [63, 125, 250, 500, 1000]
    assert subsample_sizes(5, 5) == [2, 3, 5]


def test_curve_is_the_spectrum_on_seeded_nested_prefixes():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 40)) @ np.diag(np.linspace(2, 0.1, 40))
    c = growth_curve(X, steps=4, seed=3)
    perm = np.random.default_rng(3).permutation(300)
    for n, r, re, d in zip(c["n"], c["rank"], c["effective_rank"], c["energy_rank"],
                           strict=True):
        s = analyze_spectrum(X[perm[:n]]).summary
        assert r == s["rank"]
        assert re == pytest.approx(s["effective_rank"], rel=1e-9)
        assert d == s["energy_directions"]["90"]
    # the full-size point is the spectrum of the whole set
    assert c["effective_rank"][-1] == pytest.approx(analyze_spectrum(X).summary["effective_rank"])


def test_few_directions_saturate_and_fresh_directions_keep_growing():
    rng = np.random.default_rng(1)
    k = 256
    D = rng.standard_normal((8, k))             # 8 "templates"
    fills = D[rng.integers(0, 8, 1000)] + 0.02 * rng.standard_normal((1000, k))
    g = analyze_growth(fills, config=AnalysisConfig()).summary
    assert g["verdict"] == "saturating"
    assert g["elasticity"] < 0.35 and abs(g["slope_per_100"]) < 1.0
    assert "more of the same adds little" in g["reason"]
    diverse = rng.standard_normal((200, k))     # every row its own direction
    g = analyze_growth(diverse).summary
    assert g["verdict"] == "still_growing" and g["elasticity"] > 0.6
    c = g["curve"]
    assert g["slope_per_100"] == pytest.approx(100 * (c["energy_rank"][-1]
                                                      - c["energy_rank"][-2]) / (200 - 100))
    assert g["effective_rank_elasticity"] == pytest.approx(
        np.log(c["effective_rank"][-1] / c["effective_rank"][-2]) / np.log(2))
    assert f"{g['slope_per_100']:.1f} new directions" in g["reason"]
    assert "90% of the gradient energy" in g["reason"]
    assert [r["rule"] for r in g["rules"]] == list(GROWTH_VERDICTS)
    assert sum(r["fired"] for r in g["rules"]) == 1


def test_elasticity_is_the_log_log_slope_of_the_last_step():
    curve = {"n": [25, 50, 100], "rank": [25, 50, 100], "effective_rank": [20.0, 30.0, 45.0],
             "energy_rank": [10, 14, 21], "energy": 0.9}
    g = growth_verdict(curve, k=1024)
    assert g["elasticity"] == pytest.approx(np.log(21 / 14) / np.log(2))
    assert g["slope_per_100"] == pytest.approx(14.0)    # 100 * 7 / 50
    assert g["effective_rank_slope_per_100"] == pytest.approx(30.0)
    assert g["verdict"] == "still_growing"        # 0.585 >= 0.45
    assert growth_verdict(curve, k=1024, growing_from=0.6)["verdict"] == "slowing"
    assert growth_verdict(curve, k=1024, saturating_below=0.6,
                          growing_from=0.7)["verdict"] == "saturating"


def test_sketch_and_adapter_limits_name_their_numbers():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((400, 32))          # rank fills k = 32
    g = analyze_growth(X).summary
    assert g["verdict"] == "limited_by_sketch" and "k = 32" in g["reason"]
    assert g["capacity"]["rank_over_k"] == pytest.approx(1.0)
    Y = rng.standard_normal((200, 64))[:, :64] @ np.diag(np.r_[np.ones(20), np.zeros(44)])
    g = analyze_growth(Y, n_params=20).summary  # 20 directions, 20 trainable parameters
    assert g["verdict"] == "limited_by_adapter" and "P = 20" in g["reason"]
    small = analyze_growth(rng.standard_normal((10, 64))).summary
    assert small["verdict"] == "too_few_examples"


def test_effective_rank_of_equal_singular_values():
    assert effective_rank(np.ones(5)) == pytest.approx(5.0)
