"""All pairs of constraint rows, without an N x N matrix.

Rows are normalised to unit length; the blocks ``C = X[I] @ X[J].T`` (J >= I) of
:func:`constraintlab.analysis.blocks.for_each_block` are folded by :class:`PairFold`
(:func:`constraintlab._kernels.pairs.block_pair_stats`) into the histogram of cosines,
conflict / alignment counts, conflict mass, near-parallel counts and the top-m neighbours by
``|cos|`` and, in the same pass over the same blocks, by
:class:`constraintlab.analysis.response.PartnerFold` into the response map's signed top
partners and help/hurt sums (``PairsResult.partners``). Memory: O(N * (top_m + response_top_m)
+ block^2) beyond the normalised copy of the rows.

Up to ``exact_max_n`` rows every pair is counted. Beyond, the histogram and densities come from
``sample_pairs`` uniformly drawn pairs (95 % Wilson intervals) and per-example scores,
neighbours and response partners from ``sample_reference`` random reference examples
(:func:`constraintlab.analysis.blocks.sample_plan`), through the same block driver; the summary
says ``"method": "sampled"``.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from constraintlab._kernels.heap import sort_heaps
from constraintlab._kernels.pairs import block_pair_stats, collect_block_pairs, hist_bin
from constraintlab.analysis.blocks import (
    Block,
    for_each_block,
    kernel_chunks,
    sample_plan,
    scaled_rows,
    unit_rows,
)
from constraintlab.analysis.config import AnalysisConfig
from constraintlab.analysis.registry import Analyzer
from constraintlab.analysis.response import PartnerFold, SignedPartners, response_top_m
from constraintlab.analysis.result import AnalyzerResult, PairArrays

logger = logging.getLogger(__name__)

__all__ = ["PairFold", "PairStats", "PairsResult", "analyze_pairs", "blocked_pairs", "unit_rows",
           "wilson_interval"]


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
    """

    near_parallel: tuple[np.ndarray, np.ndarray, np.ndarray] | None = field(default=None,
                                                                           repr=False)
    top_idx: np.ndarray | None = field(default=None, repr=False)
    top_val: np.ndarray | None = field(default=None, repr=False)
    partners: SignedPartners | None = field(default=None, repr=False)


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


class PairFold:
    """A fold for :func:`constraintlab.analysis.blocks.for_each_block`: all-pairs statistics
    of blocks of cosines, by :func:`constraintlab._kernels.pairs.block_pair_stats`, and the
    listed pairs, by :func:`constraintlab._kernels.pairs.collect_block_pairs`.

    Parameters
    ----------
    n : int
        Rows.
    tau, near : float
        Conflict/alignment threshold and near-parallel threshold (``1 - eps``).
    lo_collect, hi_collect : float
        Pairs with ``cos < lo_collect`` / ``cos > hi_collect`` are listed (at most
        ``max_pairs`` each, the most extreme).
    top_m, hist_bins, max_pairs : int
    do_hist : bool
        Count the histogram (exact mode; the sampled mode takes it from its random pairs).
    n_chunks : int, optional
        Row / column chunks of the kernel; default: :func:`kernel_chunks` at each call (the
        statistics do not depend on it).
    """

    def __init__(self, n: int, *, tau: float, near: float, lo_collect: float,
                 hi_collect: float, top_m: int, hist_bins: int, max_pairs: int,
                 do_hist: bool = True, n_chunks: int | None = None) -> None:
        self.n, self.tau, self.near, self.bins, self.do_hist = n, tau, near, hist_bins, do_hist
        self.n_chunks = n_chunks
        self.hist = np.zeros((n_chunks or kernel_chunks(None), hist_bins), np.int64)
        self._lane_hist: dict[int, np.ndarray] = {0: self.hist}
        self._lock = threading.Lock()
        self.conf_count = np.zeros(n, np.int64)
        self.conf_mass = np.zeros(n, np.float64)
        self.align_count = np.zeros(n, np.int64)
        self.near_count = np.zeros(n, np.int64)
        self.top_key = np.full((n, top_m), -1.0, np.float32)  # |cos| >= 0 > empty
        self.top_idx = np.full((n, top_m), -1, np.int64)
        self.top_val = np.zeros((n, top_m), np.float32)
        self.lo = _Collector(max_pairs, True, lo_collect)
        self.hi = _Collector(max_pairs, False, hi_collect)

    #: writes only the rows (and, symmetric, columns) of its block, plus per-lane histograms:
    #: :func:`constraintlab.analysis.blocks.for_each_block` may fold disjoint blocks at once
    row_owned = True

    def __call__(self, b: Block) -> None:
        R = len(b.rows)
        rl, rh = np.empty(R, np.int64), np.empty(R, np.int64)
        hist = self._lane_hist.get(b.lane)
        if hist is None:
            with self._lock:
                hist = self._lane_hist.setdefault(b.lane, np.zeros_like(self.hist))
        nc = min(self.n_chunks or kernel_chunks(), len(hist))
        lo_thr, hi_thr = self.lo.thr, self.hi.thr
        block_pair_stats(b.C, b.rows, b.cols, b.diag, self.tau, self.near, lo_thr,
                         hi_thr, self.bins, nc, self.do_hist, b.symmetric,
                         hist[:nc], self.conf_count, self.conf_mass, self.align_count,
                         self.near_count, self.top_key, self.top_idx, self.top_val, rl, rh)
        if rl.any() or rh.any():
            la, lb, lv, ha, hb, hv = collect_block_pairs(b.C, b.rows, b.cols, b.diag,
                                                         lo_thr, hi_thr, rl, rh)
            with self._lock:
                self.lo.add(la, lb, lv, 0)
                self.hi.add(ha, hb, hv, 0)

    def result(self) -> PairStats:
        """The statistics after the last block (exact-mode totals; top-m sorted best first)."""
        _, top_idx, top_val = sort_heaps(self.top_key, self.top_idx, self.top_val)
        N = self.n
        hist = sum(h.sum(0) for h in self._lane_hist.values())
        return PairStats(hist, self.conf_count, self.align_count, self.near_count,
                         self.conf_mass, top_idx, top_val, self.lo.result(), self.hi.result(),
                         int(self.conf_count.sum() // 2), int(self.near_count.sum() // 2),
                         N * (N - 1) // 2)


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
    """Exact statistics over every pair of unit rows, block by block (a :class:`PairFold`
    alone in :func:`constraintlab.analysis.blocks.for_each_block`).

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
        Compute blocks in parallel lanes while the folds run on the finished ones, in order
        (default, :func:`constraintlab.analysis.blocks.for_each_block`); False: one after the
        other, kernels on every numba thread.
    """
    fold = PairFold(Xn.shape[0], tau=tau, near=near, lo_collect=-tau if collect_low else -2.0,
                    hi_collect=hi_collect, top_m=top_m, hist_bins=hist_bins,
                    max_pairs=max_pairs)
    for_each_block(Xn, block_size, [fold], overlap=overlap, desc=desc)
    return fold.result()


def _dedupe(a: np.ndarray, b: np.ndarray, v: np.ndarray, n: int):
    """First occurrence of each pair (a, b) (sampled mode sees a pair from both sides when
    both ends are reference rows)."""
    if not len(a):
        return a, b, v
    _, first = np.unique(a * n + b, return_index=True)
    first = np.sort(first)
    return a[first], b[first], v[first]


def analyze_pairs(
    features: np.ndarray,
    *,
    ids: np.ndarray | None = None,
    config: AnalysisConfig | None = None,
    partners: bool = True,
    backend: str | None = None,
) -> PairsResult:
    """Every pair of constraint rows: histogram, conflict and alignment density, per-example
    conflict score, near-parallel pairs, top-m neighbours; in the same pass, the response map's
    signed top partners.

    Parameters
    ----------
    features : (N, k) float
    ids : (N,) int, optional
        Example ids (default ``0..N-1``).
    config : AnalysisConfig
        ``tau`` (default from k), ``eps``, ``top_m``, ``block_size``, ``hist_bins``,
        ``max_pairs``, ``exact_max_n``, ``sample_pairs``, ``sample_reference``, ``seed``;
        ``response_top_m`` for the partners.
    partners : bool
        Also fold the signed top-``response_top_m`` partners and help/hurt sums of the
        response map into the pass (``PairsResult.partners``, for
        ``analyze_response(..., pairs=result)``). Default True.
    backend : {"numba", "torch"}, optional
        The pass: numba kernels on the CPU, or torch tiles on ``config.device``
        (:mod:`constraintlab.analysis.torch_pass`). Default: torch when ``config.device`` is
        not "cpu".

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
    Xn, norms = scaled_rows(X)
    zero = norms == 0
    n_pairs_all = N * (N - 1) // 2
    summary: dict = {"n": N, "k": k, "tau": tau, "near_threshold": near,
                     "noise_floor": 1.0 / math.sqrt(k),
                     "tau_rule": "given" if config.tau is not None else
                     f"min({config.tau_max}, max({config.tau_min}, {config.tau_sigmas}/sqrt(k)))",
                     "n_zero_vectors": int(zero.sum()), "n_pairs": n_pairs_all}
    edges = np.linspace(-1.0, 1.0, config.hist_bins + 1)
    exact = N <= config.exact_max_n
    fold = PairFold(N, tau=tau, near=near, lo_collect=-tau, hi_collect=near, top_m=config.top_m,
                    hist_bins=config.hist_bins, max_pairs=config.max_pairs, do_hist=exact)
    pfold = PartnerFold(norms, response_top_m(N, config)) if partners else None
    folds = [fold] if pfold is None else [fold, pfold]
    use_torch = backend == "torch" or (backend is None and config.device != "cpu")
    if exact:
        reference = None
        if use_torch:
            st, part = _torch_stats(Xn, norms, config, fold, pfold, None, tau, near)
        else:
            for_each_block(Xn, config.block_size, folds, desc="all pairs")
            st = fold.result()
        denom = np.full(N, max(N - 1, 1), np.float64)
        n_conf = st.n_lo_total
        n_align = int(st.align_count.sum() // 2)
        summary.update({
            "method": "exact",
            "conflicting_pairs": n_conf,
            "aligned_pairs": n_align,
            "near_parallel_pairs": st.n_hi_total,
            "conflict_density": n_conf / n_pairs_all if n_pairs_all else 0.0,
            "alignment_density": n_align / n_pairs_all if n_pairs_all else 0.0,
            "histogram": {"edges": edges.tolist(), "counts": st.hist.tolist()},
        })
        lo_pairs, hi_pairs = st.lo_pairs, st.hi_pairs
    else:
        S = config.sample_pairs
        i, j, reference = sample_plan(N, S, config.sample_reference, config.seed)
        cos = np.empty(S, np.float32)
        for s0 in range(0, S, 200_000):
            cos[s0:s0 + 200_000] = np.einsum("ij,ij->i", Xn[i[s0:s0 + 200_000]],
                                             Xn[j[s0:s0 + 200_000]])
        c64 = cos.astype(np.float64)
        n_conf = int((c64 < -tau).sum())
        n_align = int((c64 > tau).sum())
        n_near = int((c64 > near).sum())
        if use_torch:
            st, part = _torch_stats(Xn, norms, config, fold, pfold, reference, tau, near)
        else:
            for_each_block(Xn, config.block_size, folds, reference=reference,
                           desc="sampled pairs")
            st = fold.result()
        R = len(reference)
        in_ref = np.zeros(N, bool)
        in_ref[reference] = True
        denom = np.maximum((R - in_ref).astype(np.float64), 1.0)
        hist = np.bincount(hist_bin(cos, config.hist_bins), minlength=config.hist_bins)
        summary.update({
            "method": "sampled",
            "method_note": f"N = {N} > exact_max_n = {config.exact_max_n}: densities from "
                           f"{S} random pairs (95 % Wilson intervals); per-example scores and "
                           f"neighbours against {R} random reference examples",
            "sampled_pairs": S,
            "conflicting_pairs": round(n_conf / S * n_pairs_all),
            "aligned_pairs": round(n_align / S * n_pairs_all),
            "near_parallel_pairs": round(n_near / S * n_pairs_all),
            "conflict_density": n_conf / S,
            "conflict_density_ci95": list(wilson_interval(n_conf, S)),
            "alignment_density": n_align / S,
            "alignment_density_ci95": list(wilson_interval(n_align, S)),
            "histogram": {"edges": edges.tolist(), "counts": hist.tolist(), "sampled": True},
        })
        lo_pairs, hi_pairs = _dedupe(*st.lo_pairs, N), _dedupe(*st.hi_pairs, N)
    conf_count, align_count, near_count, conf_mass = (st.conf_count, st.align_count,
                                                      st.near_count, st.conf_mass)
    top_idx, top_val = st.top_idx, st.top_val
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
    cos = v.astype(np.float64)
    pairs = PairArrays("conflict", np.minimum(ia, ib), np.maximum(ia, ib), -cos, {"cos": cos})
    if pfold is None:
        sp = None
    elif use_torch:
        sp = SignedPartners(part.hi_idx, part.hi_val, part.lo_idx, part.lo_val, part.pos_sum,
                            part.neg_sum, reference)
    else:
        sp = pfold.result(reference)
    logger.info("pairs pass on %s", f"{config.device} (torch)" if use_torch else "cpu (numba)")
    return PairsResult("pairs", table, summary, pairs, near_parallel=hi_pairs, top_idx=top_idx,
                       top_val=top_val, partners=sp)


def _torch_stats(Xn: np.ndarray, norms: np.ndarray, config: AnalysisConfig, fold: PairFold,
                 pfold, reference: np.ndarray | None, tau: float, near: float):
    """The pass on ``config.device`` with torch
    (:func:`constraintlab.analysis.torch_pass.torch_pass`), as the folds' :class:`PairStats`
    and the raw part (for the partners)."""
    from constraintlab.analysis.torch_pass import PassParams, torch_pass

    params = PassParams(tau=tau, near=near, lo_collect=fold.lo.thr, hi_collect=fold.hi.thr,
                        top_m=config.top_m, hist_bins=config.hist_bins,
                        max_pairs=config.max_pairs,
                        partner_m=pfold.state[0].shape[1] if pfold is not None else 0,
                        do_hist=fold.do_hist)
    cpu = config.device == "cpu"
    rb = config.block_size if cpu else config.device_block
    part = torch_pass(Xn, norms, params, reference=reference, device=config.device,
                      precision="float32" if cpu else config.device_precision,
                      row_block=rb, col_block=8 * rb,
                      desc="all pairs (torch)" if reference is None else "sampled pairs (torch)")
    fold.lo.add(*part.lo_pairs, 0)
    fold.hi.add(*part.hi_pairs, 0)
    N = Xn.shape[0]
    st = PairStats(part.hist, part.conf_count, part.align_count, part.near_count,
                   part.conf_mass, part.top_idx, part.top_val, fold.lo.result(),
                   fold.hi.result(), int(part.conf_count.sum() // 2),
                   int(part.near_count.sum() // 2), N * (N - 1) // 2)
    return st, part


def _run(system, results, config: AnalysisConfig) -> PairsResult | None:
    if system.features is None:
        return None
    return analyze_pairs(system.features, ids=system.ids, config=config)


#: No gate metric: raw conflict counts sit near what the data's own geometry gives on clean
#: real data (``interference`` is measured against that null and is the gate-able number).
ANALYZER = Analyzer(name="pairs", run=_run, section="conflict")
