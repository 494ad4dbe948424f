"""The torch pass over ``X @ X.T`` against the bare tiled GEMM of the same tiles, on one device.

Rows: clustered unit rows with mixed signs (as ``bench_pairs.make_features``), made on the
device (seeded). Timed alternately, ``--reps`` times, the device synchronised before each clock:

- bare GEMM: ``X[I] @ X[J].T`` into one buffer for every tile of the pass (row tiles of
  ``--rows`` against column tiles of 8x as many, every column: ``2 N^2 k`` FLOPs), nothing
  folded;
- the pass: :func:`constraintlab.analysis.torch_pass.run_rows` on the same tiles (pair counts,
  conflict mass, histogram, listed pairs, top-m by ``|cos|``, the response map's signed top-m
  and sums);
- with ``--stage``: ``analyze_pairs`` (host rows in, the whole pairs result out: scaling the
  rows on the host, the copy, the pass, the tables) in exact mode.

Prints seconds, TFLOP/s of the bare GEMM, the ratio pass / GEMM (goal <= 2 at N = 1,000,000,
k = 1,024 on one H200) and the peak device memory.

    python benchmarks/bench_gpu_pass.py --n 1000000 --k 1024 --device cuda --precision tf32
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_rows(n: int, k: int, device: str, seed: int = 0):
    """Clustered unit rows with mixed signs, on the device (float32), and their norms."""
    import torch

    g = torch.Generator(device=device).manual_seed(seed)
    n_c = max(n // 100, 1)
    centres = torch.randn(n_c, k, generator=g, device=device)
    lab = torch.randint(0, n_c, (n,), generator=g, device=device)
    sign = torch.randint(0, 2, (n, 1), generator=g, device=device).float() * 2 - 1
    X = centres[lab] * sign
    X += 0.9 * torch.randn(n, k, generator=g, device=device)
    norms = X.norm(dim=1)
    X /= norms[:, None]
    return X, norms


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    import torch

    from constraintlab.analysis.torch_pass import PassParams, _matmul_precision, run_rows

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--k", type=int, default=1024)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precision", default="tf32", choices=("float32", "tf32", "bfloat16"))
    ap.add_argument("--rows", type=int, default=4096, help="rows per tile (columns: 8x)")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--stage", action="store_true", help="also time analyze_pairs (exact)")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    dev = torch.device(a.device)
    cuda = dev.type == "cuda"
    if cuda:
        print(f"device: {torch.cuda.get_device_name(dev)}, torch {torch.__version__}",
              flush=True)
    t = time.perf_counter()
    X, norms = make_rows(a.n, a.k, a.device)
    sync(a.device)
    print(f"N = {a.n:,}, k = {a.k:,}, {a.precision}, tiles {a.rows} x {8 * a.rows}: rows made "
          f"in {time.perf_counter() - t:.1f} s", flush=True)
    tau = 5 / math.sqrt(a.k) if a.k >= 1024 else 0.3
    params = PassParams(tau=tau, near=0.98, lo_collect=-tau, hi_collect=0.98, top_m=10,
                        hist_bins=200, max_pairs=100_000, partner_m=5)
    R, Q = a.rows, 8 * a.rows
    mm = torch.bfloat16 if a.precision == "bfloat16" else torch.float32
    flops = 2.0 * a.n * a.n * a.k

    def bare() -> None:
        Xm = X.to(mm)
        buf = torch.empty(R * Q, device=dev, dtype=mm)
        with _matmul_precision(dev, a.precision):
            for i0 in range(0, a.n, R):
                i1 = min(a.n, i0 + R)
                for j0 in range(0, a.n, Q):
                    j1 = min(a.n, j0 + Q)
                    out = buf[:(i1 - i0) * (j1 - j0)].view(i1 - i0, j1 - j0)
                    torch.matmul(Xm[i0:i1], Xm[j0:j1].T, out=out)
        sync(a.device)

    def the_pass():
        return run_rows(X, norms, params, device=a.device, precision=a.precision,
                        row_block=R, col_block=Q)

    def timed(fn):
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        sync(a.device)
        t0 = time.perf_counter()
        out = fn()
        sync(a.device)
        peak = torch.cuda.max_memory_allocated() / 1e9 if cuda else None
        return time.perf_counter() - t0, peak, out

    # warm-up on a slice (cuBLAS heuristics, kernels' first launch)
    run_rows(X[:min(a.n, 2 * R)], norms[:min(a.n, 2 * R)], params, device=a.device,
             precision=a.precision, row_block=R, col_block=Q)
    res: dict = {"n": a.n, "k": a.k, "precision": a.precision, "reps": []}
    for rep in range(a.reps):
        g, gpk, _ = timed(bare)
        print(f"  rep {rep + 1}: bare tiled GEMM {g:.2f} s ({flops / g / 1e12:.0f} TFLOP/s, "
              f"peak {gpk} GB)", flush=True)
        p, ppk, part = timed(the_pass)
        print(f"  rep {rep + 1}: torch pass {p:.2f} s = {p / g:.2f}x the bare GEMM (goal <= 2;"
              f" peak {ppk:.1f} GB)" if ppk is not None else
              f"  rep {rep + 1}: torch pass {p:.2f} s = {p / g:.2f}x the bare GEMM", flush=True)
        res["reps"].append({"gemm_s": g, "pass_s": p, "ratio": p / g, "pass_peak_gb": ppk})
    print(f"  conflicting pairs {int(part.conf_count.sum()) // 2:,}, near-parallel "
          f"{int(part.near_count.sum()) // 2:,}, histogram total {int(part.hist.sum()):,} "
          f"(= N(N-1)/2: {int(part.hist.sum()) == a.n * (a.n - 1) // 2})", flush=True)
    if a.stage:
        from constraintlab.analysis.config import AnalysisConfig
        from constraintlab.analysis.pairs import analyze_pairs

        Xh = (X * norms[:, None]).cpu().numpy()
        del X
        cfg = AnalysisConfig(device=a.device, device_precision=a.precision,
                             exact_max_n=max(a.n, 100_000), device_block=R, tau=tau)
        s, _spk, r = timed(lambda: analyze_pairs(Xh, config=cfg))
        g = min(x["gemm_s"] for x in res["reps"])
        print(f"  analyze_pairs (exact, host rows in): {s:.2f} s = {s / g:.2f}x the bare GEMM; "
              f"conflicting pairs {r.summary['conflicting_pairs']:,}", flush=True)
        res["stage_s"] = s
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
