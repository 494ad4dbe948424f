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

Schedule (``overlap=True``, the default): ``lanes`` worker threads (default: the calling
thread's numba thread count), each computing its next block with single-threaded BLAS into its
own buffer, then waiting for its turn to run the folds on it (on one numba thread, GIL
released).

- Row-owned folds (every fold has ``row_owned = True``: it writes only the statistics of the
  block's rows, and of its columns when ``symmetric``, plus per-``Block.lane`` state; the pairs
  and response folds): the blocks come in rounds of disjoint row blocks (:func:`fold_rounds`)
  and a block is folded as soon as every earlier block of the schedule that touches one of its
  two row blocks has been: folds of disjoint blocks run at the same time, on every lane, and
  each row block sees its blocks in one fixed order, so the results do not depend on the
  number of lanes (bit for bit; the single-lane schedule, ``lanes=1`` or ``overlap=False``,
  runs the kernels multi-threaded in :func:`gram_blocks` order: equal up to float
  reassociation of the sums). Needs numba's threading layer to accept concurrent launches
  (omp, tbb); under workqueue the folds take turns as below.
- Other folds see the blocks one at a time and in :func:`gram_blocks` order, so the results
  do not depend on the number of lanes; only ``X @ X.T`` itself runs concurrently.

Single-threaded GEMMs in parallel lanes need no barrier between BLAS threads: a fold never
stalls a half-finished multi-threaded GEMM whose other threads spin, which on 2 cores cost a
third of the stage (the pipelined schedule of before, one multi-threaded GEMM beside one fold
thread, measured 1.64x the bare GEMM at N = 20,000, k = 1,024; lanes 1.39-1.44x, best of 3,
``benchmarks/bench_pairs.py --stage-only``). Memory: one float32 buffer of ``block_size^2`` per
lane (sampled mode: ``block_size * R``, plus the R reference rows).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from constraintlab.progress import progress

logger = logging.getLogger(__name__)

#: default cap on the lanes of :func:`for_each_block`: the folds of one 2048-row block take a
#: sixth (alone) to a third (beside a GEMM) of a single-threaded GEMM of it at k = 1024, so
#: beyond a few lanes they only wait for their turn (measured on 2 cores only; the cap bounds
#: the lanes' buffers, 16 MB each)
MAX_LANES = 8

__all__ = ["MAX_LANES", "Block", "fold_rounds", "for_each_block", "gram_blocks",
           "kernel_chunks", "sample_plan", "scaled_rows", "unit_rows"]


def kernel_chunks(threads: int | None = 0) -> int:
    """Row / column chunks for a fold's kernel call: 1 on one numba thread (a lane of the
    overlapped schedule; wide column spans are several times faster), else 4 per thread (load
    balance on shared cores).

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
    lane : int
        The lane that made it (0..lanes-1): a row-owned fold keeps per-lane state for what
        is not per row (e.g. a histogram).
    """

    C: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    diag: bool
    symmetric: bool
    lane: int = 0


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


def fold_rounds(n_blocks: int) -> list[list[tuple[int, int]]]:
    """The blocks ``(I, J)``, ``I <= J``, of ``n_blocks`` row blocks in rounds of disjoint row
    blocks (the circle method of round-robin tournaments; a row block paired with the odd
    one out, or every one in an extra round when ``n_blocks`` is even, gets its diagonal).

    Returns
    -------
    list of rounds, each a list of (I, J)
        Every pair ``I < J`` and every ``(I, I)`` exactly once; within a round no row block
        appears twice.
    """
    players: list[int | None] = list(range(n_blocks)) + ([None] if n_blocks % 2 else [])
    m = len(players)
    out = [[(i, i) for i in range(n_blocks)]] if n_blocks % 2 == 0 and n_blocks else []
    for _ in range(m - 1):
        rnd = []
        for i in range(m // 2):
            a, b = players[i], players[m - 1 - i]
            if a is None or b is None:
                c = b if a is None else a
                rnd.append((c, c))
            else:
                rnd.append((min(a, b), max(a, b)))
        out.append(sorted(rnd))
        players = [players[0], players[-1], *players[1:-1]]
    return out


class _Lanes:
    """What both schedules share: block numbers handed out to the lanes in order, and the
    first error, which stops every lane."""

    def __init__(self, n: int) -> None:
        self.n, self.next = n, 0
        self.error: BaseException | None = None
        self.cv = threading.Condition()

    def take(self) -> int | None:
        with self.cv:
            if self.error is not None or self.next >= self.n:
                return None
            self.next += 1
            return self.next - 1

    def fail(self, exc: BaseException) -> None:
        with self.cv:
            if self.error is None:
                self.error = exc
            self.cv.notify_all()


class _RowTurns(_Lanes):
    """Hands out block numbers to the lanes; block t's folds run once every earlier block
    (in the schedule) that touches one of its row blocks has been folded, so each row
    block's statistics are folded in one fixed order whatever the number of lanes; the first
    error stops every lane."""

    def __init__(self, touches: list[tuple[int, ...]]) -> None:
        super().__init__(len(touches))
        self.touches = touches
        seq: dict[int, list[int]] = {}
        for t, rb in enumerate(touches):
            for b in rb:
                seq.setdefault(b, []).append(t)
        self.seq = seq
        self.pos = dict.fromkeys(seq, 0)

    def _ready(self, t: int) -> bool:
        return all(self.seq[b][self.pos[b]] == t for b in self.touches[t])

    def wait_turn(self, t: int) -> bool:
        with self.cv:
            while not self._ready(t) and self.error is None:
                self.cv.wait()
            return self.error is None

    def done(self, t: int) -> None:
        with self.cv:
            for b in self.touches[t]:
                self.pos[b] += 1
            self.cv.notify_all()


def _threadsafe_numba() -> bool:
    """True when numba's threading layer takes parallel kernels launched from several
    threads at once (omp, tbb; not workqueue)."""
    from constraintlab._kernels._threads import threading_layer

    return threading_layer() in ("omp", "tbb")


class _Turns(_Lanes):
    """Hands out block numbers to the lanes and lets block t's folds run only after block
    t - 1's; the first error stops every lane."""

    def __init__(self, n: int) -> None:
        super().__init__(n)
        self.turn = 0

    def wait_turn(self, t: int) -> bool:
        with self.cv:
            while self.turn != t and self.error is None:
                self.cv.wait()
            return self.error is None

    def done(self, t: int) -> None:
        with self.cv:
            self.turn = t + 1
            self.cv.notify_all()


def for_each_block(
    X: np.ndarray,
    block_size: int,
    folds: Sequence[Callable[[Block], None]],
    *,
    reference: np.ndarray | None = None,
    overlap: bool = True,
    lanes: int | None = None,
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
        order, one block at a time (row-owned folds: see the module docstring); it must not
        keep ``block.C``.
    reference : (R,) int64, optional
        Sorted row positions: compare every row with these only (sampled mode). Default: every
        pair.
    overlap : bool
        Compute blocks in ``lanes`` parallel lanes (single-threaded BLAS each) while the folds
        run on the finished ones, in order, on one numba thread (default); False: on the
        calling thread, one after the other, BLAS and the folds' kernels on every thread.
    lanes : int, optional
        Parallel lanes of the overlapped schedule; default the calling thread's numba thread
        count, at most :data:`MAX_LANES` (beyond, the folds, one block at a time, set the pace
        and every lane holds a block buffer) and at most the number of blocks.
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
    n_lanes = max(1, min(lanes or min(numba.get_num_threads(), MAX_LANES), len(blocks)))
    # row-owned folds (every one declares ``row_owned``) fold several blocks at once when the
    # blocks share no row block, in a schedule that fixes each row block's order
    parallel = (overlap and n_lanes > 1 and bool(folds)
                and all(getattr(f, "row_owned", False) for f in folds) and _threadsafe_numba())
    if parallel and symmetric:
        nb_ = -(-N // B)
        blocks = [(a * B, min(N, a * B + B), c * B, min(N, c * B + B))
                  for rnd in fold_rounds(nb_) for a, c in rnd]

    def make(t: int, buf: np.ndarray, lane: int = 0) -> Block:
        i0, i1, j0, j1 = blocks[t]
        C = buf[: (i1 - i0) * (j1 - j0)].reshape(i1 - i0, j1 - j0)
        np.dot(X[i0:i1], Y[j0:j1].T, out=C)
        return Block(C, ids[i0:i1], col_ids[j0:j1], symmetric and i0 == j0, symmetric, lane)

    with progress(total=len(blocks), desc=desc, unit="block") as bar:
        if not overlap or n_lanes == 1 or not folds:
            buf = np.empty(B * width, np.float32)
            for t in range(len(blocks)):
                blk = make(t, buf)
                for fold in folds:
                    fold(blk)
                bar.update(1)
            return
        if parallel:
            turns: _Turns | _RowTurns = _RowTurns(
                [tuple({b[0] // B, b[2] // B}) if symmetric else (b[0] // B,) for b in blocks])
        else:
            turns = _Turns(len(blocks))

        def lane(number: int) -> None:
            try:
                numba.set_num_threads(1)
                buf = np.empty(B * width, np.float32)
                while (t := turns.take()) is not None:
                    blk = make(t, buf, number)
                    if not turns.wait_turn(t):
                        return
                    for fold in folds:
                        fold(blk)
                    bar.update(1)
                    turns.done(t)
            except BaseException as exc:
                turns.fail(exc)

        with threadpool_limits(1, user_api="blas"):
            workers = [threading.Thread(target=lane, args=(i,), name=f"blocks-{i}",
                                        daemon=True) for i in range(n_lanes)]
            for w in workers:
                w.start()
            try:
                for w in workers:
                    while w.is_alive():
                        w.join(0.2)
            except BaseException as exc:  # Ctrl-C: stop the lanes before leaving
                turns.fail(exc)
                for w in workers:
                    w.join()
                raise
        if turns.error is not None:
            raise turns.error
