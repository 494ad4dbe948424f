"""Validity of the verdicts on real data (issue 14): one table.

Built in this run from ../shared/data (seeded, see ``validity_sets.py``), extracted with the
built-in reference model (k = 1024) into ``--cache`` (resumable, reused).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import planted
import validity_sets

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))   # this checkout's constraintlab, not another installed one
SAMPLE = ROOT / "data" / "gsm8k_sample.jsonl"


def extract_records(records: list[dict] | None, where: Path, k: int, path: Path | None = None):
    """Read + extract one file (the store is fingerprinted: a finished one is reused)."""
    from constraintlab.encode import EncodeConfig, extract
    from constraintlab.io import read_examples

    where.mkdir(parents=True, exist_ok=True)
    if path is None:
        path = planted.write_jsonl(records, where / "data.jsonl")
    ds = read_examples(path)
    store = extract(ds, EncodeConfig(k=k), where / "store", dataset_source=str(path),
                    content_hash=ds.content_hash)
    return ds, store


def load_union(seed: int, args):
    records, parts = validity_sets.union(seed)
    ds, store = extract_records(records, Path(args.cache) / f"union-{seed}", args.k)
    return records, parts, ds, store


def load_sample(args):
    return extract_records(None, Path(args.cache) / "sample-0", args.k, path=SAMPLE)


# ------------------------------------------------------------------------------ helpers
def analyze_rows(U: dict, rows, config=None, factors: bool = True):
    """The whole analysis of the union rows ``rows`` (set order)."""
    import numpy as np

    from constraintlab.analysis import ConstraintSystem, analyze_system

    rows = np.asarray(rows)
    system = ConstraintSystem.build(
        U["X"][rows], examples=[U["examples"][i] for i in rows],
        input_factors=U["Fi"][rows] if factors else None,
        output_factors=U["Fo"][rows] if factors else None, n_params=U["P"], config=config)
    return analyze_system(system, config=config)


def union_arrays(ds, store) -> dict:
    import numpy as np

    return {"X": np.asarray(store.features), "Fi": np.asarray(store.input_factors),
            "Fo": np.asarray(store.output_factors), "examples": list(ds),
            "P": store.n_params}


def precision_recall(found: set, truth: set) -> tuple[float, float]:
    tp = len(found & truth)
    return (tp / len(found) if found else 1.0), (tp / len(truth) if truth else 1.0)


def best_zone_f1(labels, flags) -> tuple[float, int]:
    """Largest F1 of a zone's membership against the flagged rows, and that zone."""
    import numpy as np

    labels, flags = np.asarray(labels), np.asarray(flags, bool)
    best, zone = 0.0, -1
    for z in np.unique(labels[labels >= 0]):
        m = labels == z
        tp = (m & flags).sum()
        f1 = 2 * tp / (m.sum() + flags.sum()) if tp else 0.0
        if f1 > best:
            best, zone = float(f1), int(z)
    return best, zone


def excess_text(inter: dict) -> str:
    lo, hi = inter["interference_excess_ci95"]
    ci = f" [{lo:.2f}, {hi:.2f}]" if lo is not None else ""
    return f"{inter['interference_excess']:.2f}x null{ci}"


def contradiction_variants(U: dict, rows, config=None) -> dict:
    """Text only / text + factors with the factor signal allowed to propose (as when the model
    conditions on the input) / not allowed, on the same rows."""
    import numpy as np

    from constraintlab.analysis import AnalysisConfig, analyze_contradictions

    config = config or AnalysisConfig()
    rows = np.asarray(rows)
    ex = [U["examples"][i] for i in rows]
    out = {"text": analyze_contradictions(ex, config=config).positions}
    for cond in (True, False):
        out[f"factors_propose_{cond}"] = analyze_contradictions(
            ex, input_factors=U["Fi"][rows], output_factors=U["Fo"][rows],
            model_conditions=cond, config=config).positions
    return out


# --------------------------------------------------------------------------- zone affinity
def zone_affinity(U: dict, rows, res, args, seed: int) -> dict:
    """Predicted zone matrix (response analyzer, mean per pair) against the measured loss
    change of every zone after a few real SGD steps on a sample of each zone (probe)."""
    import numpy as np
    from scipy.stats import pearsonr, spearmanr

    from constraintlab.encode import EncodeConfig
    from constraintlab.encode.model import load_model
    from constraintlab.probe import ProbeConfig
    from constraintlab.probe.update import probe_examples

    rows = np.asarray(rows)
    rsum = res.response.summary
    zone_ids = [z for z in rsum["zone_ids"] if z >= 0]
    pos = {z: i for i, z in enumerate(rsum["zone_ids"])}
    pred = np.asarray(rsum["zone_matrix_mean"], dtype=np.float64)
    labels = res.zones.labels
    rng = np.random.default_rng(seed)
    members = {z: rng.permutation(np.flatnonzero(labels == z)) for z in zone_ids}
    zone_ids = [z for z in zone_ids if len(members[z]) >= args.affinity_probe + 4]
    probe_pos = {z: members[z][:args.affinity_probe] for z in zone_ids}
    train_pos = {z: members[z][args.affinity_probe:args.affinity_probe + args.affinity_train]
                 for z in zone_ids}
    enc = EncodeConfig(k=args.k)
    loaded = load_model(enc)
    ex = U["examples"]
    probe_set = [ex[rows[p]] for z in zone_ids for p in probe_pos[z]]
    probe_zone = np.array([z for z in zone_ids for _ in probe_pos[z]])
    cfg = ProbeConfig(optimizer="sgd", steps=args.affinity_steps, lr=args.affinity_lr,
                      probe_size=len(probe_set), seed=seed, top_tokens=0)
    measured = np.zeros((len(zone_ids), len(zone_ids)))
    linear = []
    for a, za in enumerate(zone_ids):
        train = [ex[rows[p]] for p in train_pos[za]]
        pr = probe_examples(loaded, train, probe_set, cfg, encode=enc)
        act = pr.table["actual_change"].to_numpy()
        linear.append(pr.summary["spearman"])
        for b, zb in enumerate(zone_ids):
            measured[a, b] = float(act[probe_zone == zb].mean())
    P = np.array([[pred[pos[za], pos[zb]] for zb in zone_ids] for za in zone_ids])
    off = ~np.eye(len(zone_ids), dtype=bool)
    rho = spearmanr(P[off], measured[off]).statistic if off.sum() > 2 else float("nan")
    r = pearsonr(P[off], measured[off]).statistic if off.sum() > 2 else float("nan")
    rho_all = spearmanr(P.ravel(), measured.ravel()).statistic
    return {"zones": len(zone_ids), "pairs": int(off.sum()), "spearman": float(rho),
            "pearson": float(r), "spearman_with_diagonal": float(rho_all),
            "per_example_spearman": linear}


# ------------------------------------------------------------------------------ the table
def evaluate_seed(seed: int, args, table: dict) -> None:
    import numpy as np

    _records, parts, ds, store = load_union(seed, args)
    U = union_arrays(ds, store)
    S = validity_sets.sets(parts, seed)

    def add(case: str, value: str, target: str, ok: bool | None) -> None:
        table.setdefault((case, target), []).append((value, ok))

    # clean rows
    res = analyze_rows(U, S["clean"]["rows"])
    det, inter, zon = (res.determinacy.summary, res.interference.summary,
                       res.zones.summary)
    n = len(S["clean"]["rows"])
    add(f"clean GSM8K test ({n} rows)", det["consistency"], "not inconsistent",
        det["consistency"] != "inconsistent")
    add(f"clean GSM8K test ({n} rows)", excess_text(inter),
        f"interference near null (< {inter['interference_excess_min']})",
        not inter["interference_above_null"])
    add(f"clean GSM8K test ({n} rows)", f"{zon['pressure_zone_share']:.1%}",
        "pressure zones <= 10 %", zon["pressure_zone_share"] <= 0.10)
    pairs = res.pairs.summary
    add(f"clean GSM8K test ({n} rows)", f"{pairs['conflict_density']:.4f} vs null "
        f"{inter['null_conflict_density']:.4f}", "(old) raw conflict density vs its null", None)
    add(f"clean GSM8K test ({n} rows)", f"{det['determinacy']} (elasticity "
        f"{det['elasticity']:.2f}, +{det['slope_per_100']:.1f}/100)", "(growth verdict)", None)
    # planted contradictions (+ sibling pairs mixed in)
    c = S["contradictions"]
    res = analyze_rows(U, c["rows"])
    truth = {tuple(p) for p in c["pairs"]}
    sib = {tuple(p) for p in c["siblings"]}
    found = res.contradictions.positions
    prec, rec = precision_recall(found, truth)
    case = f"+ {len(truth) / len(c['rows']):.1%} planted contradictions ({len(c['rows'])} rows)"
    add(case, res.determinacy.summary["consistency"], "inconsistent",
        res.determinacy.summary["consistency"] == "inconsistent")
    add(case, f"P {prec:.3f} R {rec:.3f}", "precision, recall >= 0.95",
        prec >= 0.95 and rec >= 0.95)
    add(case, f"{len(found & sib)} of {len(sib)}", "sibling pairs mixed in: 0 reported",
        not (found & sib))
    var = contradiction_variants(U, c["rows"])
    for name, f in var.items():
        p_, r_ = precision_recall(f, truth)
        add(case, f"P {p_:.3f} R {r_:.3f} sib {len(f & sib)}", f"(signal: {name})", None)
    only = var["factors_propose_True"] - var["text"]
    add(case, f"{len(only & truth)} true, {len(only - truth)} false",
        "(factor-only pairs, the factor signal allowed to propose)", None)
    # style clash
    st = S["style"]
    res = analyze_rows(U, st["rows"])
    f1, tz = best_zone_f1(res.zones.labels, st["terse"])
    inter = res.interference.summary
    case = f"style clash {np.mean(st['terse']):.0%} terse ({len(st['rows'])} rows)"
    add(case, f"{f1:.3f}", "terse group its own zone (F1 >= 0.9)", f1 >= 0.9)
    mp = inter["most_interfering_pair"]
    terse = np.asarray(st["terse"])
    labels = res.zones.labels
    worked = {z for z in np.unique(labels[labels >= 0]) if terse[labels == z].mean() < 0.5}
    ok = mp is not None and ((mp["a"] == tz and mp["b"] in worked)
                             or (mp["b"] == tz and mp["a"] in worked))
    add(case, f"{mp['a']}<->{mp['b']} (terse zone {tz})" if mp else "none",
        "terse <-> worked most interfering", ok)
    add(case, excess_text(inter), "interference above null",
        inter["interference_above_null"])
    if args.affinity:
        t0 = time.perf_counter()
        aff = zone_affinity(U, st["rows"], res, args, seed)
        add(f"zone affinity (style clash, {aff['zones']} zones, {aff['pairs']} pairs)",
            f"rho {aff['spearman']:.2f} r {aff['pearson']:.2f}", "Spearman >= 0.6 (Pearson)",
            aff["spearman"] >= 0.6)
        add(f"zone affinity (style clash, {aff['zones']} zones, {aff['pairs']} pairs)",
            f"rho {aff['spearman_with_diagonal']:.2f} ({time.perf_counter() - t0:.0f} s)",
            "(with the diagonal)", None)
    # sibling pairs alone
    sb = S["siblings"]
    res = analyze_rows(U, sb["rows"])
    add(f"sibling pairs ({len(sb['pairs'])} pairs)",
        str(res.contradictions.summary["count"]), "0 contradictions",
        res.contradictions.summary["count"] == 0)
    var = contradiction_variants(U, sb["rows"])
    add(f"sibling pairs ({len(sb['pairs'])} pairs)",
        f"{len(var['factors_propose_True'])} / {len(var['factors_propose_False'])}",
        "(text + factors, the factor signal allowed / not allowed to propose)", None)
    # templates vs diverse
    for name, want in (("templates", "saturating"), ("diverse", "still_growing")):
        rows = S[name]["rows"]
        g = analyze_rows(U, rows).growth.summary
        label = (f"{parts['sizes']['templates']} templates x {len(rows)} fills"
                 if name == "templates" else f"{len(rows)} diverse GSM8K rows")
        curve = ", ".join(f"{n_}:{d}/{r:.0f}" for n_, d, r in zip(
            g["curve"]["n"], g["curve"]["energy_rank"], g["curve"]["effective_rank"],
            strict=True))
        add(label, f"{g['verdict']} (el. {g['elasticity']:.2f})", f"{want}",
            g["verdict"] == want)
        add(label, curve, "(curve N: energy rank / r_eff)", None)


def evaluate_sample(args, table: dict) -> None:
    import json

    ds, store = load_sample(args)
    U = union_arrays(ds, store)
    planted_rows = [i for i, line in enumerate(SAMPLE.read_text().splitlines())
                    if line.strip() and "planted" in json.loads(line)]
    clean = [i for i in range(len(U["examples"])) if i not in set(planted_rows)]

    def add(case, value, target, ok):
        table.setdefault((case, target), []).append((value, ok))

    res = analyze_rows(U, clean)
    d, i_, z = res.determinacy.summary, res.interference.summary, res.zones.summary
    case = f"shipped sample, planted rows removed ({len(clean)} rows)"
    add(case, d["consistency"], "not inconsistent", d["consistency"] != "inconsistent")
    add(case, excess_text(i_), "interference near null",
        not i_["interference_above_null"])
    add(case, f"{z['pressure_zone_share']:.1%}", "pressure zones <= 10 %",
        z["pressure_zone_share"] <= 0.10)
    res = analyze_rows(U, list(range(len(U["examples"]))))
    pos = res.contradictions.positions
    planted = set(planted_rows)
    case = f"shipped sample as shipped ({len(U['examples'])} rows, {len(planted_rows)} planted)"
    add(case, f"{res.determinacy.summary['consistency']}, {len(pos)} pairs, "
        f"{sum(a in planted or b in planted for a, b in pos)} with a planted row",
        "(inconsistent only by its planted pairs)",
        all(a in planted or b in planted for a, b in pos))


# ------------------------------------------------------- chat, preference, instruction (22)
def _with_source_duplicates(records: list[dict], truth: dict) -> set:
    """The planted pairs, plus (j, copy) for every base row j that repeats the copy's source
    (same input key, a target no different in substance): the data itself can hold a row
    twice (HH does), and the planted copy contradicts both."""
    from constraintlab.analysis.contradictions import compare_targets, input_keys
    from constraintlab.analysis.text import normalize_many
    from constraintlab.io import read_examples

    ex = read_examples(records).examples
    keys = input_keys(ex)
    tg = normalize_many([e.target_text for e in ex])
    out = {tuple(p) for p in truth["planted"]}
    for i, c in truth["planted"]:
        for j in truth["base"]:
            if j != i and keys[j] == keys[i] and compare_targets(
                    ex[i].target_text, ex[j].target_text, tg[i], tg[j]) is None:
                out.add((min(j, c), max(j, c)))
    return out


def evaluate_chat_sets(args, table: dict) -> None:
    """Contradictions on the chat, preference and instruction sets of ``chat_sets`` (issue 22):
    the whole pipeline on each extracted set (the factor signal and the capability statement
    included); planted pairs P, R; negatives (forks, other entities, numbers, paraphrases)
    reported; pairs among the unplanted rows (contradictions the data holds) counted apart."""
    import chat_sets

    from constraintlab.analysis import analyze_store

    def add(case, seed_value, target, ok):
        table.setdefault((case, target), []).append((seed_value, ok))

    from constraintlab.analysis import analyze_contradictions
    from constraintlab.io import read_examples

    sizes = {"n": args.chat_n} if args.chat_n else {}
    for name in args.chat_sets:
        for seed in args.seeds:
            records, truth = chat_sets.SETS[name](seed, **sizes)
            res = None
            if args.text_only:      # the text signal alone: no model, no extraction
                con = analyze_contradictions(read_examples(records).examples)
            else:
                where = Path(args.cache) / (f"{name}-{seed}"
                                            + (f"-n{args.chat_n}" if args.chat_n else ""))
                ds, store = extract_records(records, where, args.k)
                # the encoder may skip a record it cannot use (a target cut away by
                # max_length): analyse the examples the store holds, positions -> record ids
                kept = store.table["index"].to_numpy()
                keep = set(kept.tolist())
                res = analyze_store(store, examples=[ex for ex in ds if ex.index in keep])
                con = res.contradictions
            found = con.positions
            if res is not None:
                found = {(int(kept[a]), int(kept[b])) for a, b in found}
            planted_pairs = _with_source_duplicates(records, truth)
            base = set(truth["base"])
            real = {p for p in found if p[0] in base and p[1] in base}
            neg = {kind: {tuple(p) for p in ps} for kind, ps in truth["negatives"].items()}
            false = found - planted_pairs - real
            prec, rec = precision_recall(found - real, planted_pairs)
            case = (f"{name}: {len(truth['base'])} rows + {len(planted_pairs)} planted"
                    + "".join(f", {len(v)} {k} pairs" for k, v in neg.items() if v))
            add(case, f"P {prec:.3f} R {rec:.3f}", "planted: P, R >= 0.95",
                prec >= 0.95 and rec >= 0.95)
            add(case, f"{len(false)}" + "".join(
                f" ({k} {len(found & v)})" for k, v in neg.items() if v),
                "false contradictions: 0", not false)
            add(case, f"{len(real)}", "(pairs among the unplanted rows: the data's own)", None)
            if res is None:
                continue
            sig = con.summary.get("factor_signal") or {}
            cap = (res.suspects.summary["capability"] if res.suspects is not None else {})
            gain = cap.get("relative_input_gain")
            same = con.summary.get("factor_pairs_same_input")
            add(case, f"{same if same is not None else 'not measured'} same-input, proposes "
                f"{sig.get('proposes')}; input gain "
                + (f"{100 * gain:.1f} %" if gain is not None else "n/a"),
                "(factor signal: same-input candidate pairs, allowed to propose)", None)
            for p in sorted(false)[:5]:
                print(f"  false pair {name} seed {seed}: {p}", file=sys.stderr)
            for p in sorted(real)[:5]:
                print(f"  data's own pair {name} seed {seed}: {p}", file=sys.stderr)


def print_table(table: dict, seeds) -> None:
    head = ["case", "must read", *[f"seed {s}" for s in seeds], "pass"]
    lines = []
    for (case, target), vals in table.items():
        oks = [ok for _, ok in vals]
        verdict = "" if all(o is None for o in oks) else ("yes" if all(oks) else "NO")
        cells = [v for v, _ in vals]
        cells += [""] * (len(seeds) - len(cells))
        lines.append([case, target, *cells, verdict])
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in lines:
        print("| " + " | ".join(row) + " |")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--k", type=int, default=1024)
    ap.add_argument("--cache", default="/work/cache/validity")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--extract-only", action="store_true")
    ap.add_argument("--sample", action="store_true", help="(extract-only) the shipped sample")
    ap.add_argument("--no-affinity", dest="affinity", action="store_false")
    ap.add_argument("--affinity-train", type=int, default=32, help="examples per zone step")
    ap.add_argument("--affinity-probe", type=int, default=12, help="probe examples per zone")
    ap.add_argument("--affinity-steps", type=int, default=3)
    ap.add_argument("--affinity-lr", type=float, default=0.05)
    ap.add_argument("--chat", action="store_true",
                    help="only the chat, preference and instruction contradiction sets")
    ap.add_argument("--chat-sets", nargs="+", default=["chat", "preference", "instruction"])
    ap.add_argument("--chat-n", type=int, default=0,
                    help="(--chat) base rows per set (default: each builder's own, 150)")
    ap.add_argument("--text-only", action="store_true",
                    help="(--chat) the text signal alone, without a model (no extraction)")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    if args.extract_only:
        if args.sample:
            load_sample(args)
        for seed in args.seeds:
            load_union(seed, args)
        print(f"extracted in {time.perf_counter() - t0:.0f} s")
        return
    table: dict = {}
    if args.chat:
        evaluate_chat_sets(args, table)
        print(f"bench_validity --chat: seeds {args.seeds}, k = {args.k}, reference model; "
              f"{time.perf_counter() - t0:.0f} s (stores in {args.cache})")
        print_table(table, args.seeds)
        return
    evaluate_sample(args, table)
    for seed in args.seeds:
        evaluate_seed(seed, args, table)
    print(f"bench_validity: seeds {args.seeds}, k = {args.k}, reference model; "
          f"{time.perf_counter() - t0:.0f} s (stores reused from {args.cache})")
    print_table(table, args.seeds)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
