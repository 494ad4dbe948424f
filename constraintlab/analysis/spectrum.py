"""Spectrum, ranks and leverage of the constraint matrix G (N x k) (the verdict on the whole
system: :mod:`constraintlab.analysis.determinacy`).

Exact path (``min(N, k) <= svd_exact_max_dim``): eigenvalues of the smaller Gram matrix
(``G^T G`` or ``G G^T``) in float64, singular values ``sqrt(max(eig, 0))``. Eigenvalues are exact
to about ``1e-16 s_max^2``, i.e. singular values to about ``1e-8 s_max``, far below the rank
tolerance. Beyond: a randomized SVD (Halko et al.) of ``svd_components`` components; the
residual energy is exact (``||G||_F^2`` is known) and the residual's spectral norm is estimated by
power iteration; both are in the summary.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from constraintlab.analysis.config import AnalysisConfig
from constraintlab.analysis.registry import Analyzer, Metric
from constraintlab.analysis.result import AnalyzerResult

logger = logging.getLogger(__name__)

__all__ = ["SpectrumResult", "analyze_spectrum", "effective_rank", "rank_tolerance"]


@dataclass
class SpectrumResult(AnalyzerResult):
    """What :func:`analyze_spectrum` found.

    Attributes
    ----------
    singular_values : (r,) float64
        Every computed singular value, largest first (the summary lists at most 4096).
    """

    singular_values: np.ndarray | None = field(default=None, repr=False)


_CHUNK = 8192


def effective_rank(s: np.ndarray) -> float:
    """Roy & Vetterli (2007): ``exp(H(p))``, ``p = s / sum(s)``; 0 for an all-zero spectrum."""
    s = np.asarray(s, dtype=np.float64)
    s = s[s > 0]
    if len(s) == 0:
        return 0.0
    p = s / s.sum()
    return float(np.exp(-(p * np.log(p)).sum()))


def rank_tolerance(s_max: float, fro: float, n: int, k: int, rank_noise: float) -> float:
    """Numerical-rank tolerance (see ``AnalysisConfig.rank_noise``)."""
    machine = s_max * max(n, k) * float(np.finfo(np.float32).eps)
    noise = rank_noise * fro * (1.0 / math.sqrt(k) + 1.0 / math.sqrt(n))
    return float(max(machine, noise))


def _gram_cols(X: np.ndarray) -> np.ndarray:
    k = X.shape[1]
    G = np.zeros((k, k))
    for i in range(0, X.shape[0], _CHUNK):
        x = X[i:i + _CHUNK].astype(np.float64)
        G += x.T @ x
    return G


def _spectral_norm_estimate(X, U, s, Vt, iters: int, seed: int) -> float:
    """Power iteration on the residual ``X - U diag(s) Vt`` (never formed)."""
    rng = np.random.default_rng(seed)
    v = rng.standard_normal(X.shape[1])
    v /= np.linalg.norm(v)
    est = 0.0
    for _ in range(iters):
        u = X @ v - U @ (s * (Vt @ v))
        w = X.T @ u - Vt.T @ (s * (U.T @ u))
        nw = np.linalg.norm(w)
        if nw == 0:
            return 0.0
        est = math.sqrt(nw)
        v = w / nw
    return float(est)


def analyze_spectrum(
    features: np.ndarray,
    *,
    ids: np.ndarray | None = None,
    n_params: int | None = None,
    config: AnalysisConfig | None = None,
) -> AnalyzerResult:
    """Singular values, numerical / effective / stable rank, energy directions, leverage.

    Parameters
    ----------
    features : (N, k) float
        One row per example (projected gradient).
    ids : (N,) int, optional
        Example ids (default ``0..N-1``).
    n_params : int, optional
        P, the number of trainable parameters (unknowns) for the ledger.
    config : AnalysisConfig

    Returns
    -------
    AnalyzerResult
        ``name="spectrum"``; effective rank over the singular values above the rank
        tolerance (noise directions excluded); table columns ``leverage_score`` (in [0, 1]),
        ``is_unique_constraint``, ``row_norm``; summary with ``singular_values``, ``rank``,
        ``rank_tolerance``, ``rank_is_lower_bound``, ``effective_rank``, ``stable_rank``,
        ``energy_directions``, ``ledger`` and ``method`` (+ ``error`` for the randomized path).
        The determinacy verdict is its own result (:func:`analyze_determinacy`).
    """
    config = config if config is not None else AnalysisConfig()
    X = np.asarray(features)
    N, k = X.shape
    ids = np.arange(N) if ids is None else np.asarray(ids)
    fro2 = float(sum(np.square(X[i:i + _CHUNK].astype(np.float64)).sum()
                     for i in range(0, N, _CHUNK)))
    fro = math.sqrt(fro2)
    small = min(N, k)
    error = None
    if small <= config.svd_exact_max_dim:
        method = "exact_gram"
        if k <= N:
            w, V = np.linalg.eigh(_gram_cols(X))
            w, V = w[::-1], V[:, ::-1]
            s = np.sqrt(np.clip(w, 0.0, None))
        else:
            Xd = X.astype(np.float64)
            w, U = np.linalg.eigh(Xd @ Xd.T)
            w, U = w[::-1], U[:, ::-1]
            s = np.sqrt(np.clip(w, 0.0, None))
    else:
        from sklearn.utils.extmath import randomized_svd

        method = "randomized_svd"
        ncomp = min(config.svd_components, small)
        X32 = np.asarray(X, dtype=np.float32)  # no copy when already float32
        U, s, Vt = randomized_svd(X32, ncomp, n_oversamples=20, n_iter=7,
                                  random_state=config.seed)
        s = s.astype(np.float64)
        # residual energy computed directly (fro2 - sum s^2 cancels catastrophically)
        resid_energy = 0.0
        for i in range(0, N, _CHUNK):
            x = X[i:i + _CHUNK].astype(np.float64)
            resid_energy += float(np.square(x - (U[i:i + _CHUNK] * s) @ Vt).sum())
        resid_norm = _spectral_norm_estimate(X32, U, s, Vt, 20, config.seed)
        error = {
            "components": ncomp,
            "residual_energy_fraction": resid_energy / fro2 if fro2 > 0 else 0.0,
            "residual_spectral_norm_estimate": resid_norm,
            "residual_relative_to_s_max": resid_norm / s[0] if s[0] > 0 else 0.0,
            "note": "singular values beyond the computed components are not known; ranks and "
                    "energy shares are computed on the computed components",
        }
    s_max = float(s[0]) if len(s) else 0.0
    tol = rank_tolerance(s_max, fro, N, k, config.rank_noise)
    keep = s > tol
    r = int(keep.sum())
    lower_bound = r >= k or (method == "randomized_svd" and r >= len(s))
    # leverage h_i = ||U_r[i]||^2
    if r == 0:
        lev = np.zeros(N)
    elif method == "exact_gram" and k <= N:
        P = V[:, :r] / s[:r]
        lev = np.concatenate([np.square(X[i:i + _CHUNK].astype(np.float64) @ P).sum(1)
                              for i in range(0, N, _CHUNK)])
    else:
        lev = np.square(U[:, :r]).sum(1)
    lev = np.clip(lev, 0.0, 1.0)
    energy = np.square(s)
    cum = np.cumsum(energy) / energy.sum() if energy.sum() > 0 else np.zeros_like(energy)

    def need(q: float) -> int:
        return int(np.searchsorted(cum, q - 1e-12) + 1) if len(cum) and cum[-1] > 0 else 0

    r_eff = effective_rank(s[keep])
    stable = fro2 / s_max**2 if s_max > 0 else 0.0
    ledger = {
        "equations": N,
        "unknowns": int(n_params) if n_params is not None else None,
        "sketch_dim": k,
        "rank": r,
        "rank_is_lower_bound": bool(lower_bound),
        "effective_rank": r_eff,
        "redundant_equations": N - r,
        "free_directions": int(n_params) - r if n_params is not None else None,
    }
    summary = {
        "spectrum_method": method,
        "n_equations": N,
        "n_unknowns": int(n_params) if n_params is not None else None,
        "sketch_dim": k,
        "singular_values": s[: min(len(s), 4096)].tolist(),
        "frobenius_norm": fro,
        "rank": r,
        "rank_tolerance": tol,
        "rank_tolerance_rule": "max(s_max * max(N, k) * eps_float32, rank_noise * ||G||_F * "
                               "(1/sqrt(k) + 1/sqrt(N)))",
        "rank_noise": config.rank_noise,
        "rank_is_lower_bound": bool(lower_bound),
        "effective_rank": r_eff,
        "effective_rank_rule": "exp(entropy of s / sum(s)) over the singular values above the "
                               "rank tolerance (Roy & Vetterli 2007)",
        "stable_rank": stable,
        "examples_per_direction": N / r_eff if r_eff > 0 else math.inf,
        "energy_directions": {"50": need(0.5), "90": need(0.9), "99": need(0.99)},
        "leverage_sum": float(lev.sum()),
        "unique_constraints": int((lev >= config.leverage_unique).sum()),
        "ledger": ledger,
    }
    if lower_bound:
        summary["rank_note"] = (f"rank {r} reached the sketch dimension k = {k} (or the computed "
                                "components): the true rank is at least this")
    if error is not None:
        summary["error"] = error
    norms = np.sqrt(np.concatenate([np.square(X[i:i + _CHUNK].astype(np.float64)).sum(1)
                                    for i in range(0, N, _CHUNK)])) if N else np.zeros(0)
    table = pd.DataFrame({
        "leverage_score": lev,
        "is_unique_constraint": lev >= config.leverage_unique,
        "row_norm": norms,
    }, index=pd.Index(ids, name="index"))
    return SpectrumResult("spectrum", table, summary, singular_values=s)


def _run_spectrum(system, results, config: AnalysisConfig) -> SpectrumResult | None:
    if system.features is None:
        return None
    return analyze_spectrum(system.features, ids=system.ids, n_params=system.n_params,
                            config=config)


ANALYZER = Analyzer(
    name="spectrum", run=_run_spectrum, section="system",
    metrics={
        "examples": Metric("n_equations", "N, examples analysed (equations)"),
        "unknowns": Metric("n_unknowns", "P, trainable LoRA parameters"),
        "rank": Metric("rank", "numerical rank of the constraint matrix (a lower bound "
                       "when it reaches k)"),
        "effective_rank": Metric("effective_rank", "exp of the entropy of the normalised "
                                 "singular values"),
        "stable_rank": Metric("stable_rank", "||G||_F^2 / ||G||_2^2"),
        "rank_is_lower_bound": Metric("rank_is_lower_bound", "true when the rank reached "
                                      "the sketch dimension k"),
        "examples_per_direction": Metric("examples_per_direction", "N / effective_rank")})
