"""The one settings object of the analysis stage."""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass

from constraintlab._config import Interval, Options, Settings, check_fields
from constraintlab.errors import ConfigError

__all__ = ["CONSTRAINTS", "AnalysisConfig", "recall_bands"]

_POSITIVE = Interval(1, None)          # a positive integer
_SHARE = Interval(0, 1, "right")       # (0, 1]
_OPEN_UNIT = Interval(0, 1, "neither")  # (0, 1)
_ABOVE_ZERO = Interval(0, None, "neither")  # > 0

#: Valid values of each :class:`AnalysisConfig` field (the type comes from its annotation;
#: rules between fields are in ``__post_init__``). Checked by :func:`constraintlab._config.
#: check_fields`.
CONSTRAINTS: dict[str, Interval | Options] = {
    "tau": _OPEN_UNIT, "tau_sigmas": _ABOVE_ZERO, "tau_min": _OPEN_UNIT, "tau_max": _OPEN_UNIT,
    "eps": _OPEN_UNIT, "top_m": _POSITIVE, "block_size": Interval(16, None),
    "hist_bins": _POSITIVE, "max_pairs": _POSITIVE, "exact_max_n": _POSITIVE,
    "sample_pairs": _POSITIVE, "sample_reference": _POSITIVE, "seed": Interval(0, None),
    "device_precision": Options(("float32", "tf32", "bfloat16")),
    "device_block": Interval(16, None),
    "svd_exact_max_dim": _POSITIVE, "svd_components": _POSITIVE,
    "rank_noise": Interval(0, None), "leverage_unique": _SHARE,
    "growth_steps": Interval(2, None), "growth_energy": _SHARE,
    "growth_saturating_below": Interval(0, None), "growth_growing_from": Interval(0, None),
    "growth_sketch_fill": _SHARE, "growth_adapter_fill": _SHARE,
    "growth_sketch_effective": _SHARE, "growth_min_examples": Interval(4, None),
    "null_draws": _POSITIVE, "null_max_n": Interval(16, None),
    "interference_excess_min": _ABOVE_ZERO, "zone_refine_iters": Interval(0, None),
    "zone_refine_exact_max_cells": _POSITIVE, "zone_refine_largest": Interval(0, None),
    "pressure_null_sigmas": Interval(0, None),
    "inconsistent_contradiction_share": _SHARE, "shingle_size": _POSITIVE,
    "num_perm": _POSITIVE, "minhash_threshold": _SHARE, "near_input_min": _SHARE,
    "lsh_min_recall": _SHARE, "lsh_bands": _POSITIVE, "lsh_rows": _POSITIVE,
    "input_shingle_size": _POSITIVE, "contradiction_jaccard": _SHARE,
    "factor_input_min": Interval(-1, 1, "neither"),
    "factor_output_max": Interval(-1, 1, "neither"),
    "max_group": _POSITIVE, "zone_edge_min": Interval(0, 1, "left"),
    "louvain_resolution": _ABOVE_ZERO, "zone_terms": _POSITIVE,
    "zone_conflict_share": _SHARE, "response_top_m": _POSITIVE, "response_list": _POSITIVE,
    "order_volatility_weight": Interval(0, None, finite=True),
    "volatility_top_k": _POSITIVE, "volatility_weights": Interval(0, None, finite=True),
    "volatility_list": _POSITIVE, "volatility_tokens": _POSITIVE,
    "volatility_advice_p99": Interval(0, 1),
    "family_jaccard": _SHARE, "family_min_size": Interval(2, None),
    "family_coherence_min": Interval(-1, 1), "layer_map_zones": _POSITIVE,
    "suspect_alpha": _OPEN_UNIT, "suspect_rule_p": _OPEN_UNIT,
    "suspect_ending_tokens": _POSITIVE, "suspect_ending_floor": _ABOVE_ZERO,
    "suspect_list": _POSITIVE, "suspect_tokens": _POSITIVE,
    "capability_min_gain": Interval(0, 1, "left"), "capability_max_nll_ratio": _ABOVE_ZERO,
    "capability_near_zero": Interval(0, None, finite=True),
    "capability_max_result_nll": _ABOVE_ZERO,
}


@dataclass(frozen=True)
class AnalysisConfig(Settings):
    """Every setting of the analysis stage (defaults documented here, once).

    Cosines and noise
        In a k-dim random projection the cosine of two unrelated directions has spread about
        ``1/sqrt(k)``. Every cosine threshold sits above that noise floor.

    Attributes
    ----------
    tau : float or None
        Conflict threshold: a pair conflicts when ``cos < -tau`` and is aligned when
        ``cos > tau``. None (default) derives it from k:
        ``tau = min(tau_max, max(tau_min, tau_sigmas / sqrt(k)))`` = 5 noise standard deviations
        (P(|cos| > 5/sqrt(k)) ~ 6e-7 for unrelated directions: about 0.03 false conflicts per
        example at N = 100k), never below 0.05, never above 0.9. k = 1024 gives 0.156.
    tau_sigmas : float
        5.0; see ``tau``.
    tau_min, tau_max : float
        0.05 and 0.9; see ``tau``.
    eps : float
        0.02. Near-parallel (gradient near-duplicate) when ``cos > 1 - eps``. Must leave
        ``1 - eps`` above the conflict threshold.
    top_m : int
        10. Neighbours kept per example (by ``|cos|``) for the constraint graph.
    block_size : int
        2048. Rows per block of the blocked all-pairs pass; memory is O(N * top_m + block^2).
    hist_bins : int
        200 equal bins of the cosine histogram over [-1, 1].
    max_pairs : int
        100_000. At most this many conflict pairs and this many near-parallel pairs are listed
        (the most extreme ones); counts and densities always cover every pair.
    exact_max_n : int
        100_000. Up to this N every pair is computed exactly; beyond, the pair statistics are a
        sampled estimate (labelled ``"method": "sampled"``, with 95 % Wilson intervals).
    sample_pairs : int
        2_000_000 random pairs for the sampled estimate of the histogram and densities.
    device : str
        "cpu" (default): the pass over ``X @ X.T`` (pairs, response partners, null) runs on the
        numba kernels. A torch device ("cuda", "cuda:1"): it runs there in torch tiles
        (:mod:`constraintlab.analysis.torch_pass`); the run's ``--device`` feeds it when this
        is left at "cpu" (``constraintlab.analyze``).
    device_precision : str
        "tf32" (default), "float32" or "bfloat16": the GEMM of the torch pass on a GPU
        (TF32 moves a cosine by about 1e-4 at k = 1,024; bfloat16 by about 1e-2).
    device_block : int
        4096 rows per tile of the torch pass on a GPU (columns: 8 times as many).
    sample_reference : int
        4096 random reference examples against which per-example scores and neighbours are
        estimated in the sampled mode.
    seed : int
        0. Seed of every random choice of the stage (sampling, randomized SVD, MinHash
        permutations, Louvain).
    svd_exact_max_dim : int
        8192. The spectrum is exact (eigenvalues of the smaller Gram matrix, float64) when
        ``min(N, k) <= svd_exact_max_dim``; beyond, a randomized SVD of ``svd_components``
        components with its residual stated.
    svd_components : int
        512 components of the randomized SVD.
    rank_noise : float
        1e-3. Relative noise of one stored feature row (bf16/fp32 gradients, float32 sketch). The
        numerical rank counts singular values above
        ``max(s_max * max(N, k) * eps_float32, rank_noise * ||G||_F * (1/sqrt(k) + 1/sqrt(N)))``:
        the second term is the largest singular value that row noise of that size produces on its
        own (Marchenko-Pastur edge of an N x k noise matrix with the same energy per row).
    growth_steps : int
        5. The growth curve (:mod:`constraintlab.analysis.growth`) is measured on seeded nested
        subsamples N/16, N/8, N/4, N/2, N.
    growth_energy : float
        0.9. The growth verdict reads the *energy rank*: the fewest directions that carry this
        share of ``||G||_F^2`` (:mod:`constraintlab.analysis.growth` says why not the
        effective rank).
    growth_saturating_below : float
        0.3. Growth verdict ``saturating`` when the elasticity of the energy rank over the last
        step (``log(d(N) / d(N/2)) / log 2``) is below this; ``still_growing`` from
        ``growth_growing_from`` = 0.45; ``slowing`` in between. Measured on the reference model
        (k = 1024, seeds 0 and 1; ``benchmarks/bench_validity.py``): 4 templates x 600 fills
        0.26 / 0.21; 600 diverse GSM8K test rows 0.48 / 0.51; 1,000 GSM8K test rows 0.39 /
        0.34 (slowing). The cut points sit in the gaps.
    growth_growing_from : float
        0.45; see ``growth_saturating_below``.
    growth_sketch_fill : float
        0.95. ``limited_by_sketch`` when the rank reaches this share of k while there are more
        examples than that rank (the sketch can show no more directions).
    growth_sketch_effective : float
        0.5. ... and the effective rank reaches this share of k (a rank filled by small row
        noise while few directions carry the data does not limit the curve).
    growth_adapter_fill : float
        0.95. ``limited_by_adapter`` likewise against P, the adapter's trainable parameters.
    growth_min_examples : int
        32. Fewer examples: ``too_few_examples``.
    null_draws : int
        3. Draws of the data's Gaussian null (:mod:`constraintlab.analysis.interference`): rows
        from a Gaussian with the mean and covariance of the data's unit rows, each run through
        the same pairs, graph and zones. The largest zone coherence and conflict share over
        the draws are the merge and pressure-zone thresholds; the mean interference over the
        draws is the baseline of ``interference_excess``.
    null_max_n : int
        20_000. Most rows in one null draw (beyond, the null has this many rows and the
        interference ``reason`` and ``null_note`` say so). Each draw runs the pairs pass and
        the zones on its rows, so the cap keeps the null's cost constant above it (3 draws of
        20k rows: about a quarter of the pairs pass of 100k rows) instead of growing like N^2.
    interference_excess_min : float
        1.15. ``interference_above_null`` when the data's cross-zone interference is at least
        this multiple of its null's mean. Set on clean real data, with the planted clash as the
        check (reference model, k = 1024, ``benchmarks/bench_validity.py``): 1,000 clean GSM8K
        test rows 1.02 [0.96, 1.08] and 0.94 [0.90, 1.03] (seeds 0, 1; bootstrap 95 % CI), the
        shipped sample's 288 unplanted rows 0.96 [0.89, 1.10]; the same 1,000 rows with 30 %
        of the answers replaced by "The answer is N." 1.46 [1.38, 1.51] and 1.44 [1.38, 1.50].
        1.15 sits above every clean CI's upper end; an earlier run (3 seeds) gave clean
        1.06-1.09 and 25 % terse 1.23-1.29.
    pressure_null_sigmas : float
        3.0. A zone is a pressure zone when its internal conflict exceeds the mean + this many
        standard deviations of the internal conflicts of the null's zones (and at least their
        largest): one-sided normal tail 0.13 % per zone, about 1 % over the ten or so zones of
        a dataset.
    zone_refine_iters : int
        30. Rounds of the zone refinement (:mod:`constraintlab.analysis.zones`); 0 turns it off.
    zone_refine_exact_max_cells : int
        20_000_000. The refinement compares every zoned row with every zone while rows x zones
        is at most this (O(rows x zones x k) a round: about 4e10 FLOP a round at the cap and
        k = 1,024, a small share of the pairs pass at that size); above it (the number of
        zones grows with N, so this cost grows like N^2), each row is compared only with its
        own zone, its top-m neighbours' zones and the ``zone_refine_largest`` largest zones
        (O(N x (top_m + zone_refine_largest) x k) a round). The zones summary says which
        (``refine_rule``).
    zone_refine_largest : int
        64. Above ``zone_refine_exact_max_cells``, the largest zones every row is still compared
        with (a row whose neighbours all sit in its own zone but that opposes it finds the zone
        it aligns with: on planted +/- blocks, neighbours' zones alone kept the opposed members
        together). With at most this many zones the refinement is the exact one.
    inconsistent_contradiction_share : float
        0.001. ``inconsistent`` when contradiction pairs (same or equivalent input, incompatible
        targets) reach this many per example (at least one pair). Gradient conflict never makes
        a system inconsistent: it is interference.
    shingle_size : int
        3 words per shingle (on normalised text).
    num_perm : int
        128 MinHash permutations.
    minhash_threshold : float
        0.8. Near duplicate when the exact Jaccard of the shingle sets reaches this. Every LSH
        candidate is verified by exact Jaccard, so the bands are chosen for recall (see
        ``lsh_min_recall``); ``lsh_bands``/``lsh_rows`` override.
    near_input_min : float
        0.5. A text near duplicate must also have similar inputs: when both examples have an
        input, the Jaccard of their normalised input ``input_shingle_size``-shingles must reach
        this (one long reply under two different prompts is not a duplicate example).
    lsh_min_recall : float
        0.99. LSH (bands, rows): among ``bands * rows <= num_perm``, the one with the smallest
        false-candidate mass (integral of the S-curve ``1 - (1 - s^r)^b`` below the threshold)
        whose candidate probability at the threshold is at least this. 0.8 and 128
        permutations give 21 bands of 6 rows (0.998 at J = 0.8).
    lsh_bands, lsh_rows : int or None
        None: from ``lsh_min_recall``.
    input_shingle_size : int
        2 words per shingle when comparing inputs (order-sensitive, tolerant to one changed word
        in a short prompt).
    contradiction_jaccard : float
        0.5. Targets whose normalised token Jaccard is below this differ in substance.
    factor_input_min : float
        0.95. Factor signal: inputs aligned when the cosine of their input factors exceeds this.
        The signal proposes a pair only when the model conditions on the input (capability
        statement) and the texts show the same input up to formatting
        (:mod:`constraintlab.analysis.contradictions`).
    factor_output_max : float
        0.5. Factor signal: outputs apart when the cosine of their output factors is below this.
    max_group : int
        200. Largest group of same-input examples compared pairwise (bigger groups compare each
        member with the group's first ``max_group`` members).
    zone_edge_min : float or None
        None: edges of the constraint graph need ``|cos| > tau`` (above the noise floor); nodes
        left without edges are outliers.
    louvain_resolution : float
        1.0.
    zone_terms : int
        3 distinctive terms in a zone label.
    zone_conflict_share : float
        0.1. Only without features (no null to compare with): a zone whose internal conflict
        share reaches this is a pressure zone. With features the threshold is the data's null
        (``null_draws``).
    response_top_m : int
        5. Top helpers and top hurters kept per example in the response map (partners j with
        the largest / smallest ``g_i . g_j``).
    response_list : int
        20. Most helpful and most harmful examples (by net effect) listed in the response
        summary.
    order_volatility_weight : float
        0.5. ``gradual`` ordering: the next unit is the unvisited one minimising
        ``(1 - cos) + order_volatility_weight * q``, q its volatility quantile in [0, 1]
        (0 = pure nearest-neighbour path, large = sort by volatility). Must be >= 0.
    volatility_top_k : int
        10. A target token the model does not rank among its 10 most likely next tokens counts
        as a miss (``topk_miss_share``). 10 sits between top-1 (which penalises every
        legitimate paraphrase) and the long tail; raise it for models with very large
        vocabularies if synonyms dominate the misses.
    volatility_weights : tuple of 4 float
        (1, 1, 1, 1). Weights of the four volatility parts (mean NLL, max NLL, top-k miss
        share, relative gradient norm); see :mod:`constraintlab.analysis.volatility`.
    volatility_advice_p99 : float
        0.55. The advice names the most volatile examples when the 99th percentile of the
        volatility score reaches this. Measured on the shipped GSM8K sample: the reference
        model (its own domain) has p99 0.47 (median 0.35); the same architecture with random
        weights, which knows nothing of the targets, p99 0.66 (median 0.63); the default sits
        between them.
    volatility_list : int
        20. Most volatile examples listed (with their token profiles) in the report.
    volatility_tokens : int
        5. Most surprising tokens named per listed example.
    family_jaccard : float
        0.5. Two records are variants of one text when the Jaccard of their word
        ``shingle_size``-shingles (normalised text) reaches this. Lower than
        ``minhash_threshold``: variants differ by a marked word, a synonym, an added step.
    family_min_size : int
        3. A connected set of at least this many distinct variants is a variant family (an
        intended variant set); smaller sets stay accidental near duplicates.
    family_coherence_min : float
        0.7. A family is incoherent when the mean pairwise cosine of its members' constraints
        is below this, when two members conflict (``cos < -tau``) or contradict each other.
        On the reference model, GSM8K question variants with a short answer target had mean
        cosines 0.84-0.97; the same families with half the answers changed, 0.46-0.53.
    families_are_duplicates : bool
        False. When False, near-duplicate links inside a family are intended variation, not
        redundancy: they are left out of the near-duplicate counts and duplicate sets (exact
        repeats still count). True treats family members like any near duplicate.
    layer_map_zones : int
        10. Zones (highest pressure first) whose layer map is stored in the report.
    suspect_alpha : float
        0.01. ``is_suspect`` when ``suspect_score >= 1 - suspect_alpha``: the chance that a
        clean example whose signals follow the data's bulk (robust normal fit) is flagged
        (:mod:`constraintlab.analysis.suspects`). The false-positive rate measured on clean
        GSM8K test rows with the reference model is printed by ``benchmarks/bench_suspects.py``.
    suspect_rule_p : float
        0.001. A rule hit (false arithmetic, unsupported final answer, contradiction)
        multiplies ``1 - suspect_score`` by this; it must not exceed
        ``suspect_alpha`` (every rule hit is flagged). Of the order of how often a clean
        example trips a rule: none of the 1,319 clean GSM8K test rows trips false_arithmetic
        or unsupported_final_answer (95 % upper bound 0.23 %). Truncation at ``max_length``
        is a note, not a rule (:mod:`constraintlab.analysis.suspects`).
    suspect_ending_tokens : int
        32. Most tokens of the target's last line read by ``ending_surprise`` (the stated final
        answer of a worked solution fits in far fewer).
    suspect_ending_floor : float
        0.05 nats added before the log of ``ending_surprise``: differences among endings the
        model predicts almost surely are noise.
    suspect_list : int
        20. Most suspect examples listed in the summary (with their tokens).
    suspect_tokens : int
        5. Tokens named per listed suspect (the ones the input explains least, by NLL).
    suspect_gate : bool
        True. A signal out of the model's reach (see ``capability_*``) is left out of the
        suspect score and the flags (its column is still filled); False keeps every signal.
    capability_min_gain : float
        0.02. The model "conditions on the input" when the inputs explain at least this share
        of the targets' surprise (``relative_input_gain``, each target's first token left
        out). Set from ``benchmarks/bench_suspects.py`` with the reference model: 0.056-0.067
        on its domain (GSM8K test rows, 10 % and 30 % planted, two seeds), 0.0013-0.0021 out
        of it (Alpaca rows); 0.02 sits a factor ~3 below the first and ~10 above the second.
    capability_max_nll_ratio : float
        0.7. The model "predicts the targets" when its mean target NLL is at most this share of
        the entropy of the data's own target-token unigram distribution. Set between the
        reference model on GSM8K test rows (0.44-0.47) and on Alpaca rows (0.90-0.94), same
        benchmark.
    capability_near_zero : float
        0.05 nats per target token. An example whose input explains less than this per token
        counts as "input dependence near 0" in the capability statement (the share of such
        examples is stated).
    capability_max_result_nll : float
        0.5 nats per digit. The model "computes arithmetic" when it predicts the digits of the
        computed results of explicit calculations (right of ``=``) at most this badly: the
        right digit at >= e^-0.5 ~ 60 % probability (geometric mean). No model that computes
        runs offline here, so this is not calibrated on one; the reference model is far above
        it on GSM8K test rows (1.60-1.62 nats/digit against 2.08 for the digit frequencies and
        ~0.6 for digits copied from earlier in the target; ``bench_suspects``), as a
        5M-parameter model must be.
    """

    tau: float | None = None
    tau_sigmas: float = 5.0
    tau_min: float = 0.05
    tau_max: float = 0.9
    eps: float = 0.02
    top_m: int = 10
    block_size: int = 2048
    hist_bins: int = 200
    max_pairs: int = 100_000
    exact_max_n: int = 100_000
    device: str = "cpu"
    device_precision: str = "tf32"
    device_block: int = 4096
    sample_pairs: int = 2_000_000
    sample_reference: int = 4096
    seed: int = 0
    svd_exact_max_dim: int = 8192
    svd_components: int = 512
    rank_noise: float = 1e-3
    leverage_unique: float = 0.9
    growth_steps: int = 5
    growth_energy: float = 0.9
    growth_saturating_below: float = 0.3
    growth_growing_from: float = 0.45
    growth_sketch_fill: float = 0.95
    growth_sketch_effective: float = 0.5
    growth_adapter_fill: float = 0.95
    growth_min_examples: int = 32
    null_draws: int = 3
    null_max_n: int = 20_000
    interference_excess_min: float = 1.15
    pressure_null_sigmas: float = 3.0
    zone_refine_iters: int = 30
    zone_refine_exact_max_cells: int = 20_000_000
    zone_refine_largest: int = 64
    inconsistent_contradiction_share: float = 0.001
    shingle_size: int = 3
    num_perm: int = 128
    minhash_threshold: float = 0.8
    near_input_min: float = 0.5
    lsh_min_recall: float = 0.99
    lsh_bands: int | None = None
    lsh_rows: int | None = None
    input_shingle_size: int = 2
    contradiction_jaccard: float = 0.5
    factor_input_min: float = 0.95
    factor_output_max: float = 0.5
    max_group: int = 200
    zone_edge_min: float | None = None
    louvain_resolution: float = 1.0
    zone_terms: int = 3
    zone_conflict_share: float = 0.1
    response_top_m: int = 5
    response_list: int = 20
    order_volatility_weight: float = 0.5
    volatility_top_k: int = 10
    volatility_weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    volatility_list: int = 20
    volatility_tokens: int = 5
    volatility_advice_p99: float = 0.55
    family_jaccard: float = 0.5
    family_min_size: int = 3
    family_coherence_min: float = 0.7
    families_are_duplicates: bool = False
    layer_map_zones: int = 10
    suspect_alpha: float = 0.01
    suspect_rule_p: float = 0.001
    suspect_ending_tokens: int = 32
    suspect_ending_floor: float = 0.05
    suspect_list: int = 20
    suspect_tokens: int = 5
    suspect_gate: bool = True
    capability_min_gain: float = 0.02
    capability_max_nll_ratio: float = 0.7
    capability_near_zero: float = 0.05
    capability_max_result_nll: float = 0.5

    def __post_init__(self) -> None:
        check_fields(self, CONSTRAINTS)
        if not re.fullmatch(r"cpu|cuda(:\d+)?|mps", str(self.device)):
            raise ConfigError(f"AnalysisConfig: device must be cpu, cuda, cuda:N or mps, got "
                              f"{self.device!r}")
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
