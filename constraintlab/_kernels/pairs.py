"""All-pairs statistics on one block of cosines.

The caller computes a block ``C = X[rows] @ X[cols].T`` of cosines with BLAS (rows of X are unit
vectors) and hands it to :func:`block_pair_stats`, which folds it into running per-example
statistics (conflict / alignment counts, conflict mass, near-parallel counts, top-m neighbours by
``|cos|``) and into a histogram. A pair ``(r, c)`` of the block is counted once: on the diagonal
block (``diag=True``) only ``c > r`` is used; a pair whose two global ids are equal is skipped.

Parallel layout (pynndescent style): the row pass is a ``prange`` over contiguous row chunks, each
chunk writing its own rows and its own histogram row; the column pass is a ``prange`` over
contiguous column chunks, each writing its own columns. No two iterations write the same slot.

The counting loops are compiled with fast-math so that LLVM vectorises them (sums may be
reassociated; inputs must be finite, which ``analyze_constraints`` checks); the histogram binning
is plain IEEE arithmetic, so bins equal :func:`hist_bin` exactly.

Every kernel has a NumPy twin ``<name>_numpy`` with the same contract; the tests use it as the
oracle.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from constraintlab._kernels.heap import heap_offer

__all__ = [
    "block_pair_stats",
    "block_pair_stats_numpy",
    "collect_block_pairs",
    "collect_block_pairs_numpy",
    "hist_bin",
]


@nb.njit(cache=True, nogil=True)
def _hist_row(C, r, c0, Q, half, top, lh, cs):
    """Add the bins of ``C[r, c0:Q]`` (except column ``cs``) to the 4 sub-histograms ``lh``
    (IEEE arithmetic, no fast-math: the bins equal :func:`hist_bin` exactly)."""
    row = C[r, c0:Q]
    for j in range(row.shape[0]):
        b = np.int64((np.float64(row[j]) + 1.0) * half)
        b = min(max(b, 0), top)
        lh[j & 3, b] += 1
    if cs >= c0:
        b = np.int64((np.float64(C[r, cs]) + 1.0) * half)
        lh[(cs - c0) & 3, min(max(b, 0), top)] -= 1


def hist_bin(v: np.ndarray, nbins: int) -> np.ndarray:
    """Histogram bin of cosines ``v`` on ``nbins`` equal bins over [-1, 1] (NumPy, float64 math).

    Parameters
    ----------
    v : (n,) float
    nbins : int

    Returns
    -------
    (n,) int64
    """
    b = np.floor((np.asarray(v, dtype=np.float64) + 1.0) * (0.5 * nbins)).astype(np.int64)
    return np.clip(b, 0, nbins - 1)


SPAN = 64  # columns per span of the row pass's heap search


@nb.njit(cache=True, nogil=True)
def _any_abs_above(C, r, s0, s1, kmin):
    """True when some ``|C[r, s0:s1]|`` exceeds ``kmin`` (vectorisable or-reduction)."""
    row = C[r, s0:s1]
    hit = False
    for c in range(row.shape[0]):
        hit |= abs(row[c]) > kmin
    return hit


@nb.njit(cache=True, nogil=True)
def _cols_abs_above(C, r, s0, s1, q0, ckmin):
    """True when some ``|C[r, c]|``, ``s0 <= c < s1``, exceeds its column's ``ckmin[c - q0]``
    (vectorisable)."""
    row = C[r, s0:s1]
    km = ckmin[s0 - q0:s1 - q0]
    hit = False
    for j in range(row.shape[0]):
        hit |= abs(row[j]) > km[j]
    return hit


@nb.njit(cache=True, nogil=True)
def _any_outside(C, r, s0, s1, lo, hi):
    """True when some ``C[r, s0:s1]`` is below ``lo`` or above ``hi`` (float64 compares, as
    :func:`collect_block_pairs`; vectorisable)."""
    row = C[r, s0:s1]
    hit = False
    for c in range(row.shape[0]):
        v = np.float64(row[c])
        hit |= (v < lo) | (v > hi)
    return hit


@nb.njit(cache=True, nogil=True, fastmath=True)
def _row_counts(C, r, c0, Q, ntau, tau, near, lo, hi, kmin):
    """Counts over ``C[r, c0:Q]`` (a separate function so that LLVM vectorises the loop);
    the last count is of ``|cos| > kmin`` (candidates for the row's top-m)."""
    nc = 0
    na = 0
    nn = 0
    nlo = 0
    nhi = 0
    mass = 0.0
    nk = 0
    row = C[r, c0:Q]
    for c in range(row.shape[0]):
        v32 = row[c]
        v = np.float64(v32)
        isc = v < ntau
        nc += isc
        mass -= v if isc else 0.0
        na += v > tau
        nn += v > near
        nlo += v < lo
        nhi += v > hi
        nk += abs(v32) > kmin
    return nc, na, nn, nlo, nhi, mass, nk


@nb.njit(cache=True, nogil=True, fastmath=True)
def _col_counts(C, r, qs, q1, q0, ntau, tau, near, packed, cm, ckmin):
    """Column statistics of ``C[r, qs:q1]`` into the chunk's accumulators; True when some
    ``|cos|`` beats its column's smallest top-m key."""
    row = C[r, qs:q1]
    off = qs - q0
    pk = packed[off:off + row.shape[0]]
    ms = cm[off:off + row.shape[0]]
    km = ckmin[off:off + row.shape[0]]
    hit = False
    for j in range(row.shape[0]):
        v32 = row[j]
        v = np.float64(v32)
        isc = v < ntau
        pk[j] += (np.int64(isc) | (np.int64(v > tau) << 21) | (np.int64(v > near) << 42))
        ms[j] -= v if isc else 0.0
        hit |= abs(v32) > km[j]
    return hit


@nb.njit(parallel=True, cache=True, nogil=True, fastmath=True)
def block_pair_stats(
    C, row_ids, col_ids, diag, tau, near, lo_collect, hi_collect, nbins, n_chunks,
    do_hist, do_cols,
    hist, conf_count, conf_mass, align_count, near_count, top_key, top_idx, top_val,
    row_lo, row_hi,
):
    """Fold one block of cosines into the running statistics (in place).

    Parameters
    ----------
    C : (R, Q) float32
        Cosines of the rows ``row_ids`` against the columns ``col_ids``.
    row_ids, col_ids : (R,), (Q,) int64
        Global example positions of the block's rows and columns; ``col_ids`` sorted.
    diag : bool
        Diagonal block (``row_ids == col_ids``): only pairs ``c > r`` are used.
    tau : float
        Conflict if ``cos < -tau``, alignment if ``cos > tau``.
    near : float
        Near-parallel if ``cos > near`` (``near = 1 - eps``).
    lo_collect, hi_collect : float
        ``row_lo[r]`` counts the row's pairs with ``cos < lo_collect``, ``row_hi[r]`` those with
        ``cos > hi_collect`` (sizes for :func:`collect_block_pairs`).
    nbins, n_chunks : int
        Histogram bins over [-1, 1]; number of row (and column) chunks, i.e. ``hist.shape[0]``.
    do_hist, do_cols : bool
        Update the histogram (row pass); run the column pass (columns' own statistics; only
        for the diagonal block or rows and columns without common ids).
    hist : (n_chunks, nbins) int64
        One histogram row per chunk, summed by the caller.
    conf_count, align_count, near_count : (N,) int64
    conf_mass : (N,) float64
        Sum of ``-cos`` over the example's conflicting pairs.
    top_key, top_val : (N, m) float32
    top_idx : (N, m) int64
        Min-heaps of the m largest ``|cos|`` per example (key ``|cos|``, partner, signed cos;
        :mod:`constraintlab._kernels.heap`).
    row_lo, row_hi : (R,) int64
        Output, overwritten.
    """
    R, Q = C.shape
    ntau = -tau
    rchunk = (R + n_chunks - 1) // n_chunks
    for ch in nb.prange(n_chunks):
        r0 = ch * rchunk
        r1 = min(R, r0 + rchunk)
        # 4 interleaved sub-histograms: consecutive cosines often share a bin, and increments
        # of one counter would serialise
        lh = np.zeros((4, nbins), np.int64)
        half = 0.5 * nbins
        top = nbins - 1
        for r in range(r0, r1):
            gi = row_ids[r]
            c0 = r + 1 if diag else 0
            # the row's own column (only possible when rows and columns overlap off the
            # diagonal, e.g. against a reference set): col_ids is sorted
            cs = -1
            if not diag:
                k = np.searchsorted(col_ids, gi)
                if k < Q and col_ids[k] == gi:
                    cs = k
            # pass 1, branch-free and vectorisable: counts, mass, largest |cos|
            kmin = top_key[gi, 0]
            nc, na, nn, nlo, nhi, mass, nk = _row_counts(C, r, c0, Q, ntau, tau, near,
                                                         lo_collect, hi_collect, kmin)
            if cs >= c0:
                v = np.float64(C[r, cs])
                nc -= v < ntau
                mass += v if v < ntau else 0.0
                na -= v > tau
                nn -= v > near
                nlo -= v < lo_collect
                nhi -= v > hi_collect
            conf_count[gi] += nc
            conf_mass[gi] += mass
            align_count[gi] += na
            near_count[gi] += nn
            row_lo[r] = nlo
            row_hi[r] = nhi
            if do_hist:
                _hist_row(C, r, c0, Q, half, top, lh, cs)
            # pass 2, only when some |cos| can enter the row's top-m, and only in the spans
            # of SPAN columns that hold a candidate (typically one or two per row)
            if nk > 0:
                for s0 in range(c0, Q, SPAN):
                    s1 = min(Q, s0 + SPAN)
                    if not _any_abs_above(C, r, s0, s1, kmin):
                        continue
                    for c in range(s0, s1):
                        a32 = abs(C[r, c])
                        if a32 > kmin and c != cs:
                            heap_offer(top_key, top_idx, top_val, gi, a32, col_ids[c],
                                       C[r, c])
                            kmin = top_key[gi, 0]
        if do_hist:
            for t in range(4):
                for b in range(nbins):
                    hist[ch, b] += lh[t, b]
    if do_cols:
        # columns' own statistics; requires rows and columns disjoint, or the diagonal block
        cchunk = (Q + n_chunks - 1) // n_chunks
        for ch in nb.prange(n_chunks):
            q0 = ch * cchunk
            q1 = min(Q, q0 + cchunk)
            w = max(q1 - q0, 0)
            # conflict / alignment / near counts packed in one int64 per column (21 bits each,
            # R < 2^21): one store stream keeps the inner loop vectorisable
            packed = np.zeros(w, np.int64)
            cm = np.zeros(w, np.float64)
            ckmin = np.empty(w, np.float32)
            for c in range(q0, q1):
                ckmin[c - q0] = top_key[col_ids[c], 0]
            for r in range(R):
                qs = q0
                if diag and qs < r + 1:
                    qs = r + 1
                hit = _col_counts(C, r, qs, q1, q0, ntau, tau, near, packed, cm, ckmin)
                if hit:
                    gi = row_ids[r]
                    # only the spans of SPAN columns where some |cos| enters its column's heap
                    for s0 in range(qs, q1, SPAN):
                        s1 = min(q1, s0 + SPAN)
                        if not _cols_abs_above(C, r, s0, s1, q0, ckmin):
                            continue
                        for c in range(s0, s1):
                            a32 = abs(C[r, c])
                            j = c - q0
                            if a32 > ckmin[j]:
                                gj = col_ids[c]
                                heap_offer(top_key, top_idx, top_val, gj, a32, gi, C[r, c])
                                ckmin[j] = top_key[gj, 0]
            for c in range(q0, q1):
                gj = col_ids[c]
                j = c - q0
                pk = packed[j]
                conf_count[gj] += pk & 0x1FFFFF
                conf_mass[gj] += cm[j]
                align_count[gj] += (pk >> 21) & 0x1FFFFF
                near_count[gj] += pk >> 42


def _valid_pairs(row_ids, col_ids, diag, R, Q):
    """(R, Q) bool: the block's pairs that count (not self, ``c > r`` on the diagonal)."""
    valid = row_ids[:, None] != col_ids[None, :]
    if diag:
        valid &= np.arange(Q)[None, :] > np.arange(R)[:, None]
    return valid


def block_pair_stats_numpy(
    C, row_ids, col_ids, diag, tau, near, lo_collect, hi_collect, nbins, n_chunks,
    do_hist, do_cols,
    hist, conf_count, conf_mass, align_count, near_count, top_key, top_idx, top_val,
    row_lo, row_hi,
):
    """NumPy twin of :func:`block_pair_stats` (same arguments, same in-place updates).

    The histogram is added to ``hist[0]``; the top-m heaps are rebuilt by sorting (ties may pick
    another partner than the kernel, the kept keys are the same).
    """
    C = np.asarray(C)
    R, Q = C.shape
    v = C.astype(np.float64)
    valid = _valid_pairs(row_ids, col_ids, diag, R, Q)
    if do_hist:
        hist[0] += np.bincount(hist_bin(v[valid], nbins), minlength=nbins)
    conf = valid & (v < -tau)
    alig = valid & (v > tau)
    nea = valid & (v > near)
    np.add.at(conf_count, row_ids, conf.sum(1))
    np.add.at(conf_mass, row_ids, np.where(conf, -v, 0.0).sum(1))
    np.add.at(align_count, row_ids, alig.sum(1))
    np.add.at(near_count, row_ids, nea.sum(1))
    row_lo[:] = (valid & (v < lo_collect)).sum(1)
    row_hi[:] = (valid & (v > hi_collect)).sum(1)
    m = top_key.shape[1]

    def merge(g, partners, cos):
        keys = np.concatenate([top_key[g], np.abs(cos).astype(np.float32)])
        ids = np.concatenate([top_idx[g], partners])
        vals = np.concatenate([top_val[g], cos.astype(np.float32)])
        order = np.argsort(-keys, kind="stable")[:m]
        top_key[g], top_idx[g], top_val[g] = keys[order], ids[order], vals[order]

    for r in range(R):
        sel = valid[r]
        merge(row_ids[r], col_ids[sel], C[r, sel])
    if do_cols:
        np.add.at(conf_count, col_ids, conf.sum(0))
        np.add.at(conf_mass, col_ids, np.where(conf, -v, 0.0).sum(0))
        np.add.at(align_count, col_ids, alig.sum(0))
        np.add.at(near_count, col_ids, nea.sum(0))
        for c in range(Q):
            sel = valid[:, c]
            merge(col_ids[c], row_ids[sel], C[sel, c])


@nb.njit(parallel=True, cache=True, nogil=True)
def collect_block_pairs(C, row_ids, col_ids, diag, lo, hi, row_lo, row_hi):
    """Gather the block's pairs with ``cos < lo`` and those with ``cos > hi``.

    Parameters
    ----------
    C : (R, Q) float32
    row_ids, col_ids : (R,), (Q,) int64
    diag : bool
    lo, hi : float
    row_lo, row_hi : (R,) int64
        Per-row counts from :func:`block_pair_stats` with the same thresholds.

    Returns
    -------
    lo_a, lo_b : (n_lo,) int64, lo_v : (n_lo,) float32
        Pairs below ``lo`` as (row id, column id, cos), in row-major block order.
    hi_a, hi_b : (n_hi,) int64, hi_v : (n_hi,) float32
        Pairs above ``hi``.
    """
    R, Q = C.shape
    off_lo = np.zeros(R + 1, np.int64)
    off_hi = np.zeros(R + 1, np.int64)
    for r in range(R):
        off_lo[r + 1] = off_lo[r] + row_lo[r]
        off_hi[r + 1] = off_hi[r] + row_hi[r]
    lo_a = np.empty(off_lo[R], np.int64)
    lo_b = np.empty(off_lo[R], np.int64)
    lo_v = np.empty(off_lo[R], np.float32)
    hi_a = np.empty(off_hi[R], np.int64)
    hi_b = np.empty(off_hi[R], np.int64)
    hi_v = np.empty(off_hi[R], np.float32)
    for r in nb.prange(R):
        if row_lo[r] == 0 and row_hi[r] == 0:
            continue
        gi = row_ids[r]
        pl = off_lo[r]
        ph = off_hi[r]
        c0 = r + 1 if diag else 0
        # spans of SPAN columns without a listed pair are skipped (vectorised test); the scan
        # ends once the row's counted pairs are all found
        for s0 in range(c0, Q, SPAN):
            if pl == off_lo[r + 1] and ph == off_hi[r + 1]:
                break
            s1 = min(Q, s0 + SPAN)
            if not _any_outside(C, r, s0, s1, lo, hi):
                continue
            for c in range(s0, s1):
                gj = col_ids[c]
                if gj == gi:
                    continue
                v = np.float64(C[r, c])
                if v < lo:
                    lo_a[pl] = gi
                    lo_b[pl] = gj
                    lo_v[pl] = C[r, c]
                    pl += 1
                if v > hi:
                    hi_a[ph] = gi
                    hi_b[ph] = gj
                    hi_v[ph] = C[r, c]
                    ph += 1
    return lo_a, lo_b, lo_v, hi_a, hi_b, hi_v


def collect_block_pairs_numpy(C, row_ids, col_ids, diag, lo, hi, row_lo=None, row_hi=None):
    """NumPy twin of :func:`collect_block_pairs` (same order; the counts are not needed)."""
    C = np.asarray(C)
    R, Q = C.shape
    v = C.astype(np.float64)
    valid = _valid_pairs(row_ids, col_ids, diag, R, Q)
    out = []
    for mask in (valid & (v < lo), valid & (v > hi)):
        r, c = np.nonzero(mask)
        out += [row_ids[r].astype(np.int64), col_ids[c].astype(np.int64), C[r, c]]
    return tuple(out)
