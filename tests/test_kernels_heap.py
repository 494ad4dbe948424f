"""The shared top-m heaps against their NumPy twin and against a brute-force sort."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from constraintlab._kernels.heap import heap_offer, heap_offer_numpy, make_heaps, sort_heaps


def _offer_all(offer, n, m, rows, keys, partners, empty):
    h = make_heaps(n, m, empty)
    for r, k, j in zip(rows.tolist(), keys.tolist(), partners.tolist(), strict=True):
        offer(*h, r, np.float32(k), j, np.float32(-k))
    return sort_heaps(*h)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 5), m=st.integers(1, 7),
       count=st.integers(0, 60))
def test_heap_offer_keeps_the_m_largest_like_its_twin_and_a_sort(seed, n, m, count):
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, n, count)
    keys = rng.standard_normal(count).astype(np.float32)  # distinct with probability 1
    partners = np.arange(count, dtype=np.int64)
    got = _offer_all(heap_offer, n, m, rows, keys, partners, -np.inf)
    twin = _offer_all(heap_offer_numpy, n, m, rows, keys, partners, -np.inf)
    for a, b in zip(got, twin, strict=True):
        np.testing.assert_array_equal(a, b)
    for r in range(n):
        mine = np.flatnonzero(rows == r)
        best = mine[np.argsort(-keys[mine], kind="stable")][:m]
        k = len(best)
        np.testing.assert_array_equal(got[0][r, :k], keys[best])
        np.testing.assert_array_equal(got[1][r, :k], partners[best])
        np.testing.assert_array_equal(got[2][r, :k], -keys[best])  # the carried value
        assert (got[1][r, k:] == -1).all() and np.isneginf(got[0][r, k:]).all()


def test_keys_at_or_below_the_empty_key_never_enter():
    h = make_heaps(1, 3, -1.0)
    heap_offer(*h, 0, np.float32(-1.0), 7, np.float32(0.0))
    heap_offer(*h, 0, np.float32(0.0), 8, np.float32(0.5))
    keys, idx, vals = sort_heaps(*h)
    assert idx.tolist() == [[8, -1, -1]] and keys.tolist() == [[0.0, -1.0, -1.0]]
    assert vals[0, 0] == pytest.approx(0.5)


def test_sort_heaps_orders_rows_best_first():
    keys = np.array([[0.1, 0.9, 0.5], [3.0, 1.0, 2.0]], np.float32)
    idx = np.array([[1, 2, 3], [4, 5, 6]], np.int64)
    k, i, v = sort_heaps(keys, idx, keys * 2)
    assert i.tolist() == [[2, 3, 1], [4, 6, 5]]
    np.testing.assert_array_equal(v, k * 2)
