"""The whole analysis stage at growing N: seconds and peak memory per analyzer, and how each
grows.

Builds seeded synthetic inputs with the structure real stores have (:func:`synthetic_inputs`):
topic clusters of related rows (shared direction in the features, shared vocabulary in the
text, shared input factor), exact duplicates (same text, feature row plus 1e-4 noise),
near-duplicates (one word changed, feature noise 0.05), a few contradicting pairs (same prompt,
another answer, opposite feature row and output factor), per-token NLL / rank profiles,
``grad_norm``, input / output factors; then runs every analyzer exactly as
:func:`constraintlab.analysis.analyze_system` does, timing each one and sampling the process's
resident memory (and CUDA's peak allocation on a GPU) while it runs.

Prints one row per analyzer and N (seconds, peak RSS increase over the stage's start, CUDA
peak), the whole stage, the pairs pass alone, and the fitted growth exponent ``b`` of
``seconds ~ N^b`` over the N's (least squares in log-log; analyzers under 0.05 s at the
largest N are marked "small"). Goal (issue 26): every analyzer but the pairs pass ``b <= 1.2``.

    python benchmarks/bench_analysis_scale.py [--n 10000 30000] [--k 1024] [--device cpu]
        [--json out.json] [--exact-max-n N] [--skip name ...] [--warmup 600]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from constraintlab.analysis.config import AnalysisConfig  # noqa: E402
from constraintlab.analysis.registry import analyzers  # noqa: E402
from constraintlab.analysis.result import AnalysisResults  # noqa: E402
from constraintlab.analysis.system import ConstraintSystem  # noqa: E402

WORDS = [f"{a}{b}" for a in ("ka", "lo", "mi", "nu", "pe", "ra", "si", "to", "vu", "ze")
         for b in ("ban", "cor", "dil", "fen", "gat", "hum", "jip", "kol", "mar", "nox",
                   "pul", "quen", "rit", "sab", "tov")]


def synthetic_inputs(n: int, k: int = 1024, seed: int = 0, d_factor: int = 64) -> dict:
    """Seeded inputs of :func:`constraintlab.analysis.analyze_constraints` with realistic
    structure.

    Parameters
    ----------
    n : int
        Examples.
    k : int
        Feature dimension.
    seed : int
    d_factor : int
        Width of the input / output factors.

    Returns
    -------
    dict
        ``features`` (n, k) float32, ``examples`` (ExampleSet's tuple), ``input_factors``,
        ``output_factors`` (n, d_factor) float32, ``tokens`` (TokenProfiles), ``grad_norm``
        (n,), ``vocab_size``, ``n_params``, and ``planted``: the positions of the duplicates,
        near-duplicates and contradicting pairs.
    """
    from constraintlab.encode.store import TokenProfiles
    from constraintlab.io.example import Example, Message

    rng = np.random.default_rng(seed)
    n_topics = max(4, n // 250)
    topic = rng.integers(0, n_topics, n)
    centres = rng.standard_normal((n_topics, k)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    strength = rng.uniform(0.2, 0.8, n).astype(np.float32)[:, None]
    X = rng.standard_normal((n, k), dtype=np.float32)
    X *= 1 / math.sqrt(k)
    X += strength * centres[topic]
    fin = rng.standard_normal((n_topics, d_factor)).astype(np.float32)[topic]
    fin += 0.3 * rng.standard_normal((n, d_factor), dtype=np.float32)
    fout = rng.standard_normal((n, d_factor), dtype=np.float32)
    vocab = np.array(WORDS)
    topic_words = rng.integers(0, len(WORDS), (n_topics, 12))
    pw = vocab[topic_words[topic[:, None], rng.integers(0, 12, (n, 8))]]  # (n, 8) topic words
    aw = vocab[rng.integers(0, len(WORDS), (n, 6))]
    qn, pn, an = rng.integers(0, 1000, n), rng.integers(0, 1000, n), rng.integers(0, 100, n)
    prompts = [f"question {i % 997}: {' '.join(w)} number {q}?"
               for i, w, q in zip(range(n), pw.tolist(), qn.tolist(), strict=True)]
    answers = [f"{' '.join(w)}. The answer is {x}." for w, x in zip(aw.tolist(), an.tolist(),
                                                                   strict=True)]
    del pn
    # planted structure: 2 % exact duplicates, 3 % near-duplicates, 0.2 % contradicting pairs
    pos = rng.permutation(n)
    n_dup, n_near, n_con = n // 50, 3 * n // 100, max(2, n // 500)
    dup_pairs = pos[:2 * n_dup].reshape(-1, 2)
    near_pairs = pos[2 * n_dup:2 * (n_dup + n_near)].reshape(-1, 2)
    con_pairs = pos[2 * (n_dup + n_near):2 * (n_dup + n_near + n_con)].reshape(-1, 2)
    scale = np.linalg.norm(X, axis=1, keepdims=True)

    def noise(size: float, rows: np.ndarray) -> np.ndarray:
        g = rng.standard_normal((len(rows), k), dtype=np.float32)
        return size / math.sqrt(k) * scale[rows] * g

    a, b = dup_pairs.T
    X[b] = X[a] + noise(1e-4, a)
    fin[b], fout[b] = fin[a], fout[a]
    a, b = near_pairs.T
    X[b] = X[a] + noise(0.05, a)
    fin[b], fout[b] = fin[a], fout[a] + 0.05 * rng.standard_normal((len(a), d_factor))
    a, b = con_pairs.T
    X[b] = -X[a] + noise(0.02, a)
    fin[b], fout[b] = fin[a], -fout[a]
    swap = vocab[rng.integers(0, len(WORDS), len(near_pairs))].tolist()
    for a, b in dup_pairs.tolist():
        prompts[b], answers[b] = prompts[a], answers[a]
    for (a, b), w in zip(near_pairs.tolist(), swap, strict=True):
        words = prompts[a].split()
        words[2] = w
        prompts[b], answers[b] = " ".join(words), answers[a]
    for a, b in con_pairs.tolist():
        prompts[b] = prompts[a]
        answers[b] = answers[a].rsplit(" ", 1)[0] + f" {100 + (a % 100)}."
    # Example objects made directly (what read_examples would make of prompt/completion
    # records; its per-record checks would take minutes at N = 1,000,000)
    examples = tuple(
        Example(i, i + 1, "<records>", "prompt_completion",
                (Message("user", p), Message("assistant", " " + r)), (1,), False,
                {"prompt": p, "completion": " " + r})
        for i, (p, r) in enumerate(zip(prompts, answers, strict=True)))
    # token profiles: one per answer word
    lens = np.array([len(a.split()) + 1 for a in answers])
    offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    T = int(offsets[-1])
    nll = rng.gamma(1.0, 1.0, T).astype(np.float32)
    rank = np.minimum(rng.geometric(0.4, T) - 1, 50_000).astype(np.int32)
    ids = rng.integers(0, 32_000, T).astype(np.int32)
    lines = [json.dumps([*a.split(), "<eos>"]) for a in answers]
    tokens = TokenProfiles(offsets, nll, rank, ids, lines)
    grad_norm = np.linalg.norm(X, axis=1).astype(np.float64) * 50.0
    return {"features": X, "examples": examples, "input_factors": fin,
            "output_factors": fout, "tokens": tokens, "grad_norm": grad_norm,
            "vocab_size": 32_000, "n_params": 1_000_000,
            "planted": {"duplicates": dup_pairs, "near_duplicates": near_pairs,
                        "contradictions": con_pairs}}


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


class MemorySampler:
    """The process's resident memory, sampled every ``every`` seconds in a thread; ``peak()``
    since the last ``reset()``."""

    def __init__(self, every: float = 0.02) -> None:
        self.every, self._peak, self._stop = every, _rss(), threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self._peak = max(self._peak, _rss())

    def reset(self) -> None:
        self._peak = _rss()

    def peak(self) -> int:
        return max(self._peak, _rss())

    def stop(self) -> None:
        self._stop.set()


def run_stage(inputs: dict, config: AnalysisConfig, skip: tuple[str, ...] = (),
              verbose: bool = False) -> dict:
    """Every analyzer on the inputs, as ``analyze_system`` runs them, timed one by one.

    Returns
    -------
    dict
        ``analyzers``: name -> {seconds, rss_peak_gb (increase over the stage's start),
        cuda_peak_gb or None}; ``build_seconds``; ``total_seconds``; ``rss_peak_gb``.
    """
    cuda = config.device.startswith("cuda")
    if cuda:
        import torch
    mem = MemorySampler()
    base = _rss()
    t0 = time.perf_counter()
    system = ConstraintSystem.build(
        inputs["features"], examples=inputs["examples"], input_factors=inputs["input_factors"],
        output_factors=inputs["output_factors"], n_params=inputs["n_params"],
        tokens=inputs["tokens"], grad_norm=inputs["grad_norm"],
        vocab_size=inputs["vocab_size"], config=config)
    out: dict = {"build_seconds": time.perf_counter() - t0, "analyzers": {}}
    results = AnalysisResults(ids=system.ids, config=config)
    for analyzer in analyzers():
        if analyzer.name in skip:
            results.add(analyzer.name, None)
            continue
        mem.reset()
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        try:
            r = analyzer.run(system, results, config)
            err = None
        except Exception as exc:
            r, err = None, f"{type(exc).__name__}: {exc}"
        if cuda:
            torch.cuda.synchronize()
        dt = time.perf_counter() - t
        results.add(analyzer.name, r)
        if verbose:
            print(f"    {analyzer.name:<15} {dt:8.2f} s" + (f"  {err}" if err else ""),
                  flush=True)
        out["analyzers"][analyzer.name] = {
            "seconds": dt, "rss_peak_gb": (mem.peak() - base) / 1e9,
            "cuda_peak_gb": torch.cuda.max_memory_allocated() / 1e9 if cuda else None,
            "ran": r is not None, "error": err}
    out["total_seconds"] = time.perf_counter() - t0
    out["rss_peak_gb"] = max((a["rss_peak_gb"] for a in out["analyzers"].values()), default=0)
    mem.stop()
    return out


def growth_exponent(ns: list[int], secs: list[float]) -> float | None:
    """Least-squares slope of log(seconds) on log(N) (None with fewer than 2 points)."""
    if len(ns) < 2:
        return None
    b, _ = np.polyfit(np.log(ns), np.log(np.maximum(secs, 1e-4)), 1)
    return float(b)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[10_000, 30_000])
    ap.add_argument("--k", type=int, default=1024)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="tf32", choices=("float32", "tf32", "bfloat16"))
    ap.add_argument("--exact-max-n", type=int, default=None,
                    help="AnalysisConfig.exact_max_n (default: the config's, 100,000)")
    ap.add_argument("--skip", nargs="*", default=[], help="analyzers not to run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--warmup", type=int, default=600,
                    help="rows of an untimed first run (numba compilation); 0: none")
    ap.add_argument("--json", default=None, help="write the measurements here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    extra = {"exact_max_n": args.exact_max_n} if args.exact_max_n else {}
    config = AnalysisConfig(device=args.device, device_precision=args.precision, seed=args.seed,
                            **extra)
    if args.warmup:  # compile the numba kernels (and warm the device) outside the clock
        run_stage(synthetic_inputs(args.warmup, args.k, args.seed + 1), config,
                  tuple(args.skip))
    rows: dict[int, dict] = {}
    for n in args.n:
        t = time.perf_counter()
        inputs = synthetic_inputs(n, args.k, args.seed)
        print(f"N = {n:,}: inputs built in {time.perf_counter() - t:.1f} s", flush=True)
        rows[n] = run_stage(inputs, config, tuple(args.skip), verbose=True)
        del inputs
        r = rows[n]
        print(f"N = {n:,}: stage {r['total_seconds']:.1f} s (checks {r['build_seconds']:.1f} s),"
              f" pairs {r['analyzers'].get('pairs', {}).get('seconds', float('nan')):.1f} s, "
              f"peak RSS +{r['rss_peak_gb']:.2f} GB", flush=True)
    names = list(next(iter(rows.values()))["analyzers"])
    ns = sorted(rows)
    print(f"\n{'analyzer':<15}" + "".join(f"{'s @ ' + format(n, ','):>13}" for n in ns)
          + f"{'GB @ max':>10}{'exponent':>10}")
    fits = {}
    for name in [*names, "(stage)"]:
        if name == "(stage)":
            secs = [rows[n]["total_seconds"] for n in ns]
            gb = rows[ns[-1]]["rss_peak_gb"]
        else:
            secs = [rows[n]["analyzers"][name]["seconds"] for n in ns]
            gb = rows[ns[-1]]["analyzers"][name]["rss_peak_gb"]
        b = growth_exponent(ns, secs)
        fits[name] = b
        note = ""
        if name not in ("pairs", "(stage)") and b is not None and b > 1.2:
            note = "  > 1.2" if secs[-1] >= 0.05 else "  (small)"
        if name != "(stage)" and not any(rows[n]["analyzers"][name]["ran"] for n in ns):
            print(f"{name:<15}  did not run (no inputs for it)")
            continue
        errs = [rows[n]["analyzers"].get(name, {}).get("error") for n in ns]
        if any(errs):
            note += "  ERROR " + next(e for e in errs if e)
        print(f"{name:<15}" + "".join(f"{s:>13.2f}" for s in secs) + f"{gb:>10.2f}"
              + (f"{b:>10.2f}" if b is not None else f"{'-':>10}") + note)
    last = rows[ns[-1]]
    pairs = last["analyzers"].get("pairs", {}).get("seconds")
    if pairs:
        print(f"\nN = {ns[-1]:,}: whole stage / pairs pass = "
              f"{last['total_seconds'] / pairs:.2f} (goal <= 2)")
    if args.json:
        Path(args.json).write_text(json.dumps({"n": ns, "k": args.k, "device": args.device,
                                               "rows": {str(n): rows[n] for n in ns},
                                               "exponents": fits}, indent=1))


if __name__ == "__main__":
    main()
