r"""How the suspect signals combine into one p-value per example.

Each signal is standardised against the data's own bulk, robustly and one-sided (low input
dependence, high surprise): centre = median, scale = 1.4826 x the median distance to it of
the values on the bulk's side (:func:`robust_z`; the corruptions sit on the other side, so the
scale grows far less with them than the two-sided MAD: with 30 % planted, the two-sided MAD
shrank the z of every planted row until some replies in another language ranked below clean
rows). One-sided p-values :math:`p_{i,c} = \Phi(-z_{i,c})`. Two questions are combined:
does the input explain the target (``input_dependence``), and does the target read like the
data: the stronger of ``ending_surprise`` and ``target_surprise``, Sidak-corrected,
:math:`p_{surprise} = 1 - (1 - \min(p_{end}, p_{target}))^2` (the ending catches a changed
final answer that the mean hides; the whole catches a reply that is foreign from the start).
The two questions' p-values are combined by a weighted Bonferroni (weighted Tippett) rule,
:math:`p_i = \min(1, p_{input} / w, p_{surprise} / (1 - w))` with :math:`w = 0.8`
(:data:`QUESTION_WEIGHTS`; a row with one question available: its p-value). Calibrated
under any dependence (:math:`P(p_i \le a) \le a`; with independent questions
:math:`1 - (1 - wa)(1 - (1 - w)a)`), so ``is_suspect`` at ``suspect_alpha`` still means a
false-positive rate of about ``suspect_alpha`` on clean rows whose signals follow the fit.

Why not Fisher (the combination before issue 22): a kind that moves one question only (a
swapped target moves ``input_dependence``, its surprise stays null) is diluted by the other
question's noise: :math:`X = -2 \sum \ln p` adds an :math:`\mathrm{Exp}(1)` term per null
question, which lifts clean rows with one moderately surprising side above swapped targets
of moderate z. On the planted GSM8K sets of ``bench_suspects`` (seed 0, 10 % / 30 %) Fisher
ranked swapped targets 0.043 / 0.032 AUROC below ``input_dependence`` alone; the unweighted
minimum (Tippett/Sidak) 0.023 / 0.021 below, the Cauchy combination (ACAT, Liu & Xie 2020)
0.037 / 0.040 (it is Tippett-like in the tail and adds the Cauchy noise of the null side
elsewhere). Any symmetric rule pays this price on a one-question kind: under a Gaussian shift
model each kind loses about :math:`\Phi(-\mu/\sqrt 2)` to the other question's clean tail.

Why the weight: the kinds that move only the surprise question are loud and tight (robust z
of a cut-off ending 2.6-3.4 with sd 0.3, a changed final answer 2.2-2.9 with sd 0.3, which
the rules also catch), the kind that moves only the input question is
moderate and spread (swapped targets 2.0-2.3, sd 0.8-1.2), and the clean rows' surprise tail
is heavier than normal (the 99th percentile of the ending's z 2.6 against 2.33), the input
tail lighter (1.95). The budget goes where the evidence is quiet: 80 % to the input
question. Measured on seed 0 (10 % / 30 %), worst gap of the score to the best single
signal over the six kinds, for w = 0.5, 0.7, 0.8, 0.9, 0.95: -0.024, -0.011, -0.008,
-0.015, -0.035 (w = 0.9 and above lose cut-off targets at 30 %, w = 0.7 and below swapped
targets at 10 %); w = 0.8 was fixed there and then measured on the other seeds
(``bench_suspects``, README). A three-test omnibus adding Fisher as a third Bonferroni test
(for kinds that move both questions) did not change the worst gap (-0.007 to -0.009): those
kinds (off-topic, another language) are loud on each question alone. The price, seen on a
30-row set: a row with two moderate signals (z 1.9 and 2.8) no longer pools them.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import log_ndtr

__all__ = ["QUESTION_WEIGHTS", "robust_z"]

#: the share of the p-value budget of each question (weighted Bonferroni, module docstring):
#: does the input explain the target; does the target read like the data
QUESTION_WEIGHTS: tuple[float, float] = (0.8, 0.2)


def _available(log_p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, C) float64 log p-values, which are finite, and how many per row."""
    log_p = np.asarray(log_p, dtype=np.float64)
    ok = np.isfinite(log_p)
    return log_p, ok, ok.sum(axis=1)


def _log_p_weighted_bonferroni(log_p: np.ndarray, weights) -> np.ndarray:
    r"""ln of the weighted Bonferroni (weighted Tippett) combination of each row's finite
    log p-values: :math:`\min(1, \min_c p_c / w_c)`, the weights of the available ones
    renormalised to sum to 1; 0 for a row without any.

    Valid under any dependence: :math:`P(\min_c p_c / w_c \le a) \le \sum_c w_c a = a`;
    under independence it is :math:`1 - \prod_c (1 - w_c a)`, which differs from ``a`` by
    :math:`O(a^2)`.

    Parameters
    ----------
    log_p : (N, C) float (NaN = signal not available)
    weights : (C,) float, positive

    Returns
    -------
    (N,) float64
    """
    log_p, ok, m = _available(log_p)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (log_p.shape[1],) or not (w > 0).all():
        raise ValueError(f"need {log_p.shape[1]} positive weights, got {weights!r}")
    total = np.where(ok, w[None, :], 0.0).sum(axis=1)
    log_w = np.log(w)[None, :] - np.log(np.where(m > 0, total, 1.0))[:, None]
    lo = np.min(np.where(ok, log_p - log_w, np.inf), axis=1)
    return np.where(m > 0, np.minimum(lo, 0.0), 0.0)


def _log_p_combined(log_p: np.ndarray, weights: tuple[float, float] = QUESTION_WEIGHTS
                    ) -> np.ndarray:
    """ln of the combined model p-value of each row (module docstring): the weighted
    Bonferroni combination of ``p_input`` and ``p_surprise`` (Sidak over the ending and the
    whole target).

    Parameters
    ----------
    log_p : (N, 3) float
        ln of the one-sided p-values of ``input_dependence``, ``ending_surprise``,
        ``target_surprise`` (NaN = not available or out of the model's reach).
    weights : (2,) float
        The two questions' shares of the budget (default :data:`QUESTION_WEIGHTS`).

    Returns
    -------
    (N,) float64
        0 for a row without any signal.
    """
    log_p = np.asarray(log_p, dtype=np.float64)
    surprise = _log_p_sidak(log_p[:, 1:])
    return _log_p_weighted_bonferroni(np.column_stack([log_p[:, 0], surprise]), weights)


def _log_p_one_sided(z: np.ndarray) -> np.ndarray:
    """ln Phi(-z) (NaN stays NaN)."""
    z = np.asarray(z, dtype=np.float64)
    ok = np.isfinite(z)
    return np.where(ok, log_ndtr(-np.where(ok, z, 0.0)), np.nan)


def _log_p_sidak(log_p: np.ndarray) -> np.ndarray:
    """ln of the Sidak-corrected smallest p-value of each row's finite log p-values:
    ``1 - (1 - p_min)^m`` (for m = 2, ``p_min (2 - p_min)``); NaN for a row without any.

    Parameters
    ----------
    log_p : (N, C) float

    Returns
    -------
    (N,) float64
    """
    log_p, ok, m = _available(log_p)
    lo = np.min(np.where(ok, log_p, np.inf), axis=1)
    lo = np.where(m > 0, lo, -1.0)          # rows without any: any value, NaN below
    # ln(1 - (1 - p)^m) = ln(-expm1(m log1p(-p))); below p = e^-30, ln(m p) (relative error
    # of order p)
    tiny = lo < -30.0
    with np.errstate(divide="ignore"):        # p = 1: log1p(-1) = -inf, the result 0 is right
        exact = np.log(-np.expm1(m * np.log1p(-np.exp(np.where(tiny, -30.0, lo)))))
    out = np.where(tiny, lo + np.log(np.maximum(m, 1)), exact)
    return np.where(m > 0, np.minimum(out, 0.0), np.nan)


def robust_z(x: np.ndarray, side: str = "high") -> tuple[np.ndarray, float, float]:
    """``(x - median) / scale`` over the finite values (NaN stays NaN); the scale is
    1.4826 x the median distance to the median of the values on the bulk's side (below the
    median for ``side="high"``, where large values are suspect; above it for ``"low"``).

    One-sided because the corruptions sit on one side: with 30 % of the rows planted wrong
    (``bench_suspects``), the two-sided MAD grew with them and shrank the z of every planted
    row (some replies in another language fell below clean rows); the clean side's spread grows
    far less with them (a known-answer test: less than half as much at 30 %). For symmetric
    clean data it equals the MAD.

    Parameters
    ----------
    x : (N,) float
    side : {"high", "low"}
        Which values are suspect.

    Returns
    -------
    z : (N,) float64; center, scale : float
        The scale falls back to the two-sided MAD, then to the standard deviation, when it is
        0; z is 0 where all are 0 (no spread, no evidence).
    """
    if side not in ("high", "low"):
        raise ValueError(f"side must be 'high' or 'low', got {side!r}")
    x = np.asarray(x, dtype=np.float64)
    ok = np.isfinite(x)
    if not ok.any():
        return np.full(x.shape, np.nan), math.nan, math.nan
    v = x[ok]
    center = float(np.median(v))
    bulk = v[v <= center] if side == "high" else v[v >= center]
    scale = 1.4826 * float(np.median(np.abs(bulk - center)))
    if scale <= 0:
        scale = 1.4826 * float(np.median(np.abs(v - center)))
    if scale <= 0:
        scale = float(np.std(v))
    z = np.full(x.shape, np.nan)
    z[ok] = (v - center) / scale if scale > 0 else 0.0
    return z, center, scale

