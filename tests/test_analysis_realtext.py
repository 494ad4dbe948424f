"""Detection quality on real text: GSM8K and Alpaca rows with planted exact duplicates, cosmetic
near duplicates and contradicting targets. Precision and recall >= 0.95 for each kind.

The base rows are first made distinct by an independent brute-force check (Python sets of word
3-grams, no MinHash), so the planted pairs are the ground truth.
"""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from constraintlab.analysis import AnalysisConfig, analyze_constraints
from constraintlab.io import read_examples

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
pytestmark = pytest.mark.skipif(not (DATA / "gsm8k_train.jsonl").exists(),
                                reason=f"shared data folder {DATA} is absent")

FULLWIDTH = {ord("0") + i: chr(0xFF10 + i) for i in range(10)}


def cosmetic(text: str, rng: np.random.Generator) -> str:
    """Change only what is cosmetic: case, whitespace, punctuation, Unicode forms."""
    t = text
    ops = rng.permutation(6)[:4]
    for op in ops:
        if op == 0:
            t = t.upper() if rng.random() < 0.3 else t.lower()
        elif op == 1:
            t = re.sub(r" ", "  ", t, count=4).replace("\n", " \n\t") + "  "
        elif op == 2:
            t = re.sub(r"([.?!])(\s|$)", r" \1\1\2", t)
            t = t.replace(", ", " , ")
        elif op == 3:
            t = t.translate(FULLWIDTH)
        elif op == 4:
            t = unicodedata.normalize("NFD", t.replace("'", "\u2019"))
        else:
            t = "\u00a0" + t.replace(" ", "\u00a0", 2)
    return t


def _grams(text: str) -> set:
    w = re.sub(r"[^\w\s]", " ", text.lower()).split()
    return {tuple(w[i:i + 3]) for i in range(max(len(w) - 2, 1))}


def _distinct(rows, key_in, texts, limit):
    """Greedy: keep rows whose input is new and whose text shares < 50 % of 3-grams with every
    kept row (brute force)."""
    kept, grams, inputs = [], [], set()
    for r, t in zip(rows, texts, strict=True):
        g = _grams(t)
        k = " ".join(re.sub(r"[^\w\s]", " ", key_in(r).lower()).split())
        if k in inputs or any(len(g & h) / len(g | h) >= 0.5 for h in grams):
            continue
        kept.append(r)
        grams.append(g)
        inputs.add(k)
        if len(kept) == limit:
            break
    return kept


def _bump_number(text: str, rng) -> str | None:
    """Change one number inside ``text`` (not the final answer line)."""
    body = text.rsplit("####", 1)[0]
    nums = list(re.finditer(r"(?<![\d.])\d+(?![\d.])", body))
    if not nums:
        return None
    m = nums[rng.integers(len(nums))]
    new = str(int(m.group(0)) + int(rng.integers(1, 9)))
    return text[: m.start()] + new + text[m.end():]


def _swap_word(text: str, rng) -> str:
    words = text.split(" ")
    cand = [i for i, w in enumerate(words) if w.isalpha() and len(w) > 3]
    i = cand[rng.integers(len(cand))]
    words[i] = words[i][::-1]
    return " ".join(words)


def _score(pred: set, truth: set) -> tuple[float, float]:
    tp = len(pred & truth)
    return (tp / len(pred) if pred else 1.0), (tp / len(truth) if truth else 1.0)


def _plant(rows, rng, make_input, set_input, target_key, n_each, contradict):
    """Append planted copies; returns (records, truth) with truth[kind] = set of (a, b)."""
    records = [dict(r) for r in rows]
    truth = {"exact_duplicate": set(), "near_duplicate": set(), "contradiction": set()}
    order = rng.permutation(len(rows))
    groups = np.array_split(order[: 3 * n_each], 3)
    for i in groups[0]:
        records.append(dict(rows[i]))
        truth["exact_duplicate"].add((int(i), len(records) - 1))
    for t, i in enumerate(groups[1]):
        r = dict(rows[i])
        if t % 5 == 4:  # a real small edit in the target: still a near duplicate
            r[target_key] = _swap_word(r[target_key], rng)
        else:
            r = set_input(r, cosmetic(make_input(r), rng))
            r[target_key] = cosmetic(r[target_key], rng)
        records.append(r)
        truth["near_duplicate"].add((int(i), len(records) - 1))
    for t, i in enumerate(groups[2]):
        r = contradict(dict(rows[i]), t, rng, rows)
        records.append(r)
        truth["contradiction"].add((int(i), len(records) - 1))
    return records, truth


def _check(records, truth):
    examples = read_examples(records).examples
    assert [ex.index for ex in examples] == list(range(len(records)))
    out = analyze_constraints(examples=examples, config=AnalysisConfig())
    assert out.spectrum is None and out.pairs is None
    got = {}
    for kind in truth:
        got[kind] = {(p["a"], p["b"]) for p in out.all_pairs([kind])
                     if kind != "near_duplicate" or p["detail"]["signal"] == "text"}
    report = {k: _score(got[k], truth[k]) for k in truth}
    for kind, (prec, rec) in report.items():
        missed = sorted(truth[kind] - got[kind])[:3]
        extra = sorted(got[kind] - truth[kind])[:3]
        assert prec >= 0.95 and rec >= 0.95, (kind, prec, rec, missed, extra)
    return out


def test_gsm8k_planted_duplicates_and_contradictions():
    rows = [json.loads(line) for line in (DATA / "gsm8k_train.jsonl").open()]
    rng = np.random.default_rng(0)
    pick = rng.choice(len(rows), 700, replace=False)
    rows = [rows[i] for i in pick]
    rows = _distinct(rows, lambda r: r["question"],
                     [r["question"] + " " + r["answer"] for r in rows], 500)

    def contradict(r, t, rng, base):
        kind = t % 4
        if kind == 0:  # another final answer
            ans = r["answer"].rsplit("####", 1)
            r["answer"] = ans[0] + "#### " + str(int(ans[1].strip().replace(",", "")) + 7)
        elif kind == 1:  # a different number inside the reasoning
            r["answer"] = _bump_number(r["answer"], rng)
        elif kind == 2:  # cosmetic change of the question, another final answer
            r["question"] = cosmetic(r["question"], rng)
            ans = r["answer"].rsplit("####", 1)
            r["answer"] = ans[0] + "#### " + str(int(ans[1].strip().replace(",", "")) * 2 + 1)
        else:  # the question's punctuation and line breaks changed (formatting), another
            # reasoning (a changed *word* is another input: never a contradiction, issue 22)
            r["question"] = re.sub(r"\s*(?<!\d)([,.?!])(?!\d)\s*", r" \1\n",
                                   r["question"]).rstrip()
            r["answer"] = _bump_number(r["answer"], rng)
        return r

    records, truth = _plant(rows, rng, lambda r: r["question"],
                            lambda r, q: {**r, "question": q}, "answer", 40, contradict)
    out = _check(records, truth)
    # contradiction details: a score in (0, 1] and a diff that shows the change
    pairs = out.contradictions.pairs
    assert all(0 < p["score"] <= 1 and p["detail"]["diff"] for p in pairs)
    fa = [p for p in pairs if "final_answer" in p["detail"]["reasons"]]
    assert fa and all("####" in p["detail"]["diff"] for p in fa)


def test_alpaca_planted_duplicates_and_contradictions():
    rows = json.loads((DATA / "alpaca_5000.json").read_text())
    rng = np.random.default_rng(1)
    pick = rng.choice(len(rows), 900, replace=False)
    rows = [rows[i] for i in pick]
    rows = [r for r in rows if len(r["output"].split()) >= 12]
    rows = _distinct(rows, lambda r: r["instruction"] + " " + r["input"],
                     [f"{r['instruction']} {r['input']} {r['output']}" for r in rows], 500)

    def contradict(r, t, rng, base):
        if t % 2 == 0:  # a different reply to the same prompt
            other = base[(t * 37 + 11) % len(base)]
            r["output"] = other["output"] if other["output"] != r["output"] else "No."
        else:  # the same reply with its substance replaced
            bumped = _bump_number(r["output"], rng)
            r["output"] = bumped if bumped and bumped != r["output"] else (
                "I cannot help with that request; " + r["output"].split(".")[0][::-1])
        if t % 3 == 0:
            r["instruction"] = cosmetic(r["instruction"], rng)
        return r

    def set_input(r, text):
        instr, _, inp = text.partition("\n\n")
        return {**r, "instruction": instr, "input": inp}

    records, truth = _plant(
        rows, rng, lambda r: r["instruction"] + ("\n\n" + r["input"] if r["input"] else ""),
        set_input, "output", 40, contradict)
    _check(records, truth)
