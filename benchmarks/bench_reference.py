"""Does the trained reference model give better constraints than the same network untrained?

On a GSM8K sample with planted cosmetic near duplicates (same content, other surface) and
contradictions (same question, another final answer), extract features twice in one run: with
``constraintlab-reference`` and with the same architecture at random initialisation (same config,
same tokenizer, seeded). Two separations are measured, each as a ROC AUC (1 = perfect,
0.5 = chance):

- duplicates: cosine of the two gradients, planted near-duplicate pairs vs random pairs;
- contradictions: cosine of the two output factors (where the loss pushes), lower for planted
  contradictions than for planted near duplicates (both have the same input).

Run from the repository root: ``python benchmarks/bench_reference.py [--n 200] [--k 1024]``.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from constraintlab.encode import EncodeConfig, extract
from constraintlab.io import read_examples
from constraintlab.reference import weights_dir

ROOT = Path(__file__).resolve().parents[1]
GSM8K = ROOT.parent / "shared" / "data" / "gsm8k_train.jsonl"


def cosmetic(text: str) -> str:
    return "  ".join(w.upper() if i % 3 == 0 else w for i, w in enumerate(text.split(" ")))


def other_answer(answer: str) -> str:
    head, final = answer.rsplit("####", 1)
    return f"{head}#### {int(re.sub(r'[^0-9-]', '', final) or 0) + 9}"


def planted_sample(n: int, n_planted: int, seed: int) -> tuple[list[dict], list, list]:
    rows = [json.loads(x) for x in GSM8K.read_text(encoding="utf-8").splitlines()]
    rng = random.Random(seed)
    base = [{"question": r["question"], "answer": r["answer"]} for r in rng.sample(rows, n)]
    dups, contras, out = [], [], list(base)
    for i in range(n_planted):
        out.append({"question": cosmetic(base[i]["question"]), "answer": base[i]["answer"]})
        dups.append((i, len(out) - 1))
    for i in range(n_planted, 2 * n_planted):
        out.append({"question": base[i]["question"], "answer": other_answer(base[i]["answer"])})
        contras.append((i, len(out) - 1))
    return out, dups, contras


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties count half (Mann-Whitney)."""
    pos, neg = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
    return float((pos > neg).mean() + 0.5 * (pos == neg).mean())


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-30)


def cos_pairs(m: np.ndarray, pairs) -> np.ndarray:
    u = unit(m)
    return np.array([u[a] @ u[b] for a, b in pairs])


def random_twin(path: Path, seed: int) -> Path:
    """The reference architecture and tokenizer with freshly initialised weights."""
    config = AutoConfig.from_pretrained(weights_dir())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(weights_dir()).save_pretrained(path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="GSM8K rows (default 200)")
    ap.add_argument("--planted", type=int, default=20, help="pairs of each kind (default 20)")
    ap.add_argument("--k", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rows, dups, contras = planted_sample(args.n, args.planted, args.seed)
    rng = np.random.default_rng(args.seed)
    n = len(rows)
    rand_pairs = [tuple(rng.choice(n, 2, replace=False)) for _ in range(2000)]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data_path = tmp / "sample.jsonl"
        data_path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        data = read_examples(data_path)
        models = {"reference (trained)": "constraintlab-reference",
                  "same architecture, random weights": str(random_twin(tmp / "rand", args.seed))}
        print(f"{n} examples ({args.planted} planted near duplicates, {args.planted} planted "
              f"contradictions), k = {args.k}\n")
        print(f"{'model':<36}{'dup AUC':>9}{'contra AUC':>12}{'mean cos dup':>14}"
              f"{'mean cos rand':>15}{'seconds':>9}")
        for name, model in models.items():
            t0 = time.perf_counter()
            store = extract(data, EncodeConfig(model=model, k=args.k), tmp / f"store-{len(name)}")
            seconds = time.perf_counter() - t0
            g = np.asarray(store.features)
            cd, cr = cos_pairs(g, dups), cos_pairs(g, rand_pairs)
            out_dup = cos_pairs(store.output_factors, dups)
            out_con = cos_pairs(store.output_factors, contras)
            print(f"{name:<36}{auc(cd, cr):>9.3f}{auc(out_dup, out_con):>12.3f}"
                  f"{cd.mean():>14.3f}{cr.mean():>15.3f}{seconds:>9.1f}")
    print("\ndup AUC: gradient cosine of planted near duplicates above random pairs; contra AUC:"
          " output-factor cosine of near duplicates above contradictions (same inputs).")


if __name__ == "__main__":
    main()
