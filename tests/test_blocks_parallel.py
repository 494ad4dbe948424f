"""Row-owned folds fold disjoint blocks at once: the schedule, the overlap, and results that do
not depend on the number of lanes."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from constraintlab.analysis.blocks import fold_rounds, for_each_block
from constraintlab.analysis.pairs import PairFold
from constraintlab.analysis.response import PartnerFold


@pytest.mark.parametrize("nb", [1, 2, 5, 6, 9])
def test_fold_rounds_cover_every_block_once_with_disjoint_rounds(nb):
    seen = [b for rnd in fold_rounds(nb) for b in rnd]
    want = [(i, j) for i in range(nb) for j in range(i, nb)]
    assert sorted(seen) == want
    for rnd in fold_rounds(nb):
        used = [x for i, j in rnd for x in ({i, j})]
        assert len(used) == len(set(used))


@pytest.fixture(scope="module")
def rows():
    rng = np.random.default_rng(0)
    c = rng.standard_normal((5, 24))
    X = c[rng.integers(0, 5, 300)] * rng.choice([-1.0, 1.0], (300, 1))
    X += 0.8 * rng.standard_normal((300, 24))
    X[40:43] = X[7]  # ties
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)


def _folds(n):
    pf = PairFold(n, tau=0.2, near=0.9, lo_collect=-0.2, hi_collect=0.5, top_m=5,
                  hist_bins=40, max_pairs=10_000)
    return pf, PartnerFold(np.linspace(0.5, 2.0, n), 3)


def _stats(pf, qf):
    st = pf.result()
    sp = qf.result()
    return {"hist": st.hist, "conf": st.conf_count, "align": st.align_count,
            "near": st.near_count, "mass": st.conf_mass, "top_idx": st.top_idx,
            "top_val": st.top_val, "lo": st.lo_pairs, "hi": st.hi_pairs,
            "hi_idx": sp.hi_idx, "lo_idx": sp.lo_idx, "hi_val": sp.hi_val,
            "pos": sp.pos_sum, "neg": sp.neg_sum}


def test_results_do_not_depend_on_the_lanes_bit_for_bit(rows):
    runs = {}
    for lanes in (2, 3, 5):
        pf, qf = _folds(len(rows))
        for_each_block(rows, 16, [pf, qf], lanes=lanes)
        runs[lanes] = _stats(pf, qf)
    for lanes in (3, 5):
        for key, v in runs[2].items():
            if isinstance(v, tuple):
                for x, y in zip(v, runs[lanes][key], strict=True):
                    np.testing.assert_array_equal(x, y, err_msg=key)
            else:
                np.testing.assert_array_equal(v, runs[lanes][key], err_msg=key)
    # and against brute force / the one-lane schedule (multi-threaded kernels, block order)
    G = rows.astype(np.float64) @ rows.T.astype(np.float64)
    np.fill_diagonal(G, 0.0)
    np.testing.assert_array_equal(runs[2]["conf"], (G < -0.2).sum(1))
    np.testing.assert_array_equal(runs[2]["near"], (G > 0.9).sum(1))
    np.testing.assert_allclose(runs[2]["mass"], -np.where(G < -0.2, G, 0).sum(1), rtol=1e-5)
    iu = np.triu_indices(len(rows), 1)
    b = np.clip(np.floor((G[iu] + 1) * 20).astype(int), 0, 39)
    np.testing.assert_array_equal(runs[2]["hist"], np.bincount(b, minlength=40))
    pf, qf = _folds(len(rows))
    for_each_block(rows, 16, [pf, qf], overlap=False)
    one = _stats(pf, qf)
    np.testing.assert_array_equal(one["conf"], runs[2]["conf"])
    np.testing.assert_allclose(one["pos"], runs[2]["pos"], rtol=1e-6)
    np.testing.assert_array_equal(np.abs(one["top_val"]), np.abs(runs[2]["top_val"]))


def test_row_owned_folds_overlap_only_on_disjoint_row_blocks(rows):
    """Folds of blocks that share a row block never run at once; others do (on 2+ lanes
    some overlap is seen when folds are slow)."""
    active: list[set[int]] = []
    lock = threading.Lock()
    overlaps = []
    order: dict[int, list[tuple[int, int]]] = {}

    class Probe:
        row_owned = True

        def __call__(self, b):
            mine = {int(b.rows[0]) // 16, int(b.cols[0]) // 16}
            with lock:
                for other in active:
                    assert not (other & mine), "two folds on one row block at once"
                if active:
                    overlaps.append(1)
                active.append(mine)
                for rb in mine:
                    order.setdefault(rb, []).append((int(b.rows[0]), int(b.cols[0])))
            time.sleep(0.002)
            with lock:
                active.remove(mine)

    for_each_block(rows, 16, [Probe()], lanes=4)
    assert overlaps, "no two folds ever ran at once"
    first = {rb: list(v) for rb, v in order.items()}
    order.clear()
    for_each_block(rows, 16, [Probe()], lanes=2)
    assert order == first  # each row block sees its blocks in one order
