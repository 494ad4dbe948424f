"""All pairs of constraint rows, without an N x N matrix.

Rows are normalised to unit length; blocks ``C = X[I] @ X[J].T`` (J >= I) come from BLAS and
are folded by :func:`constraintlab._kernels.pairs.block_pair_stats` into the histogram of cosines,
conflict / alignment counts, conflict mass, near-parallel counts and the top-m neighbours by
``|cos|``. Memory: O(N * top_m + block^2) beyond the normalised copy of the rows.

Up to ``exact_max_n`` rows every pair is counted. Beyond, the histogram and densities come from
``sample_pairs`` uniformly drawn pairs (95 % Wilson intervals) and per-example scores and
neighbours from ``sample_reference`` random reference examples; the summary says
``"method": "sampled"``.
"""

from __future__ import annotations

import logging
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from constraintlab._kernels.pairs import block_pair_stats, collect_block_pairs, hist_bin
from constraintlab.analysis.config import AnalysisConfig
from constraintlab.analysis.result import AnalyzerResult
from constraintlab.progress import progress

logger = logging.getLogger(__name__)

__all__ = ["PairStats", "PairsResult", "analyze_pairs", "blocked_pairs", "unit_rows",
           "wilson_interval"]


def unit_rows(X: np.ndarray, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Rows scaled to unit length (float32; zero rows stay zero).

    Returns
    -------
    Xn : (N, k) float32
    zero : (N,) bool
        Rows of zero norm.
    """
    X = np.asarray(X)
    out = np.empty(X.shape, np.float32)
    zero = np.zeros(X.shape[0], bool)
    for i in range(0, X.shape[0], chunk):
        x = X[i:i + chunk].astype(np.float64)
        n = np.sqrt(np.square(x).sum(1))
        z = n == 0
        zero[i:i + chunk] = z
        out[i:i + chunk] = x / np.where(z, 1.0, n)[:, None]
    return out, zero


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95 % Wilson score interval of a binomial proportion."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class PairStats:
    """Running all-pairs statistics (row positions, not ids).

    Attributes
    ----------
    hist : (nbins,) int64
    conf_count, align_count, near_count : (N,) int64
    conf_mass : (N,) float64
    top_idx : (N, m) int64, -1 = empty slot; sorted by ``|cos|`` descending
    top_val : (N, m) float32, signed cosines
    lo_pairs, hi_pairs : tuple of (a, b, cos) arrays
        Collected pairs below ``-tau`` (most negative first) and above ``hi`` (largest first),
        ``a < b`` row positions, at most ``max_pairs`` each.
    n_lo_total, n_hi_total : int
        How many pairs passed the thresholds (listed or not).
    n_pairs : int
        Pairs counted.
    """

    hist: np.ndarray
    conf_count: np.ndarray
    align_count: np.ndarray
    near_count: np.ndarray
    conf_mass: np.ndarray
    top_idx: np.ndarray
    top_val: np.ndarray
    lo_pairs: tuple[np.ndarray, np.ndarray, np.ndarray]
    hi_pairs: tuple[np.ndarray, np.ndarray, np.ndarray]
    n_lo_total: int
    n_hi_total: int
    n_pairs: int


@dataclass
class PairsResult(AnalyzerResult):
    """What :func:`analyze_pairs` found: the common result plus the arrays the next analyzers
    read (row positions, not ids).

    Attributes
    ----------
    near_parallel : tuple of (a, b, cos) arrays
        Pairs with ``cos > 1 - eps``: ``a < b`` row positions (int64), cosines (float32),
        largest first, at most ``max_pairs``.
    top_idx : (N, top_m) int64
        Top-m neighbours by ``|cos|`` (row positions, -1 = empty slot), best first.
    top_val : (N, top_m) float32
        Their signed cosines.
    partners : SignedPartners or None
        The response map's signed top partners and help/hurt sums, folded in the same pass
        over the Gram blocks (:func:`constraintlab.analysis.response.analyze_response` takes
        this result as ``pairs=``); None when not asked for.

    ``arrays`` mirrors ``near_parallel`` / ``top_idx`` / ``top_val`` under those keys for
    callers not yet moved to the attributes.
    """

    near_parallel: tuple[np.ndarray, np.ndarray, np.ndarray] | None = field(default=None,
                                                                           repr=False)
    top_idx: np.ndarray | None = field(default=None, repr=False)
    top_val: np.ndarray | None = field(default=None, repr=False)
    partners: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.arrays = {"top_idx": self.top_idx, "top_val": self.top_val,
                       "near_parallel": self.near_parallel}


class _Collector:
    """Keeps at most ``cap`` most extreme pairs (smallest if ``low`` else largest)."""

    def __init__(self, cap: int, low: bool, thr: float) -> None:
        self.cap, self.low, self.thr = cap, low, thr
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.n = 0
        self.total = 0

    def add(self, a, b, v, counted: int) -> None:
        self.total += counted
        if len(a):
            self.parts.append((a, b, v))
            self.n += len(a)
        if self.n > 2 * self.cap:
            self._prune()

    def _prune(self) -> None:
        a, b, v = (np.concatenate(x) for x in zip(*self.parts, strict=True))
        if len(v) > self.cap:
            key = v if self.low else -v
            keep = np.argpartition(key, self.cap - 1)[: self.cap]
            a, b, v = a[keep], b[keep], v[keep]
            self.thr = float(v.max()) if self.low else float(v.min())
        self.parts = [(a, b, v)]
        self.n = len(a)

    def result(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self.parts:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
        self._prune()
        a, b, v = self.parts[0]
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        order = np.lexsort((hi, lo, v if self.low else -v))
        return lo[order], hi[order], v[order]


def _new_state(N: int, m: int, n_chunks: int, bins: int) -> tuple[np.ndarray, ...]:
    """Zeroed running statistics, in :func:`block_pair_stats` argument order: hist, conflict
    count, conflict mass, alignment count, near count, top-m keys (-1), partners (-1), values."""
    return (np.zeros((n_chunks, bins), np.int64), np.zeros(N, np.int64), np.zeros(N, np.float64),
            np.zeros(N, np.int64), np.zeros(N, np.int64), np.full((N, m), -1.0, np.float32),
            np.full((N, m), -1, np.int64), np.zeros((N, m), np.float32))


def blocked_pairs(
    Xn: np.ndarray,
    *,
    tau: float,
    near: float,
    hi_collect: float,
    top_m: int,
    block_size: int,
    hist_bins: int,
    max_pairs: int,
    collect_low: bool = True,
    overlap: bool = True,
    desc: str = "all pairs",
) -> PairStats:
    """Exact statistics over every pair of unit rows, block by block.

    Parameters
    ----------
    Xn : (N, k) float32
        Unit rows (:func:`unit_rows`).
    tau, near : float
        Conflict/alignment threshold and near-parallel threshold (``1 - eps``).
    hi_collect : float
        Pairs with ``cos > hi_collect`` are listed (``hi_pairs``).
    top_m, block_size, hist_bins, max_pairs : int
    collect_low : bool
        List the conflicting pairs (``cos < -tau``).
    overlap : bool
        Fold block t (one numba thread) while BLAS computes block t + 1 (default); False:
        one after the other, kernels on every numba thread.
    """
    import numba

    Xn = np.ascontiguousarray(Xn, dtype=np.float32)
    N = Xn.shape[0]
    B = min(block_size, max(N, 1))
    n_chunks = max(1, numba.get_num_threads() * 4)
    (hist, conf_count, conf_mass, align_count, near_count, top_key, top_idx,
     top_val) = _new_state(N, top_m, n_chunks, hist_bins)
    lo = _Collector(max_pairs, True, -tau if collect_low else -2.0)
    hi = _Collector(max_pairs, False, hi_collect)
    bufs = [np.empty(B * B, np.float32), np.empty(B * B, np.float32)]
    row_lo = np.empty(B, np.int64)
    row_hi = np.empty(B, np.int64)
    starts = list(range(0, N, B))
    ids = np.arange(N, dtype=np.int64)
    blocks = [(i0, j0) for bi, i0 in enumerate(starts) for j0 in starts[bi:]]
    # one thread runs the kernels on block t (numba, one thread, GIL released) while the main
    # thread has BLAS compute block t + 1: the cores never wait for each other, and no idle,
    # still-spinning BLAS worker competes with kernel threads
    pipelined = overlap and len(blocks) > 1

    def fold(C: np.ndarray, i0: int, i1: int, j0: int, j1: int) -> None:
        if pipelined:
            numba.set_num_threads(1)
        diag = i0 == j0
        rl, rh = row_lo[: i1 - i0], row_hi[: i1 - i0]
        block_pair_stats(C, ids[i0:i1], ids[j0:j1], diag, tau, near, lo.thr, hi.thr,
                         hist_bins, n_chunks, True, True, hist, conf_count, conf_mass,
                         align_count, near_count, top_key, top_idx, top_val, rl, rh)
        if rl.any() or rh.any():
            la, lb, lv, ha, hb, hv = collect_block_pairs(
                C, ids[i0:i1], ids[j0:j1], diag, lo.thr, hi.thr, rl, rh)
            lo.add(la, lb, lv, 0)
            hi.add(ha, hb, hv, 0)

    pool = ThreadPoolExecutor(1) if pipelined else None
    pending = None
    try:
        with progress(total=len(blocks), desc=desc, unit="block") as bar:
            for t, (i0, j0) in enumerate(blocks):
                i1, j1 = min(N, i0 + B), min(N, j0 + B)
                C = bufs[t % 2][: (i1 - i0) * (j1 - j0)].reshape(i1 - i0, j1 - j0)
                np.dot(Xn[i0:i1], Xn[j0:j1].T, out=C)
                if pending is not None:
                    pending.result()
                    bar.update(1)
                if pool is None:
                    fold(C, i0, i1, j0, j1)
                    bar.update(1)
                else:
                    pending = pool.submit(fold, C, i0, i1, j0, j1)
            if pending is not None:
                pending.result()
                bar.update(1)
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
    order = np.argsort(-top_key, axis=1, kind="stable")
    top_idx = np.take_along_axis(top_idx, order, 1)
    top_val = np.take_along_axis(top_val, order, 1)
    n_conf_pairs = int(conf_count.sum() // 2)
    n_near_pairs = int(near_count.sum() // 2)
    return PairStats(hist.sum(0), conf_count, align_count, near_count, conf_mass, top_idx,
                     top_val, lo.result(), hi.result(), n_conf_pairs, n_near_pairs,
                     N * (N - 1) // 2)


def _sampled_pairs(Xn: np.ndarray, tau: float, near: float, config: AnalysisConfig) -> dict:
    """Histogram, densities and per-example estimates from sampled pairs and a reference set."""
    import numba

    N = Xn.shape[0]
    rng = np.random.default_rng(config.seed)
    S = config.sample_pairs
    i = rng.integers(0, N, S)
    j = rng.integers(0, N - 1, S)
    j = j + (j >= i)
    cos = np.empty(S, np.float32)
    for s0 in range(0, S, 200_000):
        cos[s0:s0 + 200_000] = np.einsum("ij,ij->i", Xn[i[s0:s0 + 200_000]],
                                         Xn[j[s0:s0 + 200_000]])
    hist = np.bincount(hist_bin(cos, config.hist_bins), minlength=config.hist_bins)
    c64 = cos.astype(np.float64)
    n_conf = int((c64 < -tau).sum())
    n_align = int((c64 > tau).sum())
    n_near = int((c64 > near).sum())
    ref = np.sort(rng.choice(N, size=min(config.sample_reference, N), replace=False))
    R = len(ref)
    m = config.top_m
    n_chunks = max(1, numba.get_num_threads() * 4)
    (h, conf_count, conf_mass, align_count, near_count, top_key, top_idx,
     top_val) = _new_state(N, m, n_chunks, config.hist_bins)
    Xr = Xn[ref]
    B = config.block_size
    lo = _Collector(config.max_pairs, True, -tau)
    hi = _Collector(config.max_pairs, False, near)
    row_lo = np.empty(B, np.int64)
    row_hi = np.empty(B, np.int64)
    ids = np.arange(N, dtype=np.int64)
    for i0 in progress(range(0, N, B), desc="sampled pairs", unit="block"):
        i1 = min(N, i0 + B)
        C = Xn[i0:i1] @ Xr.T
        rl, rh = row_lo[: i1 - i0], row_hi[: i1 - i0]
        block_pair_stats(C, ids[i0:i1], ref, False, tau, near, lo.thr, hi.thr, config.hist_bins,
                         n_chunks, False, False, h, conf_count, conf_mass, align_count,
                         near_count, top_key, top_idx, top_val, rl, rh)
        if rl.sum() or rh.sum():
            la, lb, lv, ha, hb, hv = collect_block_pairs(C, ids[i0:i1], ref, False, lo.thr,
                                                         hi.thr, rl, rh)
            lo.add(la, lb, lv, 0)
            hi.add(ha, hb, hv, 0)
    order = np.argsort(-top_key, axis=1, kind="stable")
    in_ref = np.zeros(N, bool)
    in_ref[ref] = True
    denom = (R - in_ref).astype(np.float64)
    # dedupe pairs seen from both sides (both ends in the reference set)
    la, lb, lv = lo.result()
    ha, hb, hv = hi.result()

    def dedupe(a, b, v):
        if not len(a):
            return a, b, v
        _, first = np.unique(a * N + b, return_index=True)
        first = np.sort(first)
        return a[first], b[first], v[first]

    return {
        "hist": hist, "n_conf": n_conf, "n_align": n_align, "n_near": n_near, "S": S,
        "conf_count": conf_count, "align_count": align_count, "near_count": near_count,
        "conf_mass": conf_mass, "denom": denom, "R": R,
        "top_idx": np.take_along_axis(top_idx, order, 1),
        "top_val": np.take_along_axis(top_val, order, 1),
        "lo": dedupe(la, lb, lv), "hi": dedupe(ha, hb, hv),
    }


def analyze_pairs(
    features: np.ndarray,
    *,
    ids: np.ndarray | None = None,
    config: AnalysisConfig | None = None,
) -> PairsResult:
    """Every pair of constraint rows: histogram, conflict and alignment density, per-example
    conflict score, near-parallel pairs, top-m neighbours.

    Parameters
    ----------
    features : (N, k) float
    ids : (N,) int, optional
        Example ids (default ``0..N-1``).
    config : AnalysisConfig
        ``tau`` (default from k), ``eps``, ``top_m``, ``block_size``, ``hist_bins``,
        ``max_pairs``, ``exact_max_n``, ``sample_pairs``, ``sample_reference``, ``seed``.

    Returns
    -------
    PairsResult
        ``name="pairs"``. Table: ``conflict_count``, ``conflict_score`` (share of the other
        examples it conflicts with, in [0, 1]), ``conflict_mass`` (sum of ``-cos`` over its
        conflicts), ``is_conflict`` (at least one conflicting partner), ``alignment_count``,
        ``near_parallel_count``, ``is_zero_vector``. Pairs: kind ``"conflict"`` (most negative
        first, at most ``max_pairs``), score ``-cos``. Attributes ``top_idx`` / ``top_val``
        (row positions / signed cosines, (N, top_m)), ``near_parallel`` (a, b, cos) with row
        positions, ``partners``.
    """
    config = config if config is not None else AnalysisConfig()
    X = np.asarray(features)
    if X.ndim != 2:
        raise ValueError(f"features must be 2-D (N, k), got shape {X.shape}")
    N, k = X.shape
    ids = np.arange(N) if ids is None else np.asarray(ids)
    tau = config.tau_for(k)
    near = config.near_for(k)
    Xn, zero = unit_rows(X)
    n_pairs_all = N * (N - 1) // 2
    summary: dict = {"n": N, "k": k, "tau": tau, "near_threshold": near,
                     "noise_floor": 1.0 / math.sqrt(k),
                     "tau_rule": "given" if config.tau is not None else
                     f"min({config.tau_max}, max({config.tau_min}, {config.tau_sigmas}/sqrt(k)))",
                     "n_zero_vectors": int(zero.sum()), "n_pairs": n_pairs_all}
    edges = np.linspace(-1.0, 1.0, config.hist_bins + 1)
    if N <= config.exact_max_n:
        st = blocked_pairs(Xn, tau=tau, near=near, hi_collect=near, top_m=config.top_m,
                           block_size=config.block_size, hist_bins=config.hist_bins,
                           max_pairs=config.max_pairs)
        denom = np.full(N, max(N - 1, 1), np.float64)
        n_conf = st.n_lo_total
        n_align = int(st.align_count.sum() // 2)
        summary.update({
            "method": "exact",
            "conflict_pairs": n_conf,
            "alignment_pairs": n_align,
            "near_parallel_pairs": st.n_hi_total,
            "conflict_density": n_conf / n_pairs_all if n_pairs_all else 0.0,
            "alignment_density": n_align / n_pairs_all if n_pairs_all else 0.0,
            "histogram": {"edges": edges.tolist(), "counts": st.hist.tolist()},
        })
        conf_count, align_count, near_count, conf_mass = (st.conf_count, st.align_count,
                                                          st.near_count, st.conf_mass)
        top_idx, top_val = st.top_idx, st.top_val
        lo_pairs, hi_pairs = st.lo_pairs, st.hi_pairs
    else:
        sp = _sampled_pairs(Xn, tau, near, config)
        S = sp["S"]
        denom = np.maximum(sp["denom"], 1.0)
        summary.update({
            "method": "sampled",
            "method_note": f"N = {N} > exact_max_n = {config.exact_max_n}: densities from "
                           f"{S} random pairs (95 % Wilson intervals); per-example scores and "
                           f"neighbours against {sp['R']} random reference examples",
            "sampled_pairs": S,
            "conflict_pairs": round(sp["n_conf"] / S * n_pairs_all),
            "alignment_pairs": round(sp["n_align"] / S * n_pairs_all),
            "near_parallel_pairs": round(sp["n_near"] / S * n_pairs_all),
            "conflict_density": sp["n_conf"] / S,
            "conflict_density_ci95": list(wilson_interval(sp["n_conf"], S)),
            "alignment_density": sp["n_align"] / S,
            "alignment_density_ci95": list(wilson_interval(sp["n_align"], S)),
            "histogram": {"edges": edges.tolist(), "counts": sp["hist"].tolist(),
                          "sampled": True},
        })
        conf_count, align_count, near_count, conf_mass = (sp["conf_count"], sp["align_count"],
                                                          sp["near_count"], sp["conf_mass"])
        top_idx, top_val = sp["top_idx"], sp["top_val"]
        lo_pairs, hi_pairs = sp["lo"], sp["hi"]
    conflict_score = np.clip(conf_count / denom, 0.0, 1.0)
    summary["conflicted_examples"] = int((conf_count > 0).sum())
    summary["conflicted_share"] = float((conf_count > 0).mean()) if N else 0.0
    summary["conflict_pairs_listed"] = len(lo_pairs[0])
    summary["mean_abs_top1"] = float(np.abs(top_val[:, 0]).mean()) if N and config.top_m else 0.0
    table = pd.DataFrame({
        "conflict_count": conf_count,
        "conflict_score": conflict_score,
        "conflict_mass": conf_mass,
        "is_conflict": conf_count > 0,
        "alignment_count": align_count,
        "near_parallel_count": near_count,
        "is_zero_vector": zero,
    }, index=pd.Index(ids, name="index"))
    a, b, v = lo_pairs  # a < b row positions; ids may be in any order
    ia, ib = ids[a], ids[b]
    lo_id, hi_id = np.minimum(ia, ib).tolist(), np.maximum(ia, ib).tolist()
    pairs = [{"kind": "conflict", "a": x, "b": y, "score": -c, "detail": {"cos": c}}
             for x, y, c in zip(lo_id, hi_id, v.astype(np.float64).tolist(), strict=True)]
    return PairsResult("pairs", table, summary, pairs, near_parallel=hi_pairs, top_idx=top_idx,
                       top_val=top_val)
