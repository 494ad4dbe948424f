"""Do ``clean`` and ``select`` help real LoRA training? Held-out losses, several seeds.

Built from ../shared/data at run time (:mod:`planted`, seeded; GSM8K **test** rows, which the
reference model never trained on) and trained with the LoRA loop of
``benchmarks/bench_suspects.py --train`` (``_finetune``; the reference model, LoRA r = 8 on
q/v, AdamW lr 1e-3 here where bench_suspects' default is 3e-3, 2 epochs of batch 8, sequences
cut at 160 tokens). Every loss is the mean NLL per
target token on held-out clean GSM8K test rows never trained on.

(a) clean
    A noisy set: ``--rows`` clean rows, ``--rate`` of their targets replaced by wrong ones
    (:func:`planted.corrupt`, the six GSM8K kinds) and ``--dup-rate`` x rows exact copies of
    random rows appended. ``constraintlab.clean`` (defaults) decides; the model is trained on
    the noisy set, on what clean keeps, on the noisy set minus as many random rows as clean
    dropped, and on the oracle (the clean rows once each). Printed: the share of the
    noisy - oracle gap each recovers. No harm: the same on the clean rows alone (no planted
    noise): full vs cleaned, the difference against the seed spread.
(b) select
    Without a target, on the clean rows: ``constraintlab.select`` (``--methods``, default
    herding and qr) at each
    ``--budgets`` vs a random subset of the same size (its own draw per seed) vs the full data.
    With a target: a pool of GSM8K and Alpaca rows (half each), the target set DEV =
    ``--dev-rows`` other GSM8K test rows; the held-out loss (GSM8K) of the subset chosen by
    ``select --target DEV`` vs random subsets of the same size.

About 40 fine-tunings and four extractions. On the shared 2-core box under load (load
average ~25) one fine-tuning of 30 rows took 500 s, so the whole run does not fit there; on a
GPU it takes minutes. Run from the repository root (it imports this checkout's package)::

    python benchmarks/bench_act.py --cache /work/cache/act                      # CPU
    PYTHONPATH=. python benchmarks/bench_act.py --device cuda --rows 240 --heldout 80 \
        --pool 240 --dev-rows 40 --budgets 0.1 0.25 0.5 0.75 --cache /tmp/act     # GPU
    python benchmarks/bench_act.py --parts target ...       # one part: clean noharm select target
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))     # this checkout's package
import bench_suspects as bs
import planted

import constraintlab
from constraintlab.io import read_examples


def noisy_set(rows: list[dict], rate: float, dup_rate: float, seed: int):
    """Corrupted targets plus exact copies; returns records and per-record labels
    (None = clean original, a corruption kind, or "duplicate")."""
    records, labels = planted.corrupt(rows, rate, planted.KINDS_GSM8K, seed,
                                      donors=planted.alpaca_rows(400, 20_000 + seed))
    rng = np.random.default_rng(seed)
    src = rng.choice(len(records), size=round(dup_rate * len(records)), replace=False)
    records = records + [dict(records[i]) for i in src]
    labels = list(labels) + ["duplicate"] * len(src)
    order = rng.permutation(len(records))
    return [records[i] for i in order], [labels[i] for i in order]


class Trainer:
    """Fine-tune the reference model on a list of examples; held-out loss."""

    def __init__(self, args) -> None:
        from constraintlab.encode import EncodeConfig

        self.args = args
        self.cfg = EncodeConfig(lora_r=args.lora_r, max_length=args.max_length,
                                device=args.device)
        self.runs = 0

    def loss(self, examples: list, test: list, seed: int) -> float:
        from constraintlab.encode import EncodeConfig
        from constraintlab.encode.model import load_model
        from constraintlab.encode.tokenize import Renderer

        loaded = load_model(EncodeConfig(**{**self.cfg.to_dict(), "lora_init_seed": seed,
                                            "target_modules": None}))
        renderer = Renderer(loaded.tokenizer, max_length=self.args.train_max_length)
        self.runs += 1
        return bs._finetune(loaded, bs._encode(renderer, examples),
                            bs._encode(renderer, test), self.args, seed)


def run_table(trainer: Trainer, subsets: dict, test: list, seeds: list[int], label: str
              ) -> pd.DataFrame:
    """Held-out loss of every subset (name -> examples, or a callable seed -> examples)."""
    out = {}
    for seed in seeds:
        for name, sub in subsets.items():
            ex = sub(seed) if callable(sub) else sub
            t0 = time.perf_counter()
            out[(seed, name)] = trainer.loss(ex, test, seed)
            print(f"  [{label}] seed {seed} {name:16s} {len(ex):4d} rows  held-out loss "
                  f"{out[(seed, name)]:.4f}  ({time.perf_counter() - t0:.0f} s)", flush=True)
    return pd.Series(out).unstack()


def part_clean(args, trainer: Trainer, held: list) -> pd.DataFrame:
    cache = Path(args.cache)
    pool = planted.gsm8k_rows("test", args.rows + args.heldout, args.data_seed)
    rows = pool[:args.rows]
    records, labels = noisy_set(rows, args.rate, args.dup_rate, args.data_seed)
    path = planted.write_jsonl(records, cache / "noisy.jsonl")
    ds = read_examples(path)
    res = constraintlab.clean(path, out=cache / "noisy-report", k=args.k,
                              max_length=args.max_length, device=args.device)
    kept = [d["row"] for d in res.decisions if d["action"] in ("keep", "review")]
    dropped = [d["row"] for d in res.decisions if d["action"] == "drop"]
    lab = np.array([x if x is not None else "clean" for x in labels], dtype=object)
    bad = lab != "clean"
    print(f"\n=== (a) clean: {len(records)} rows = {args.rows} GSM8K test rows, "
          f"{int((bad & (lab != 'duplicate')).sum())} targets planted wrong, "
          f"{int((lab == 'duplicate').sum())} exact copies; held-out: {len(held)} clean rows ===")
    print(f"clean (defaults): {res.summary['kept']} kept, {res.summary['dropped']} dropped, "
          f"{res.summary['review']} for review; by reason {res.summary['by_reason']}")
    originals = {(r["question"], r["answer"]) for r in rows}
    content = [(r["question"], r["answer"]) for r in records]
    wrong_kept = [i for i in kept if content[i] not in originals]
    kind_of = {content[i]: lab[i] for i in range(len(records)) if lab[i] != "duplicate"}
    kinds = pd.Series([kind_of.get(content[i], "?") for i in wrong_kept]).value_counts()
    print(f"planted: {int((lab != 'clean').sum() - (lab == 'duplicate').sum())} wrong targets, "
          f"{int((lab == 'duplicate').sum())} extra copies; kept: {len(kept)} rows, "
          f"{len(kept) - len({content[i] for i in kept})} of them an extra copy of another "
          f"kept row, {len(wrong_kept)} with a wrong target (by kind: {kinds.to_dict()})")
    by_index = {ex.index: ex for ex in ds}
    n = len(records)
    # oracle: the clean rows, each once (the first of an original and its copy)
    seen, oracle = set(), []
    for i in range(n):
        key = (records[i]["question"], records[i]["answer"])
        if key in originals and key not in seen:
            seen.add(key)
            oracle.append(i)

    def rand(seed: int) -> list:
        drop = np.random.default_rng(100 + seed).choice(n, size=len(dropped), replace=False)
        return [by_index[i] for i in np.setdiff1d(np.arange(n), drop)]

    subsets = {"noisy": [by_index[i] for i in range(n)], "cleaned": [by_index[i] for i in kept],
               "drop_random": rand, "oracle_clean": [by_index[i] for i in oracle]}
    T = run_table(trainer, subsets, held, args.seeds, "a")
    gap = T["noisy"] - T["oracle_clean"]
    print(f"\nheld-out loss (nats/token), rows = seeds:\n{T.round(4).to_string()}")
    for name in ("cleaned", "drop_random"):
        rec = (T["noisy"] - T[name]) / gap
        print(f"gap recovered by {name}: {rec.mean():.2f} +- {rec.std(ddof=1):.2f} "
              f"(per seed {', '.join(f'{x:.2f}' for x in rec)})")
    print(f"noisy - oracle gap: {gap.mean():.4f} nats/token")
    return T


def part_no_harm(args, trainer: Trainer, held: list, rows: list[dict]) -> None:
    cache = Path(args.cache)
    path = planted.write_jsonl(rows, cache / "clean.jsonl")
    ds = read_examples(path)
    res = constraintlab.clean(path, out=cache / "clean-report", k=args.k,
                              max_length=args.max_length, device=args.device)
    kept = [d["row"] for d in res.decisions if d["action"] in ("keep", "review")]
    print(f"\n=== (a) no harm: clean on {len(rows)} clean GSM8K rows: "
          f"{res.summary['dropped']} dropped ({res.summary['by_reason']}) ===")
    by_index = {ex.index: ex for ex in ds}
    if res.summary["dropped"] == 0:
        print("nothing dropped: the cleaned set is the data; no training needed")
        return
    T = run_table(trainer, {"full": [by_index[i] for i in range(len(rows))],
                            "cleaned": [by_index[i] for i in kept]}, held, args.seeds, "a0")
    d = T["cleaned"] - T["full"]
    print(f"held-out loss:\n{T.round(4).to_string()}\ncleaned - full: {d.mean():+.4f} +- "
          f"{d.std(ddof=1):.4f} (seed spread of full: {T['full'].std(ddof=1):.4f})")


def part_select(args, trainer: Trainer, held: list, rows: list[dict]) -> None:
    cache = Path(args.cache)
    path = cache / "clean.jsonl"            # written by part_no_harm (same rows)
    path = planted.write_jsonl(rows, path)
    ds = read_examples(path)
    by_index = {ex.index: ex for ex in ds}
    n = len(rows)
    subsets: dict = {"full": [by_index[i] for i in range(n)]}
    for b in args.budgets:
        for method in args.methods:
            res = constraintlab.select(path, b, method=method, out=cache / "clean-report",
                                       k=args.k, max_length=args.max_length,
                                       device=args.device)
            m = len(res.selected)
            subsets[f"{method}_{b:g}"] = [by_index[i] for i in res.selected]
        subsets[f"random_{b:g}"] = (lambda seed, m=m: [
            by_index[int(i)] for i in np.sort(np.random.default_rng(200 + seed).choice(
                n, size=m, replace=False))])
    print(f"\n=== (b) select without a target on {n} clean GSM8K rows, budgets "
          f"{args.budgets} ===")
    T = run_table(trainer, subsets, held, args.seeds, "b")
    print(f"\nheld-out loss:\n{T.round(4).to_string()}\nmean over seeds:")
    spread = T["full"].std(ddof=1)
    for method in args.methods:
        for b in args.budgets:
            q, r = T[f"{method}_{b:g}"], T[f"random_{b:g}"]
            print(f"  budget {b:g}: {method} {q.mean():.4f}, random {r.mean():.4f} ({method} - "
                  f"random {(q - r).mean():+.4f} +- {(q - r).std(ddof=1):.4f}, better on "
                  f"{int((q < r).sum())} of {len(q)} seeds), full {T['full'].mean():.4f} "
                  f"({method} - full {(q - T['full']).mean():+.4f})")
        match = [b for b in args.budgets
                 if T[f"{method}_{b:g}"].mean() <= T["full"].mean() + spread]
        print(f"smallest budget whose {method} subset is within one seed spread "
              f"({spread:.4f}) of the full data: "
              f"{min(match) if match else 'none of ' + str(args.budgets)}")


def part_target(args, trainer: Trainer) -> None:
    cache = Path(args.cache)
    g = planted.gsm8k_rows("test", args.pool // 2 + args.dev_rows + args.heldout,
                           args.data_seed + 1)
    a = planted.alpaca_rows(args.pool - args.pool // 2, 3000 + args.data_seed)
    gpool, dev, held_rows = (g[:args.pool // 2], g[args.pool // 2:args.pool // 2 + args.dev_rows],
                             g[args.pool // 2 + args.dev_rows:])
    rng = np.random.default_rng(args.data_seed)
    pool = [{"instruction": r["question"], "input": "", "output": r["answer"]} for r in gpool]
    pool += a
    pool = [pool[i] for i in rng.permutation(len(pool))]
    path = planted.write_jsonl(pool, cache / "mixed.jsonl")
    dev_path = planted.write_jsonl([{"instruction": r["question"], "input": "",
                                     "output": r["answer"]} for r in dev], cache / "dev.jsonl")
    held_path = planted.write_jsonl([{"instruction": r["question"], "input": "",
                                      "output": r["answer"]} for r in held_rows],
                                    cache / "target_heldout.jsonl")
    ds, held = read_examples(path), list(read_examples(held_path))
    by_index = {ex.index: ex for ex in ds}
    is_gsm = {i: "####" in pool[i]["output"] for i in range(len(pool))}
    subsets: dict = {}
    variants = [(how, bool(center)) for how in args.target_scores for center in args.target_center]
    names = [f"{how}{'_c' if center else ''}" for how, center in variants]
    for b in args.target_budgets:
        for (how, center), name in zip(variants, names, strict=True):
            res = constraintlab.select(path, b, target=dev_path, target_score=how,
                                       out=cache / "mixed-report", k=args.k,
                                       max_length=args.max_length, device=args.device,
                                       target_center=center)
            m = len(res.selected)
            share = np.mean([is_gsm[i] for i in res.selected])
            print(f"select --target ({res.summary['method']}) at {b:g}: {m} rows, "
                  f"{share:.2f} of them GSM8K (pool 0.50)")
            subsets[f"{name}_{b:g}"] = [by_index[i] for i in res.selected]
        subsets[f"random_{b:g}"] = (lambda seed, m=m: [
            by_index[int(i)] for i in np.sort(np.random.default_rng(300 + seed).choice(
                len(pool), size=m, replace=False))])
    print(f"\n=== (b) select with a target: pool {len(pool)} rows (half GSM8K, half Alpaca, "
          f"one instruction schema), DEV {len(dev)} GSM8K rows, target loss on {len(held)} "
          "other GSM8K rows ===")
    T = run_table(trainer, subsets, held, args.seeds, "t")
    print(f"\ntarget held-out loss:\n{T.round(4).to_string()}")
    for b in args.target_budgets:
        for name in names:
            q, r = T[f"{name}_{b:g}"], T[f"random_{b:g}"]
            d = q - r
            print(f"  budget {b:g}: {name} {q.mean():.4f}, random {r.mean():.4f} ({name} - "
                  f"random {d.mean():+.4f} +- {d.std(ddof=1):.4f}, better on "
                  f"{int((d < 0).sum())} of {len(d)} seeds)")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", default="/work/cache/act")
    ap.add_argument("--parts", nargs="+", default=["clean", "noharm", "select", "target"],
                    choices=["clean", "noharm", "select", "target"])
    ap.add_argument("--rows", type=int, default=200)
    ap.add_argument("--heldout", type=int, default=100)
    ap.add_argument("--rate", type=float, default=0.25)
    ap.add_argument("--dup-rate", type=float, default=0.1)
    ap.add_argument("--data-seed", type=int, default=11)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--budgets", nargs="+", type=float, default=[0.1, 0.25, 0.5, 0.75])
    ap.add_argument("--methods", nargs="+", default=["herding", "qr"],
                    choices=["herding", "qr", "leverage"], help="select methods compared")
    ap.add_argument("--pool", type=int, default=200)
    ap.add_argument("--dev-rows", type=int, default=20)
    ap.add_argument("--target-budgets", nargs="+", type=float, default=[0.25])
    ap.add_argument("--target-scores", nargs="+", default=["mean", "max"],
                    choices=["mean", "max"])
    ap.add_argument("--target-center", nargs="+", type=int, default=[0, 1], choices=[0, 1],
                    help="1: target_center=True (the data's mean unit direction removed)")
    ap.add_argument("--k", type=int, default=512)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="torch device for extraction and "
                    "training (cpu, cuda)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3,
                    help="1e-3: of 3e-4, 1e-3, 3e-3 (2 epochs), the one whose training on "
                    "200 clean rows gave the lowest held-out loss; at 3e-3 training on clean "
                    "rows made the held-out loss worse than the untrained model")
    ap.add_argument("--lora-r", type=int, default=8)
    ap.add_argument("--train-max-length", type=int, default=160)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    Path(args.cache).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    trainer = Trainer(args)
    pool = planted.gsm8k_rows("test", args.rows + args.heldout, args.data_seed)
    rows = pool[:args.rows]
    held_path = planted.write_jsonl(pool[args.rows:], Path(args.cache) / "heldout.jsonl")
    held = list(read_examples(held_path))
    print(f"settings: reference model, LoRA r={args.lora_r} on q/v, AdamW lr {args.lr}, "
          f"{args.epochs} epochs, batch {args.batch}, {args.train_max_length} tokens; stores k "
          f"{args.k}, max_length {args.max_length}; seeds {args.seeds}; torch threads "
          f"{args.threads}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores",
          flush=True)
    untrained = Trainer(argparse.Namespace(**{**vars(args), "epochs": 0})).loss([], held, 0)
    print(f"untrained reference model: held-out loss {untrained:.4f}", flush=True)
    if "clean" in args.parts:
        part_clean(args, trainer, held)
    if "noharm" in args.parts:
        part_no_harm(args, trainer, held, rows)
    if "select" in args.parts:
        part_select(args, trainer, held, rows)
    if "target" in args.parts:
        part_target(args, trainer)
    print(f"\n[bench_act: {trainer.runs} fine-tunings, {time.perf_counter() - t0:.0f} s in all]")


if __name__ == "__main__":
    main()
