"""The torch pass over ``X @ X.T`` (the GPU path), run on CPU against the numba folds and the
brute-force Gram matrix."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from constraintlab.analysis.blocks import for_each_block
from constraintlab.analysis.config import AnalysisConfig
from constraintlab.analysis.pairs import PairFold, analyze_pairs
from constraintlab.analysis.response import PartnerFold
from constraintlab.analysis.torch_pass import PassParams, merge_parts, run_rows, torch_pass

pytest.importorskip("torch")


def _lattice(n: int, k: int, seed: int) -> np.ndarray:
    """Rows with entries in {-1/4, 0, 1/4}: every dot product is a multiple of 1/16, exact in
    float32 in any summation order (so BLAS and torch give the same Gram matrix bit for bit,
    and many values sit exactly on thresholds, bin edges and each other: ties)."""
    rng = np.random.default_rng(seed)
    return (rng.integers(-1, 2, (n, k)) * 0.25).astype(np.float32)


PARAMS = PassParams(tau=0.25, near=0.75, lo_collect=-0.25, hi_collect=0.75, top_m=4,
                    hist_bins=32, max_pairs=10 ** 6, partner_m=3)


def _numba(X, w, reference=None, block=16):
    p = PARAMS
    fold = PairFold(len(X), tau=p.tau, near=p.near, lo_collect=p.lo_collect,
                    hi_collect=p.hi_collect, top_m=p.top_m, hist_bins=p.hist_bins,
                    max_pairs=p.max_pairs, do_hist=reference is None)
    pfold = PartnerFold(w, p.partner_m)
    for_each_block(X, block, [fold, pfold], reference=reference)
    return fold, pfold


def _check_topk(keys_a, keys_b, idx_b, val_b, G, key_of, rtol=0.0):
    """Kept keys equal (sorted); each kept partner of b really has that key and value."""
    np.testing.assert_allclose(keys_b, -np.sort(-keys_a, 1), rtol=rtol)
    rows, slots = np.nonzero(idx_b >= 0)
    j = idx_b[rows, slots]
    np.testing.assert_array_equal(G[rows, j].astype(np.float32), val_b[rows, slots])
    np.testing.assert_array_equal(key_of(val_b[rows, slots]), keys_b[rows, slots])
    assert (rows != j).all()


@pytest.mark.parametrize(("sampled", "N", "tiles"), [
    (False, 150, (32, 48)), (True, 150, (32, 48)),
    (False, 700, (100, 640)),  # 10 groups of 64 columns: the two-level top-k
    (True, 700, (128, 256))])
def test_torch_rows_equal_the_numba_folds_on_exact_lattice_data(sampled, N, tiles):
    k = 16
    X = _lattice(N, k, 1)
    X[7] = X[3]  # a duplicate: cos exactly at the near threshold and above
    rng = np.random.default_rng(2)
    w = rng.uniform(0.5, 2.0, N).astype(np.float32)
    ref = np.sort(rng.choice(N, 40 if N < 300 else 300, replace=False)) if sampled else None
    fold, pfold = _numba(X, w, ref, block=32)
    params = PassParams(**{**PARAMS.__dict__, "do_hist": not sampled})
    part = run_rows(X, w, params, reference=ref, row_block=tiles[0], col_block=tiles[1])
    G = X.astype(np.float64) @ X.T.astype(np.float64)
    np.testing.assert_array_equal(part.conf_count, fold.conf_count)
    np.testing.assert_array_equal(part.align_count, fold.align_count)
    np.testing.assert_array_equal(part.near_count, fold.near_count)
    np.testing.assert_array_equal(part.conf_mass, fold.conf_mass)  # multiples of 1/16
    np.testing.assert_array_equal(part.hist, fold.result().hist)
    if not sampled:
        # brute force: the exact-mode histogram counts each pair once
        iu = np.triu_indices(N, 1)
        b = np.clip(np.floor((G[iu] + 1) * 16).astype(int), 0, 31)
        np.testing.assert_array_equal(part.hist, np.bincount(b, minlength=32))
    _check_topk(fold.top_key, part.top_key, part.top_idx, part.top_val, G, np.abs)
    # listed pairs: the same set
    for mine, theirs in ((part.lo_pairs, fold.lo.result()), (part.hi_pairs, fold.hi.result())):
        a = {(min(x, y), max(x, y), v) for x, y, v in zip(*mine, strict=True)}
        b = {(int(x), int(y), v) for x, y, v in zip(*theirs, strict=True)}
        assert a == b
    assert len(part.lo_pairs[0]) > 0
    # response partners: keys equal, values (cos * w_i) * w_j in float32 as the kernel
    V = (G.astype(np.float32) * w[:, None]) * w[None, :]
    hk, _, _, lk, _, _, ps, ns = pfold.state
    # (the kernel's column pass multiplies (cos * w_j) * w_i: 1 ulp apart)
    _check_topk(hk, part.hi_key, part.hi_idx, part.hi_val, V, lambda v: v, 3e-7)
    _check_topk(lk, part.lo_key, part.lo_idx, part.lo_val, V, lambda v: -v, 3e-7)
    np.testing.assert_allclose(part.pos_sum, ps, rtol=1e-7)
    np.testing.assert_allclose(part.neg_sum, ns, rtol=1e-7)
    # and the sums against brute force
    cols = np.arange(N) if ref is None else ref
    Vd = V[:, cols].astype(np.float64)
    Vd[cols[None, :] == np.arange(N)[:, None]] = 0.0
    np.testing.assert_allclose(part.pos_sum, np.where(Vd > 0, Vd, 0).sum(1), rtol=1e-7)
    np.testing.assert_allclose(part.neg_sum, np.where(Vd < 0, Vd, 0).sum(1), rtol=1e-7)


def test_tiles_and_row_ranges_do_not_change_the_results():
    X = _lattice(120, 16, 3)
    w = np.ones(120, np.float32)
    whole = run_rows(X, w, PARAMS, row_block=1000, col_block=1000)
    parts = merge_parts([run_rows(X, w, PARAMS, r0=a, r1=b, row_block=7, col_block=13)
                         for a, b in ((70, 120), (0, 30), (30, 70))])
    for f in ("hist", "conf_count", "align_count", "near_count", "conf_mass", "top_key",
              "hi_key", "lo_key", "pos_sum", "neg_sum"):
        np.testing.assert_array_equal(getattr(parts, f), getattr(whole, f), err_msg=f)
    with pytest.raises(ValueError, match="consecutive"):
        merge_parts([run_rows(X, w, PARAMS, r0=0, r1=10), run_rows(X, w, PARAMS, r0=20, r1=30)])


def _near_edges(c: np.ndarray, bins: int, eps: float = 2e-6) -> int:
    """How many cosines lie within eps of a histogram edge (their bin may differ with the
    GEMM's rounding)."""
    x = (c + 1) * bins / 2
    return int((np.abs(x - np.round(x)) < eps * bins).sum())


@pytest.mark.parametrize("n", [300, 900])  # 900 > exact_max_n: the sampled mode
def test_analyze_pairs_torch_backend_matches_numba_on_real_valued_rows(n):
    rng = np.random.default_rng(4)
    k = 48
    centres = rng.standard_normal((6, k))
    X = (centres[rng.integers(0, 6, n)] + 0.9 * rng.standard_normal((n, k))).astype(np.float32)
    X[50:55] = X[10] + 1e-3 * rng.standard_normal((5, k))  # near-duplicates
    X[60] = -X[11]                                          # a contradicting pair
    cfg = AnalysisConfig(block_size=64, tau=0.3, exact_max_n=500, sample_reference=200,
                         sample_pairs=20_000)
    a = analyze_pairs(X, config=cfg, backend="numba")
    b = analyze_pairs(X, config=cfg, backend="torch")
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    G = Xn.astype(np.float64) @ Xn.T.astype(np.float64)
    # a count may differ only by the cosines within float rounding of its threshold
    for col, t in (("conflict_count", -0.3), ("alignment_count", 0.3),
                   ("near_parallel_count", cfg.near_for(k))):
        close = (np.abs(G - t) < 1e-5).sum(1)
        diff = np.abs(a.table[col].to_numpy() - b.table[col].to_numpy())
        assert (diff <= close).all(), col
    assert (a.table["conflict_count"] > 0).sum() > 0
    np.testing.assert_allclose(a.table["conflict_mass"], b.table["conflict_mass"], rtol=1e-5)
    ha, hb = (np.asarray(r.summary["histogram"]["counts"]) for r in (a, b))
    iu = np.triu_indices(n, 1)
    assert np.abs(ha - hb).sum() <= 2 * _near_edges(G[iu], cfg.hist_bins)
    assert abs(a.summary["conflicting_pairs"] - b.summary["conflicting_pairs"]) <= (
        np.abs(G[iu] + 0.3) < 1e-5).sum()
    # top-m keys to float tolerance; the partners agree wherever the keys are not tied
    np.testing.assert_allclose(np.abs(a.top_val), np.abs(b.top_val), atol=1e-5)
    gap = np.abs(np.diff(np.abs(a.top_val), axis=1))
    untied = np.ones_like(a.top_idx, bool)
    untied[:, :-1] &= gap > 1e-5
    untied[:, 1:] &= gap > 1e-5
    np.testing.assert_array_equal(a.top_idx[untied], b.top_idx[untied])
    for x, y in zip(a.near_parallel, b.near_parallel, strict=True):
        np.testing.assert_allclose(x, y, atol=1e-5)
    pa, pb = a.partners, b.partners
    for f in ("hi_val", "lo_val"):
        np.testing.assert_allclose(getattr(pa, f), getattr(pb, f), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(pa.pos_sum, pb.pos_sum, rtol=1e-5)
    np.testing.assert_allclose(pa.neg_sum, pb.neg_sum, rtol=1e-5)


def test_device_setting_is_checked():
    from constraintlab.errors import ConfigError

    with pytest.raises(ConfigError, match="device"):
        AnalysisConfig(device="tpu")
    with pytest.raises(ConfigError):
        AnalysisConfig(device_precision="fp8")
    assert AnalysisConfig(device="cuda:1").device == "cuda:1"


def test_torch_pass_in_ray_tasks_equals_one_process(monkeypatch):
    """Row blocks as tasks on a local Ray (when installed): the merged statistics equal the
    single-process pass."""
    ray = pytest.importorskip("ray")
    X = _lattice(130, 16, 5)
    w = np.random.default_rng(6).uniform(0.5, 2, 130).astype(np.float32)
    one = torch_pass(X, w, PARAMS, row_block=16, col_block=40, desc=None)
    started = not ray.is_initialized()
    if started:  # workers import this checkout
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
            [str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH", "")]))
        ray.init(address="local", num_cpus=2, include_dashboard=False,
                 logging_level="WARNING", object_store_memory=200 * 1024 ** 2)
    try:
        many = torch_pass(X, w, PARAMS, row_block=16, col_block=40, ray_tasks=3, desc=None)
    finally:
        if started:
            ray.shutdown()
    for f in ("hist", "conf_count", "align_count", "near_count", "conf_mass", "top_key",
              "hi_key", "lo_key", "pos_sum", "neg_sum", "top_idx", "hi_idx", "lo_idx"):
        np.testing.assert_array_equal(getattr(many, f), getattr(one, f), err_msg=f)
    for x, y in zip(many.lo_pairs + many.hi_pairs, one.lo_pairs + one.hi_pairs, strict=True):
        np.testing.assert_array_equal(x, y)
