"""The one pass over the blocks of a Gram matrix ``X @ X.T``, shared by every analyzer that
reads pairs of rows.

:func:`for_each_block` makes each block once with BLAS and hands it to every fold that needs it
(pair statistics, the response map's signed top partners, ...), so adding a statistic never
adds a second N^2 k pass. A fold is any callable taking a :class:`Block`; it keeps its own
running state.

- Exact mode: the upper triangle of blocks ``X[I] @ X[J].T``, ``J >= I``; every pair of rows is
  in exactly one block (``c > r`` on the diagonal blocks); ``Block.symmetric`` is True: a fold
  credits the pair to both examples.
- Sampled mode (``reference`` given): row blocks against all the sorted reference rows; each
  pair (row, reference) credits the row only (``symmetric`` False) and a row against itself is
  in the block (the kernels skip equal ids).

Pipelining: the folds of block t run on one worker thread (numba on one thread, GIL released)
while the main thread has BLAS compute block t + 1 into the other of two buffers. Memory: two
float32 buffers of ``block_size^2`` (sampled mode: ``block_size * R``, plus the R reference
rows).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from constraintlab.progress import progress

logger = logging.getLogger(__name__)

__all__ = ["Block", "for_each_block", "gram_blocks", "kernel_chunks", "sample_plan", "scaled_rows",
           "unit_rows"]


def kernel_chunks(threads: int | None = 0) -> int:
    """Row / column chunks for a fold's kernel call: 1 on one numba thread (the pipelined
    worker; wide column spans are several times faster), else 4 per thread (load balance on
    shared cores).

    Parameters
    ----------
    threads : int or None
        0: the calling thread's numba thread count; None: the most numba may use (to size
        per-chunk buffers).
    """
    import numba

    if threads is None:
        threads = numba.config.NUMBA_NUM_THREADS
    elif threads == 0:
        threads = numba.get_num_threads()
    return 1 if threads <= 1 else 4 * threads


def scaled_rows(X: np.ndarray, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Rows scaled to unit length and their norms (float64 math; zero rows stay zero).

    Parameters
    ----------
    X : (N, k) float

    Returns
    -------
    Xn : (N, k) float32
    norms : (N,) float64
        ``X[i] == norms[i] * Xn[i]``.
    """
    X = np.asarray(X)
    out = np.empty(X.shape, np.float32)
    norms = np.zeros(X.shape[0], np.float64)
    for i in range(0, X.shape[0], chunk):
        x = X[i:i + chunk].astype(np.float64)
        n = np.sqrt(np.square(x).sum(1))
        norms[i:i + chunk] = n
        out[i:i + chunk] = x / np.where(n == 0, 1.0, n)[:, None]
    return out, norms


def unit_rows(X: np.ndarray, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Rows scaled to unit length (float32; zero rows stay zero).

    Returns
    -------
    Xn : (N, k) float32
    zero : (N,) bool
        Rows of zero norm.
    """
    Xn, norms = scaled_rows(X, chunk)
    return Xn, norms == 0


@dataclass(frozen=True)
class Block:
    """One block of the Gram matrix, valid only during the call to the folds (its buffer is
    reused).

    Attributes
    ----------
    C : (R, Q) float32
        ``X[rows] @ X[cols].T``.
    rows : (R,) int64
        Global row positions of the block's rows (contiguous).
    cols : (Q,) int64
        Global row positions of its columns, sorted.
    diag : bool
        Diagonal block (``rows == cols``): only pairs ``c > r`` count.
    symmetric : bool
        Exact mode: credit each pair to the column's example too. False against a reference
        sample (rows only).
    """

    C: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    diag: bool
    symmetric: bool


def gram_blocks(n: int, block_size: int, n_cols: int | None = None
                ) -> list[tuple[int, int, int, int]]:
    """The blocks :func:`for_each_block` visits, in order.

    Parameters
    ----------
    n : int
        Rows.
    block_size : int
    n_cols : int, optional
        Columns of a reference sample (sampled mode: every row block against all reference
        rows at once). Default: the upper triangle of the n x n Gram matrix.

    Returns
    -------
    list of (i0, i1, j0, j1)
        Row range ``[i0, i1)`` and column range ``[j0, j1)`` (into the reference in sampled
        mode).
    """
    B = min(block_size, max(n, 1))
    starts = range(0, n, B)
    if n_cols is None:
        return [(i0, min(n, i0 + B), j0, min(n, j0 + B)) for i0 in starts
                for j0 in range(i0, n, B)]
    return [(i0, min(n, i0 + B), 0, n_cols) for i0 in starts]


def sample_plan(n: int, n_pairs: int, n_reference: int, seed: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The random draws of the sampled mode, one stream for every analyzer.

    Parameters
    ----------
    n : int
        Rows.
    n_pairs : int
        Uniform random pairs to draw (``i != j``).
    n_reference : int
        Reference rows (at most n, without replacement).
    seed : int

    Returns
    -------
    i, j : (n_pairs,) int64
        The pairs.
    reference : (R,) int64
        Sorted reference rows.
    """
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, n_pairs)
    j = rng.integers(0, n - 1, n_pairs)
    j = j + (j >= i)
    ref = np.sort(rng.choice(n, size=min(n_reference, n), replace=False)).astype(np.int64)
    return i, j, ref


def for_each_block(
    X: np.ndarray,
    block_size: int,
    folds: Sequence[Callable[[Block], None]],
    *,
    reference: np.ndarray | None = None,
    overlap: bool = True,
    desc: str = "all pairs",
) -> None:
    """Compute every block of ``X @ X.T`` once and hand it to each fold, in order.

    Parameters
    ----------
    X : (N, k) float32
        Rows (e.g. unit rows for cosines).
    block_size : int
        Rows (and columns) per block.
    folds : sequence of callable
        Each is called as ``fold(block)`` for every :class:`Block`, in :func:`gram_blocks`
        order; it must not keep ``block.C``.
    reference : (R,) int64, optional
        Sorted row positions: compare every row with these only (sampled mode). Default: every
        pair.
    overlap : bool
        Fold block t on one numba thread while BLAS computes block t + 1 (default); False: one
        after the other, the folds' kernels on every numba thread.
    desc : str
        Progress bar label.
    """
    import numba

    X = np.ascontiguousarray(X, dtype=np.float32)
    N = X.shape[0]
    B = min(block_size, max(N, 1))
    ids = np.arange(N, dtype=np.int64)
    if reference is None:
        Y, col_ids = X, ids
        blocks = gram_blocks(N, B)
    else:
        col_ids = np.asarray(reference, dtype=np.int64)
        Y = np.ascontiguousarray(X[col_ids])
        blocks = gram_blocks(N, B, len(col_ids))
    symmetric = reference is None
    width = max(j1 - j0 for _, _, j0, j1 in blocks) if blocks else 0
    bufs = [np.empty(B * width, np.float32), np.empty(B * width, np.float32)]
    # one thread runs the folds on block t (numba, one thread, GIL released) while the main
    # thread has BLAS compute block t + 1: the cores never wait for each other, and no idle,
    # still-spinning BLAS worker competes with kernel threads
    pipelined = overlap and len(blocks) > 1 and len(folds) > 0

    def visit(blk: Block) -> None:
        for fold in folds:
            fold(blk)

    pool = (ThreadPoolExecutor(1, initializer=numba.set_num_threads, initargs=(1,))
            if pipelined else None)
    pending = None
    try:
        with progress(total=len(blocks), desc=desc, unit="block") as bar:
            for t, (i0, i1, j0, j1) in enumerate(blocks):
                C = bufs[t % 2][: (i1 - i0) * (j1 - j0)].reshape(i1 - i0, j1 - j0)
                np.dot(X[i0:i1], Y[j0:j1].T, out=C)
                blk = Block(C, ids[i0:i1], col_ids[j0:j1], symmetric and i0 == j0, symmetric)
                if pending is not None:
                    pending.result()
                    bar.update(1)
                if pool is None:
                    visit(blk)
                    bar.update(1)
                else:
                    pending = pool.submit(visit, blk)
            if pending is not None:
                pending.result()
                bar.update(1)
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
