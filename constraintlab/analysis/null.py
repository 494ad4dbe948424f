"""The data's own null: what the pipeline gives on structureless rows of the data's geometry.

Rows drawn from a Gaussian with the **mean and covariance of the data's unit rows**, then
normalised (:func:`gaussian_null`): the same cosine geometry to second order, no structure
beyond it. Measured on the reference model it reproduces the raw cosine distribution of
clean data (GSM8K test, 1,319 rows: data mean 0.021 / sd 0.118 / conflict density 0.0644;
null 0.021 / 0.116 / 0.061-0.065; shipped sample: 0.0637 against 0.077-0.086). A Gaussian
with the covariance of the *raw* rows does not (sd 0.13-0.16: a few large gradients
dominate it). Each draw is run through the same pairs pass, graph and zones
(:func:`null_reference`), so every threshold read from it is what the pipeline itself gives
on structureless data of this geometry.

The ``null`` analyzer runs the draws once (:class:`NullResult`); the zones (merge and pressure
thresholds, :mod:`constraintlab.analysis.zones`) and the interference (its baseline,
:mod:`constraintlab.analysis.interference`) read its :class:`NullReference`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from constraintlab.analysis.config import AnalysisConfig
from constraintlab.analysis.registry import Analyzer
from constraintlab.analysis.result import AnalyzerResult
from constraintlab.analysis.zones import (
    analyze_zones,
    centered_unit_rows,
    cross_zone_interference,
)

logger = logging.getLogger(__name__)

__all__ = ["NullReference", "NullResult", "gaussian_null", "null_factor", "null_reference"]

_CHUNK = 8192


def null_factor(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and a square-root factor of the covariance of the unit rows.

    Parameters
    ----------
    features : (N, k) float

    Returns
    -------
    mu : (k,) float64
        Mean of the unit rows.
    F : (m, k) float64
        ``F.T @ F`` = the covariance of the unit rows (``1 / (N - 1)``): the centred unit rows
        themselves over ``sqrt(N - 1)`` when ``N <= k`` (no eigendecomposition), else
        ``diag(sqrt(w)) V.T`` from one ``eigh`` of the ``k x k`` covariance.
    """
    X = np.asarray(features)
    N, k = X.shape
    mu = np.zeros(k)
    for i in range(0, N, _CHUNK):
        x = X[i:i + _CHUNK].astype(np.float64)
        nrm = np.linalg.norm(x, axis=1, keepdims=True)
        mu += (x / np.where(nrm > 0, nrm, 1.0)).sum(0)
    mu /= N
    scale = 1.0 / np.sqrt(max(N - 1, 1))
    if N <= k:
        x = X.astype(np.float64)
        nrm = np.linalg.norm(x, axis=1, keepdims=True)
        return mu, (x / np.where(nrm > 0, nrm, 1.0) - mu) * scale
    C = np.zeros((k, k))
    for i in range(0, N, _CHUNK):
        x = X[i:i + _CHUNK].astype(np.float64)
        nrm = np.linalg.norm(x, axis=1, keepdims=True)
        u = x / np.where(nrm > 0, nrm, 1.0) - mu
        C += u.T @ u
    w, V = np.linalg.eigh(C * scale**2)
    return mu, np.sqrt(np.clip(w, 0.0, None))[:, None] * V.T


def gaussian_null(features: np.ndarray, n: int | None = None, seed: int = 0,
                  factor: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Rows from a Gaussian with the mean and covariance of the unit rows, normalised.

    Parameters
    ----------
    features : (N, k) float
    n : int, optional
        Rows to draw (default N).
    seed : int
    factor : (mu, F), optional
        :func:`null_factor` of ``features`` (computed here when not given; pass it to draw
        several times without recomputing it).

    Returns
    -------
    (n, k) float32
        Unit rows.
    """
    X = np.asarray(features)
    N, k = X.shape
    n = N if n is None else int(n)
    mu, F = factor if factor is not None else null_factor(X)
    rng = np.random.default_rng(seed)
    out = np.empty((n, k), np.float32)
    for i in range(0, n, _CHUNK):
        m = min(n, i + _CHUNK) - i
        y = mu + rng.standard_normal((m, F.shape[0])) @ F
        nrm = np.linalg.norm(y, axis=1, keepdims=True)
        out[i:i + m] = y / np.where(nrm > 0, nrm, 1.0)
    return out



@dataclass
class NullReference:
    """What the data's Gaussian null gives through the pairs, graph and zones.

    Attributes
    ----------
    n_rows : int
        Rows per draw.
    zone_draws : int
        How many of the first draws set the zone thresholds (``null_draws``).
    seeds : list of int
        Every draw's seed.
    coherence : list of float
        Per zone draw, the largest zone coherence (mean cosine of mean-removed unit rows).
    conflict_share : list of float
        Per zone draw, the largest zone conflict share.
    interference : list of float
        Per draw (all of them), :func:`cross_zone_interference` of its zones.
    conflict_density : list of float
        Per zone draw, the raw conflict density of the pairs pass.
    zone_conflicts, zone_sizes : list of float, list of int
        Every zone of every zone draw: its internal conflict and size.
    """

    n_rows: int
    zone_draws: int = 0
    seeds: list[int] = field(default_factory=list)
    coherence: list[float] = field(default_factory=list)
    conflict_share: list[float] = field(default_factory=list)
    interference: list[float] = field(default_factory=list)
    conflict_density: list[float] = field(default_factory=list)
    zone_conflicts: list[float] = field(default_factory=list)
    zone_sizes: list[int] = field(default_factory=list)

    @property
    def coherence_max(self) -> float:
        return float(max(self.coherence)) if self.coherence else float("inf")

    @property
    def conflict_share_max(self) -> float:
        return float(max(self.conflict_share)) if self.conflict_share else 1.0

    def pressure_threshold(self, sigmas: float) -> float:
        """Internal conflict a zone must exceed to be a pressure zone: ``mean + sigmas * sd``
        of every null zone's internal conflict, and at least the largest one."""
        if not self.zone_conflicts:
            return self.conflict_share_max
        c = np.asarray(self.zone_conflicts, dtype=np.float64)
        return float(max(c.max(), c.mean() + sigmas * c.std()))

    @property
    def interference_mean(self) -> float:
        return float(np.mean(self.interference)) if self.interference else 0.0

    @property
    def interference_sd(self) -> float:
        """Sample standard deviation of the draws' interference (0 with fewer than two)."""
        return float(np.std(self.interference, ddof=1)) if len(self.interference) > 1 else 0.0

    def to_dict(self) -> dict:
        return {"n_rows": self.n_rows, "seeds": self.seeds, "coherence": self.coherence,
                "conflict_share": self.conflict_share, "interference": self.interference,
                "conflict_density": self.conflict_density,
                "zone_conflicts": self.zone_conflicts, "zone_sizes": self.zone_sizes,
                "coherence_max": self.coherence_max,
                "conflict_share_max": self.conflict_share_max,
                "interference_mean": self.interference_mean,
                "interference_sd": self.interference_sd, "zone_draws": self.zone_draws}


def null_reference(features: np.ndarray, *, config: AnalysisConfig | None = None
                   ) -> NullReference:
    """Run draws of :func:`gaussian_null` through the pairs pass, the graph and the zones
    (refined, not merged), and keep what the thresholds need.

    ``null_draws`` draws, or more while they fit in ``null_rows_total`` rows (at most
    ``interference_null_draws``): the first ``null_draws`` set the zone thresholds (merge,
    pressure), every draw enters the interference baseline and its spread. With 3 draws the
    spread is not known; on structureless rows of 600 x 128 the statistic varies by about 8 %
    from draw to draw (``docs/calibration.md#interference``).

    Parameters
    ----------
    features : (N, k) float
    config : AnalysisConfig
        ``null_draws``, ``null_rows_total``, ``interference_null_draws``, ``null_max_n``,
        ``seed`` and every pairs / zones setting.

    Returns
    -------
    NullReference
    """
    from constraintlab.analysis.pairs import analyze_pairs

    config = config if config is not None else AnalysisConfig()
    N = np.asarray(features).shape[0]
    n = min(N, config.null_max_n)
    ref = NullReference(n_rows=n, zone_draws=config.null_draws)
    factor = null_factor(features)
    draws = max(config.null_draws, min(config.interference_null_draws,
                                       config.null_rows_total // max(n, 1)))
    for d in range(draws):
        seed = config.seed + 1000 + d
        Y = gaussian_null(features, n, seed, factor=factor)
        p = analyze_pairs(Y, config=config, partners=False)
        z = analyze_zones(p.top_idx, p.top_val, tau=p.summary["tau"], features=Y,
                          config=config)
        ref.seeds.append(seed)
        ref.interference.append(cross_zone_interference(centered_unit_rows(Y), z.labels)[0])
        if d >= config.null_draws:       # the zone thresholds stay those of the first draws
            continue
        zs = z.summary["zones"]
        ref.coherence.append(max((q["coherence"] for q in zs if q["coherence"] is not None),
                                 default=0.0))
        ref.conflict_share.append(max((q["internal_conflict"] for q in zs
                                       if q["internal_conflict"] is not None), default=0.0))
        ref.zone_conflicts += [float(q["internal_conflict"]) for q in zs
                               if q["internal_conflict"] is not None]
        ref.zone_sizes += [int(q["size"]) for q in zs if q["internal_conflict"] is not None]
        ref.conflict_density.append(float(p.summary.get("conflict_density", 0.0)))
    logger.info("null: %d draws of %d rows; coherence max %.3f, conflict share max %.3f, "
                "interference %.4f +- %.4f", draws, n, ref.coherence_max,
                ref.conflict_share_max, ref.interference_mean, ref.interference_sd)
    return ref



@dataclass
class NullResult(AnalyzerResult):
    """The data's Gaussian null through pairs, graph and zones (``reference``), shared by the
    zones (merge and pressure thresholds) and the interference analyzers."""

    reference: NullReference | None = field(default=None, repr=False)


def _run_null(system, results, config: AnalysisConfig) -> NullResult | None:
    if system.features is None:
        return None
    ref = null_reference(system.features, config=config)
    return NullResult("null", pd.DataFrame(index=pd.Index(system.ids, name="index")),
                      ref.to_dict(), reference=ref)


ANALYZER = Analyzer(name="null", run=_run_null)
