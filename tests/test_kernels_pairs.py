"""The all-pairs kernels against their NumPy twins and against brute force over the full matrix."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from threadpoolctl import threadpool_limits

from constraintlab._kernels.pairs import (
    block_pair_stats,
    block_pair_stats_numpy,
    collect_block_pairs,
    collect_block_pairs_numpy,
    hist_bin,
)
from constraintlab.analysis.blocks import for_each_block
from constraintlab.analysis.pairs import blocked_pairs, unit_rows

NBINS = 40


def _state(N, m, n_chunks=4):
    return dict(
        hist=np.zeros((n_chunks, NBINS), np.int64),
        conf_count=np.zeros(N, np.int64),
        conf_mass=np.zeros(N),
        align_count=np.zeros(N, np.int64),
        near_count=np.zeros(N, np.int64),
        top_key=np.full((N, m), -1.0, np.float32),
        top_idx=np.full((N, m), -1, np.int64),
        top_val=np.zeros((N, m), np.float32),
    )


def _run_blocks(fn, Xn, B, m, tau, near, lo, hi):
    N = Xn.shape[0]
    s = _state(N, m)
    ids = np.arange(N, dtype=np.int64)
    counts = []
    for i0 in range(0, N, B):
        for j0 in range(i0, N, B):
            C = Xn[i0:i0 + B] @ Xn[j0:j0 + B].T
            rl = np.zeros(C.shape[0], np.int64)
            rh = np.zeros(C.shape[0], np.int64)
            fn(C, ids[i0:i0 + B], ids[j0:j0 + B], i0 == j0, tau, near, lo, hi, NBINS, 4, True,
               True, *s.values(), rl, rh)
            counts.append((rl.copy(), rh.copy()))
    return s, counts


def _sorted_top(s):
    order = np.argsort(-s["top_key"], axis=1, kind="stable")
    return [np.take_along_axis(s[k], order, 1) for k in ("top_key", "top_idx", "top_val")]


@pytest.fixture(scope="module")
def unit():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((150, 8)).astype(np.float32)
    return unit_rows(X)[0]


def test_block_kernel_matches_numpy_twin(unit):
    k_state, k_counts = _run_blocks(block_pair_stats, unit, 64, 5, 0.4, 0.9, -0.6, 0.8)
    n_state, n_counts = _run_blocks(block_pair_stats_numpy, unit, 64, 5, 0.4, 0.9, -0.6, 0.8)
    np.testing.assert_array_equal(k_state["hist"].sum(0), n_state["hist"].sum(0))
    for key in ("conf_count", "align_count", "near_count"):
        np.testing.assert_array_equal(k_state[key], n_state[key])
    np.testing.assert_allclose(k_state["conf_mass"], n_state["conf_mass"], rtol=1e-12)
    for (kl, kh), (nl, nh) in zip(k_counts, n_counts, strict=True):
        np.testing.assert_array_equal(kl, nl)
        np.testing.assert_array_equal(kh, nh)
    for a, b in zip(_sorted_top(k_state), _sorted_top(n_state), strict=True):
        np.testing.assert_array_equal(a, b)


def test_block_kernel_against_full_matrix(unit):
    """Every pair counted once: totals equal brute force over the upper triangle."""
    N = unit.shape[0]
    s, _ = _run_blocks(block_pair_stats, unit, 48, 4, 0.4, 0.9, -0.6, 0.8)
    C = (unit @ unit.T).astype(np.float64)
    iu = np.triu_indices(N, 1)
    v = C[iu]
    assert s["hist"].sum() == N * (N - 1) // 2
    np.testing.assert_array_equal(s["hist"].sum(0), np.bincount(hist_bin(v, NBINS),
                                                                 minlength=NBINS))
    assert s["conf_count"].sum() == 2 * (v < -0.4).sum()
    np.fill_diagonal(C, 0.0)
    np.testing.assert_array_equal(s["conf_count"], (C < -0.4).sum(1))
    np.testing.assert_array_equal(s["align_count"], (C > 0.4).sum(1))
    np.testing.assert_allclose(s["conf_mass"], np.where(C < -0.4, -C, 0).sum(1), rtol=1e-6)
    # top-4 by |cos| (self excluded)
    A = np.abs(C)
    np.fill_diagonal(A, -1)
    ref = -np.sort(-A, axis=1)[:, :4]
    np.testing.assert_allclose(_sorted_top(s)[0], ref, rtol=1e-6)


def test_collect_matches_twin_and_counts(unit):
    ids = np.arange(unit.shape[0], dtype=np.int64)
    for diag, (i0, j0) in ((True, (0, 0)), (False, (0, 75))):
        C = unit[i0:i0 + 75] @ unit[j0:j0 + 75].T
        s = _state(unit.shape[0], 3)
        rl = np.zeros(75, np.int64)
        rh = np.zeros(75, np.int64)
        block_pair_stats(C, ids[i0:i0 + 75], ids[j0:j0 + 75], diag, 0.4, 0.9, -0.5, 0.5, NBINS,
                         4, True, True, *s.values(), rl, rh)
        got = collect_block_pairs(C, ids[i0:i0 + 75], ids[j0:j0 + 75], diag, -0.5, 0.5, rl, rh)
        ref = collect_block_pairs_numpy(C, ids[i0:i0 + 75], ids[j0:j0 + 75], diag, -0.5, 0.5)
        assert len(got[0]) == rl.sum() and len(got[3]) == rh.sum()
        for a, b in zip(got, ref, strict=True):
            np.testing.assert_array_equal(a, b)


def test_self_pairs_skipped_for_overlapping_ids():
    """A rectangular block whose columns include the rows themselves skips (i, i)."""
    X = unit_rows(np.eye(4, dtype=np.float32) + 0.1)[0]
    s = _state(4, 2)
    rl = np.zeros(4, np.int64)
    rh = np.zeros(4, np.int64)
    ids = np.arange(4, dtype=np.int64)
    block_pair_stats(X @ X.T, ids, ids, False, 0.5, 0.99, -1.5, 0.999, NBINS, 4, True, False,
                     *s.values(), rl, rh)
    assert s["hist"].sum() == 12  # ordered pairs without the diagonal
    assert not (s["top_idx"] == ids[:, None]).any()
    assert rh.sum() == 0  # cos(i, i) = 1 would pass 0.999


def _stats(X, block, top_m=3, tau=0.3, near=0.95):
    Xn, _ = unit_rows(X)
    return blocked_pairs(Xn, tau=tau, near=near, hi_collect=near, top_m=top_m, block_size=block,
                         hist_bins=NBINS, max_pairs=10_000)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 60), k=st.integers(2, 12),
       block=st.sampled_from([16, 17, 64]))
def test_invariant_to_permutation_and_row_scaling(seed, n, k, block):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, k)).astype(np.float32)
    perm = rng.permutation(n)
    scale = rng.uniform(0.1, 10.0, n).astype(np.float32)
    a = _stats(X, block)
    b = _stats(X[perm] * scale[perm, None], block)
    # cosines move by float32 rounding only: compare counts away from the thresholds
    C = unit_rows(X)[0] @ unit_rows(X)[0].T
    margin = np.abs(np.abs(C[np.triu_indices(n, 1)]) - 0.3).min(initial=1.0)
    if margin > 1e-5:
        np.testing.assert_array_equal(a.conf_count[perm], b.conf_count)
        np.testing.assert_array_equal(a.align_count[perm], b.align_count)
    np.testing.assert_allclose(a.conf_mass[perm], b.conf_mass, atol=1e-5)
    np.testing.assert_allclose(np.abs(a.top_val[perm]), np.abs(b.top_val), atol=1e-5)
    assert a.hist.sum() == b.hist.sum() == n * (n - 1) // 2
    # ranges
    assert (np.abs(a.top_val) <= 1.0 + 1e-6).all()
    assert (a.conf_count <= n - 1).all() and (a.conf_count >= 0).all()


@pytest.mark.parametrize("overlap", [True, False])
@pytest.mark.parametrize("sampled", [False, True])
def test_block_driver_visits_every_pair_once(unit, overlap, sampled):
    """Folds see the exact Gram blocks: every pair once in exact mode (upper triangle, c > r on
    the diagonal), every (row, reference) pair once in sampled mode; each fold in turn."""
    N = unit.shape[0]
    ref = np.sort(np.random.default_rng(1).choice(N, 40, replace=False)) if sampled else None
    seen = np.zeros((N, N), np.int64)
    calls = []

    def record(b):
        np.testing.assert_allclose(b.C, unit[b.rows] @ unit[b.cols].T, atol=1e-6)
        assert b.symmetric == (not sampled) and (np.diff(b.cols) > 0).all()
        R, Q = b.C.shape
        mask = np.ones((R, Q), bool)
        if b.diag:
            mask = np.arange(Q)[None, :] > np.arange(R)[:, None]
        np.add.at(seen, (np.repeat(b.rows, Q).reshape(R, Q)[mask],
                         np.tile(b.cols, R).reshape(R, Q)[mask]), 1)
        calls.append("a")

    for_each_block(unit, 32, [record, lambda b: calls.append("b")], reference=ref,
                   overlap=overlap)
    assert calls == ["a", "b"] * (len(calls) // 2)
    if sampled:
        want = np.zeros((N, N), np.int64)
        want[:, ref] = 1
    else:
        want = np.triu(np.ones((N, N), np.int64), 1)
    np.testing.assert_array_equal(seen, want)


@pytest.mark.parametrize("lanes", [2, 3, 5])
def test_block_lanes_fold_in_block_order_and_match_one_lane(unit, lanes):
    """However many lanes compute the blocks, the folds see them one at a time in
    ``gram_blocks`` order, and the statistics equal those of a single lane (brute force
    checks the single lane above)."""
    from constraintlab.analysis.blocks import gram_blocks

    order, active = [], []

    def record(b):
        active.append(1)
        assert len(active) == 1  # never two folds at once
        order.append((int(b.rows[0]), int(b.cols[0])))
        active.pop()

    for_each_block(unit, 16, [record], lanes=lanes)
    assert order == [(i0, j0) for i0, _, j0, _ in gram_blocks(unit.shape[0], 16)]
    from constraintlab.analysis.pairs import PairFold

    def fold():
        return PairFold(unit.shape[0], tau=0.2, near=0.9, lo_collect=-0.2, hi_collect=0.5,
                        top_m=4, hist_bins=NBINS, max_pairs=50)

    f_one, f_many = fold(), fold()
    with threadpool_limits(1, user_api="blas"):  # the lanes' GEMMs are single-threaded
        for_each_block(unit, 16, [f_one], overlap=False)
    for_each_block(unit, 16, [f_many], lanes=lanes)
    one, many = f_one.result(), f_many.result()
    np.testing.assert_array_equal(one.hist, many.hist)
    np.testing.assert_array_equal(one.conf_count, many.conf_count)
    np.testing.assert_allclose(one.conf_mass, many.conf_mass, rtol=1e-6)
    np.testing.assert_array_equal(np.abs(one.top_val), np.abs(many.top_val))


def test_block_lanes_raise_the_folds_error():
    """An error in a fold stops every lane and reaches the caller (no hang)."""
    X = np.random.default_rng(0).standard_normal((200, 8)).astype(np.float32)
    seen = []

    def boom(b):
        seen.append(1)
        if len(seen) == 3:
            raise RuntimeError("fold failed")

    with pytest.raises(RuntimeError, match="fold failed"):
        for_each_block(X, 16, [boom], lanes=3)
    assert len(seen) == 3
