"""Thread count for small kernel calls.

A parallel region costs a wake-up of every worker; on a shared machine a descheduled worker
stalls the whole region. Calls whose work is below a threshold run on one thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numba

__all__ = ["threading_layer", "threads_for"]


@numba.njit(parallel=True, cache=True)
def _probe(x):  # pragma: no cover - a trivial parallel loop
    for i in numba.prange(x.shape[0]):
        x[i] += 1.0


def threading_layer() -> str:
    """numba's threading layer ("omp", "tbb" or "workqueue"), after one tiny parallel call."""
    try:
        return numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet
        import numpy as np

        _probe(np.zeros(2))
        return numba.threading_layer()


@contextmanager
def threads_for(work: int, min_per_thread: int) -> Iterator[int]:
    """Use at most ``work // min_per_thread`` (>= 1) numba threads inside the block."""
    before = numba.get_num_threads()
    want = max(1, min(before, int(work) // max(1, int(min_per_thread))))
    numba.set_num_threads(want)
    try:
        yield want
    finally:
        numba.set_num_threads(before)
