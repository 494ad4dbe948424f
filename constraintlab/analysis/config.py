"""The one settings object of the analysis stage."""

from __future__ import annotations

import functools
import math

from constraintlab._config import (
    TYPE_ONLY,
    Interval,
    Options,
    Pattern,
    Settings,
    check_fields,
    setting,
    settings_class,
)
from constraintlab.errors import ConfigError

__all__ = ["AnalysisConfig", "recall_bands"]

_POSITIVE = Interval(1, None)          # a positive integer
_COUNT = Interval(0, None)             # a non-negative integer
_SHARE = Interval(0, 1, "right")       # (0, 1]
_OPEN_UNIT = Interval(0, 1, "neither")  # (0, 1)
_ABOVE_ZERO = Interval(0, None, "neither")  # > 0
_NON_NEGATIVE = Interval(0, None, finite=True)  # >= 0, finite
_COSINE = Interval(-1, 1, "neither")   # (-1, 1)
_CAL = "calibrated: see docs/calibration.md#"


@settings_class
class AnalysisConfig(Settings):
    """Every setting of the analysis stage, each declared once (default, check, doc).

    In a k-dim random projection the cosine of two unrelated directions has spread about
    ``1/sqrt(k)``; every cosine threshold sits above that noise floor. How the calibrated
    defaults were set: ``docs/calibration.md``.
    """

    # -- pairs and the constraint graph
    tau: float | None = setting(
        None, _OPEN_UNIT, "Conflict threshold (cos < -tau conflicts, cos > tau aligned); None: "
        "min(tau_max, max(tau_min, tau_sigmas / sqrt(k))), 0.156 at k = 1024; " + _CAL + "tau.")
    tau_sigmas: float = setting(5.0, _ABOVE_ZERO, "Noise standard deviations of the derived tau.")
    tau_min: float = setting(0.05, _OPEN_UNIT, "Lowest derived tau.")
    tau_max: float = setting(0.9, _OPEN_UNIT, "Highest derived tau.")
    eps: float = setting(0.02, _OPEN_UNIT, "Near-parallel (gradient near duplicate) when "
                         "cos > 1 - eps; 1 - eps must exceed tau.")
    top_m: int = setting(10, _POSITIVE, "Neighbours kept per example (by |cos|) for the "
                         "constraint graph.")
    block_size: int = setting(2048, Interval(16, None), "Rows per block of the blocked "
                              "all-pairs pass (memory O(N * top_m + block^2)).")
    hist_bins: int = setting(200, _POSITIVE, "Equal bins of the cosine histogram over [-1, 1].")
    max_pairs: int = setting(100_000, _POSITIVE, "Most conflict and most near-parallel pairs "
                             "listed (the most extreme); counts cover every pair.")
    exact_max_n: int = setting(100_000, _POSITIVE, "Up to this N every pair is exact; beyond, "
                               "pair statistics are a sampled estimate with Wilson intervals.")
    device: str = setting("cpu", Pattern(r"cpu|cuda(:\d+)?|mps", "cpu, cuda, cuda:N or mps"),
                          "Where the pass over X @ X.T runs: cpu (numba kernels) or a torch "
                          "device (torch tiles); the run's --device feeds it when left at cpu.")
    device_precision: str = setting("tf32", Options(("float32", "tf32", "bfloat16")),
                                    "GEMM precision of the torch pass on a GPU (TF32 moves a "
                                    "cosine by ~1e-4 at k = 1024, bfloat16 by ~1e-2).")
    device_block: int = setting(4096, Interval(16, None), "Rows per tile of the torch pass on a "
                                "GPU (columns: 8 times as many).")
    sample_pairs: int = setting(2_000_000, _POSITIVE, "Random pairs of the sampled estimate of "
                                "the histogram and densities.")
    sample_reference: int = setting(4096, _POSITIVE, "Random reference examples for per-example "
                                    "scores and neighbours in the sampled mode.")
    seed: int = setting(0, _COUNT, "Seed of every random choice of the analysis (sampling, "
                        "randomized SVD, MinHash permutations, Louvain).")
    # -- spectrum and growth
    svd_exact_max_dim: int = setting(8192, _POSITIVE, "Exact spectrum (float64 Gram "
                                     "eigenvalues) when min(N, k) <= this; beyond, a randomized "
                                     "SVD of svd_components.")
    svd_components: int = setting(512, _POSITIVE, "Components of the randomized SVD.")
    rank_noise: float = setting(1e-3, Interval(0, None), "Relative noise of one stored feature "
                                "row, which sets the numerical-rank cut; " + _CAL + "rank_noise.")
    leverage_unique: float = setting(0.9, _SHARE, "A constraint is unique (no other example "
                                     "carries its direction) when its leverage score reaches "
                                     "this.")
    growth_steps: int = setting(5, Interval(2, None), "Seeded nested subsamples of the growth "
                                "curve (5: N/16, N/8, N/4, N/2, N).")
    growth_energy: float = setting(0.9, _SHARE, "The growth verdict reads the energy rank: the "
                                   "fewest directions carrying this share of ||G||_F^2.")
    growth_saturating_below: float = setting(0.3, Interval(0, None), "Verdict saturating when "
                                             "the energy rank's elasticity over the last step "
                                             "is below this; " + _CAL + "growth.")
    growth_growing_from: float = setting(0.45, Interval(0, None), "Verdict still_growing from "
                                         "this elasticity (slowing in between); " + _CAL
                                         + "growth.")
    growth_sketch_fill: float = setting(0.95, _SHARE, "limited_by_sketch when the rank reaches "
                                        "this share of k with more examples than that rank.")
    growth_sketch_effective: float = setting(0.5, _SHARE, "... and the effective rank reaches "
                                             "this share of k (row noise alone does not limit).")
    growth_adapter_fill: float = setting(0.95, _SHARE, "limited_by_adapter likewise against P, "
                                         "the adapter's trainable parameters.")
    growth_min_examples: int = setting(32, Interval(4, None), "Fewer examples: verdict "
                                       "too_few_examples.")
    # -- the null model and zones
    null_draws: int = setting(3, _POSITIVE, "Draws of the data's Gaussian null that set the "
                              "thresholds of zone merging and pressure zones (and the fewest "
                              "for the interference baseline).")
    null_max_n: int = setting(20_000, Interval(16, None), "Most rows in one null draw (keeps "
                              "the null's cost constant above it); " + _CAL + "null_max_n.")
    null_rows_total: int = setting(60_000, _POSITIVE, "Rows the null's draws may hold together "
                                   "for the interference test: small data gets more draws "
                                   "(up to interference_null_draws), so the test knows the "
                                   "null's spread; " + _CAL + "interference.")
    interference_null_draws: int = setting(20, _POSITIVE, "Most draws of the null for the "
                                           "interference test (at least null_draws; the first "
                                           "null_draws also set the zone thresholds).")
    interference_excess_min: float = setting(1.15, _ABOVE_ZERO, "interference_above_null when "
                                             "cross-zone interference is at least this multiple "
                                             "of its null's mean ...; " + _CAL + "interference.")
    interference_null_sigmas: float = setting(3.0, Interval(0, None), "... and at least the "
                                              "null draws' mean + this many sd; " + _CAL
                                              + "interference.")
    pressure_null_sigmas: float = setting(3.0, Interval(0, None), "A pressure zone's internal "
                                          "conflict exceeds the null zones' mean + this many "
                                          "sd; " + _CAL + "pressure.")
    zone_refine_iters: int = setting(30, _COUNT, "Rounds of the zone refinement; 0 turns it off.")
    zone_refine_exact_max_cells: int = setting(20_000_000, _POSITIVE, "Refinement compares every "
                                               "row with every zone while rows x zones <= this; "
                                               + _CAL + "zone_refine.")
    zone_refine_largest: int = setting(64, _COUNT, "Above that, the largest zones every row is "
                                       "still compared with (besides its own and its "
                                       "neighbours').")
    inconsistent_contradiction_share: float = setting(0.001, _SHARE, "inconsistent when "
                                                      "contradiction pairs reach this many per "
                                                      "example (at least one pair).")
    # -- text: near duplicates and contradictions
    shingle_size: int = setting(3, _POSITIVE, "Words per shingle (normalised text).")
    num_perm: int = setting(128, _POSITIVE, "MinHash permutations.")
    minhash_threshold: float = setting(0.8, _SHARE, "Near duplicate when the exact Jaccard of "
                                       "the shingle sets reaches this (LSH candidates verified).")
    near_input_min: float = setting(0.5, _SHARE, "A text near duplicate also needs input "
                                    "shingle Jaccard >= this when both examples have inputs.")
    lsh_min_recall: float = setting(0.99, _SHARE, "LSH bands x rows: the least false-candidate "
                                    "mass with at least this candidate probability at the "
                                    "threshold; " + _CAL + "lsh.")
    lsh_bands: int | None = setting(None, _POSITIVE, "LSH bands; None: from lsh_min_recall "
                                    "(set with lsh_rows).")
    lsh_rows: int | None = setting(None, _POSITIVE, "LSH rows per band; None: from "
                                   "lsh_min_recall (set with lsh_bands).")
    input_shingle_size: int = setting(2, _POSITIVE, "Words per shingle when comparing inputs.")
    contradiction_jaccard: float = setting(0.5, _SHARE, "Targets whose normalised token Jaccard "
                                           "is below this differ in substance.")
    factor_input_min: float = setting(0.95, _COSINE, "Factor signal: inputs aligned when their "
                                      "input-factor cosine exceeds this.")
    factor_output_max: float = setting(0.5, _COSINE, "Factor signal: outputs apart when their "
                                       "output-factor cosine is below this.")
    max_group: int = setting(200, _POSITIVE, "Largest same-input group compared pairwise "
                             "(bigger: each member against the first max_group).")
    zone_edge_min: float | None = setting(None, Interval(0, 1, "left"), "Edge threshold of the "
                                          "constraint graph; None: |cos| > tau.")
    louvain_resolution: float = setting(1.0, _ABOVE_ZERO, "Louvain resolution of the zones.")
    zone_terms: int = setting(3, _POSITIVE, "Distinctive terms in a zone label.")
    zone_conflict_share: float = setting(0.1, _SHARE, "Without features (no null): a zone is a "
                                         "pressure zone when its conflict share reaches this.")
    # -- response, order, volatility
    response_top_m: int = setting(5, _POSITIVE, "Top helpers and hurters kept per example in "
                                  "the response map.")
    response_list: int = setting(20, _POSITIVE, "Most helpful and most harmful examples listed "
                                 "in the response summary.")
    order_volatility_weight: float = setting(0.5, _NON_NEGATIVE, "gradual order: the next unit "
                                             "minimises (1 - cos) + this x its volatility "
                                             "quantile.")
    volatility_top_k: int = setting(10, _POSITIVE, "A target token outside the model's top k "
                                    "next tokens is a miss; " + _CAL + "volatility_top_k.")
    volatility_weights: tuple[float, float, float, float] = setting(
        (1.0, 1.0, 1.0, 1.0), _NON_NEGATIVE, "Weights of mean NLL, max NLL, top-k miss share "
        "and relative gradient norm in the volatility score (positive sum).")
    volatility_list: int = setting(20, _POSITIVE, "Most volatile examples listed in the report.")
    volatility_tokens: int = setting(5, _POSITIVE, "Most surprising tokens named per listed "
                                     "example.")
    volatility_advice_p99: float = setting(0.55, Interval(0, 1), "The advice names the most "
                                           "volatile examples when the score's p99 reaches "
                                           "this; " + _CAL + "volatility_advice_p99.")
    # -- families and layers
    family_jaccard: float = setting(0.5, _SHARE, "Two records are variants of one text when "
                                    "their shingle Jaccard reaches this.")
    family_min_size: int = setting(3, Interval(2, None), "Variants in a variant family (smaller "
                                   "sets stay near duplicates).")
    family_coherence_min: float = setting(0.7, Interval(-1, 1), "A family is incoherent below "
                                          "this mean pairwise cosine (or with a conflict or "
                                          "contradiction); " + _CAL + "family_coherence_min.")
    families_are_duplicates: bool = setting(False, TYPE_ONLY, "True counts near duplicates "
                                            "inside a family as redundancy (False: intended "
                                            "variation).")
    layer_map_zones: int = setting(10, _POSITIVE, "Zones (highest pressure first) whose layer "
                                   "map is stored in the report.")
    # -- suspects and capability
    suspect_alpha: float = setting(0.01, _OPEN_UNIT, "is_suspect when suspect_score >= 1 - "
                                   "this; " + _CAL + "suspect_alpha.")
    suspect_rule_p: float = setting(0.001, _OPEN_UNIT, "A rule hit multiplies 1 - suspect_score "
                                    "by this (<= suspect_alpha); " + _CAL + "suspect_rule_p.")
    suspect_ending_tokens: int = setting(32, _POSITIVE, "Most tokens of the target's last line "
                                         "read by ending_surprise.")
    suspect_ending_floor: float = setting(0.05, _ABOVE_ZERO, "Nats added before the log of "
                                          "ending_surprise.")
    suspect_list: int = setting(20, _POSITIVE, "Most suspect examples listed in the summary.")
    suspect_tokens: int = setting(5, _POSITIVE, "Tokens named per listed suspect.")
    suspect_gate: bool = setting(True, TYPE_ONLY, "Leave signals out of the model's reach out "
                                 "of the suspect score (False keeps every signal).")
    capability_min_gain: float = setting(0.02, Interval(0, 1, "left"), "The model conditions on "
                                         "the input when inputs explain this share of the "
                                         "targets' surprise; " + _CAL + "capability.")
    capability_max_nll_ratio: float = setting(0.7, _ABOVE_ZERO, "The model predicts the targets "
                                              "when its target NLL is at most this share of the "
                                              "unigram entropy; " + _CAL + "capability.")
    capability_near_zero: float = setting(0.05, _NON_NEGATIVE, "Nats per target token below "
                                          "which an example's input dependence counts as near "
                                          "0.")
    capability_max_result_nll: float = setting(0.5, _ABOVE_ZERO, "The model computes arithmetic "
                                               "when it predicts computed result digits at most "
                                               "this badly (nats per digit); " + _CAL
                                               + "capability.")

    def __post_init__(self) -> None:
        check_fields(self)
        if not self.tau_min <= self.tau_max:
            raise ConfigError(f"AnalysisConfig: need 0 < tau_min <= tau_max < 1, got "
                              f"{self.tau_min}, {self.tau_max}")
        if self.tau is not None and not 1.0 - self.eps > self.tau:
            raise ConfigError(f"AnalysisConfig: 1 - eps ({1 - self.eps}) must exceed tau "
                              f"({self.tau})")
        if not self.factor_output_max < self.factor_input_min:
            raise ConfigError("AnalysisConfig: need -1 < factor_output_max < factor_input_min "
                              f"< 1, got {self.factor_output_max}, {self.factor_input_min}")
        if (self.lsh_bands is None) != (self.lsh_rows is None):
            raise ConfigError("AnalysisConfig: set both lsh_bands and lsh_rows, or neither")
        if self.lsh_bands is not None and self.lsh_bands * self.lsh_rows > self.num_perm:
            raise ConfigError(f"AnalysisConfig: lsh_bands * lsh_rows must be <= num_perm "
                              f"({self.num_perm})")
        if not self.suspect_rule_p <= self.suspect_alpha:
            raise ConfigError(f"AnalysisConfig: suspect_rule_p ({self.suspect_rule_p}) must not "
                              f"exceed suspect_alpha ({self.suspect_alpha}): every rule hit "
                              "is flagged")
        if not self.growth_saturating_below <= self.growth_growing_from:
            raise ConfigError("AnalysisConfig: need growth_saturating_below <= "
                              f"growth_growing_from, got {self.growth_saturating_below}, "
                              f"{self.growth_growing_from}")
        if not sum(self.volatility_weights) > 0:
            raise ConfigError("AnalysisConfig: volatility_weights must be 4 non-negative "
                              f"numbers with a positive sum, got {self.volatility_weights!r}")

    def tau_for(self, k: int) -> float:
        """The conflict threshold for features of dimension ``k`` (see ``tau``)."""
        if self.tau is not None:
            return float(self.tau)
        return float(min(self.tau_max, max(self.tau_min, self.tau_sigmas / math.sqrt(k))))

    def near_for(self, k: int) -> float:
        """``1 - eps``, checked against the conflict threshold for dimension ``k``."""
        near = 1.0 - self.eps
        if near <= self.tau_for(k):
            raise ConfigError(f"AnalysisConfig: 1 - eps ({near}) must exceed tau "
                              f"({self.tau_for(k):.3f} for k = {k})")
        return near

    def bands_rows(self, threshold: float | None = None) -> tuple[int, int]:
        """LSH (bands, rows) for ``threshold`` (default ``minhash_threshold``)."""
        if threshold is None or threshold == self.minhash_threshold:
            if self.lsh_bands is not None and self.lsh_rows is not None:
                return self.lsh_bands, self.lsh_rows
            threshold = self.minhash_threshold
        return recall_bands(threshold, self.num_perm, self.lsh_min_recall)


@functools.lru_cache(maxsize=64)
def recall_bands(threshold: float, num_perm: int, min_recall: float) -> tuple[int, int]:
    """(bands, rows), ``bands * rows <= num_perm``, with candidate probability
    ``1 - (1 - t^r)^b >= min_recall`` at the threshold t and the least false-candidate mass
    below it (falls back to the most sensitive choice when none reaches ``min_recall``)."""
    import numpy as np

    s = np.linspace(0.0, threshold, 201)
    best, best_key = (num_perm, 1), (math.inf, math.inf)
    for r in range(1, num_perm + 1):
        b = num_perm // r
        p_t = 1.0 - (1.0 - threshold**r) ** b
        fp = float(np.trapezoid(1.0 - (1.0 - s**r) ** b, s))
        key = (0.0, fp) if p_t >= min_recall else (1.0, -p_t)
        if key < best_key:
            best, best_key = (b, r), key
    return best
