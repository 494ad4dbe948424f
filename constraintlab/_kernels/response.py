"""Signed top-m partners per example and signed sums, folded block by block.

The response map needs, for every example i, the partners j with the largest and the smallest
raw dot products ``g_i . g_j`` (j != i) and the sums of the positive and negative parts. One
block of the Gram matrix at a time is folded into per-example min-heaps (m slots each,
:mod:`constraintlab._kernels.heap`) and float64 sums; memory is O(N * m) beyond the block. The
block may hold cosines of unit rows (the all-pairs pass shares its blocks): each value is scaled
back to a dot product ``v = (C[r, c] * row_w[r]) * col_w[c]`` with the rows' norms as weights
(weights 1: ``C`` holds the dot products themselves).

The values that can enter a heap are found and offered in plain IEEE arithmetic (the heaps equal
the NumPy twin's exactly); only the signed sums are compiled with fast-math (vectorised, sums
reassociated).

Threads: the row pass is a ``prange`` over contiguous row chunks, each writing the heaps and
sums of its own rows; the column pass (diagonal block, or rows and columns without common ids)
is a ``prange`` over contiguous column chunks, each writing its own columns' slots. The passes
run one after the other, so no two iterations write the same slot.

Every kernel has a NumPy twin ``<name>_numpy`` with the same contract; the tests use it as the
oracle.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from constraintlab._kernels.heap import heap_offer, make_heaps

__all__ = ["block_signed_topm", "block_signed_topm_numpy", "new_signed_state"]

SPAN = 64  # columns per span of the row pass's heap search


def new_signed_state(n: int, m: int) -> tuple[np.ndarray, ...]:
    """Empty running state for ``n`` examples and ``m`` slots, in :func:`block_signed_topm`
    argument order.

    Returns
    -------
    hi_key, hi_idx, hi_val, lo_key, lo_idx, lo_val : (n, m) float32 / int64 / float32
        Min-heaps of the m largest (key ``v``) and the m smallest (key ``-v``) dot products;
        keys ``-inf`` and partners ``-1`` mark empty slots.
    pos_sum, neg_sum : (n,) float64
        Sums of ``max(v, 0)`` and ``min(v, 0)`` over the partners seen.
    """
    return (*make_heaps(n, m, -np.inf), *make_heaps(n, m, -np.inf), np.zeros(n, np.float64),
            np.zeros(n, np.float64))


@nb.njit(cache=True, nogil=True, fastmath=True)
def _row_sums(C, r, c0, Q, wr, col_w):
    """Positive and negative sums of the dot products ``C[r, c0:Q]`` (fast-math, a separate
    function so that LLVM vectorises the loop)."""
    ps = 0.0
    ns = 0.0
    row = C[r, c0:Q]
    w = col_w[c0:Q]
    for c in range(row.shape[0]):
        v = np.float64((row[c] * wr) * w[c])
        ps += v if v > 0 else 0.0
        ns += v if v < 0 else 0.0
    return ps, ns


@nb.njit(cache=True, nogil=True)
def _row_hits(C, r, c0, Q, wr, col_w, kh, kl):
    """How many dot products of ``C[r, c0:Q]`` beat the row's smallest kept keys ``kh``
    (largest values) or ``kl`` (most negative); IEEE arithmetic, vectorisable."""
    nk = 0
    row = C[r, c0:Q]
    w = col_w[c0:Q]
    for c in range(row.shape[0]):
        v = (row[c] * wr) * w[c]
        nk += (v > kh) | (-v > kl)
    return nk


@nb.njit(cache=True, nogil=True, fastmath=True)
def _col_sums(C, r, qs, q1, q0, wr, col_w, cps, cns):
    """Add the dot products of ``C[r, qs:q1]`` to the chunk's column sums (fast-math)."""
    row = C[r, qs:q1]
    w = col_w[qs:q1]
    off = qs - q0
    ps = cps[off:off + row.shape[0]]
    ns = cns[off:off + row.shape[0]]
    for j in range(row.shape[0]):
        v = np.float64((row[j] * wr) * w[j])
        ps[j] += v if v > 0 else 0.0
        ns[j] += v if v < 0 else 0.0


@nb.njit(cache=True, nogil=True)
def _col_hit(C, r, qs, q1, q0, wr, col_w, ckh, ckl):
    """True when some dot product of ``C[r, qs:q1]`` beats its column's smallest kept key
    (IEEE arithmetic)."""
    row = C[r, qs:q1]
    w = col_w[qs:q1]
    off = qs - q0
    kh = ckh[off:off + row.shape[0]]
    kl = ckl[off:off + row.shape[0]]
    hit = False
    for j in range(row.shape[0]):
        v = (row[j] * wr) * w[j]
        hit |= (v > kh[j]) | (-v > kl[j])
    return hit


@nb.njit(parallel=True, cache=True, nogil=True)
def block_signed_topm(C, row_ids, col_ids, diag, do_cols, n_chunks, row_w, col_w,
                      hi_key, hi_idx, hi_val, lo_key, lo_idx, lo_val, pos_sum, neg_sum):
    """Fold one block into the signed top-m heaps and sums (in place).

    Parameters
    ----------
    C : (R, Q) float32
        The block: dot products (weights 1) or cosines of the rows ``row_ids`` with the
        columns ``col_ids``.
    row_ids, col_ids : (R,), (Q,) int64
        Global example positions; ``col_ids`` sorted. A pair with equal ids (an example with
        itself, possible against a reference sample) is skipped.
    diag : bool
        Diagonal block (``row_ids == col_ids``): only pairs ``c > r`` are read.
    do_cols : bool
        Also fold every pair into the column's state (diagonal block, or rows and columns
        without common ids); False: rows only (e.g. against a reference sample).
    n_chunks : int
        Row (and column) chunks of the parallel loops.
    row_w, col_w : (R,), (Q,) float32
        Weights: the dot product of pair (r, c) is ``(C[r, c] * row_w[r]) * col_w[c]`` (the
        rows' norms when ``C`` holds cosines).
    hi_key, hi_val, lo_key, lo_val : (N, m) float32
    hi_idx, lo_idx : (N, m) int64
        Min-heaps (root in column 0) of the m largest dot products (key ``v``) and the m
        smallest (key ``-v``); values ``v``, partners in ``*_idx``.
    pos_sum, neg_sum : (N,) float64
        Running sums of the positive and the negative dot products.
    """
    R, Q = C.shape
    rchunk = (R + n_chunks - 1) // n_chunks
    for ch in nb.prange(n_chunks):
        for r in range(ch * rchunk, min(R, (ch + 1) * rchunk)):
            gi = row_ids[r]
            wr = row_w[r]
            c0 = r + 1 if diag else 0
            cs = -1
            if not diag:
                k = np.searchsorted(col_ids, gi)
                if k < Q and col_ids[k] == gi:
                    cs = k
            # pass 1, vectorised: the sums
            ps, ns = _row_sums(C, r, c0, Q, wr, col_w)
            if cs >= c0:
                v = np.float64((C[r, cs] * wr) * col_w[cs])
                ps -= v if v > 0 else 0.0
                ns -= v if v < 0 else 0.0
            pos_sum[gi] += ps
            neg_sum[gi] += ns
            # pass 2, vectorised: can any value enter the heaps; pass 3 offers them
            kh = hi_key[gi, 0]
            kl = lo_key[gi, 0]
            if _row_hits(C, r, c0, Q, wr, col_w, kh, kl) > 0:
                # only the spans of SPAN columns that hold a candidate
                for s0 in range(c0, Q, SPAN):
                    s1 = min(Q, s0 + SPAN)
                    if _row_hits(C, r, s0, s1, wr, col_w, kh, kl) == 0:
                        continue
                    for c in range(s0, s1):
                        if c == cs:
                            continue
                        v = (C[r, c] * wr) * col_w[c]
                        if v > kh:
                            heap_offer(hi_key, hi_idx, hi_val, gi, v, col_ids[c], v)
                            kh = hi_key[gi, 0]
                        if -v > kl:
                            heap_offer(lo_key, lo_idx, lo_val, gi, -v, col_ids[c], v)
                            kl = lo_key[gi, 0]
    if do_cols:
        cchunk = (Q + n_chunks - 1) // n_chunks
        for ch in nb.prange(n_chunks):
            q0 = ch * cchunk
            q1 = min(Q, q0 + cchunk)
            w = max(q1 - q0, 0)
            cps = np.zeros(w, np.float64)
            cns = np.zeros(w, np.float64)
            ckh = np.empty(w, np.float32)
            ckl = np.empty(w, np.float32)
            for c in range(q0, q1):
                ckh[c - q0] = hi_key[col_ids[c], 0]
                ckl[c - q0] = lo_key[col_ids[c], 0]
            for r in range(R):
                qs = q0
                if diag and qs < r + 1:
                    qs = r + 1
                if qs >= q1:
                    continue
                wr = row_w[r]
                _col_sums(C, r, qs, q1, q0, wr, col_w, cps, cns)
                gi = row_ids[r]
                # only the spans of SPAN columns where some value enters its column's heaps
                for s0 in range(qs, q1, SPAN):
                    s1 = min(q1, s0 + SPAN)
                    if not _col_hit(C, r, s0, s1, q0, wr, col_w, ckh, ckl):
                        continue
                    for c in range(s0, s1):
                        gj = col_ids[c]
                        j = c - q0
                        v = (C[r, c] * wr) * col_w[c]
                        if v > ckh[j]:
                            heap_offer(hi_key, hi_idx, hi_val, gj, v, gi, v)
                            ckh[j] = hi_key[gj, 0]
                        if -v > ckl[j]:
                            heap_offer(lo_key, lo_idx, lo_val, gj, -v, gi, v)
                            ckl[j] = lo_key[gj, 0]
            for c in range(q0, q1):
                pos_sum[col_ids[c]] += cps[c - q0]
                neg_sum[col_ids[c]] += cns[c - q0]


def block_signed_topm_numpy(C, row_ids, col_ids, diag, do_cols, n_chunks, row_w, col_w,
                            hi_key, hi_idx, hi_val, lo_key, lo_idx, lo_val, pos_sum, neg_sum):
    """NumPy twin of :func:`block_signed_topm` (same arguments, same in-place updates).

    The heaps are rebuilt by sorting (stored sorted, best first, instead of in heap order): sort
    both before comparing with the kernel.
    """
    C = np.asarray(C, dtype=np.float32)
    V = (C * np.asarray(row_w, np.float32)[:, None]) * np.asarray(col_w, np.float32)[None, :]
    R, Q = C.shape
    valid = row_ids[:, None] != col_ids[None, :]
    if diag:
        valid &= np.arange(Q)[None, :] > np.arange(R)[:, None]
    m = hi_key.shape[1]

    def merge(key, idx, val, g, partners, v, sign):
        keys = np.concatenate([key[g], (sign * v).astype(np.float32)])
        ids = np.concatenate([idx[g], partners])
        vals = np.concatenate([val[g], v.astype(np.float32)])
        order = np.argsort(-keys, kind="stable")[:m]
        key[g], idx[g], val[g] = keys[order], ids[order], vals[order]

    def fold(g, partners, v):
        v64 = v.astype(np.float64)
        pos_sum[g] += v64[v64 > 0].sum()
        neg_sum[g] += v64[v64 <= 0].sum()
        merge(hi_key, hi_idx, hi_val, g, partners, v, 1.0)
        merge(lo_key, lo_idx, lo_val, g, partners, v, -1.0)

    for r in range(R):
        sel = valid[r]
        fold(row_ids[r], col_ids[sel], V[r, sel])
    if do_cols:
        for c in range(Q):
            sel = valid[:, c]
            fold(col_ids[c], row_ids[sel], V[sel, c])
