"""Which planted wrong targets does the suspect score find, against the loss and IFD rankings?

Builds its planted sets from ../shared/data (:mod:`planted`, seeded): GSM8K **test** rows (the
reference model never trained on them) and Alpaca rows, with 10 % and 30 % of the targets
replaced by wrong ones in equal shares of the kinds of :func:`planted.corrupt`: ``swap``
(another row's target), ``offtopic`` (a target of another task: Alpaca replies in GSM8K,
GSM8K solutions in Alpaca), ``truncated``, ``language`` (a reply in another language),
``final_answer`` and ``intermediate`` (GSM8K only). Each set is extracted with the reference
model (the encoder's input dependence included) and scored by
:func:`constraintlab.analysis.suspects.analyze_suspects`.

Printed per data set and rate (mean over the seeds; ``min`` = the worst seed), per kind
(positives = rows of that kind, negatives = the clean rows) and per signal: AUROC, average
precision, and recall at 10 % inspected (share of the kind's rows among the top 10 % of the
clean + that-kind rows; ``any`` = all kinds against the clean rows, top 10 % of the whole set).
Signals: the suspect score, each signal in it and each rule, the baselines a user could run
alone (loss = perplexity ranking, which is also the score's ``target_surprise`` signal; IFD =
loss / loss without input), and signals measured but
left out of the score (input gain per token, gradient norm, volatility, gradient cosine to the
10 nearest inputs, unigram surprise of the target under the data's own token frequencies).
``best_single`` = per kind, the best AUROC of the score's single signals in the model's reach
(input dependence, ending surprise, loss = target surprise, the two rules); the score minus it,
per kind (mean and worst seed), and the issue's target: within 0.01 on every kind and seed.
Then the flag itself (``is_suspect``): false-positive rate on clean rows, precision, recall;
the model-capability statement (it must fire on Alpaca rows and stay quiet on GSM8K rows with
the reference model); and the issue's targets on GSM8K (PASS/FAIL). On Alpaca the reference
model is out of its domain: its signals are gated out of the score (``score_ungated`` shows
what they would give).

Stores are cached under ``--cache`` (``<set>-<seed>``, e.g. ``gsm8k1000_r10-0``); the feature
store is fingerprinted and resumable, so a second run only re-scores (about a minute for the
12 default sets of three seeds); extracting them took about 1.6 h on the shared 2-core box.

``--train`` (slow): does dropping the suspects help? LoRA fine-tunes the reference model on a
30 %-corrupted GSM8K test set, on it minus its flagged suspects, minus as many random rows, and
on its clean rows only (oracle), three seeds each, and measures the loss on held-out clean GSM8K
test rows never trained on. Prints the gap recovered ``(noisy - drop) / (noisy - oracle)``.
Sized for 2 CPU cores: 120 rows, 60 held-out rows, 2 epochs of batch 8, sequences cut at 160
tokens, LoRA r = 8 on q/v (4 minutes on 2 idle cores, about 10 under load; ``--train-rows``
etc. to change).

Run from the repository root (``PYTHONPATH=.`` where another checkout is installed)::

    python benchmarks/bench_suspects.py --seeds 0 1 2               # detection
    python benchmarks/bench_suspects.py --no-detection --train      # the training check
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import planted

from constraintlab.analysis import AnalysisConfig
from constraintlab.analysis.suspects import analyze_suspects
from constraintlab.analysis.volatility import analyze_volatility

KINDS = {"gsm8k": planted.KINDS_GSM8K, "alpaca": planted.KINDS_ANY}
SCORE_SIGNALS = ["suspect_score", "input_dependence", "ending_surprise", "false_arithmetic",
                 "unsupported_final_answer"]
BASELINES = ["loss", "ifd"]
MEASURED = ["input_gain", "grad_norm", "volatility", "knn_grad_cos", "unigram_surprise"]
#: the score's single signals (``loss`` ranks as ``target_surprise``) and the signal each
#: stands for in the score's summary (for whether it is in the model's reach)
SINGLE = {"input_dependence": "input_dependence", "ending_surprise": "ending_surprise",
          "loss": "target_surprise", "false_arithmetic": None,
          "unsupported_final_answer": None}


# ------------------------------------------------------------------------------ metrics
def auroc(y: np.ndarray, s: np.ndarray) -> float:
    """Mann-Whitney AUROC (ties count half); NaN scores rank lowest."""
    s = np.where(np.isfinite(s), s, -np.inf)
    pos, neg = s[y], s[~y]
    if len(pos) == 0 or len(neg) == 0:
        return math.nan
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    allv = np.concatenate([pos, neg])[order]
    ranks = np.empty(len(allv))
    i = 0
    while i < len(allv):                      # average ranks over ties
        j = i
        while j + 1 < len(allv) and allv[j + 1] == allv[i]:
            j += 1
        ranks[i:j + 1] = (i + j) / 2 + 1
        i = j + 1
    r = np.empty(len(allv))
    r[order] = ranks
    return float((r[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def average_precision(y: np.ndarray, s: np.ndarray) -> float:
    s = np.where(np.isfinite(s), s, -np.inf)
    order = np.lexsort((np.arange(len(s)), -s))
    hits = y[order].astype(float)
    if hits.sum() == 0:
        return math.nan
    prec = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((prec * hits).sum() / hits.sum())


def recall_at(y: np.ndarray, s: np.ndarray, share: float = 0.1) -> float:
    s = np.where(np.isfinite(s), s, -np.inf)
    top = np.lexsort((np.arange(len(s)), -s))[:max(1, round(share * len(s)))]
    return float(y[top].sum() / max(y.sum(), 1))


def evaluate(signals: pd.DataFrame, labels: list) -> pd.DataFrame:
    lab = np.array([x if x is not None else "clean" for x in labels])
    kinds = [k for k in dict.fromkeys(lab) if k != "clean"]
    rows = []
    for col in signals.columns:
        s = signals[col].to_numpy(dtype=np.float64)
        for k in [*kinds, "any"]:
            m = (lab == "clean") | (lab == k) if k != "any" else np.ones(len(lab), bool)
            y = lab[m] != "clean"
            rows.append((col, k, auroc(y, s[m]), average_precision(y, s[m]), recall_at(y, s[m])))
    return pd.DataFrame(rows, columns=["signal", "kind", "auroc", "ap", "r10"])


def best_single(E: pd.DataFrame, reach: dict) -> pd.DataFrame:
    """Per kind, the best AUROC of the score's single signals that are in the model's reach
    (signal ``best_single``; ``best_single_name`` in ``ap`` is left NaN)."""
    ok = [s for s, key in SINGLE.items() if key is None or reach[key]["in_reach"]]
    rows = []
    for k, g in E[E.signal.isin(ok)].groupby("kind", sort=False):
        top = g.loc[g["auroc"].idxmax()]
        rows.append(("best_single", k, float(top["auroc"]), math.nan, math.nan, top["signal"]))
    return pd.DataFrame(rows, columns=["signal", "kind", "auroc", "ap", "r10", "best_of"])


# ------------------------------------------------------------------------------- sets
def build(dataset: str, n: int, rate: float, seed: int) -> tuple[list[dict], list]:
    if dataset == "gsm8k":
        rows = planted.gsm8k_rows("test", n, seed)
        donors = planted.alpaca_rows(400, 10_000 + seed)
    else:
        rows = planted.alpaca_rows(n, 1000 + seed)
        donors = planted.gsm8k_rows("train", 400, 10_000 + seed)
    return planted.corrupt(rows, rate, KINDS[dataset], seed, donors=donors)


def extract_set(records: list[dict], where: Path, k: int, max_length: int):
    from constraintlab.encode import EncodeConfig, extract
    from constraintlab.io import read_examples

    where.mkdir(parents=True, exist_ok=True)
    path = planted.write_jsonl(records, where / "data.jsonl")
    ds = read_examples(path)
    store = extract(ds, EncodeConfig(k=k, max_length=max_length,
                                     max_batch_tokens=max(8192, max_length)), where / "store",
                    dataset_source=str(path), content_hash=ds.content_hash)
    return ds, store


def unit(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


def signals_of(ds, store, gate: bool = True) -> tuple[pd.DataFrame, object]:
    """Every signal of one set (higher = more suspect), row order = store order."""
    tp = store.tokens
    t = store.table
    targets = [ex.target_text for ex in ds]
    res = analyze_suspects(tp, targets=targets, n_truncated=t["n_truncated"].to_numpy(),
                           config=AnalysisConfig(suspect_gate=gate))
    tab = res.table
    n = len(t)
    rule = {r: np.array([r in x.split(";") for x in tab["suspect_reasons"]], float)
            for r in ("false_arithmetic", "unsupported_final_answer")}
    # signals measured but not in the score
    vol = analyze_volatility(tp, t["grad_norm"].to_numpy(), vocab_size=store.manifest.get(
        "vocab_size", 4096))
    U, F = unit(store.input_factors), unit(store.features)
    sim = U @ U.T
    np.fill_diagonal(sim, -np.inf)
    nb = np.argsort(-sim, axis=1, kind="stable")[:, :10]
    knn = np.einsum("ik,ijk->ij", F, F[nb]).mean(axis=1)
    ids, off = tp.ids.astype(np.int64), tp.offsets
    c = np.bincount(ids).astype(np.float64)
    uni = np.empty(n)
    for i in range(n):
        tt = ids[off[i]:off[i + 1]]
        own = np.bincount(tt, minlength=len(c))[tt]
        p = (c[tt] - own + 0.5) / (c.sum() - len(tt) + 0.5 * len(c))   # leave-one-out
        uni[i] = -np.log(p).mean()
    S = pd.DataFrame({
        "suspect_score": res.evidence,      # -log10(1 - score): same order, no rounding ties
        "input_dependence": -tab["input_dependence"].to_numpy(),
        "ending_surprise": tab["ending_surprise"].to_numpy(),
        **rule,
        "loss": t["loss"].to_numpy(),
        "ifd": t["ifd"].to_numpy(),
        "input_gain": -t["input_gain"].to_numpy(),
        "grad_norm": t["grad_norm"].to_numpy(),
        "volatility": vol.table["volatility"].to_numpy(),
        "knn_grad_cos": -knn,
        "unigram_surprise": uni,
    })
    return S, res


def detection(args) -> dict:
    cache = Path(args.cache)
    results, flags, caps = [], [], {}
    for dataset in args.datasets:
        n = args.n_gsm8k if dataset == "gsm8k" else args.n_alpaca
        for rate in args.rates:
            for seed in args.seeds:
                t0 = time.perf_counter()
                records, labels = build(dataset, n, rate, seed)
                name = f"{dataset}{n}_r{round(rate * 100)}-{seed}"
                ds, store = extract_set(records, cache / name, args.k, args.max_length)
                for gate in ((True, False) if dataset == "alpaca" else (True,)):
                    S, res = signals_of(ds, store, gate=gate)
                    if not gate:   # the score with every signal, out of reach or not
                        S = S[["suspect_score"]].rename(
                            columns={"suspect_score": "score_ungated"})
                    E = evaluate(S, labels)
                    if gate:
                        E = pd.concat([E, best_single(E, res.summary["signals"])],
                                      ignore_index=True)
                    E["dataset"], E["rate"], E["seed"] = dataset, rate, seed
                    results.append(E)
                    if gate:
                        lab = np.array([x is not None for x in labels])
                        f = res.is_suspect
                        flags.append({"dataset": dataset, "rate": rate, "seed": seed,
                                      "flagged": int(f.sum()),
                                      "clean_fpr": float(f[~lab].mean()),
                                      "precision": float(lab[f].mean()) if f.any() else
                                      math.nan, "recall": float(f[lab].mean())})
                        caps[(dataset, rate, seed)] = res.summary["capability"]
                print(f"[{dataset} rate {rate} seed {seed}: {len(records)} rows, "
                      f"{time.perf_counter() - t0:.0f} s]", flush=True)
    R = pd.concat(results, ignore_index=True)
    report(R, pd.DataFrame(flags), caps, args)
    return {"results": R}


def report(R: pd.DataFrame, flags: pd.DataFrame, caps: dict, args) -> None:
    order = [SCORE_SIGNALS[0], "best_single", *SCORE_SIGNALS[1:], "score_ungated",
             *BASELINES, *MEASURED]
    for (dataset, rate), g in R.groupby(["dataset", "rate"], sort=False):
        kinds = [k for k in dict.fromkeys(g["kind"]) if k != "any"] + ["any"]
        print(f"\n=== {dataset}, {int(rate * 100)} % corrupted, seeds "
              f"{sorted(set(g['seed']))} (mean over seeds) ===")
        for metric, label in (("auroc", "AUROC"), ("ap", "average precision"),
                              ("r10", "recall at 10 % inspected")):
            P = g.pivot_table(index="signal", columns="kind", values=metric, aggfunc="mean")
            P = P.reindex([s for s in order if s in P.index])[kinds]
            if metric == "auroc":
                P["mean_kinds"] = P[kinds[:-1]].mean(axis=1)
                worst = g[g.kind != "any"].pivot_table(index="signal", columns="seed",
                                                       values="auroc", aggfunc="mean")
                P["min_seed_kinds"] = worst.min(axis=1).reindex(P.index)
            print(f"\n{label}:\n{P.round(3).to_string()}")
        combined_vs_best(g)
        fl = flags[(flags.dataset == dataset) & (flags.rate == rate)]
        print(f"\nis_suspect: flagged {fl.flagged.mean():.0f} rows, clean false-positive rate "
              f"{fl.clean_fpr.mean():.4f} (nominal alpha {AnalysisConfig().suspect_alpha}), "
              f"precision {fl.precision.mean():.3f}, recall {fl.recall.mean():.3f}")
        cap = caps[(dataset, rate, sorted(set(g["seed"]))[0])]
        print(f"capability: nll_ratio {cap['nll_ratio']:.3f}, relative_input_gain "
              f"{cap['relative_input_gain']:.4f}, predicts_targets {cap['predicts_targets']}, "
              f"conditions_on_input {cap['conditions_on_input']}, limited {cap['limited']}, "
              f"input_dependence {cap['input_dependence']}, arithmetic {cap['arithmetic']}"
              f"\n  {cap['message']}")
        fired = [caps[(dataset, rate, sd)]["limited"] for sd in sorted(set(g["seed"]))]
        want = dataset != "gsm8k"        # out of the reference model's domain: Alpaca
        print(f"target: the capability statement (model barely conditions on the input / "
              f"does not predict the targets) {'fires' if want else 'stays quiet'} on "
              f"{dataset}: fired on seeds {fired} "
              f"{'PASS' if all(f == want for f in fired) else 'FAIL'}")
        if dataset == "gsm8k":
            targets(g)


def combined_vs_best(g: pd.DataFrame) -> None:
    """The suspect score against its best single signal in reach, kind by kind and seed by
    seed (issue 22: within 0.01 AUROC on every kind)."""
    per = g[g.kind != "any"].pivot_table(index=["kind", "seed"], columns="signal",
                                         values="auroc")
    gap = per["suspect_score"] - per["best_single"]
    of = g[(g.signal == "best_single") & (g.kind != "any")].set_index(["kind", "seed"])
    worst = gap.groupby(level="kind", sort=False).min()
    names = of["best_of"].groupby(level="kind").agg(lambda x: "/".join(sorted(set(x))))
    print("\nsuspect score - best single signal in reach (AUROC; mean, worst seed; best of):\n"
          + "\n".join(f"  {k:13s} {gap[k].mean():+.4f}  {worst[k]:+.4f}  {names[k]}"
                      for k in worst.index))
    bad = [k for k in worst.index if worst[k] < -0.01]
    print(f"target: the score within 0.01 AUROC of its best single signal on every kind, every "
          f"seed: {'PASS' if not bad else 'FAIL ' + ', '.join(bad)}")


def targets(g: pd.DataFrame) -> None:
    A = g[g.kind != "any"].pivot_table(index="signal", columns="kind", values="auroc",
                                       aggfunc="mean")
    s, loss = A.loc["suspect_score"], A.loc["loss"]
    for kind in ("swap", "offtopic", "truncated"):
        worst = g[(g.signal == "suspect_score") & (g.kind == kind)]["auroc"].min()
        print(f"target: {kind} AUROC >= 0.90: {s[kind]:.3f} (worst seed {worst:.3f}) "
              f"{'PASS' if s[kind] >= 0.90 else 'FAIL'}")
    gain = s.mean() - loss.mean()
    print(f"target: suspect score >= loss + 0.20 AUROC averaged over kinds: {s.mean():.3f} vs "
          f"{loss.mean():.3f} (+{gain:.3f}) {'PASS' if gain >= 0.20 else 'FAIL'}")
    below = [k for k in A.columns if s[k] < loss[k]]
    print(f"target: never below the loss baseline on any kind: "
          f"{'PASS' if not below else 'FAIL ' + ', '.join(below)}")
    per = g[g.kind != "any"].pivot_table(index=["seed", "kind"], columns="signal",
                                         values="auroc")
    worse = per[per["suspect_score"] < per["loss"]]
    print("  (per seed, kinds where the score ranks below the loss: "
          + (", ".join(f"seed {sd} {k} {a:.4f} < {b:.4f}" for (sd, k), a, b in
                       zip(worse.index, worse["suspect_score"], worse["loss"], strict=True))
             or "none") + ")")


# ------------------------------------------------------------------------------- train
def train_check(args) -> None:
    """LoRA fine-tuning on the noisy set, minus suspects, minus random rows, oracle clean."""
    import torch

    from constraintlab.encode import EncodeConfig
    from constraintlab.encode.model import load_model
    from constraintlab.encode.tokenize import Renderer

    torch.set_num_threads(args.threads)
    n, rate = args.train_rows, 0.3
    pool = planted.gsm8k_rows("test", n + args.heldout_rows, args.train_data_seed)
    rows, heldout = pool[:n], pool[n:]
    records, labels = planted.corrupt(rows, rate, planted.KINDS_GSM8K, args.train_data_seed,
                                      donors=planted.alpaca_rows(400, 20_000))
    ds, store = extract_set(records, Path(args.cache) / f"train_{n}_{args.train_data_seed}",
                            args.k, args.max_length)
    res = analyze_suspects(store.tokens, targets=[ex.target_text for ex in ds],
                           n_truncated=store.table["n_truncated"].to_numpy())
    bad = np.array([x is not None for x in labels])
    flagged = np.flatnonzero(res.is_suspect)
    print(f"\n=== --train: {n} GSM8K test rows, {int(rate * 100)} % corrupted "
          f"({bad.sum()} rows); {len(flagged)} flagged ({bad[flagged].mean():.2f} of them "
          f"corrupted, recall {res.is_suspect[bad].mean():.2f}); held-out: {len(heldout)} clean "
          f"GSM8K test rows never trained on ===")
    print(f"settings: LoRA r={args.lora_r} on q_proj/v_proj (peft default for Qwen3), "
          f"AdamW lr {args.lr}, {args.epochs} epochs, batch {args.batch}, sequences cut at "
          f"{args.train_max_length} tokens for training and the held-out loss (the suspects "
          f"come from the store extracted at {args.max_length}), torch threads "
          f"{args.threads}")
    from constraintlab.io import read_examples
    held_path = planted.write_jsonl(heldout, Path(args.cache) / "heldout.jsonl")
    held = list(read_examples(held_path))
    cfg = EncodeConfig(lora_r=args.lora_r, max_length=args.max_length)
    out = {}
    for seed in args.train_seeds:
        rng = np.random.default_rng(seed)
        rand = rng.choice(n, size=len(flagged), replace=False)
        subsets = {"noisy": np.arange(n), "drop_suspects": np.setdiff1d(np.arange(n), flagged),
                   "drop_random": np.setdiff1d(np.arange(n), rand),
                   "oracle_clean": np.flatnonzero(~bad)}
        for name, keep in subsets.items():
            t0 = time.perf_counter()
            loaded = load_model(EncodeConfig(**{**cfg.to_dict(), "lora_init_seed": seed,
                                                "target_modules": None}))
            renderer = Renderer(loaded.tokenizer, max_length=args.train_max_length)
            train = _encode(renderer, [ds[int(i)] for i in keep])
            test = _encode(renderer, held)
            loss = _finetune(loaded, train, test, args, seed)
            out[(seed, name)] = loss
            print(f"  seed {seed} {name:14s} {len(keep):4d} rows  held-out loss {loss:.4f}  "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
    T = pd.Series(out).unstack()
    gap = T["noisy"] - T["oracle_clean"]
    rec_s = (T["noisy"] - T["drop_suspects"]) / gap
    rec_r = (T["noisy"] - T["drop_random"]) / gap
    print(f"\nheld-out loss (nats/token), rows = seeds:\n{T.round(4).to_string()}")
    print(f"gap recovered by dropping suspects: {rec_s.mean():.2f} +- {rec_s.std(ddof=1):.2f} "
          f"(per seed {', '.join(f'{x:.2f}' for x in rec_s)})")
    print(f"gap recovered by dropping as many random rows: {rec_r.mean():.2f} +- "
          f"{rec_r.std(ddof=1):.2f} (per seed {', '.join(f'{x:.2f}' for x in rec_r)})")
    print(f"noisy - oracle gap: {gap.mean():.4f} nats/token (seed spread of noisy: "
          f"{T['noisy'].std(ddof=1):.4f})")


def _encode(renderer, examples: list) -> list:
    """The examples tokenised as the encoder does (those it cannot use left out)."""
    out = [renderer.encode(ex, i)[0] for i, ex in enumerate(examples)]
    return [e for e in out if e is not None]


def _batches(items: list, size: int, rng: np.random.Generator | None) -> list[list]:
    order = np.arange(len(items)) if rng is None else rng.permutation(len(items))
    return [[items[i] for i in order[j:j + size]] for j in range(0, len(items), size)]


def _collate(batch, pad: int):
    import torch

    L = max(e.n_tokens for e in batch)
    ids = torch.full((len(batch), L), pad, dtype=torch.long)
    attn = torch.zeros((len(batch), L), dtype=torch.long)
    labels = torch.full((len(batch), L), -100, dtype=torch.long)
    for r, e in enumerate(batch):
        x = torch.as_tensor(e.input_ids)
        ids[r, :len(x)] = x
        attn[r, :len(x)] = 1
        m = torch.as_tensor(e.target_mask)
        labels[r, :len(x)] = torch.where(m, x, torch.full_like(x, -100))
    return ids, attn, labels


def _token_nll(model, batch, pad: int, device: str = "cpu"):
    import torch

    ids, attn, labels = (t.to(device) for t in _collate(batch, pad))
    logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1].float()
    tgt = labels[:, 1:]
    ok = tgt != -100
    lp = torch.log_softmax(logits, dim=-1).gather(2, tgt.clamp(min=0)[..., None])[..., 0]
    return -(lp * ok).sum(), ok.sum()


def _finetune(loaded, train, test, args, seed: int) -> float:
    """Train the LoRA factors on ``train`` (AdamW ``args.lr``, ``args.epochs`` of
    ``args.batch``, seeded batches) on ``args.device`` (cpu without it); mean NLL per target
    token on ``test``."""
    import torch

    model = loaded.model
    params = [p for s in loaded.sites for p in (s.lora_A.weight, s.lora_B.weight)]
    for p in params:
        p.requires_grad_(True)
    pad = loaded.tokenizer.pad_token_id or 0
    device = getattr(args, "device", "cpu")
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    rng = np.random.default_rng(seed)
    model.train()
    for _ in range(args.epochs):
        for batch in _batches(train, args.batch, rng):
            total, count = _token_nll(model, batch, pad, device)
            opt.zero_grad()
            (total / count).backward()
            opt.step()
    model.eval()
    tot = cnt = 0.0
    with torch.no_grad():
        for batch in _batches(test, 16, None):
            total, count = _token_nll(model, batch, pad, device)
            tot += float(total)
            cnt += float(count)
    return tot / cnt


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", nargs="+", default=["gsm8k", "alpaca"],
                    choices=["gsm8k", "alpaca"])
    ap.add_argument("--rates", nargs="+", type=float, default=[0.1, 0.3])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--n-gsm8k", type=int, default=1000)
    ap.add_argument("--n-alpaca", type=int, default=600)
    ap.add_argument("--k", type=int, default=512, help="projection dimension of the stores")
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--cache", default="/work/cache/suspects",
                    help="stores are kept here and reused on a second run")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-detection", action="store_true")
    ap.add_argument("--train", action="store_true", help="also run the training check")
    ap.add_argument("--train-rows", type=int, default=120)
    ap.add_argument("--heldout-rows", type=int, default=60)
    ap.add_argument("--train-data-seed", type=int, default=7)
    ap.add_argument("--train-seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--lora-r", type=int, default=8)
    ap.add_argument("--train-max-length", type=int, default=160,
                    help="tokens kept per sequence when fine-tuning and scoring the held-out "
                         "rows")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    t0 = time.perf_counter()
    if not args.no_detection:
        detection(args)
    if args.train:
        train_check(args)
    print(f"\n[bench_suspects: {time.perf_counter() - t0:.0f} s in all]")


if __name__ == "__main__":
    main()
