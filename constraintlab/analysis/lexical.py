"""Lexical near duplicates: MinHash over word shingles, LSH banding, exact-Jaccard verification.

Identical normalised texts are grouped first (hash), so MinHash only sees distinct texts and a
bucket never holds thousands of copies; candidate pairs from the LSH buckets are verified by the
exact Jaccard of the two shingle sets.

One signature pass can serve several thresholds (``also=``): the candidates are then those of
the lowest threshold's bands, plus the bands of any higher threshold they do not cover (a band
of ``r`` rows that contains a whole band of the lower threshold's ``r' <= r`` rows can only
match when that one does). So the pairs at a higher threshold, filtered from that pass, include
every pair a pass of its own would find; :class:`constraintlab.analysis.text.TextView` uses this
to run MinHash once per text kind.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from constraintlab._kernels._threads import threads_for
from constraintlab._kernels.minhash import (
    band_keys,
    jaccard_pairs,
    minhash_signatures,
    shingle_hashes,
    sorted_unique,
)
from constraintlab.analysis.config import AnalysisConfig

logger = logging.getLogger(__name__)

__all__ = ["Shingled", "bands_cover", "candidate_pairs", "corpus_bytes", "near_duplicate_pairs",
           "permutations", "shingle"]

# Work per numba thread below which a kernel runs on fewer threads: a parallel region has to
# carry some tens of milliseconds per thread to pay for waking the workers (and, on a shared
# machine, for waiting on a descheduled one). ~20 ms of single-thread work each.
_TEXT_BYTES_PER_THREAD = 8 << 20
_HASH_PERMS_PER_THREAD = 200_000_000


def corpus_bytes(normalized: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Encode normalised texts as one UTF-8 buffer, separated by ``0x1E`` (which
    :func:`constraintlab.analysis.text.normalize_many` never leaves in a text).

    Returns
    -------
    buf : (B,) uint8
    starts, ends : (n,) int64
        Byte range of each text.
    """
    data = "\x1e".join(normalized).encode("utf-8")
    buf = np.frombuffer(data, dtype=np.uint8)
    seps = np.flatnonzero(buf == 0x1E)
    starts = np.concatenate([[0], seps + 1]).astype(np.int64)
    ends = np.concatenate([seps, [len(buf)]]).astype(np.int64)
    return buf, starts, ends


@dataclass
class Shingled:
    """Shingle hashes of n texts.

    Attributes
    ----------
    hashes : (H,) uint32
        Sorted unique shingle hashes, concatenated.
    offsets : (n + 1,) int64
    """

    hashes: np.ndarray
    offsets: np.ndarray

    @property
    def sizes(self) -> np.ndarray:
        """(n,) int64 shingles per text."""
        return np.diff(self.offsets)


def shingle(normalized: Sequence[str], size: int, unique: bool = True) -> Shingled:
    """Word ``size``-shingle hashes of normalised texts (sets when ``unique``)."""
    buf, starts, ends = corpus_bytes(normalized)
    with threads_for(len(buf), _TEXT_BYTES_PER_THREAD):
        h, o = shingle_hashes(buf, starts, ends, size, unique)
    return Shingled(h, o)


def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """MinHash permutation parameters ``(a, b)``, (num_perm,) uint64 in [1, 2^32)."""
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 1 << 32, size=num_perm, dtype=np.uint64)
    b = rng.integers(1, 1 << 32, size=num_perm, dtype=np.uint64)
    return a, b


def bands_cover(low: tuple[int, int], high: tuple[int, int]) -> bool:
    """Whether every candidate pair of the banding ``high`` is also one of ``low``.

    Bands are consecutive signature rows (band ``t`` of ``(b, r)`` is rows ``[t r, (t+1) r)``).
    Two signatures equal on a band of ``high`` are equal on every ``low`` band inside it, so
    ``low`` covers ``high`` when each ``high`` band contains a whole ``low`` band.

    Parameters
    ----------
    low, high : (bands, rows)
    """
    (b1, r1), (b2, r2) = low, high
    for t in range(b2):
        lo, hi = t * r2, (t + 1) * r2
        u = -(-lo // r1)  # first low band starting at or after lo
        if u >= b1 or (u + 1) * r1 > hi:
            return False
    return True


def candidate_pairs(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of rows sharing a key in at least one band.

    Parameters
    ----------
    keys : (n, bands) uint64

    Returns
    -------
    a, b : (m,) int64
        Unique pairs, ``a < b``, sorted.
    """
    n, bands = keys.shape
    out_a, out_b = [], []
    for t in range(bands):
        col = keys[:, t]
        order = np.argsort(col, kind="stable")
        s = col[order]
        same = s[1:] == s[:-1]
        if not same.any():
            continue
        # runs of equal keys [r0, r1); pairs of runs of two in one vectorised step
        edges = np.flatnonzero(np.diff(np.concatenate([[False], same, [False]]).astype(np.int8)))
        r0s, r1s = edges[0::2], edges[1::2] + 1
        two = (r1s - r0s) == 2
        x, y = order[r0s[two]], order[r0s[two] + 1]
        out_a.append(np.minimum(x, y))
        out_b.append(np.maximum(x, y))
        for r0, r1 in zip(r0s[~two], r1s[~two], strict=True):
            members = np.sort(order[r0:r1])
            ia, ib = np.triu_indices(len(members), 1)
            out_a.append(members[ia])
            out_b.append(members[ib])
    if not out_a:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    a = np.concatenate(out_a).astype(np.int64)
    b = np.concatenate(out_b).astype(np.int64)
    code = np.unique(a * n + b)
    return code // n, code % n


def near_duplicate_pairs(
    normalized: Sequence[str], config: AnalysisConfig, *, threshold: float | None = None,
    size: int | None = None, also: Sequence[float] = (),
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Pairs of texts whose shingle sets have exact Jaccard >= threshold.

    Parameters
    ----------
    normalized : sequence of n str
        Normalised texts (:func:`constraintlab.analysis.text.normalize_many`).
    config : AnalysisConfig
        ``num_perm``, ``seed``, LSH bands/rows, ``shingle_size``, ``minhash_threshold``.
    threshold, size : optional
        Override the config's threshold and shingle size (the bands follow the threshold).
    also : sequence of float, optional
        Higher thresholds this pass must serve too: their bands are added where the
        threshold's own bands do not cover them (:func:`bands_cover`), so that filtering the
        result at one of them (``jac >= t``) loses no pair a pass at ``t`` would find.

    Returns
    -------
    a, b : (m,) int64
        Text positions, ``a < b``; texts with identical normalised form are included (Jaccard 1).
        Groups of more than ``max_group`` identical texts are linked through their first member
        past that size.
    jac : (m,) float64
        Exact Jaccard of the pairs.
    stats : dict
        ``n_distinct``, ``n_candidates``, ``bands``, ``rows``, ``num_perm``, ``threshold``,
        ``shingle_size`` (and ``extra_bands``, ``[[bands, rows], ...]``, when ``also`` added
        some).
    """
    threshold = config.minhash_threshold if threshold is None else threshold
    size = config.shingle_size if size is None else size
    bands, rows = config.bands_rows(threshold)
    extra: list[tuple[int, int]] = []
    for t in sorted(set(also)):
        br = config.bands_rows(t)
        if br not in extra and not bands_cover((bands, rows), br):
            extra.append(br)
    n = len(normalized)
    # identical normalised texts: one representative each
    uniq: dict[str, int] = {}
    rep = np.empty(n, np.int64)
    for i, t in enumerate(normalized):
        rep[i] = uniq.setdefault(t, len(uniq))
    distinct = list(uniq)
    # raw shingle hashes (text order, repeats) are enough for the signatures; only the
    # documents of candidate pairs are turned into sorted sets for the exact Jaccard
    sh = shingle(distinct, size, unique=False)
    a_perm, b_perm = permutations(config.num_perm, config.seed)
    with threads_for(len(sh.hashes) * config.num_perm, _HASH_PERMS_PER_THREAD):
        sig = minhash_signatures(sh.hashes, sh.offsets, a_perm, b_perm)
        keys = band_keys(sig, bands, rows)
        if extra:  # one column per band of every banding; columns are compared separately
            keys = np.hstack([keys, *(band_keys(sig, b, r) for b, r in extra)])
    empty = sh.sizes == 0
    if empty.any():  # empty texts never match anything lexically
        n_cols = keys.shape[1]
        keys[empty] = np.arange(int(empty.sum()), dtype=np.uint64)[:, None] * np.uint64(
            0x9E3779B97F4A7C15) + np.arange(n_cols, dtype=np.uint64)[None, :] + np.uint64(1)
    ca, cb = candidate_pairs(keys)
    if len(ca):
        docs, inv = np.unique(np.concatenate([ca, cb]), return_inverse=True)
        with threads_for(len(ca), 20_000):
            sets_h, sets_o = sorted_unique(sh.hashes, sh.offsets, docs)
            jac = jaccard_pairs(sets_h, sets_o, inv[: len(ca)], inv[len(ca):])
    else:
        jac = np.zeros(0)
    keep = (jac >= threshold) & ~empty[ca] & ~empty[cb]
    da, db, dj = ca[keep], cb[keep], jac[keep]
    # expand distinct-text pairs to original positions
    members: list[list[int]] = [[] for _ in range(len(distinct))]
    for i, r in enumerate(rep):
        members[r].append(i)
    # (groups larger than max_group: members past the first max_group are linked to the
    # group's first member only, so that n copies cost O(n * max_group), not O(n^2))
    cap = config.max_group
    out_a, out_b, out_j = [], [], []
    for grp in members:
        if len(grp) > 1 and sh.sizes[rep[grp[0]]] > 0:
            g = np.array(grp[:cap])
            ia, ib = np.triu_indices(len(g), 1)
            out_a.append(g[ia])
            out_b.append(g[ib])
            out_j.append(np.ones(len(ia)))
            if len(grp) > cap:
                rest = np.array(grp[cap:])
                out_a.append(np.full(len(rest), grp[0]))
                out_b.append(rest)
                out_j.append(np.ones(len(rest)))
    for x, y, j in zip(da, db, dj, strict=True):
        gx, gy = np.array(members[x][:cap]), np.array(members[y][:cap])
        aa = np.repeat(gx, len(gy))
        bb = np.tile(gy, len(gx))
        out_a.append(np.minimum(aa, bb))
        out_b.append(np.maximum(aa, bb))
        out_j.append(np.full(len(aa), j))
    if out_a:
        a = np.concatenate(out_a).astype(np.int64)
        b = np.concatenate(out_b).astype(np.int64)
        j = np.concatenate(out_j)
        order = np.lexsort((b, a))
        a, b, j = a[order], b[order], j[order]
    else:
        a = b = np.zeros(0, np.int64)
        j = np.zeros(0)
    stats = {"n_distinct": len(distinct), "n_candidates": len(ca), "bands": bands, "rows": rows,
             "num_perm": config.num_perm, "threshold": threshold, "shingle_size": size}
    if extra:
        stats["extra_bands"] = [list(br) for br in extra]
    logger.debug("minhash: %s", stats)
    return a, b, j, stats
