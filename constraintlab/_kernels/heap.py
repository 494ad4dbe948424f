"""Fixed-size min-heaps of the m best candidates per row, shared by every top-m kernel.

A set of heaps is three (n, m) arrays (pynndescent ``utils.py`` style): ``keys`` (float32, the
ranking key; the root ``keys[row, 0]`` is the smallest kept key, so a candidate enters only when
its key is larger), ``idx`` (int64 partner, -1 = empty slot) and ``vals`` (float32, a value
carried along, e.g. the signed cosine when the key is its absolute value). Empty slots hold the
``empty`` key given to :func:`make_heaps`, below every real key.

- :func:`heap_offer` (numba, inlined into the kernels): offer one candidate to one row.
- :func:`sort_heaps` (NumPy): after the last offer, order every row by key, best first.

Threads: :func:`heap_offer` writes row ``row`` only; a kernel's ``prange`` iterations own
disjoint rows, so no two of them write the same heap.

Every kernel has a NumPy twin ``<name>_numpy`` with the same contract; the tests use it as the
oracle.
"""

from __future__ import annotations

import numba as nb
import numpy as np

__all__ = ["heap_offer", "heap_offer_numpy", "make_heaps", "sort_heaps"]


def make_heaps(n: int, m: int, empty: float = -np.inf) -> tuple[np.ndarray, np.ndarray,
                                                                np.ndarray]:
    """Empty heaps for ``n`` rows of ``m`` slots.

    Parameters
    ----------
    n, m : int
    empty : float
        Key of an empty slot; must be below every key that will be offered.

    Returns
    -------
    keys : (n, m) float32
        All ``empty``.
    idx : (n, m) int64
        All -1.
    vals : (n, m) float32
        All 0.
    """
    return (np.full((n, m), empty, np.float32), np.full((n, m), -1, np.int64),
            np.zeros((n, m), np.float32))


@nb.njit(cache=True, nogil=True, inline="always")
def heap_offer(keys, idx, vals, row, key, j, v):
    """Offer candidate ``(key, j, v)`` to row ``row`` of the min-heaps; keeps the m largest keys.

    Parameters
    ----------
    keys : (n, m) float32
    idx : (n, m) int64
    vals : (n, m) float32
        The heaps, root in column 0 (updated in place). 2-D arrays and a row index: no array
        views in the hot loop.
    row : int
    key : float
        Ranking key; the candidate enters only when ``key > keys[row, 0]``.
    j : int
        Partner.
    v : float
        Value stored with it.
    """
    m = keys.shape[1]
    if key <= keys[row, 0]:
        return
    pos = 0
    while True:
        left = 2 * pos + 1
        if left >= m:
            break
        right = left + 1
        child = left
        if right < m and keys[row, right] < keys[row, left]:
            child = right
        if keys[row, child] >= key:
            break
        keys[row, pos] = keys[row, child]
        idx[row, pos] = idx[row, child]
        vals[row, pos] = vals[row, child]
        pos = child
    keys[row, pos] = key
    idx[row, pos] = j
    vals[row, pos] = v


def heap_offer_numpy(keys, idx, vals, row, key, j, v) -> None:
    """NumPy twin of :func:`heap_offer` (same arguments, same kept keys).

    The row is rebuilt by sorting (stored sorted, worst first, which is a valid min-heap):
    compare after :func:`sort_heaps`. On equal keys the kept partner may differ from the
    kernel's; the kept keys are the same.
    """
    if key <= keys[row, 0]:
        return
    k = np.append(keys[row], np.float32(key))
    i = np.append(idx[row], np.int64(j))
    x = np.append(vals[row], np.float32(v))
    order = np.argsort(k, kind="stable")[1:]  # drop the smallest
    keys[row], idx[row], vals[row] = k[order], i[order], x[order]


def sort_heaps(keys: np.ndarray, idx: np.ndarray, vals: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every row of the heaps ordered by key, largest first (ties: heap slot order).

    Parameters
    ----------
    keys : (n, m) float32
    idx : (n, m) int64
    vals : (n, m) float32

    Returns
    -------
    keys, idx, vals : (n, m)
        New arrays, each row best first; empty slots (lowest keys) last.
    """
    order = np.argsort(-keys, axis=1, kind="stable")
    return (np.take_along_axis(keys, order, 1), np.take_along_axis(idx, order, 1),
            np.take_along_axis(vals, order, 1))
