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
Fisher's method over the ``m_i`` of the two available for the example:
:math:`X_i = -2 \sum_c \ln p_{i,c}` follows :math:`\chi^2_{2 m_i}` for an example whose
signals follow the bulk independently, so :math:`p_i = P(\chi^2_{2m_i} \ge X_i)` is its
model p-value. Fisher, not the maximum: a reply in another language or an off-topic reply
shows in both at once, a swapped target in one; on the planted GSM8K sets of
``bench_suspects`` Fisher ranked the two-signal kinds above the maximum (which ranked some
clean rows with a rule hit above them) and the swapped targets as well as it. Adding the
whole-target surprise as a third Fisher term instead diluted the swapped targets' evidence
(their AUROC fell from 0.93 to 0.88-0.91 on the three seeds); inside the Sidak pair it did not
(0.93).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import log_ndtr

__all__ = ["robust_z"]


def _available(log_p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, C) float64 log p-values, which are finite, and how many per row."""
    log_p = np.asarray(log_p, dtype=np.float64)
    ok = np.isfinite(log_p)
    return log_p, ok, ok.sum(axis=1)


def _log_p_fisher(log_p: np.ndarray) -> np.ndarray:
    """ln of Fisher's combined p-value of each row's finite one-sided log p-values:
    ``P(chi2_{2m} >= X)``, ``X = -2 sum ln p``, in closed form for even degrees of freedom
    (``exp(-X/2) sum_{j<m} (X/2)^j / j!``), exact far into the tail; 0 for a row without any.

    Parameters
    ----------
    log_p : (N, C) float (NaN = signal not available)

    Returns
    -------
    (N,) float64
    """
    log_p, ok, m = _available(log_p)
    half = -np.where(ok, log_p, 0.0).sum(axis=1)   # X / 2
    terms = np.zeros(len(log_p))
    term = np.ones(len(log_p))
    for j in range(int(m.max()) if len(m) else 0):
        if j:
            term = term * half / j
        terms += np.where(j < m, term, 0.0)
    return np.where(m > 0, -half + np.log(np.where(m > 0, terms, 1.0)), 0.0)


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

