"""MinHash near-duplicate kernels: word shingles, signatures, LSH band keys, exact Jaccard.

Input texts arrive already normalised (see :mod:`constraintlab.analysis.text`) and encoded as
one UTF-8 byte buffer with per-document ``[start, end)`` offsets; words are separated by single
spaces. Shingles are hashed to uint32 (FNV-1a 64 over the word bytes, mixed over ``s``
consecutive words, folded to 32 bits), exactly the values the NumPy twins compute.

Signatures use the universal family ``h_p(x) = ((a_p x + b_p) mod (2^61 - 1)) & (2^32 - 1)`` with
``1 <= a_p, b_p < 2^32`` (so ``a_p x + b_p`` never overflows 64 bits), as datasketch does.
"""

from __future__ import annotations

import numba as nb
import numpy as np

__all__ = [
    "MERSENNE61",
    "band_keys",
    "band_keys_numpy",
    "jaccard_pairs",
    "jaccard_pairs_numpy",
    "minhash_signatures",
    "minhash_signatures_numpy",
    "shingle_hashes",
    "shingle_hashes_numpy",
    "sorted_unique",
    "sorted_unique_numpy",
]

MERSENNE61 = np.uint64((1 << 61) - 1)
_FNV_OFFSET = np.uint64(14695981039346656037)
_FNV_PRIME = np.uint64(1099511628211)
_MIX = np.uint64(0x9E3779B97F4A7C15)
_M32 = np.uint64(0xFFFFFFFF)


@nb.njit(cache=True, nogil=True)
def _count_words(buf, start, end):
    n = 0
    inword = False
    for p in range(start, end):
        if buf[p] == 32:
            inword = False
        elif not inword:
            inword = True
            n += 1
    return n


@nb.njit(cache=True, nogil=True)
def _fold32(h):
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    return h & np.uint64(0xFFFFFFFF)


@nb.njit(parallel=True, cache=True, nogil=True)
def shingle_hashes(buf, starts, ends, size, unique=True):
    """uint32 hashes of each document's word ``size``-shingles (sorted unique by default).

    A document with fewer than ``size`` words (but at least one) gets one shingle of all its
    words; an empty document gets none.

    Parameters
    ----------
    buf : (B,) uint8
        Normalised texts, UTF-8, words separated by single spaces.
    starts, ends : (n,) int64
        Byte range of each document.
    size : int
        Words per shingle.
    unique : bool
        Sort and deduplicate each document's hashes (a set); False keeps them in text order with
        repeats (enough for MinHash signatures, see :func:`sorted_unique`).

    Returns
    -------
    hashes : (H,) uint32
        Concatenated per-document shingle hashes.
    offsets : (n + 1,) int64
        Document d owns ``hashes[offsets[d]:offsets[d + 1]]``.
    """
    n = starts.shape[0]
    nwords = np.zeros(n, np.int64)
    woff = np.zeros(n + 1, np.int64)
    cap = np.zeros(n + 1, np.int64)
    for d in range(n):  # a light scan: serial, no parallel region
        nw = _count_words(buf, starts[d], ends[d])
        nwords[d] = nw
        woff[d + 1] = woff[d] + nw
        cap[d + 1] = cap[d] + (0 if nw == 0 else (1 if nw < size else nw - size + 1))
    wh = np.empty(woff[n], np.uint64)
    tmp = np.empty(cap[n], np.uint32)
    uniq = np.zeros(n, np.int64)
    for d in nb.prange(n):
        c0 = cap[d]
        c1 = cap[d + 1]
        if c1 == c0:
            continue
        w0 = woff[d]
        w = w0
        h = _FNV_OFFSET
        inword = False
        for p in range(starts[d], ends[d]):
            ch = buf[p]
            if ch == 32:
                if inword:
                    wh[w] = h
                    w += 1
                    inword = False
            else:
                if not inword:
                    inword = True
                    h = _FNV_OFFSET
                h ^= np.uint64(ch)
                h *= _FNV_PRIME
        if inword:
            wh[w] = h
            w += 1
        nw = nwords[d]
        s = size if nw >= size else nw
        for i in range(c1 - c0):
            x = np.uint64(s)
            for t in range(s):
                x = (x ^ wh[w0 + i + t]) * _MIX
                x ^= x >> np.uint64(29)
            tmp[c0 + i] = np.uint32(_fold32(x))
        if unique:
            seg = tmp[c0:c1]
            seg.sort()
            u = 0
            for i in range(c1 - c0):
                if i == 0 or seg[i] != seg[i - 1]:
                    seg[u] = seg[i]
                    u += 1
            uniq[d] = u
    if not unique:
        return tmp, cap
    offsets = np.zeros(n + 1, np.int64)
    for d in range(n):
        offsets[d + 1] = offsets[d] + uniq[d]
    out = np.empty(offsets[n], np.uint32)
    for d in nb.prange(n):
        o = offsets[d]
        c0 = cap[d]
        for i in range(uniq[d]):
            out[o + i] = tmp[c0 + i]
    return out, offsets


@nb.njit(parallel=True, cache=True, nogil=True)
def sorted_unique(hashes, offsets, docs):
    """Sorted unique hash sets of the documents ``docs`` only.

    Parameters
    ----------
    hashes : (H,) uint32
    offsets : (n + 1,) int64
        As :func:`shingle_hashes` with ``unique=False`` returns them.
    docs : (q,) int64

    Returns
    -------
    hashes : (H',) uint32, offsets : (q + 1,) int64
        Set of ``docs[i]`` at ``hashes[offsets[i]:offsets[i + 1]]``.
    """
    q = docs.shape[0]
    cap = np.zeros(q + 1, np.int64)
    for i in range(q):
        cap[i + 1] = cap[i] + offsets[docs[i] + 1] - offsets[docs[i]]
    tmp = np.empty(cap[q], np.uint32)
    uniq = np.zeros(q, np.int64)
    for i in nb.prange(q):
        c0 = cap[i]
        d = docs[i]
        m = offsets[d + 1] - offsets[d]
        seg = tmp[c0:c0 + m]
        seg[:] = hashes[offsets[d]:offsets[d + 1]]
        seg.sort()
        u = 0
        for j in range(m):
            if j == 0 or seg[j] != seg[j - 1]:
                seg[u] = seg[j]
                u += 1
        uniq[i] = u
    out_off = np.zeros(q + 1, np.int64)
    for i in range(q):
        out_off[i + 1] = out_off[i] + uniq[i]
    out = np.empty(out_off[q], np.uint32)
    for i in nb.prange(q):
        for j in range(uniq[i]):
            out[out_off[i] + j] = tmp[cap[i] + j]
    return out, out_off


def sorted_unique_numpy(hashes, offsets, docs):
    """NumPy twin of :func:`sorted_unique`."""
    sets = [np.unique(hashes[offsets[d]:offsets[d + 1]]) for d in docs]
    off = np.concatenate([[0], np.cumsum([len(x) for x in sets])]).astype(np.int64)
    flat = np.concatenate(sets).astype(np.uint32) if sets else np.zeros(0, np.uint32)
    return flat, off


def _fold32_numpy(h: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        h = h ^ (h >> np.uint64(33))
        h = h * np.uint64(0xFF51AFD7ED558CCD)
        h = h ^ (h >> np.uint64(33))
    return h & _M32


def shingle_hashes_numpy(buf, starts, ends, size, unique=True):
    """NumPy/Python twin of :func:`shingle_hashes` (same hashes, same layout)."""
    hashes = []
    offsets = [0]
    for s0, e0 in zip(starts, ends, strict=True):
        words = bytes(buf[s0:e0]).split(b" ")
        words = [w for w in words if w]
        wh = []
        for w in words:
            h = int(_FNV_OFFSET)
            for ch in w:
                h = ((h ^ ch) * int(_FNV_PRIME)) & 0xFFFFFFFFFFFFFFFF
            wh.append(h)
        s = min(size, len(words))
        vals = []
        for i in range(len(words) - s + 1 if words else 0):
            x = s
            for t in range(s):
                x = ((x ^ wh[i + t]) * int(_MIX)) & 0xFFFFFFFFFFFFFFFF
                x ^= x >> 29
            vals.append(x)
        u = _fold32_numpy(np.array(vals, dtype=np.uint64)).astype(np.uint32)
        if unique:
            u = np.unique(u)
        hashes.append(u)
        offsets.append(offsets[-1] + len(u))
    flat = np.concatenate(hashes) if hashes else np.zeros(0, np.uint32)
    return flat.astype(np.uint32), np.array(offsets, dtype=np.int64)


@nb.njit(cache=True, nogil=True, inline="always")
def _mod61(x):
    y = (x & MERSENNE61) + (x >> np.uint64(61))
    if y >= MERSENNE61:
        y -= MERSENNE61
    return y


@nb.njit(parallel=True, cache=True, nogil=True)
def minhash_signatures(hashes, offsets, a, b):
    """MinHash signatures of each document's shingle set.

    Parameters
    ----------
    hashes : (H,) uint32
    offsets : (n + 1,) int64
    a, b : (p,) uint64
        Permutation parameters, ``1 <= a, b < 2^32``.

    Returns
    -------
    (n, p) uint32
        ``min`` over the document's shingles of ``((a x + b) mod (2^61-1)) & (2^32-1)``;
        ``2^32 - 1`` for an empty document.
    """
    n = offsets.shape[0] - 1
    p = a.shape[0]
    sig = np.empty((n, p), np.uint32)
    for d in nb.prange(n):
        best = np.full(p, np.uint64(0xFFFFFFFF))
        for i in range(offsets[d], offsets[d + 1]):
            x = np.uint64(hashes[i])
            for q in range(p):
                y = _mod61(a[q] * x + b[q]) & np.uint64(0xFFFFFFFF)
                if y < best[q]:
                    best[q] = y
        for q in range(p):
            sig[d, q] = np.uint32(best[q])
    return sig


def minhash_signatures_numpy(hashes, offsets, a, b):
    """NumPy twin of :func:`minhash_signatures`."""
    n = len(offsets) - 1
    sig = np.full((n, len(a)), 0xFFFFFFFF, dtype=np.uint32)
    for d in range(n):
        x = hashes[offsets[d]:offsets[d + 1]].astype(np.uint64)
        if len(x):
            v = (a[None, :] * x[:, None] + b[None, :]) % MERSENNE61 & _M32
            sig[d] = v.min(0).astype(np.uint32)
    return sig


@nb.njit(parallel=True, cache=True, nogil=True)
def band_keys(sig, bands, rows):
    """LSH band keys: a 64-bit hash of each band of ``rows`` signature values.

    Parameters
    ----------
    sig : (n, p) uint32
        ``p >= bands * rows``; values past ``bands * rows`` are ignored.
    bands, rows : int

    Returns
    -------
    (n, bands) uint64
    """
    n = sig.shape[0]
    out = np.empty((n, bands), np.uint64)
    for d in nb.prange(n):
        for t in range(bands):
            h = _FNV_OFFSET ^ np.uint64(t)
            for j in range(t * rows, (t + 1) * rows):
                h = (h ^ np.uint64(sig[d, j])) * _FNV_PRIME
            out[d, t] = h
    return out


def band_keys_numpy(sig, bands, rows):
    """NumPy twin of :func:`band_keys`."""
    n = sig.shape[0]
    out = np.empty((n, bands), np.uint64)
    with np.errstate(over="ignore"):
        for t in range(bands):
            h = np.full(n, _FNV_OFFSET ^ np.uint64(t), dtype=np.uint64)
            for j in range(t * rows, (t + 1) * rows):
                h = (h ^ sig[:, j].astype(np.uint64)) * _FNV_PRIME
            out[:, t] = h
    return out


@nb.njit(parallel=True, cache=True, nogil=True)
def jaccard_pairs(hashes, offsets, pa, pb):
    """Exact Jaccard similarity of the shingle sets of document pairs.

    Parameters
    ----------
    hashes : (H,) uint32
        Sorted unique per document (as :func:`shingle_hashes` returns them).
    offsets : (n + 1,) int64
    pa, pb : (m,) int64
        Document pairs.

    Returns
    -------
    (m,) float64
        ``|A & B| / |A | B|``; 1.0 when both sets are empty.
    """
    m = pa.shape[0]
    out = np.empty(m, np.float64)
    for t in nb.prange(m):
        i0 = offsets[pa[t]]
        i1 = offsets[pa[t] + 1]
        j0 = offsets[pb[t]]
        j1 = offsets[pb[t] + 1]
        na = i1 - i0
        nb_ = j1 - j0
        inter = 0
        i = i0
        j = j0
        while i < i1 and j < j1:
            x = hashes[i]
            y = hashes[j]
            if x == y:
                inter += 1
                i += 1
                j += 1
            elif x < y:
                i += 1
            else:
                j += 1
        union = na + nb_ - inter
        out[t] = 1.0 if union == 0 else inter / union
    return out


def jaccard_pairs_numpy(hashes, offsets, pa, pb):
    """NumPy twin of :func:`jaccard_pairs`."""
    out = np.empty(len(pa), np.float64)
    for t, (i, j) in enumerate(zip(pa, pb, strict=True)):
        a = hashes[offsets[i]:offsets[i + 1]]
        b = hashes[offsets[j]:offsets[j + 1]]
        union = len(np.union1d(a, b))
        out[t] = 1.0 if union == 0 else len(np.intersect1d(a, b)) / union
    return out
