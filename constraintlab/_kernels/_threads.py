"""Thread count for small kernel calls.

A parallel region costs a wake-up of every worker; on a shared machine a descheduled worker
stalls the whole region. Calls whose work is below a threshold run on one thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numba

__all__ = ["threads_for"]


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
