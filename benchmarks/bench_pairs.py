"""All-pairs analysis: the whole pairs stage against the bare GEMM; constraintlab vs
scikit-learn ``cosine_similarity`` + NumPy counting.

First, the physical bound: the pairs stage (``analyze_pairs``: statistics and, in the same pass
over the same Gram blocks, the response map's signed top partners; then
``analyze_response(pairs=...)``) against a bare float32 ``X @ X.T`` over the same blocks
(``gram_blocks``, same block size, same BLAS and numba threads), measured alternately in one
process, wall and CPU time. The bare GEMM is timed two ways, one multi-threaded GEMM per block
and the stage's own lanes of single-threaded GEMMs with nothing folded; the bound is the
faster. Also the two-pass way of before (pairs, then the response map's own
pass). Target: <= 1.5x the bare GEMM at N = 20,000, k = 1,024.

Both compute the same statistics over every pair of N rows: histogram of cosines (200 bins),
per-example conflict counts (cos < -tau) and conflict mass, alignment counts, near-parallel
pairs (cos > 1 - eps), the most negative ``max_pairs`` conflict pairs and the top-m neighbours
by |cos|. Each run happens in a fresh subprocess; peak memory is the high-water mark of the
resident set (polled every 5 ms) above the level right before the call (the input matrix and
imports are not counted).

Then N = 100,000 (the N x N float32 matrix alone would take 40 GB, so scikit-learn cannot run)
against the BLAS bound of this machine: the time a large sgemm needs for the N (N - 1) / 2 * k
multiply-adds of the upper triangle, measured in the same run.

Usage::

    python benchmarks/bench_pairs.py                 # N = 20,000 and N = 100,000, k = 1,024
    python benchmarks/bench_pairs.py --big 40000      # a smaller "big" run (scaled, labelled)
    python benchmarks/bench_pairs.py --no-big
    python benchmarks/bench_pairs.py --stage-only     # only the pairs stage vs the bare GEMM
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TAU = 5 / 32  # AnalysisConfig().tau_for(1024)
EPS = 0.02
TOP_M = 10
BINS = 200
MAX_PAIRS = 100_000


def make_features(n: int, k: int, seed: int = 0) -> np.ndarray:
    """Clustered rows with mixed signs: real conflicts, alignments and some near-parallel rows."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((max(n // 100, 1), k)).astype(np.float32)
    lab = rng.integers(0, len(centers), n)
    sign = rng.choice(np.array([-1.0, 1.0], np.float32), n)[:, None]
    X = centers[lab] * sign
    X += 0.9 * rng.standard_normal((n, k), dtype=np.float32)
    dup = rng.choice(n, n // 200, replace=False)  # a few near copies
    X[dup[1:]] = X[dup[:-1]] + 0.05 * rng.standard_normal((len(dup) - 1, k), dtype=np.float32)
    return X


class PeakRSS:
    """High-water mark of the resident set above its level at start (polled)."""

    def __init__(self, period: float = 0.005) -> None:
        self.period = period
        self.page = os.sysconf("SC_PAGE_SIZE")

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def __enter__(self):
        self.start = self._rss()
        self.peak = self.start
        self._stop = False

        def poll():
            while not self._stop:
                self.peak = max(self.peak, self._rss())
                time.sleep(self.period)

        self._t = threading.Thread(target=poll, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop = True
        self._t.join()
        self.peak = max(self.peak, self._rss())
        self.delta = self.peak - self.start


def run_sklearn(X: np.ndarray) -> dict:
    """cosine_similarity (the full N x N float32 matrix), then NumPy counting on float32 row
    chunks of it (no float64 copies)."""
    from sklearn.metrics.pairwise import cosine_similarity

    n = X.shape[0]
    S = cosine_similarity(X)  # (n, n) float32
    hist = np.zeros(BINS, np.int64)
    conf = np.zeros(n, np.int64)
    mass = np.zeros(n)
    align = np.zeros(n, np.int64)
    near_a, near_b, lo_a, lo_b, lo_v = [], [], [], [], []
    top = np.empty((n, TOP_M), np.int64)
    step = 1000
    cols = np.arange(n)
    tau32, near32 = np.float32(TAU), np.float32(1 - EPS)
    for i0 in range(0, n, step):
        B = S[i0:i0 + step]  # a float32 view: no copy
        rows = np.arange(i0, min(n, i0 + step))
        B[rows - i0, rows] = 0.0  # self pairs out of the counts
        upper = cols[None, :] > rows[:, None]
        b = ((B[upper] + np.float32(1.0)) * np.float32(BINS / 2)).astype(np.int64)
        hist += np.bincount(np.clip(b, 0, BINS - 1), minlength=BINS)
        c = B < -tau32
        conf[rows] = c.sum(1)
        mass[rows] = np.where(c, -B, 0.0).sum(1)
        align[rows] = (B > tau32).sum(1)
        r, cc = np.nonzero(upper & (B > near32))
        near_a.append(rows[r])
        near_b.append(cc)
        r, cc = np.nonzero(upper & c)
        lo_a.append(rows[r])
        lo_b.append(cc)
        lo_v.append(B[r, cc])
        A = np.abs(B)
        A[rows - i0, rows] = -1.0
        top[rows] = np.argpartition(-A, TOP_M, axis=1)[:, :TOP_M]
    lv = np.concatenate(lo_v)
    keep = np.argpartition(lv, min(MAX_PAIRS, len(lv) - 1))[:MAX_PAIRS] if len(lv) else lv
    return {"hist": hist, "conf": conf, "align": align, "near": int(sum(map(len, near_a))),
            "n_conflicts_listed": len(keep), "top": top}


def run_ours(X: np.ndarray) -> dict:
    sys.path.insert(0, str(ROOT))
    from constraintlab.analysis import AnalysisConfig, analyze_pairs

    res = analyze_pairs(X, config=AnalysisConfig(tau=TAU, eps=EPS, top_m=TOP_M,
                                                 hist_bins=BINS, max_pairs=MAX_PAIRS))
    return {"hist": np.array(res.summary["histogram"]["counts"]),
            "conf": res.table["conflict_count"].to_numpy(),
            "align": res.table["alignment_count"].to_numpy(),
            "near": res.summary["near_parallel_pairs"],
            "n_conflicts_listed": len(res.pairs), "top": res.top_idx}


def run_stage(n: int, k: int, reps: int) -> None:
    """The pairs stage vs the bare GEMM over the same blocks, ``reps`` times alternately."""
    sys.path.insert(0, str(ROOT))
    import numba
    from threadpoolctl import threadpool_info

    from constraintlab.analysis import AnalysisConfig, analyze_pairs, analyze_response
    from constraintlab.analysis.blocks import for_each_block, gram_blocks, unit_rows

    X = make_features(n, k)
    warm_up()
    cfg = AnalysisConfig(tau=TAU, eps=EPS, top_m=TOP_M, hist_bins=BINS, max_pairs=MAX_PAIRS)
    B = cfg.block_size
    blas = [(d["internal_api"], d["num_threads"]) for d in threadpool_info()]
    print(f"pairs stage vs bare GEMM, N = {n:,}, k = {k:,}, block {B}, BLAS threads {blas}, "
          f"numba threads {numba.get_num_threads()}, cores {os.cpu_count()}, load average "
          f"{os.getloadavg()[0]:.1f}", flush=True)

    def timed(fn):
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        return time.perf_counter() - w0, time.process_time() - c0, out

    def bare_gemm():
        """One multi-threaded GEMM per block, one block after the other."""
        Xn = unit_rows(X)[0]  # what the stage multiplies (its normalisation is in its time)
        buf = np.empty(B * B, np.float32)
        for i0, i1, j0, j1 in gram_blocks(n, B):
            np.dot(Xn[i0:i1], Xn[j0:j1].T, out=buf[: (i1 - i0) * (j1 - j0)].reshape(
                i1 - i0, j1 - j0))

    def bare_lanes():
        """The stage's own schedule with nothing folded: single-threaded GEMMs in parallel
        lanes (often the faster way to the same blocks)."""
        Xn = unit_rows(X)[0]
        for_each_block(Xn, B, [lambda blk: None], desc="bare GEMM")

    def stage():
        p = analyze_pairs(X, config=cfg)
        return p, analyze_response(X, pairs=p, config=cfg)

    def two_passes():
        p = analyze_pairs(X, config=cfg, partners=False)
        return p, analyze_response(X, config=cfg)

    rows = []
    for rep in range(reps):
        g1 = timed(bare_gemm)
        g2 = timed(bare_lanes)
        g = min(g1, g2, key=lambda x: x[0])
        st = timed(stage)
        two = timed(two_passes) if rep == 0 else None
        rows.append((g, st))
        print(f"  rep {rep + 1}: bare GEMM {g1[0]:6.2f} s (cpu {g1[1]:6.2f} s), in lanes "
              f"{g2[0]:6.2f} s (cpu {g2[1]:6.2f} s) | pairs stage {st[0]:6.2f} s (cpu "
              f"{st[1]:6.2f} s) = {st[0] / g[0]:.2f}x wall, {st[1] / g[1]:.2f}x cpu of the "
              f"faster GEMM" + (f" | two passes (before) {two[0]:6.2f} s = "
                                f"{two[0] / g[0]:.2f}x" if two else ""),
              flush=True)
        if two is not None:
            (p1, r1), (p2, r2) = st[2], two[2]
            same = (np.array_equal(p1.table["conflict_count"], p2.table["conflict_count"])
                    and np.allclose(r1.table["help_effect"], r2.table["help_effect"],
                                    rtol=1e-5, atol=1e-6)
                    and np.array_equal(r1.helper_idx, r2.helper_idx))
            print(f"  one pass == two passes (counts, help sums, helper partners): {same}")
    g = min(r[0][0] for r in rows)
    st = min(r[1][0] for r in rows)
    print(f"  best of {reps}: bare GEMM (the faster schedule) {g:.2f} s, pairs stage {st:.2f} s "
          f"-> {st / g:.2f}x (target <= 1.5x)")


def warm_up() -> None:
    """Load (or compile) the numba kernels outside the measurement."""
    sys.path.insert(0, str(ROOT))
    from constraintlab.analysis import AnalysisConfig, analyze_pairs

    analyze_pairs(make_features(300, 16, 1), config=AnalysisConfig(block_size=128))


def worker(which: str, n: int, k: int, out: str) -> None:
    X = make_features(n, k)
    if which == "ours":
        warm_up()
    fn = run_ours if which == "ours" else run_sklearn
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        r = fn(X)
        dt = time.perf_counter() - t0
    np.savez(out, hist=r["hist"], conf=r["conf"], align=r["align"], top=r["top"])
    print(json.dumps({"time_s": dt, "peak_bytes": mem.delta, "near": r["near"],
                      "listed": r["n_conflicts_listed"]}))


def spawn(which: str, n: int, k: int, tmp: Path) -> tuple[dict, dict]:
    out = tmp / f"{which}_{n}.npz"
    p = subprocess.run([sys.executable, __file__, "--worker", which, "--n", str(n), "--k",
                        str(k), "--out", str(out)], capture_output=True, text=True, check=True)
    return json.loads(p.stdout.strip().splitlines()[-1]), dict(np.load(out))


def sgemm_gflops(seconds: float = 8.0) -> float:
    """Sustained sgemm rate of this machine (4096 x 1024 @ 1024 x 4096 blocks)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4096, 1024), dtype=np.float32)
    b = rng.standard_normal((4096, 1024), dtype=np.float32)
    c = np.empty((4096, 4096), np.float32)
    np.dot(a, b.T, out=c)
    t0, reps = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        np.dot(a, b.T, out=c)
        reps += 1
    dt = time.perf_counter() - t0
    return 2 * 4096 * 4096 * 1024 * reps / dt / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--k", type=int, default=1024)
    ap.add_argument("--big", type=int, default=100_000)
    ap.add_argument("--no-big", action="store_true")
    ap.add_argument("--stage-only", action="store_true",
                    help="only the pairs stage against the bare GEMM")
    ap.add_argument("--reps", type=int, default=2, help="repetitions of the stage comparison")
    ap.add_argument("--worker", choices=["ours", "sklearn"])
    ap.add_argument("--out")
    a = ap.parse_args()
    if a.worker:
        worker(a.worker, a.n, a.k, a.out)
        return
    # the stage comparison runs in a fresh process, like the others
    subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                    "import bench_pairs as b; b.run_stage(*map(int, sys.argv[2:]))",
                    str(Path(__file__).parent), str(a.n), str(a.k), str(a.reps)], check=True)
    if a.stage_only:
        return
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        print(f"all pairs, N = {a.n:,}, k = {a.k:,} (cores: {os.cpu_count()}; "
              f"load average {os.getloadavg()[0]:.1f})")
        sk, sk_r = spawn("sklearn", a.n, a.k, tmp)
        ours, ours_r = spawn("ours", a.n, a.k, tmp)
        agree = {
            "histogram_max_abs_diff": int(np.abs(sk_r["hist"] - ours_r["hist"]).max()),
            "conflict_count_max_abs_diff": int(np.abs(sk_r["conf"] - ours_r["conf"]).max()),
            "alignment_count_max_abs_diff": int(np.abs(sk_r["align"] - ours_r["align"]).max()),
            "near_pairs": (sk["near"], ours["near"]),
            "top_m_set_agreement": float(np.mean([
                len(set(x) & set(y)) / TOP_M for x, y in zip(sk_r["top"], ours_r["top"],
                                                              strict=True)])),
        }
        print(f"  scikit-learn + NumPy : {sk['time_s']:7.2f} s   peak "
              f"{sk['peak_bytes'] / 2**30:6.2f} GiB")
        print(f"  constraintlab        : {ours['time_s']:7.2f} s   peak "
              f"{ours['peak_bytes'] / 2**30:6.2f} GiB")
        print(f"  ratio time {ours['time_s'] / sk['time_s']:.2f}x (target <= 0.5x), memory "
              f"{ours['peak_bytes'] / sk['peak_bytes']:.3f}x (target <= 0.2x)")
        print(f"  agreement: {json.dumps(agree)}")
        if a.no_big:
            return
        gf = sgemm_gflops()
        N = a.big
        flops = N * (N - 1) / 2 * a.k * 2
        bound = flops / (gf * 1e9)
        print(f"sgemm: {gf:.1f} GFLOP/s sustained -> BLAS bound for N = {N:,}: {bound:.1f} s")
        big, _ = spawn("ours", N, a.k, tmp)
        label = "" if N == 100_000 else " (smaller N: scaled to 100k by N^2 below)"
        print(f"  constraintlab N = {N:,}: {big['time_s']:.1f} s, peak "
              f"{big['peak_bytes'] / 2**30:.2f} GiB, {bound / big['time_s']:.0%} of the BLAS "
              f"bound{label}")
        if N != 100_000:
            scale = (100_000 / N) ** 2
            print(f"  scaled to N = 100,000 (x{scale:.2f} time; memory is O(N k + N m + B^2)): "
                  f"~{big['time_s'] * scale:.0f} s (target < 150 s)")
        else:
            print("  targets: < 150 s and < 2 GiB")


if __name__ == "__main__":
    main()
