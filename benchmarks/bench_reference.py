"""Does the trained reference model give better constraints than the same network untrained?

On a GSM8K sample with planted cosmetic near duplicates (same content, other surface) and
contradictions (same question, another final answer), extract features twice in one run: with
``constraintlab-reference`` and with the same architecture at random initialisation (same config,
same tokenizer, seeded). Two separations are measured, each as a ROC AUC (1 = perfect,
0.5 = chance):

- duplicates: cosine of the two gradients, planted near-duplicate pairs vs random pairs;
- contradictions: the surprise of the stated final answer (mean NLL of the target tokens after
  ``####``, from the store's per-token profiles). A model that learned GSM8K copies the last
  computed number into the final answer, so a changed answer is surprising and a cosmetic
  question edit is not: the pair score ``|surprise_a - surprise_b|`` should be larger for planted
  contradictions than for planted near duplicates. Also printed: how often the changed answer
  is the more surprising member of its contradiction pair (0.5 = chance).

The first measure tried for contradictions, the cosine of the two output factors, is printed
too (``out-factor AUC``): it is wrong-way for both models, because a changed final answer moves 1-2
of ~100 target tokens while a cosmetic question edit moves the context of every token.

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


def answer_surprise(store) -> np.ndarray:
    """(N,) mean NLL of each example's final-answer tokens (those after the last ``####``)."""
    tok = store.tokens
    out = np.full(len(tok), np.nan)
    for row in range(len(tok)):
        pieces = tok.pieces(row)
        text = "".join(pieces)
        at = text.rfind("####")
        if at < 0:
            continue
        ends = np.cumsum([len(p) for p in pieces])
        starts = ends - np.array([len(p) for p in pieces])
        # tokens after the marker, up to the end of the answer (not the end-of-turn token)
        sel = (starts >= at + 4) & np.array([any(c.isdigit() for c in p) for p in pieces])
        if sel.any():
            out[row] = tok.nll[tok.offsets[row]:tok.offsets[row + 1]][sel].mean()
    return out


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
        print(f"{'model':<36}{'dup AUC':>9}{'contra AUC':>12}{'changed>orig':>14}"
              f"{'out-factor AUC':>16}{'mean cos dup':>14}{'mean cos rand':>15}{'seconds':>9}")
        for name, model in models.items():
            t0 = time.perf_counter()
            store = extract(data, EncodeConfig(model=model, k=args.k), tmp / f"store-{len(name)}")
            seconds = time.perf_counter() - t0
            g = np.asarray(store.features)
            cd, cr = cos_pairs(g, dups), cos_pairs(g, rand_pairs)
            out_dup = cos_pairs(store.output_factors, dups)
            out_con = cos_pairs(store.output_factors, contras)
            s = answer_surprise(store)
            sd = np.array([abs(s[a] - s[b]) for a, b in dups])
            sc = np.array([abs(s[a] - s[b]) for a, b in contras])
            changed = np.mean([s[b] > s[a] for a, b in contras])
            print(f"{name:<36}{auc(cd, cr):>9.3f}{auc(sc, sd):>12.3f}{changed:>14.3f}"
                  f"{auc(out_dup, out_con):>16.3f}{cd.mean():>14.3f}{cr.mean():>15.3f}"
                  f"{seconds:>9.1f}")
    print("\ndup AUC: gradient cosine of planted near duplicates above random pairs. contra AUC:"
          " |answer surprise difference| of contradictions above near duplicates. changed>orig:"
          " share of contradictions whose changed answer is the more surprising member."
          " out-factor AUC: output-factor cosine of near duplicates above contradictions"
          " (the first measure; wrong-way, see the module docstring).")


if __name__ == "__main__":
    main()
