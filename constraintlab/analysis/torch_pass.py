"""The pass over ``X @ X.T`` on a torch device (a GPU): tiles made and folded there.

The numba path (:func:`constraintlab.analysis.blocks.for_each_block` with
:class:`constraintlab.analysis.pairs.PairFold` and
:class:`constraintlab.analysis.response.PartnerFold`) walks the upper triangle of blocks and
credits each pair to both ends. On a GPU the reductions are cheap next to the GEMM, so this
path walks *row tiles against every column* (every row, or the reference rows in sampled mode):
each row tile owns its rows' statistics outright, no column pass and no ordering between
tiles, so row ranges can run anywhere (another GPU, a Ray task: :func:`run_rows` /
:func:`merge_parts`) and be merged by concatenation. It costs twice the GEMM FLOPs of the
triangle, as does the bare tiled GEMM it is compared with (``benchmarks/gpu_analysis.sh``).

Per tile ``C = X[I] @ Y[J].T`` (float32 storage; the product in ``precision``: "float32"
IEEE, "tf32" tensor cores with 10-bit mantissa inputs, or "bfloat16" inputs with float32
output) the tile is folded with plain torch ops:

- counts ``cos < -tau``, ``cos > tau``, ``cos > near`` and the conflict mass per row;
  thresholds are rounded to float32 so that the comparisons equal the kernels' float64 ones;
- top-m partners by ``|cos|`` (``torch.topk`` per tile, merged with the running top-m);
- the response map's signed top-m partners of ``v = (cos * w_i) * w_j`` (float32, as the
  kernel) and the sums of its positive / negative parts;
- the histogram (exact mode, pairs ``j > i`` only) by ``torch.bincount`` of the bins, and the
  listed pairs below / above the collect thresholds (``torch.nonzero``, exact mode ``j > i``).

Equality with the numba kernels (tested on CPU, ``tests/test_torch_pass.py``): given the same
cosines the counts, histograms (binned in float64 on CPU; float32 on a GPU, where a cosine
within float32 rounding of a bin edge may fall in the next bin), listed pairs and kept top-m
keys are equal, and the partners too except on equal keys (either may be kept); float sums
(conflict mass, help/hurt sums) are summed in float64 in another order, and the kernel's
column pass forms ``(cos * w_j) * w_i`` (1 ulp from ``(cos * w_i) * w_j``): signed partner
keys equal to ``rtol 3e-7``, sums to ``rtol 1e-7``. The GEMM's own rounding differs from
BLAS's (TF32: about 1e-4 on a cosine at k = 1,024), so pairs that close to a threshold may
count differently on a GPU.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from constraintlab.progress import progress

logger = logging.getLogger(__name__)

__all__ = ["PRECISIONS", "PassParams", "PassPart", "merge_parts", "run_rows", "torch_pass"]

#: GEMM precisions of the torch path
PRECISIONS = ("float32", "tf32", "bfloat16")


def _f32_below(t: float) -> float:
    """The float32 ``t32`` with ``v < t  <=>  v < t32`` for every float32 v (t float64)."""
    t32 = np.float32(t)
    if float(t32) < t:
        t32 = np.nextafter(t32, np.float32(np.inf))
    return float(t32)


def _f32_above(t: float) -> float:
    """The float32 ``t32`` with ``v > t  <=>  v > t32`` for every float32 v."""
    t32 = np.float32(t)
    if float(t32) > t:
        t32 = np.nextafter(t32, np.float32(-np.inf))
    return float(t32)


@dataclass(frozen=True)
class PassParams:
    """What the folds of one pass compute (the same settings as the numba folds).

    Attributes
    ----------
    tau, near : float
        Conflict / alignment threshold and near-parallel threshold.
    lo_collect, hi_collect : float
        Pairs with ``cos < lo_collect`` / ``cos > hi_collect`` are listed (at most
        ``max_pairs`` each, the most extreme); ``lo_collect <= -1``: none.
    top_m, hist_bins, max_pairs : int
    partner_m : int
        Signed response partners per row and sign; 0: none.
    do_hist : bool
        Count the histogram (exact mode).
    """

    tau: float
    near: float
    lo_collect: float
    hi_collect: float
    top_m: int
    hist_bins: int
    max_pairs: int
    partner_m: int = 0
    do_hist: bool = True


@dataclass
class PassPart:
    """The statistics of a range of rows ``[r0, r1)`` (every array indexed by row - r0).

    Attributes
    ----------
    r0, r1 : int
    hist : (hist_bins,) int64
        Pairs ``j > i`` with ``i`` in the range (exact mode; zeros otherwise).
    conf_count, align_count, near_count : (n,) int64
    conf_mass : (n,) float64
    top_key, top_val : (n, top_m) float32
    top_idx : (n, top_m) int64
        Best first; empty slots key -1, partner -1, value 0.
    lo_pairs, hi_pairs : tuple of (a, b, v) arrays
        Listed pairs of the range's rows (exact mode: ``a < b``), unpruned beyond
        ``2 * max_pairs``.
    hi_key, hi_val, lo_key, lo_val : (n, partner_m) float32
    hi_idx, lo_idx : (n, partner_m) int64
        Signed partners, best first (keys ``v`` / ``-v``; empty: key -inf, partner -1).
    pos_sum, neg_sum : (n,) float64
    """

    r0: int
    r1: int
    hist: np.ndarray
    conf_count: np.ndarray
    align_count: np.ndarray
    near_count: np.ndarray
    conf_mass: np.ndarray
    top_key: np.ndarray
    top_idx: np.ndarray
    top_val: np.ndarray
    lo_pairs: tuple[np.ndarray, np.ndarray, np.ndarray]
    hi_pairs: tuple[np.ndarray, np.ndarray, np.ndarray]
    hi_key: np.ndarray
    hi_idx: np.ndarray
    hi_val: np.ndarray
    lo_key: np.ndarray
    lo_idx: np.ndarray
    lo_val: np.ndarray
    pos_sum: np.ndarray
    neg_sum: np.ndarray


@contextlib.contextmanager
def _matmul_precision(device, precision: str) -> Iterator[None]:
    """TF32 on for "tf32" on CUDA, off otherwise (restored after)."""
    import torch

    if device.type != "cuda":
        yield
        return
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high" if precision == "tf32" else "highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


def _merge_topk(key, idx, val, k2, i2, v2, m: int):
    """Keep the m largest keys of the running top-m and a tile's candidates (torch, rows)."""
    import torch

    K = torch.cat([key, k2], 1)
    top, pos = torch.topk(K, min(m, K.shape[1]), dim=1)
    return top, torch.gather(torch.cat([idx, i2], 1), 1, pos), \
        torch.gather(torch.cat([val, v2], 1), 1, pos)


#: columns per group of the two-level top-k
GROUP = 64


def _tile_stats(C, wr, wc, ntau: float, tau: float, near: float, G: int):
    """Per-row statistics of a tile (one read of C when compiled).

    Parameters
    ----------
    C : (R, Q) float32
        Cosines, Q a multiple of G; the row's own column and padding columns hold 0.
    wr, wc : (R,), (Q,) float32
        Row / column weights (padding: 0).
    ntau, tau, near : float
        Float32 thresholds (see :func:`_f32_below`).
    G : int
        Columns per group.

    Returns
    -------
    conf, align, near : (R,) int64
    mass, pos, neg : (R,) float64
        Sum of the conflicting cosines (negative); sums of the positive / negative
        ``(C * wr) * wc``.
    cmin, cmax, vmin, vmax : (R, Q // G) float32
        Group minima and maxima of C and of ``(C * wr) * wc``.
    """
    import torch

    cm = C < ntau
    conf = cm.sum(1)
    mass = torch.where(cm, C, 0.0).sum(1, dtype=torch.float64)
    align = (C > tau).sum(1)
    nearc = (C > near).sum(1)
    V = (C * wr[:, None]) * wc[None, :]
    pos = torch.where(V > 0, V, 0.0).sum(1, dtype=torch.float64)
    neg = torch.where(V < 0, V, 0.0).sum(1, dtype=torch.float64)
    R, Q = C.shape
    Cg = C.view(R, Q // G, G)
    Vg = V.view(R, Q // G, G)
    return (conf, mass, align, nearc, pos, neg, Cg.amin(-1), Cg.amax(-1), Vg.amin(-1),
            Vg.amax(-1))


def _tile_bins(C, half: float, top: int):
    """Histogram bins of a tile's cosines (int32; float64 math when C is float64)."""
    import torch

    return ((C + 1.0) * half).floor().clamp(0, top).to(torch.int32)


_COMPILED: dict = {}


def _compiled():
    """:func:`_tile_stats` and :func:`_tile_bins` through ``torch.compile`` (once a
    process; dynamic shapes: the edge tiles need no recompilation)."""
    import torch

    if "fns" not in _COMPILED:
        _COMPILED["fns"] = (torch.compile(_tile_stats, dynamic=True),
                            torch.compile(_tile_bins, dynamic=True))
    return _COMPILED["fns"]


def _group_cols(gkey, n_groups: int):
    """Column positions (R, n_groups * GROUP) of each row's ``n_groups`` groups with the
    largest key (every group when there are not more)."""
    import torch

    R, ng = gkey.shape
    off = torch.arange(GROUP, device=gkey.device)
    if n_groups >= ng:
        return (torch.arange(ng, device=gkey.device)[:, None] * GROUP + off).reshape(
            1, -1).expand(R, -1).contiguous()
    _, g = torch.topk(gkey, n_groups, dim=1)
    return (g[..., None] * GROUP + off).reshape(R, n_groups * GROUP)


class _Collector:
    """Listed pairs of one run (the most extreme ``cap``; threshold tightens as it fills)."""

    def __init__(self, cap: int, low: bool, thr: float) -> None:
        self.cap, self.low, self.thr = cap, low, thr
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.n = 0

    def add(self, a: np.ndarray, b: np.ndarray, v: np.ndarray) -> None:
        if len(a):
            self.parts.append((a, b, v))
            self.n += len(a)
        if self.n > 2 * self.cap:
            a, b, v = self.arrays()
            key = v if self.low else -v
            keep = np.argpartition(key, self.cap - 1)[: self.cap]
            a, b, v = a[keep], b[keep], v[keep]
            self.thr = float(v.max()) if self.low else float(v.min())
            self.parts, self.n = [(a, b, v)], len(a)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self.parts:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
        return tuple(np.concatenate(x) for x in zip(*self.parts, strict=True))  # type: ignore


def run_rows(
    X: np.ndarray,
    weights: np.ndarray,
    params: PassParams,
    *,
    r0: int = 0,
    r1: int | None = None,
    reference: np.ndarray | None = None,
    device: str = "cpu",
    precision: str = "float32",
    row_block: int = 4096,
    col_block: int = 32768,
    hist_float64: bool | None = None,
    compile: bool | None = None,
    desc: str | None = None,
) -> PassPart:
    """Fold rows ``[r0, r1)`` of ``X`` against every column (or the reference rows) on a torch
    device.

    Parameters
    ----------
    X : (N, k) float32 array or torch tensor
        Unit rows (zero rows stay zero).
    weights : (N,) float array or tensor
        Row norms (the response map's dot products are ``(cos * w_i) * w_j``).
    params : PassParams
    r0, r1 : int
        Row range (default every row).
    reference : (R,) int64, optional
        Sorted reference rows (sampled mode): columns are these only; a row against itself is
        skipped. Default: every row (exact mode).
    device : str
        Torch device ("cpu", "cuda", "cuda:1").
    precision : str
        One of :data:`PRECISIONS`.
    row_block, col_block : int
        Tile shape (memory: a few float32 tiles of ``row_block * col_block``).
    hist_float64 : bool, optional
        Bin the histogram in float64 (as the kernels); default on CPU only.
    compile : bool, optional
        Fuse each tile's row statistics into one read with ``torch.compile`` (default: on
        CUDA); a compilation error is logged and the pass goes on with the same ops eagerly.
    desc : str, optional
        Progress bar label (None: no bar).

    Returns
    -------
    PassPart
    """
    import torch

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    dev = torch.device(device)
    N = X.shape[0]
    r1 = N if r1 is None else r1
    p = params
    n = r1 - r0
    hist_f64 = dev.type == "cpu" if hist_float64 is None else hist_float64
    mm_dtype = torch.bfloat16 if precision == "bfloat16" else torch.float32
    if torch.is_tensor(X):
        Xt = X.to(dev, torch.float32)
    else:
        Xt = torch.as_tensor(np.ascontiguousarray(X, dtype=np.float32)).to(dev)
    if torch.is_tensor(weights):
        W = weights.to(dev, torch.float32)
    else:
        W = torch.as_tensor(np.asarray(weights, dtype=np.float32)).to(dev)
    if reference is None:
        col_ids = torch.arange(N, device=dev)
        Y = Xt
    else:
        col_ids = torch.as_tensor(np.asarray(reference, dtype=np.int64)).to(dev)
        Y = Xt[col_ids]
    Q = Y.shape[0]
    # columns padded with zero rows to whole groups of GROUP (ids -1, weights 0)
    pad = -Q % GROUP
    Xm = Xt.to(mm_dtype)
    Ym = torch.cat([Y, Y.new_zeros(pad, Y.shape[1])]).to(mm_dtype) if pad else Y.to(mm_dtype)
    Wcp = torch.cat([W[col_ids], W.new_zeros(pad)])
    cidp = torch.cat([col_ids, col_ids.new_full((pad,), -1)])
    Qp = Q + pad
    col_block = -(-col_block // GROUP) * GROUP
    stats_fn, bins_fn = _compiled() if (dev.type == "cuda" if compile is None else compile) \
        else (_tile_stats, _tile_bins)
    ntau, tau, near = _f32_below(-p.tau), _f32_above(p.tau), _f32_above(p.near)
    exact = reference is None
    lo = _Collector(p.max_pairs, True, p.lo_collect)
    hi = _Collector(p.max_pairs, False, p.hi_collect)
    i64 = torch.int64
    hist = torch.zeros(p.hist_bins, dtype=i64, device=dev)
    conf_count = torch.zeros(n, dtype=i64, device=dev)
    align_count = torch.zeros(n, dtype=i64, device=dev)
    near_count = torch.zeros(n, dtype=i64, device=dev)
    conf_mass = torch.zeros(n, dtype=torch.float64, device=dev)
    m, pm = p.top_m, p.partner_m
    top_key = torch.full((n, m), -1.0, device=dev)
    top_idx = torch.full((n, m), -1, dtype=i64, device=dev)
    top_val = torch.zeros((n, m), device=dev)
    ninf = float("-inf")
    hk = torch.full((n, pm), ninf, device=dev)
    hi_ = torch.full((n, pm), -1, dtype=i64, device=dev)
    hv = torch.zeros((n, pm), device=dev)
    lk, li, lv = hk.clone(), hi_.clone(), hv.clone()
    pos_sum = torch.zeros(n, dtype=torch.float64, device=dev)
    neg_sum = torch.zeros(n, dtype=torch.float64, device=dev)
    half, topb = 0.5 * p.hist_bins, p.hist_bins - 1
    tiles = [(a, min(r1, a + row_block), c, min(Qp, c + col_block))
             for a in range(r0, r1, row_block) for c in range(0, Qp, col_block)]
    bar = progress(total=len(tiles), desc=desc, unit="tile") if desc else contextlib.nullcontext()
    with _matmul_precision(dev, precision), torch.no_grad(), bar as pbar:
        for a0, a1, c0, c1 in tiles:
            s = slice(a0 - r0, a1 - r0)
            rid = torch.arange(a0, a1, device=dev)
            C = (Xm[a0:a1] @ Ym[c0:c1].T).float()
            qv = max(0, min(c1, Q) - c0)  # real columns (the rest pads to whole groups)
            cid = cidp[c0:c0 + qv]
            # the row's own column (exact: the diagonal, known here; sampled: a reference row)
            if exact:
                d0, d1 = max(a0, c0), min(a1, c0 + qv)
                sr = torch.arange(d0 - a0, max(d1, d0) - a0, device=dev)
                sc = sr + (a0 - c0)
            else:
                k = torch.searchsorted(cid, rid).clamp_(max=max(qv - 1, 0))
                own = cid[k] == rid
                sr, sc = torch.nonzero(own).flatten(), k[own]
            C[sr, sc] = 0.0  # counts nothing, adds nothing (every threshold is away from 0)
            wr = W[a0:a1]
            st = None
            if stats_fn is not _tile_stats:
                try:
                    st = stats_fn(C, wr, Wcp[c0:c1], ntau, tau, near, GROUP)
                except Exception as exc:
                    logger.warning("torch.compile failed (%s); the pass continues eagerly",
                                   str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
                    stats_fn, bins_fn = _tile_stats, _tile_bins
            if st is None:
                st = _tile_stats(C, wr, Wcp[c0:c1], ntau, tau, near, GROUP)
            cc, cmass, ac, nc, ps, ns, cmin, cmax, vmin, vmax = st
            conf_count[s] += cc
            conf_mass[s] -= cmass
            align_count[s] += ac
            near_count[s] += nc
            pos_sum[s] += ps
            neg_sum[s] += ns
            if exact and p.do_hist and c0 + qv > a0 + 1:
                Cv = C[:, :qv]
                if hist_f64:
                    b = _tile_bins(Cv.double(), half, topb)
                else:
                    try:
                        b = bins_fn(Cv, half, topb)
                    except Exception:
                        bins_fn = _tile_bins
                        b = _tile_bins(Cv, half, topb)
                if c0 < a1:  # the tile straddles the diagonal: pairs j > i only
                    b = b[cid[None, :] > rid[:, None]]
                hist += torch.bincount(b.flatten().long(), minlength=p.hist_bins)
                del b, Cv
            for col, low in ((lo, True), (hi, False)):
                if low and col.thr <= -1.0:
                    continue
                t = _f32_below(col.thr) if low else _f32_above(col.thr)
                # only the rows whose smallest (largest) cosine passes (one sync per tile)
                rows = torch.nonzero(cmin.amin(1) < t if low else cmax.amax(1) > t).flatten()
                if not rows.numel():
                    continue
                sub = C[rows, :qv]
                r, c = torch.nonzero(sub < t if low else sub > t, as_tuple=True)
                if r.numel():
                    ra, cb = rid[rows[r]], cid[c]
                    keep = (cb > ra) if exact else (ra != cb)
                    col.add(ra[keep].cpu().numpy(), cb[keep].cpu().numpy(),
                            sub[r[keep], c[keep]].cpu().numpy())
                del sub
            # two-level top-k: the best m lie in the m + 2 groups of GROUP columns with the
            # largest group maximum (+1 for the row itself, +1 for padding columns)
            gi = _group_cols(torch.maximum(cmax, -cmin), m + 2)
            cand = torch.gather(C, 1, gi)
            gcid = cidp[c0 + gi]
            bad = (gcid == rid[:, None]) | (gcid < 0)
            key = cand.abs().masked_fill_(bad, -1.0)
            tk, tp = torch.topk(key, min(m, key.shape[1]), dim=1)
            top_key[s], top_idx[s], top_val[s] = _merge_topk(
                top_key[s], top_idx[s], top_val[s], tk, torch.gather(gcid, 1, tp),
                torch.gather(cand, 1, tp), m)
            if pm:
                for sign, g, (key_, idx_, val_) in ((1.0, vmax, (hk, hi_, hv)),
                                                    (-1.0, -vmin, (lk, li, lv))):
                    gi = _group_cols(g, pm + 2)
                    gcid = cidp[c0 + gi]
                    v = (torch.gather(C, 1, gi) * wr[:, None]) * Wcp[c0 + gi]
                    bad = (gcid == rid[:, None]) | (gcid < 0)
                    key = (v * sign).masked_fill_(bad, ninf)
                    tk, tp = torch.topk(key, min(pm, key.shape[1]), dim=1)
                    key_[s], idx_[s], val_[s] = _merge_topk(
                        key_[s], idx_[s], val_[s], tk, torch.gather(gcid, 1, tp),
                        torch.gather(v, 1, tp), pm)
            del C, cand, key, gi, gcid, bad, st
            if desc:
                pbar.update(1)
    # rows that saw fewer partners than slots: the -1 / -inf keys are the empty slots
    top_idx[top_key < 0] = -1
    top_val[top_key < 0] = 0.0
    for key, idx, val in ((hk, hi_, hv), (lk, li, lv)):
        empty = torch.isinf(key) & (key < 0)
        idx[empty] = -1
        val[empty] = 0.0

    def np_(t):
        return t.cpu().numpy()

    return PassPart(r0, r1, np_(hist), np_(conf_count), np_(align_count), np_(near_count),
                    np_(conf_mass), np_(top_key), np_(top_idx), np_(top_val), lo.arrays(),
                    hi.arrays(), np_(hk), np_(hi_), np_(hv), np_(lk), np_(li), np_(lv),
                    np_(pos_sum), np_(neg_sum))


def merge_parts(parts: Sequence[PassPart]) -> PassPart:
    """One :class:`PassPart` from parts covering consecutive row ranges (in row order;
    integer histograms summed; the listed pairs concatenated in row order)."""
    parts = sorted(parts, key=lambda q: q.r0)
    for a, b in itertools.pairwise(parts):
        if a.r1 != b.r0:
            raise ValueError(f"row ranges not consecutive: [{a.r0}, {a.r1}) then [{b.r0}, ...)")
    cat = np.concatenate

    def pairs(name):
        return tuple(cat([getattr(q, name)[i] for q in parts]) for i in range(3))

    fields = ("conf_count", "align_count", "near_count", "conf_mass", "top_key", "top_idx",
              "top_val", "hi_key", "hi_idx", "hi_val", "lo_key", "lo_idx", "lo_val", "pos_sum",
              "neg_sum")
    return PassPart(parts[0].r0, parts[-1].r1, np.sum([q.hist for q in parts], 0),
                    *[cat([getattr(q, f) for q in parts]) for f in fields[:7]],
                    pairs("lo_pairs"), pairs("hi_pairs"),
                    *[cat([getattr(q, f) for q in parts]) for f in fields[7:]])


def torch_pass(X: np.ndarray, weights: np.ndarray, params: PassParams, *,
               reference: np.ndarray | None = None, device: str = "cpu",
               precision: str = "float32", row_block: int = 4096, col_block: int = 32768,
               ray_tasks: int = 0, desc: str | None = "all pairs (torch)") -> PassPart:
    """Every row of ``X`` through :func:`run_rows`: in this process, or as ``ray_tasks`` Ray
    tasks of consecutive row ranges (each a whole number of row tiles) merged by
    :func:`merge_parts` (the same results: every row's statistics come from one task).

    Parameters
    ----------
    X : (N, k) float32
    weights : (N,) float
    params : PassParams
    reference : (R,) int64, optional
    device, precision, row_block, col_block
        As :func:`run_rows`.
    ray_tasks : int
        0: in this process; else the number of Ray tasks (Ray must be initialised).
    desc : str, optional

    Returns
    -------
    PassPart
    """
    N = X.shape[0]
    kw = {"reference": reference, "device": device, "precision": precision,
          "row_block": row_block, "col_block": col_block}
    if not ray_tasks:
        return run_rows(X, weights, params, desc=desc, **kw)
    import ray

    tiles = -(-N // row_block)
    per = -(-tiles // ray_tasks)
    bounds = [(t * row_block, min(N, (t + per) * row_block)) for t in range(0, tiles, per)]
    remote = ray.remote(run_rows)
    xr, wr = ray.put(np.ascontiguousarray(X, dtype=np.float32)), ray.put(np.asarray(weights))
    futures = [remote.remote(xr, wr, params, r0=a, r1=b, **kw) for a, b in bounds]
    return merge_parts(ray.get(futures))
